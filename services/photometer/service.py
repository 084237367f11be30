"""The photometer: detects the job's stars on the reference stack, then measures every star on
every FFI by forced aperture photometry at its WCS position corrected by the frame's own
pointing offset (measured on a few hundred isolated bright stars), and flags the stars whose
aperture a neighbour contaminates.

Every star is measured in three apertures sharing one local background: the main one of
``DEFAULT_RADIUS`` (2 px; ``flux``, ``flux_err``) and those of
:data:`~tess_ffi.shared.contracts.APERTURE_RADII` (1.5 and 3 px; ``flux_r1p5``,
``flux_r3``, ...), so that each star's light curve can use the radius that suits it: small for
faint, background-limited stars, large for bright ones (less sensitive to the star's position
within a pixel).

Photometers are stateless: each image message carries the star list, so any number of them
share the image queue and give the same results as one.
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from tess_ffi.shared.bus import Delivery, PermanentError
from tess_ffi.shared.contracts import (
    APERTURE_RADII,
    FFIImage,
    FFIPhotometry,
    ReferenceImage,
    StarCatalog,
    Topic,
    photometry_table,
    star_catalog_table,
)
from tess_ffi.shared.fits_io import FITSError, header_wcs
from tess_ffi.shared.quality import SATURATION_E_S, TESS_DQUALITY_MASK, QualityFlags
from tess_ffi.shared.runtime import Service

from .photometry import (
    DEFAULT_RADIUS,
    ApertureWeights,
    aperture_contamination,
    build_aperture_weights,
    detect_stars,
    forced_aperture_photometry,
    measure_frame_offset,
    select_tracking_stars,
)

__all__ = [
    "PhotometerService",
    "build_star_catalog",
    "measure_ffi",
    "TESS_ZERO_POINT",
    "APERTURE_GRID_PX",
    "WEIGHTS_REUSE_PX",
    "CONTAMINATION_LIMIT",
    "EXTRA_RADII",
]

#: e-/s of a Tmag = 10 star (Vanderspek et al. 2018): tmag = 10 - 2.5 log10(flux / 15000).
TESS_ZERO_POINT = 15000.0
#: Apertures are centred on a grid of this step (px): each frame's tracked positions are
#: rounded to it, so an aperture is at most 0.005 px per axis from its star. An aperture
#: centred on a star loses flux only to second order in its offset (2e-4 of it at 0.05 px with
#: TESS's PSF and a 2-px radius, hence 2e-6 at 0.005 px). On the grid the weights come from
#: per-phase tables (``build_aperture_weights(grid=...)``), about 5x faster than computing
#: them, so they are cheap to rebuild on every frame that moves. The positions reported are
#: those the apertures were placed at.
APERTURE_GRID_PX = 0.01
#: Weights built for one frame are reused on another while every star rounds to the same grid
#: position, i.e. has moved by less than about this much (px); the name predates the grid.
WEIGHTS_REUSE_PX = APERTURE_GRID_PX
#: Weights kept per process (one per star list being measured, most recent first). Jitter
#: moves every frame to new grid positions, so a longer list would rarely be hit.
_WEIGHTS_CACHE_SIZE = 2
#: A star whose aperture (radius DEFAULT_RADIUS) receives more than this fraction of its own
#: aperture flux from other stars of the list (catalog fluxes, generic TESS PSF) is flagged
#: ``CONTAMINATED`` on every measurement.
CONTAMINATION_LIMIT = 0.1
#: Radii (px) of the apertures measured besides the main ``DEFAULT_RADIUS`` one, in the order
#: of :data:`~tess_ffi.shared.contracts.APERTURE_RADII` (whose suffixes name their columns).
EXTRA_RADII: tuple[float, ...] = tuple(APERTURE_RADII.values())


@dataclass(frozen=True, eq=False)
class _Apertures:
    """Aperture weights for a star list, built for its stars in raster order (by pixel row,
    then column: the frame's pixels are then gathered close to sequentially, which is
    measurably faster than in catalog order). ``order[i]`` is the list index of the weights'
    star ``i``; ``x, y`` are the list's positions the weights were built for, ``sorted_x,
    sorted_y`` those the order was sorted for (an earlier frame's, when it was borrowed)."""

    weights: ApertureWeights
    order: np.ndarray
    x: np.ndarray
    y: np.ndarray
    sorted_x: np.ndarray
    sorted_y: np.ndarray

    def matches(self, x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> bool:
        """Built for exactly these (grid) positions on frames of ``shape``, with the
        apertures of :data:`EXTRA_RADII`?"""
        return (
            self.weights.shape == shape
            and self.weights.extra_radii == EXTRA_RADII
            and np.array_equal(self.x, x)
            and np.array_equal(self.y, y)
        )

    def order_fits(self, x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> bool:
        """Was the order sorted for positions within half a pixel of ``x, y``?"""
        sx, sy = self.sorted_x, self.sorted_y
        return (
            self.weights.shape == shape
            and sx.size == x.size
            and (x.size == 0 or (
                float(np.max(np.abs(sx - x))) < 0.5 and float(np.max(np.abs(sy - y))) < 0.5
            ))
        )  # fmt: skip

    def unsort(self, values: np.ndarray) -> np.ndarray:
        """Per-star values in weights order (the last axis) back to star-list order."""
        out = np.empty_like(values)
        out[..., self.order] = values
        return out


_weights_cache: list[_Apertures] = []
_weights_lock = threading.Lock()


def _on_grid(v: np.ndarray) -> np.ndarray:
    """Positions rounded to the aperture grid, as ``build_aperture_weights(grid=...)`` does."""
    steps = round(1.0 / APERTURE_GRID_PX)
    return np.round(v * steps) / steps


def _aperture_weights(x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> _Apertures:
    """Weights for stars at ``x, y`` (rounded to the :data:`APERTURE_GRID_PX` grid) on frames
    of ``shape``: a cached set built for the same grid positions, else a new one (cached)."""
    x, y = _on_grid(x), _on_grid(y)
    with _weights_lock:
        cached = list(_weights_cache)
    for entry in cached:
        if entry.matches(x, y, shape):
            with _weights_lock:
                if entry in _weights_cache:
                    _weights_cache.remove(entry)
                _weights_cache.insert(0, entry)
            return entry
    # The raster order only speeds up the pixel gathers (results do not depend on it): an
    # order sorted for positions within half a pixel (an earlier frame's, moved by the
    # pointing jitter) is reused, which a few stars crossing a pixel row do not spoil, and
    # saves sorting the whole list on every frame.
    lender = next((e for e in cached if e.order_fits(x, y, shape)), None)
    if lender is not None:
        order, sorted_x, sorted_y = lender.order, lender.sorted_x, lender.sorted_y
    else:
        order, sorted_x, sorted_y = np.lexsort((x, np.floor(y + 0.5))), x, y
    weights = build_aperture_weights(
        x[order], y[order], shape=shape, extra_radii=EXTRA_RADII, grid=APERTURE_GRID_PX
    )
    entry = _Apertures(weights, order, x, y, sorted_x, sorted_y)
    with _weights_lock:
        _weights_cache.insert(0, entry)
        del _weights_cache[_WEIGHTS_CACHE_SIZE:]
    return entry


@dataclass(frozen=True, eq=False)
class _StarListInfo:
    """What depends only on a star list: its tracking stars (indices) and which stars a
    neighbour contaminates. ``x, y, tmag`` are the list's columns it was computed from."""

    x: np.ndarray
    y: np.ndarray
    tmag: np.ndarray
    tracking: np.ndarray
    contaminated: np.ndarray

    def matches(self, x: np.ndarray, y: np.ndarray, tmag: np.ndarray) -> bool:
        return (
            np.array_equal(self.x, x, equal_nan=True)
            and np.array_equal(self.y, y, equal_nan=True)
            and np.array_equal(self.tmag, tmag, equal_nan=True)
        )


_star_info_cache: list[_StarListInfo] = []
_star_info_lock = threading.Lock()


def _star_list_info(stars: pa.Table) -> _StarListInfo:
    """Tracking stars and contamination of a star list, from its own reference positions and
    magnitudes (relative positions do not depend on the frame). Cached per star list."""
    x = stars.column("x").to_numpy().astype(np.float64)
    y = stars.column("y").to_numpy().astype(np.float64)
    tmag = stars.column("tmag").to_numpy().astype(np.float64)
    with _star_info_lock:
        cached = list(_star_info_cache)
    for entry in cached:
        if entry.matches(x, y, tmag):
            return entry
    placed = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    xp, yp, tp = x[placed], y[placed], tmag[placed]
    tracking = placed[select_tracking_stars(xp, yp, tp)]
    # A star of unknown magnitude adds no light and, given any neighbour, counts as
    # contaminated (its own flux is taken as zero).
    flux = np.where(np.isfinite(tp), TESS_ZERO_POINT * 10.0 ** (-0.4 * (tp - 10.0)), 0.0)
    contaminated = np.zeros(x.size, dtype=bool)
    contaminated[placed] = aperture_contamination(xp, yp, flux, DEFAULT_RADIUS) > CONTAMINATION_LIMIT
    for arr in (x, y, tmag, tracking, contaminated):
        arr.setflags(write=False)
    entry = _StarListInfo(x, y, tmag, tracking, contaminated)
    with _star_info_lock:
        _star_info_cache.insert(0, entry)
        del _star_info_cache[_WEIGHTS_CACHE_SIZE:]
    return entry


#: Header keywords that can define a celestial WCS (FITS WCS papers I-II with wcslib's
#: relaxations, SIP, TPV/TPD and distortion-paper cards, alternate descriptions 'a'); star
#: positions are recomputed only when one of these cards changes between frames.
_WCS_CARD = re.compile(
    r"(WCSAXES|WCSNAME|CTYPE|CUNIT|CRVAL|CRPIX|CDELT|CROTA|CD\d|PC\d|PV\d|PS\d|PROJP|"
    r"LONPOLE|LONGPOLE|LATPOLE|RADESYS|RADECSYS|EQUINOX|EPOCH|A_|B_|AP_|BP_|CPDIS|CQDIS|"
    r"CPERR|CQERR|DP\d|DQ\d|D2IM|NAXIS|VELREF|VSOURCE|RESTFRQ|RESTFREQ|RESTWAV|SPECSYS|"
    r"CNAME|CRDER|CSYER|OBSGEO|CONTINUE)"
)
_positions_cache: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
_positions_lock = threading.Lock()


def _wcs_cards(header: str) -> str | None:
    """The header's WCS-defining cards, concatenated (None if it is not plain 80-char cards)."""
    if len(header) % 80:
        return None
    return "".join(
        card for card in (header[i : i + 80] for i in range(0, len(header), 80))
        if _WCS_CARD.match(card)
    )


def _star_positions(
    header: Any, header_text: str, ra: np.ndarray, dec: np.ndarray, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """0-based ``x, y`` of stars at ``ra, dec`` by the header's WCS (stars it cannot place get
    -1e4, far off-chip). Reused while the WCS cards and the star list are unchanged."""
    key = _wcs_cards(header_text)
    if key is not None:
        with _positions_lock:
            cached = list(_positions_cache)
        for k, ra_c, dec_c, x_c, y_c in cached:
            if k == key and np.array_equal(ra_c, ra) and np.array_equal(dec_c, dec):
                return x_c, y_c
    wcs = header_wcs(header, name=name)
    x, y = (np.array(v, dtype=np.float64) for v in wcs.all_world2pix(ra, dec, 0))
    lost = ~(np.isfinite(x) & np.isfinite(y))
    x[lost], y[lost] = -1e4, -1e4
    if key is not None:
        for arr in (x, y):
            arr.setflags(write=False)
        with _positions_lock:
            _positions_cache.insert(0, (key, ra.copy(), dec.copy(), x, y))
            del _positions_cache[_WEIGHTS_CACHE_SIZE:]
    return x, y


def build_star_catalog(image: np.ndarray, header: str, *, max_stars: int | None = None) -> pa.Table:
    """Detect stars on a reference image and give them stable ids and sky positions."""
    wcs = header_wcs(header, name="reference")
    sources = detect_stars(image, max_stars=max_stars)
    x = sources["x"].to_numpy(dtype=np.float64)
    y = sources["y"].to_numpy(dtype=np.float64)
    ra, dec = wcs.all_pix2world(x, y, 0)
    flux = np.clip(sources["flux"].to_numpy(dtype=np.float64), 1e-3, None)
    tmag = 10.0 - 2.5 * np.log10(flux / TESS_ZERO_POINT)
    # Ids follow sky position (declination bands, then RA), so they do not depend on the
    # detection order and are the same whichever photometer builds the list.
    order = np.lexsort((np.round(ra, 6), np.round(dec, 3)))
    return star_catalog_table(
        np.arange(1, len(order) + 1), ra[order], dec[order], x[order], y[order], tmag[order]
    )


def measure_ffi(message: FFIImage) -> tuple[float, int, pa.Table]:
    """Forced photometry of the message's stars on its image: (btjd_mid, dquality, table).

    The table (:data:`~tess_ffi.shared.contracts.PHOTOMETRY_SCHEMA`) holds every star's flux
    in the main 2-px aperture and in the :data:`EXTRA_RADII` apertures, all with the same
    local background.
    """
    from astropy.io import fits

    header = fits.Header.fromstring(message.header)
    try:
        tstart, tstop = float(header["TSTART"]), float(header["TSTOP"])
    except KeyError as exc:
        raise FITSError(f"{message.filename}: missing header key {exc.args[0]}") from None
    dquality = int(header.get("DQUALITY", 0)) & TESS_DQUALITY_MASK
    stars = message.stars
    ra = stars.column("ra").to_numpy()
    dec = stars.column("dec").to_numpy()
    # A star the WCS cannot place is measured nowhere: far off-chip, so it is flagged OUTSIDE.
    x, y = _star_positions(header, message.header, ra, dec, message.filename)
    image = message.image
    contaminated: np.ndarray | None = None
    if isinstance(image, np.ndarray) and image.ndim == 2:
        info = _star_list_info(stars)
        contaminated = info.contaminated
        # The header WCS is nominal: the frame's own pointing offset (jitter, drift, momentum
        # dumps) moves every star, and an aperture 0.05 px off loses 2e-4 of the flux.
        offset = measure_frame_offset(
            image, x[info.tracking], y[info.tracking], saturation_level=0.98 * SATURATION_E_S
        )
        if offset.ok:
            x, y = offset.apply(x, y)
        apertures = _aperture_weights(x, y, (int(image.shape[0]), int(image.shape[1])))
        w = apertures.weights
        result = forced_aperture_photometry(
            image, w.x, w.y, uncertainty=message.uncertainty, weights=w,
            saturation_level=0.98 * SATURATION_E_S,
        )
        for name in ("flux", "flux_err", "bkg", "x", "y", "quality", "extra_flux",
                     "extra_flux_err"):  # fmt: skip
            setattr(result, name, apertures.unsort(getattr(result, name)))
    else:  # not an image: forced_aperture_photometry says why
        result = forced_aperture_photometry(
            image, x, y, uncertainty=message.uncertainty, extra_radii=EXTRA_RADII
        )
    quality = np.asarray(result.quality, dtype=np.int32) | np.int32(dquality)
    if contaminated is not None:
        quality |= np.where(contaminated, np.int32(QualityFlags.CONTAMINATED), np.int32(0))
    extra: dict[str, np.ndarray] = {}
    assert result.extra_flux is not None and result.extra_flux_err is not None
    assert result.extra_radii == EXTRA_RADII
    for j, suffix in enumerate(APERTURE_RADII):
        extra[f"flux_{suffix}"] = result.extra_flux[j]
        extra[f"flux_err_{suffix}"] = result.extra_flux_err[j]
    table = photometry_table(
        stars.column("star_id").to_numpy(),
        flux=result.flux,
        flux_err=result.flux_err,
        bkg=result.bkg,
        x=result.x,
        y=result.y,
        quality=quality,
        **extra,
    )
    return 0.5 * (tstart + tstop), dquality, table


class PhotometerService(Service):
    name = "photometer"

    async def start(self) -> None:
        # One image in hand at a time: a second prefetched 20 MB message costs memory and,
        # measured, no throughput (the bound is CPU).
        await self.subscribe(Topic.FFI, self.on_ffi, prefetch=1)
        await self.subscribe(Topic.REFERENCE, self.on_reference, prefetch=1)

    async def on_reference(self, message: Any, delivery: Delivery) -> None:
        assert isinstance(message, ReferenceImage)
        try:
            stars = await asyncio.to_thread(build_star_catalog, message.image, message.header)
        except ValueError as exc:
            raise PermanentError(str(exc)) from exc
        self.log.info("star list built", job=message.job.job_id, stars=stars.num_rows,
                      frames=message.n_frames)
        self.counters["catalogs_built"] += 1
        await self.bus.publish(StarCatalog(job=message.job, stars=stars))

    async def on_ffi(self, message: Any, delivery: Delivery) -> None:
        assert isinstance(message, FFIImage)
        status = self.job_status(message.job)
        status["current"] = message.filename
        try:
            btjd, dquality, table = await asyncio.to_thread(measure_ffi, message)
        except ValueError as exc:  # bad input (header, WCS, shape): retrying cannot help
            raise PermanentError(f"{message.filename}: {exc}") from exc
        await self.bus.publish(
            FFIPhotometry(
                job=message.job, cadence=message.cadence, btjd=btjd, dquality=dquality,
                table=table,
            )
        )
        self.counters["ffi_measured"] += 1
        self.counters["measurements"] += table.num_rows
        status["measured"] = status.get("measured", 0) + 1
