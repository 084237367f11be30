"""Read the light curves MAST already publishes, and make them from pixel files.

One function, :func:`read_lightcurve`, recognises the format of a FITS file by its content
(the file name only settles SPOC versus TESS-SPOC) and returns a :class:`LightCurve` in BTJD with
a quality bitmask in which 0 means "good" by that format's own rules:

========== ============================================== =======================================
format     file                                           flux
========== ============================================== =======================================
spoc       SPOC 2-min / 20-s ``tess*-s_lc.fits``          PDCSAP_FLUX (SAP_FLUX if PDCSAP is all
                                                          NaN), QUALITY & SPOC's default bitmask
tess-spoc  TESS-SPOC FFI ``hlsp_tess-spoc_*_lc.fits``     same as spoc
tglc       TGLC ``hlsp_tglc_*_llc.fits``                  cal_aper_flux (cal_psf_flux if absent),
                                                          good where TESS_flags == TGLC_flags == 0;
                                                          ``pixels=True``: 3x3 sum of the primary
                                                          HDU's pixel cube around the star
qlp        QLP ``hlsp_qlp_*_llc.fits``                    KSPSAP_FLUX (else SAP_FLUX), good where
                                                          QUALITY == 0
tesscut    TESScut / astrocut ``*_astrocut.fits``         aperture photometry of the cutout
spoc-tpf   SPOC target pixel file ``*_tp.fits[.gz]``      aperture photometry of the stamp
========== ============================================== =======================================

Rows with a non-finite time are dropped; bad rows are kept and flagged. For the formats whose
rows are marked bad by a flag of their own (TGLC, QLP), bit 128 (``MANUAL_EXCLUDE``) is set as
well, so :data:`tess_ffi.shared.quality.DEFAULT_BAD_BITS` always rejects them.

Examples
--------
>>> import numpy as np
>>> from tess_ffi.services.analyzer.lightcurve_files import aperture_photometry
>>> cube = np.full((4, 5, 5), 10.0)
>>> cube[:, 2, 2] += 1000.0
>>> phot = aperture_photometry(cube)
>>> phot.flux.round(1).tolist(), int(phot.aperture.sum())
([1000.0, 1000.0, 1000.0, 1000.0], 9)
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.io import fits

from tess_ffi.shared.quality import SPOC_DEFAULT_BITMASK, QualityFlags

__all__ = [
    "FORMATS",
    "SPOC_DEFAULT_BITMASK",
    "LightCurve",
    "ApertureResult",
    "read_lightcurve",
    "aperture_photometry",
]

FORMATS = ("spoc", "tess-spoc", "tglc", "qlp", "tesscut", "spoc-tpf")

_EXCLUDE = int(QualityFlags.MANUAL_EXCLUDE)

FloatArray = npt.NDArray[np.float64]


@dataclass
class LightCurve:
    """One star's light curve as read from a file.

    ``time`` is BTJD (BJD - 2457000, TDB); ``flux`` and ``flux_err`` are in the file's unit
    (e-/s, or normalised for TGLC's calibrated fluxes); ``quality`` is 0 for rows the format
    considers good. ``meta`` has at least ``tic_id``, ``sector``, ``ra``, ``dec``,
    ``cadence_s``, ``format`` and ``flux_column``.
    """

    source: str
    time: FloatArray
    flux: FloatArray
    flux_err: FloatArray
    quality: npt.NDArray[np.int64]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.time.size)

    @property
    def good(self) -> npt.NDArray[np.bool_]:
        """Rows with quality 0 and a finite flux."""
        return (self.quality == 0) & np.isfinite(self.flux)


@dataclass(frozen=True)
class ApertureResult:
    """Outcome of :func:`aperture_photometry` (one value per cadence)."""

    flux: FloatArray
    flux_err: FloatArray
    background: FloatArray  # per pixel, subtracted from every aperture pixel
    aperture: npt.NDArray[np.bool_]  # (ny, nx)
    background_pixels: npt.NDArray[np.bool_]  # (ny, nx)


def _fail(path: Path, why: str) -> ValueError:
    return ValueError(f"{path.name}: {' '.join(why.split())}")


def _header_value(headers: list[fits.Header], *keys: str) -> Any:
    for key in keys:
        for header in headers:
            value = header.get(key)
            if value is not None and not (isinstance(value, str) and not value.strip()):
                return value
    return None


def _as_int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _as_float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _column(data: Any, names: dict[str, str], name: str) -> FloatArray | None:
    real = names.get(name.lower())
    if real is None:
        return None
    return np.asarray(data[real], dtype=np.float64)


_TESS_CADENCES_S = (20.0, 120.0, 158.4, 200.0, 475.2, 600.0, 1425.6, 1800.0)


def _cadence_s(time: FloatArray, headers: list[fits.Header]) -> float:
    """Median time step in seconds, snapped to a TESS cadence within 1 %."""
    finite = np.sort(time[np.isfinite(time)])
    if finite.size >= 3:
        step = np.diff(finite)
        step = step[step > 0]
        if step.size:
            value = float(np.median(step) * 86400.0)
            for nominal in _TESS_CADENCES_S:
                if abs(value / nominal - 1.0) < 0.01:
                    return nominal
            return round(value, 1)
    timedel = _as_float(_header_value(headers, "TIMEDEL"))
    if math.isfinite(timedel) and timedel > 0:
        return float(np.round(timedel * 86400.0, 1))
    return _as_float(_header_value(headers, "XPTIME", "EXPOSURE"))


def _base_meta(path: Path, headers: list[fits.Header], fmt: str) -> dict[str, Any]:
    tic = _as_int(_header_value(headers, "TICID"))
    sector = _as_int(_header_value(headers, "SECTOR"))
    camera = _as_int(_header_value(headers, "CAMERA"))
    ccd = _as_int(_header_value(headers, "CCD"))
    match = re.search(r"-s(\d{4})-(\d)-(\d)", path.name)  # tess-s0001-4-3_... (TESScut)
    if match:
        sector = sector if sector is not None else int(match.group(1))
        camera = camera if camera is not None else int(match.group(2))
        ccd = ccd if ccd is not None else int(match.group(3))
    if sector is None:
        match = re.search(r"-s(\d{4})", path.name)
        sector = int(match.group(1)) if match else None
    if tic is None:
        match = re.search(r"-(\d{16})-", path.name)  # tess...-s0004-0000000098853987-...
        tic = int(match.group(1)) if match else None
    return {
        "tic_id": tic,
        "sector": sector,
        "camera": camera,
        "ccd": ccd,
        "ra": _as_float(_header_value(headers, "RA_OBJ")),
        "dec": _as_float(_header_value(headers, "DEC_OBJ")),
        "tessmag": _as_float(_header_value(headers, "TESSMAG")),
        "object": str(_header_value(headers, "OBJECT") or ""),
        "format": fmt,
    }


def _finish(
    path: Path,
    fmt: str,
    headers: list[fits.Header],
    time: FloatArray,
    flux: FloatArray,
    flux_err: FloatArray,
    quality: npt.NDArray[np.int64],
    **extra: Any,
) -> LightCurve:
    keep = np.isfinite(time)
    if not keep.any():
        raise _fail(path, "no cadence has a finite time")
    meta = _base_meta(path, headers, fmt)
    meta["cadence_s"] = _cadence_s(time[keep], headers)
    meta.update(extra)
    return LightCurve(
        source=str(path),
        time=time[keep],
        flux=flux[keep],
        flux_err=flux_err[keep],
        quality=quality[keep].astype(np.int64),
        meta=meta,
    )


def _p2p_error(flux: FloatArray, good: npt.NDArray[np.bool_]) -> FloatArray:
    """A constant error from the point-to-point scatter, for files that give none."""
    f = flux[good & np.isfinite(flux)]
    if f.size < 3:
        return np.full(flux.size, np.nan)
    d = np.diff(f)
    sigma = 1.4826 * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2.0)
    return np.full(flux.size, sigma if sigma > 0 else np.nan)


# --------------------------------------------------------------------------------------------
# Aperture photometry
# --------------------------------------------------------------------------------------------


def aperture_photometry(
    flux: npt.ArrayLike,
    flux_err: npt.ArrayLike | None = None,
    *,
    good: npt.ArrayLike | None = None,
    center: tuple[float, float] | None = None,
    size: int = 3,
    threshold: float | None = None,
    subtract_background: bool = True,
) -> ApertureResult:
    """Simple aperture photometry of a pixel time series (cube of shape (n, ny, nx)).

    The background of each cadence is the median of the faintest pixels of the stamp (those
    below the 30th percentile of the median image, outside the aperture). The aperture is a
    ``size`` x ``size`` box around the brightest pixel of the background-subtracted median image
    within two pixels of ``center`` (default: the middle of the stamp), or, with
    ``threshold``, the pixels connected to that brightest pixel whose median exceeds
    ``threshold`` times the background scatter.

    Parameters
    ----------
    flux, flux_err : array_like
        Cubes of shape (n, ny, nx); NaN pixels are ignored.
    good : array_like of bool, optional
        Cadences to use for the median image (default: all).
    center : (row, column), optional
        Where the star is expected.
    size : int
        Side of the box aperture.
    threshold : float, optional
        Use a brightness-thresholded aperture instead of the box.
    subtract_background : bool
        False for cubes that are already background-subtracted.

    Returns
    -------
    ApertureResult

    Examples
    --------
    >>> cube = np.full((3, 6, 6), 100.0)
    >>> cube[:, 0, 5] += 500.0
    >>> res = aperture_photometry(cube, center=(0, 5))  # a corner: the box is clipped
    >>> res.flux.tolist(), int(res.aperture.sum()), res.background.tolist()
    ([500.0, 500.0, 500.0], 4, [100.0, 100.0, 100.0])
    """
    cube = np.asarray(flux, dtype=np.float64)
    if cube.ndim != 3 or cube.shape[0] == 0 or min(cube.shape[1:]) == 0:
        raise ValueError(f"expected a pixel cube of shape (n, ny, nx), got {cube.shape}")
    n, ny, nx = cube.shape
    err = None if flux_err is None else np.asarray(flux_err, dtype=np.float64)
    if err is not None and err.shape != cube.shape:
        raise ValueError(f"flux_err shape {err.shape} differs from flux shape {cube.shape}")
    use = np.ones(n, dtype=bool) if good is None else np.asarray(good, dtype=bool)
    if not use.any():
        use = np.ones(n, dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels or cadences
        median_image = np.nanmedian(cube[use], axis=0)
    finite_pix = np.isfinite(median_image)
    if not finite_pix.any():
        raise ValueError("every pixel of the cube is NaN")
    fill = float(np.nanmin(median_image))
    image = np.where(finite_pix, median_image, fill)
    # Faint pixels: background estimate.
    faint = finite_pix & (image <= np.percentile(image[finite_pix], 30.0))
    if faint.sum() < 1:
        faint = finite_pix & (image <= np.median(image[finite_pix]))
    bkg_level = float(np.median(image[faint])) if subtract_background else 0.0
    # Brightest pixel near the expected position.
    cy, cx = center if center is not None else ((ny - 1) / 2.0, (nx - 1) / 2.0)
    rows, cols = np.mgrid[0:ny, 0:nx]
    near = (np.abs(rows - cy) <= 2.0) & (np.abs(cols - cx) <= 2.0) & finite_pix
    if not near.any():
        near = finite_pix
    masked = np.where(near, image, -np.inf)
    by, bx = np.unravel_index(int(np.argmax(masked)), image.shape)
    if threshold is None:
        half = size // 2
        aperture = (np.abs(rows - by) <= half) & (np.abs(cols - bx) <= half) & finite_pix
    else:
        resid = image - bkg_level
        noise = 1.4826 * float(np.median(np.abs(resid[faint] - np.median(resid[faint]))))
        above = resid > threshold * max(noise, 1e-12)
        from scipy import ndimage

        labels, _ = ndimage.label(above)
        aperture = labels == labels[by, bx] if labels[by, bx] > 0 else np.zeros_like(above)
        aperture[by, bx] = True
        aperture &= finite_pix
    bkg_pixels = faint & ~aperture
    if not bkg_pixels.any():
        bkg_pixels = faint
    flat = cube.reshape(n, ny * nx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if subtract_background:
            background = np.nanmedian(flat[:, bkg_pixels.ravel()], axis=1)
        else:
            background = np.zeros(n)
        n_ap = int(aperture.sum())
        ap_vals = flat[:, aperture.ravel()]
        total = np.nansum(ap_vals, axis=1) - n_ap * background
        all_nan = np.all(~np.isfinite(ap_vals), axis=1)
        total[all_nan] = np.nan
        if err is not None:
            ap_err = err.reshape(n, ny * nx)[:, aperture.ravel()]
            var = np.nansum(ap_err**2, axis=1)
            if subtract_background:
                bk_err = err.reshape(n, ny * nx)[:, bkg_pixels.ravel()]
                n_bkg = max(int(bkg_pixels.sum()), 1)
                # the median of n_bkg pixels: ~1.25 / sqrt(n_bkg) of one pixel's error
                var += (n_ap * 1.2533 * np.nanmedian(bk_err, axis=1)) ** 2 / n_bkg
            total_err = np.sqrt(var)
            total_err[all_nan] = np.nan
        else:
            total_err = np.full(n, np.nan)
    return ApertureResult(
        flux=total,
        flux_err=total_err,
        background=background,
        aperture=aperture,
        background_pixels=bkg_pixels,
    )


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------


def _read_spoc_like(
    path: Path, hdul: fits.HDUList, fmt: str, flux_column: str | None
) -> LightCurve:
    hdu = hdul[1]
    data = hdu.data
    names = {n.lower(): n for n in data.columns.names}
    headers = [hdul[0].header, hdu.header]
    time = _column(data, names, "time")
    if time is None:
        raise _fail(path, "LIGHTCURVE table has no TIME column")
    choices = [flux_column] if flux_column else ["pdcsap_flux", "sap_flux"]
    flux = err = None
    used = ""
    for name in choices:
        cand = _column(data, names, name)
        if cand is not None and np.isfinite(cand).any():
            flux, used = cand, names[name.lower()]
            err = _column(data, names, f"{name}_err")
            break
    if flux is None:
        raise _fail(path, f"no usable flux column among {', '.join(c.upper() for c in choices)}")
    if err is None:
        err = np.full(flux.size, np.nan)
    raw_q = _column(data, names, "quality")
    quality = np.zeros(flux.size, np.int64) if raw_q is None else raw_q.astype(np.int64)
    quality &= SPOC_DEFAULT_BITMASK
    return _finish(path, fmt, headers, time, flux, err, quality, flux_column=used)


def _read_tglc(path: Path, hdul: fits.HDUList, flux_column: str | None, pixels: bool) -> LightCurve:
    hdu = hdul[1]
    data = hdu.data
    names = {n.lower(): n for n in data.columns.names}
    headers = [hdul[0].header, hdu.header]
    time = _column(data, names, "time")
    if time is None:
        raise _fail(path, "TGLC table has no time column")
    tess_flags = _column(data, names, "tess_flags")
    tglc_flags = _column(data, names, "tglc_flags")
    tess_q = np.zeros(time.size, np.int64) if tess_flags is None else tess_flags.astype(np.int64)
    tglc_q = np.zeros(time.size, np.int64) if tglc_flags is None else tglc_flags.astype(np.int64)
    bad = (tess_q != 0) | (tglc_q != 0)
    quality = np.where(bad, (tess_q & 0xFFFF) | _EXCLUDE, 0).astype(np.int64)
    if pixels:
        cube = hdul[0].data
        if cube is None or np.ndim(cube) != 3 or cube.shape[0] != time.size:
            raise _fail(path, "no pixel cube matching the table in the primary HDU")
        star_x = _as_float(hdul[0].header.get("STAR_X"))
        star_y = _as_float(hdul[0].header.get("STAR_Y"))
        center = None
        if math.isfinite(star_x) and math.isfinite(star_y):
            center = (float(round(star_y)), float(round(star_x)))
        if center is not None:  # TGLC says where the star is: 3x3 around that pixel
            ny, nx = cube.shape[1:]
            rows, cols = np.mgrid[0:ny, 0:nx]
            ap = (np.abs(rows - center[0]) <= 1) & (np.abs(cols - center[1]) <= 1)
            flux = np.asarray(cube, np.float64)[:, ap].sum(axis=1)
        else:  # the cube is decontaminated and background-subtracted already
            phot = aperture_photometry(cube, good=~bad, size=3, subtract_background=False)
            ap, flux = phot.aperture, phot.flux
        err = _p2p_error(flux, ~bad)
        return _finish(
            path,
            "tglc",
            headers,
            time,
            flux,
            err,
            quality,
            flux_column="PRIMARY[3x3]",
            aperture=ap,
        )
    choices = [flux_column] if flux_column else ["cal_aper_flux", "cal_psf_flux"]
    header_err = {
        "cal_aper_flux": "CAPE_ERR",
        "cal_psf_flux": "CPSF_ERR",
        "aperture_flux": "APER_ERR",
        "psf_flux": "PSF_ERR",
    }
    for name in choices:
        flux = _column(data, names, name)
        if flux is not None and np.isfinite(flux).any():
            sigma = _as_float(hdu.header.get(header_err.get(name.lower(), ""), math.nan))
            err = np.full(flux.size, sigma) if sigma > 0 else _p2p_error(flux, ~bad)
            return _finish(
                path, "tglc", headers, time, flux, err, quality, flux_column=names[name.lower()]
            )
    raise _fail(path, f"no usable flux column among {', '.join(choices)}")


def _read_qlp(path: Path, hdul: fits.HDUList, flux_column: str | None) -> LightCurve:
    hdu = hdul[1]
    data = hdu.data
    names = {n.lower(): n for n in data.columns.names}
    headers = [hdul[0].header, hdu.header]
    time = _column(data, names, "time")
    if time is None:
        raise _fail(path, "QLP table has no TIME column")
    choices = [flux_column] if flux_column else ["kspsap_flux", "sap_flux"]
    raw_q = _column(data, names, "quality")
    quality = np.zeros(time.size, np.int64) if raw_q is None else raw_q.astype(np.int64)
    quality = np.where(quality != 0, quality | _EXCLUDE, 0).astype(np.int64)
    for name in choices:
        flux = _column(data, names, name)
        if flux is not None and np.isfinite(flux).any():
            err = _column(data, names, f"{name}_err")
            if err is None:
                err = _p2p_error(flux, quality == 0)
            return _finish(
                path, "qlp", headers, time, flux, err, quality, flux_column=names[name.lower()]
            )
    raise _fail(path, f"no usable flux column among {', '.join(c.upper() for c in choices)}")


def _read_pixels(path: Path, hdul: fits.HDUList, fmt: str) -> LightCurve:
    hdu = hdul[1]
    data = hdu.data
    names = {n.lower(): n for n in data.columns.names}
    headers = [hdul[0].header, hdu.header]
    time = _column(data, names, "time")
    if time is None or "flux" not in names:
        raise _fail(path, "PIXELS table has no TIME or FLUX column")
    cube = np.asarray(data[names["flux"]], dtype=np.float64)
    if cube.ndim != 3 or cube.shape[0] != time.size:
        raise _fail(path, f"FLUX column is not a pixel cube (shape {cube.shape})")
    err_cube = (
        np.asarray(data[names["flux_err"]], dtype=np.float64) if "flux_err" in names else None
    )
    raw_q = _column(data, names, "quality")
    quality = np.zeros(time.size, np.int64) if raw_q is None else raw_q.astype(np.int64)
    quality &= SPOC_DEFAULT_BITMASK
    # SPOC target pixel files are background-subtracted already (FLUX_BKG holds what was
    # removed); TESScut cutouts of calibrated FFIs are not.
    bkg_col = _column(data, names, "flux_bkg")
    subtracted = bool(bkg_col is not None and np.nanmax(np.abs(bkg_col), initial=0.0) > 0)
    good = (quality == 0) & np.isfinite(time)
    phot = aperture_photometry(cube, err_cube, good=good, subtract_background=not subtracted)
    quality = np.where(np.isfinite(phot.flux) | (quality != 0), quality, quality | _EXCLUDE)
    return _finish(
        path,
        fmt,
        headers,
        time,
        phot.flux,
        phot.flux_err,
        quality.astype(np.int64),
        flux_column="FLUX[aperture]",
        aperture=phot.aperture,
        background_pixels=phot.background_pixels,
        background_subtracted=not subtracted,
    )


def _detect(path: Path, hdul: fits.HDUList) -> str:
    if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
        raise _fail(path, "no binary table in HDU 1: not a TESS light curve or pixel file")
    primary = hdul[0].header
    header = hdul[1].header
    names = {n.lower() for n in hdul[1].columns.names}
    origin = str(primary.get("ORIGIN", "") or header.get("ORIGIN", "")).upper()
    creator = str(primary.get("CREATOR", "")).lower()
    lname = path.name.lower()
    if (
        "flux" in names
        and "time" in names
        and (str(header.get("EXTNAME", "")).upper() == "PIXELS" or "raw_cnts" in names)
    ):
        if "astrocut" in lname or "astrocut" in creator or "STSCI" in origin:
            return "tesscut"
        return "spoc-tpf"
    if "time" in names and ("cal_aper_flux" in names or "cal_psf_flux" in names):
        return "tglc"
    if "time" in names and "pdcsap_flux" in names:
        if "tess-spoc" in lname:
            return "tess-spoc"
        cadence = _as_float(header.get("TIMEDEL")) * 86400.0
        return "tess-spoc" if math.isfinite(cadence) and cadence > 150.0 else "spoc"
    if "time" in names and ("kspsap_flux" in names or "sap_flux" in names):
        if "QLP" in origin or "qlp" in lname or "kspsap_flux" in names:
            return "qlp"
    cols = ", ".join(sorted(names)[:8])
    raise _fail(path, f"unrecognised light-curve format (HDU 1 columns: {cols})")


def read_lightcurve(
    path: str | Path, *, flux_column: str | None = None, pixels: bool = False
) -> LightCurve:
    """Read a TESS light curve or pixel file into a :class:`LightCurve` (format autodetected).

    Parameters
    ----------
    path : str or Path
        A SPOC, TESS-SPOC, TGLC or QLP light curve, a TESScut/astrocut cutout or a SPOC target
        pixel file (gzip-compressed files are fine).
    flux_column : str, optional
        Use this column instead of the format's default flux (light-curve formats only).
    pixels : bool
        TGLC only: build the light curve from the 3x3 pixels around the star in the primary
        HDU's cube instead of the table (errors from the point-to-point scatter).

    Returns
    -------
    LightCurve

    Raises
    ------
    ValueError
        For a missing, unreadable, truncated or unrecognised file, with a one-line message
        that names the file and says why.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     bad = Path(tmp) / "not_a_lightcurve.fits"
    ...     _ = bad.write_text("hello")
    ...     try:
    ...         read_lightcurve(bad)
    ...     except ValueError as exc:
    ...         print(str(exc).split(" (")[0])
    not_a_lightcurve.fits: corrupt or truncated FITS file
    """
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, memmap=False, lazy_load_hdus=False) as hdul:
                fmt = _detect(path, hdul)
                if fmt in ("spoc", "tess-spoc"):
                    lc = _read_spoc_like(path, hdul, fmt, flux_column)
                elif fmt == "tglc":
                    lc = _read_tglc(path, hdul, flux_column, pixels)
                elif fmt == "qlp":
                    lc = _read_qlp(path, hdul, flux_column)
                else:
                    lc = _read_pixels(path, hdul, fmt)
        except ValueError as exc:
            if str(exc).startswith(f"{path.name}:"):
                raise
            raise _fail(path, f"corrupt or truncated FITS file ({exc})") from None
        except (
            OSError,
            TypeError,
            IndexError,
            KeyError,
            EOFError,
            AttributeError,
            fits.VerifyError,
        ) as exc:
            raise _fail(
                path, f"corrupt or truncated FITS file ({type(exc).__name__}: {exc})"
            ) from None
    for w in caught:
        if "truncated" in str(w.message).lower():
            raise _fail(path, f"truncated FITS file ({w.message})")
    if pixels and lc.meta["format"] != "tglc":
        raise _fail(path, "pixels=True is for TGLC files (pixel files always use their pixels)")
    return lc
