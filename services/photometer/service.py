"""The photometer: detects the job's stars on the reference stack, then measures every star on
every FFI by forced aperture photometry at its WCS position.

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
    FFIImage,
    FFIPhotometry,
    ReferenceImage,
    StarCatalog,
    Topic,
    photometry_table,
    star_catalog_table,
)
from tess_ffi.shared.fits_io import FITSError, header_wcs
from tess_ffi.shared.quality import SATURATION_E_S, TESS_DQUALITY_MASK
from tess_ffi.shared.runtime import Service

from .photometry import (
    ApertureWeights,
    build_aperture_weights,
    detect_stars,
    forced_aperture_photometry,
)

__all__ = [
    "PhotometerService",
    "build_star_catalog",
    "measure_ffi",
    "TESS_ZERO_POINT",
    "WEIGHTS_REUSE_PX",
]

#: e-/s of a Tmag = 10 star (Vanderspek et al. 2018): tmag = 10 - 2.5 log10(flux / 15000).
TESS_ZERO_POINT = 15000.0
#: Aperture weights built for one frame are reused on the next while no star has moved by
#: this much (px) in x or y. An aperture centred on a star gains and loses flux only to second
#: order in its offset, so a 0.01-px move changes the flux by far less than its noise; the
#: positions reported are those the apertures were placed at.
WEIGHTS_REUSE_PX = 0.01
#: Weights kept per process (one per star list being measured, most recent first).
_WEIGHTS_CACHE_SIZE = 2


@dataclass(frozen=True, eq=False)
class _Apertures:
    """Aperture weights for a star list, built for its stars in raster order (by pixel row,
    then column: the frame's pixels are then gathered close to sequentially, which is
    measurably faster than in catalog order). ``order[i]`` is the list index of the weights'
    star ``i``; ``x, y`` are the list's positions the weights were built for."""

    weights: ApertureWeights
    order: np.ndarray
    x: np.ndarray
    y: np.ndarray

    def matches(self, x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> bool:
        return (
            self.weights.shape == shape
            and self.x.size == x.size
            and (x.size == 0 or (
                float(np.max(np.abs(self.x - x))) < WEIGHTS_REUSE_PX
                and float(np.max(np.abs(self.y - y))) < WEIGHTS_REUSE_PX
            ))
        )  # fmt: skip

    def unsort(self, values: np.ndarray) -> np.ndarray:
        """Per-star values in weights order back to star-list order."""
        out = np.empty_like(values)
        out[self.order] = values
        return out


_weights_cache: list[_Apertures] = []
_weights_lock = threading.Lock()


def _aperture_weights(x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> _Apertures:
    """Weights for stars at ``x, y`` on frames of ``shape``: a cached set when every star is
    within :data:`WEIGHTS_REUSE_PX` of where it was built for, else a new one (then cached)."""
    with _weights_lock:
        cached = list(_weights_cache)
    for entry in cached:
        if entry.matches(x, y, shape):
            with _weights_lock:
                if entry in _weights_cache:
                    _weights_cache.remove(entry)
                _weights_cache.insert(0, entry)
            return entry
    order = np.lexsort((x, np.floor(y + 0.5)))
    weights = build_aperture_weights(x[order], y[order], shape=shape)
    entry = _Apertures(weights, order, x.copy(), y.copy())
    with _weights_lock:
        _weights_cache.insert(0, entry)
        del _weights_cache[_WEIGHTS_CACHE_SIZE:]
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
    """Forced photometry of the message's stars on its image: (btjd_mid, dquality, table)."""
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
    if isinstance(image, np.ndarray) and image.ndim == 2:
        apertures = _aperture_weights(x, y, (int(image.shape[0]), int(image.shape[1])))
        w = apertures.weights
        result = forced_aperture_photometry(
            image, w.x, w.y, uncertainty=message.uncertainty, weights=w,
            saturation_level=0.98 * SATURATION_E_S,
        )
        for name in ("flux", "flux_err", "bkg", "x", "y", "quality"):
            setattr(result, name, apertures.unsort(getattr(result, name)))
    else:  # not an image: forced_aperture_photometry says why
        result = forced_aperture_photometry(image, x, y, uncertainty=message.uncertainty)
    table = photometry_table(
        stars.column("star_id").to_numpy(),
        flux=result.flux,
        flux_err=result.flux_err,
        bkg=result.bkg,
        x=result.x,
        y=result.y,
        quality=np.asarray(result.quality, dtype=np.int32) | np.int32(dquality),
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
