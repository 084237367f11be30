"""A star's light curve as a FITS file in the layout of a TESS light-curve product.

The file reads in lightkurve (``lightkurve.read(path)`` gives a ``TessLightCurve``), in astropy
(``Table.read(path, hdu="LIGHTCURVE")``) and in :func:`tess_ffi.services.analyzer.
lightcurve_files.read_lightcurve`:

* HDU 0, primary: ``TELESCOP = 'TESS'``, ``OBJECT``, ``TICID`` (when known), ``SECTOR``,
  ``CAMERA``, ``CCD``, ``RA_OBJ``, ``DEC_OBJ`` (deg, ICRS), ``TESSMAG``, ``ORIGIN``, ``CREATOR``,
  ``DATE``;
* HDU 1, ``LIGHTCURVE`` binary table: ``TIME`` (BTJD = BJD - 2457000, TDB; header
  ``TIMEREF``, ``TIMESYS``, ``BJDREFI = 2457000``, ``BJDREFF``, ``TIMEUNIT``, ``TSTART``,
  ``TSTOP``, ``TELAPSE``, ``TIMEDEL``), ``CADENCENO``, ``FLUX``, ``FLUX_ERR``, ``SAP_FLUX``,
  ``SAP_FLUX_ERR``, ``SAP_BKG`` (e-/s), ``PDCSAP_FLUX``, ``PDCSAP_FLUX_ERR``, ``QUALITY``,
  ``MOM_CENTR1``, ``MOM_CENTR2`` (the star's column and row, 0-based pixels of the FFI).

``TIME`` is the light curve's ``btjd``: from
:func:`~tess_ffi.products.tables.load_lightcurve`, the star's own barycentric time (the FFI
header's time is for the CCD's centre). ``SAP_FLUX`` is the raw aperture flux. ``PDCSAP_FLUX``
(which lightkurve reads by default) and ``FLUX`` are the cleaned flux: the raw flux divided
by the aggregator's common-mode (cotrending) model, ``flux_corrected``, with the error scaled
alike, on every frame that has one, and the raw flux on the others
(:func:`~tess_ffi.products.tables.best_flux`). ``QUALITY`` keeps the TESS ``DQUALITY`` bits,
the photometer's bits (20-24) and the cleaning's (25 ``OUTLIER``, 26 ``BAD_EPOCH``; see
:mod:`tess_ffi.shared.quality`); points the pipeline rejects for its own reasons (saturated,
negative flux, outside the image, the cleaning's outliers and bad epochs) also carry bit 128
(``MANUAL_EXCLUDE``), so lightkurve's default quality mask drops them too.

Examples
--------
>>> import numpy as np, pandas as pd
>>> lc = pd.DataFrame({"btjd": [1325.3, 1325.32, 1325.34], "flux": [10.0, 11.0, 9.0],
...                    "flux_err": [0.1] * 3, "quality": [0, 32, 1 << 21]})
>>> hdul = lightcurve_hdulist(lc, {"sector": 1, "camera": 1, "ccd": 1, "star_id": 7,
...                                "ra": 10.0, "dec": -5.0})
>>> hdul[1].name, hdul[0].header["TELESCOP"], hdul[1].header["BJDREFI"]
('LIGHTCURVE', 'TESS', 2457000)
>>> hdul[1].data["QUALITY"].tolist()
[0, 32, 2097280]
>>> lc["flux_corrected"] = [10.5, np.nan, 9.0]       # the middle frame was not cleaned
>>> d = lightcurve_hdulist(lc, {"star_id": 7})[1].data
>>> d["PDCSAP_FLUX"].tolist(), d["SAP_FLUX"].tolist()
([10.5, 11.0, 9.0], [10.0, 11.0, 9.0])
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from astropy.io import fits

from tess_ffi.shared.quality import DEFAULT_BAD_BITS, TESS_DQUALITY_MASK, QualityFlags
from tess_ffi.shared.storage import atomic_write

from .tables import best_flux

__all__ = [
    "BTJD_OFFSET",
    "lightcurve_hdulist",
    "write_lightcurve_fits",
    "export_lightcurve_fits",
    "object_name",
]

#: BJD of BTJD 0 (TESS Barycentric Julian Date = BJD - 2457000).
BTJD_OFFSET = 2457000

_OWN_BAD_BITS = DEFAULT_BAD_BITS & ~TESS_DQUALITY_MASK


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("tess-ffi")
    except Exception:  # noqa: BLE001 - not installed: no version to tell
        return "unknown"


def object_name(meta: Mapping[str, Any]) -> str:
    """``TIC N`` when the TIC id is known, else ``STAR <id> sSSSS-C-D``.

    >>> object_name({"tic_id": 300000680})
    'TIC 300000680'
    >>> object_name({"star_id": 36, "sector": 1, "camera": 1, "ccd": 1})
    'STAR 36 s0001-1-1'
    """
    tic = meta.get("tic_id")
    if tic is not None and not (isinstance(tic, float) and math.isnan(tic)) and not pd.isna(tic):
        return f"TIC {int(tic)}"
    label = ""
    if all(meta.get(k) is not None for k in ("sector", "camera", "ccd")):
        label = f" s{int(meta['sector']):04d}-{int(meta['camera'])}-{int(meta['ccd'])}"
    return f"STAR {meta.get('star_id', '?')}{label}"


def _finite_or_none(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def lightcurve_hdulist(lc: pd.DataFrame, meta: Mapping[str, Any]) -> fits.HDUList:
    """The FITS HDUs of one light curve.

    Parameters
    ----------
    lc : DataFrame
        Photometry rows of one star: ``btjd`` (written as ``TIME``), ``flux``, ``flux_err``,
        ``quality`` and optionally ``flux_corrected`` (for ``PDCSAP_FLUX`` and ``FLUX``),
        ``cadence``, ``bkg``, ``x``, ``y``.
    meta : mapping
        ``sector``, ``camera``, ``ccd``, ``star_id``, ``ra``, ``dec`` (deg), and optionally
        ``tmag``, ``tic_id``, ``object``.
    """
    missing = {"btjd", "flux", "flux_err", "quality"} - set(lc.columns)
    if missing:
        raise ValueError(f"light curve lacks column(s) {sorted(missing)}")
    lc = lc.sort_values("btjd", kind="stable")
    n = len(lc)
    time = lc["btjd"].to_numpy(dtype=np.float64)
    flux = lc["flux"].to_numpy(dtype=np.float32)
    err = lc["flux_err"].to_numpy(dtype=np.float32)
    pdc, pdc_err = (v.astype(np.float32) for v in best_flux(lc))
    quality = lc["quality"].to_numpy(dtype=np.int64)
    quality = np.where(quality & _OWN_BAD_BITS, quality | int(QualityFlags.MANUAL_EXCLUDE), quality)
    cadence = (lc["cadence"].to_numpy(dtype=np.int32) if "cadence" in lc.columns
               else np.arange(n, dtype=np.int32))
    nan = np.full(n, np.nan, dtype=np.float32)
    bkg = lc["bkg"].to_numpy(dtype=np.float32) if "bkg" in lc.columns else nan
    x = lc["x"].to_numpy(dtype=np.float32) if "x" in lc.columns else nan
    y = lc["y"].to_numpy(dtype=np.float32) if "y" in lc.columns else nan
    e_s = "e-/s"
    cols = [
        fits.Column("TIME", "D", unit="BJD - 2457000, days", array=time),
        fits.Column("CADENCENO", "J", array=cadence),
        fits.Column("FLUX", "E", unit=e_s, array=pdc),
        fits.Column("FLUX_ERR", "E", unit=e_s, array=pdc_err),
        fits.Column("SAP_FLUX", "E", unit=e_s, array=flux),
        fits.Column("SAP_FLUX_ERR", "E", unit=e_s, array=err),
        fits.Column("SAP_BKG", "E", unit=e_s, array=bkg),
        fits.Column("PDCSAP_FLUX", "E", unit=e_s, array=pdc),
        fits.Column("PDCSAP_FLUX_ERR", "E", unit=e_s, array=pdc_err),
        fits.Column("QUALITY", "J", array=quality.astype(np.int32)),
        fits.Column("MOM_CENTR1", "E", unit="pixel", array=x),
        fits.Column("MOM_CENTR2", "E", unit="pixel", array=y),
    ]
    name = str(meta.get("object") or object_name(meta))
    primary = fits.PrimaryHDU()
    h = primary.header
    h["NEXTEND"] = (1, "number of standard extensions")
    h["EXTNAME"] = "PRIMARY"
    h["ORIGIN"] = ("tess-ffi", "institution responsible for creating this file")
    h["DATE"] = (datetime.now(timezone.utc).strftime("%Y-%m-%d"), "file creation date")
    h["CREATOR"] = ("tess-ffi LightCurveExporter", "pipeline job and program used")
    h["PROCVER"] = (_version(), "tess-ffi version")
    h["FILEVER"] = ("1.0", "file format version")
    h["TELESCOP"] = ("TESS", "telescope")
    h["INSTRUME"] = ("TESS Photometer", "detector type")
    h["OBJECT"] = (name, "string version of target id")
    tic = meta.get("tic_id")
    if tic is not None and not pd.isna(tic):
        h["TICID"] = (int(tic), "unique tess target identifier")
    h["STARID"] = (int(meta.get("star_id", -1)), "tess-ffi star id in this sector/camera/CCD")
    for key, comment in (("sector", "observing sector"), ("camera", "camera number"),
                         ("ccd", "CCD chip number")):
        if meta.get(key) is not None:
            h[key.upper()] = (int(meta[key]), comment)
    h["RADESYS"] = ("ICRS", "reference frame of celestial coordinates")
    h["EQUINOX"] = (2000.0, "equinox of celestial coordinate system")
    for key, card, comment in (("ra", "RA_OBJ", "[deg] right ascension"),
                               ("dec", "DEC_OBJ", "[deg] declination"),
                               ("tmag", "TESSMAG", "[mag] TESS magnitude")):
        value = _finite_or_none(meta.get(key))
        if value is not None:
            h[card] = (value, comment)
    table = fits.BinTableHDU.from_columns(cols, name="LIGHTCURVE")
    th = table.header
    finite = time[np.isfinite(time)]
    tstart = float(finite.min()) if finite.size else 0.0
    tstop = float(finite.max()) if finite.size else 0.0
    step = np.diff(np.sort(finite))
    step = step[step > 0]
    cards: list[tuple[str, Any, str]] = [
        ("TIMEREF", "SOLARSYSTEM", "barycentric correction applied to times"),
        ("TASSIGN", "SPACECRAFT", "where time is assigned"),
        ("TIMESYS", "TDB", "time system is Barycentric Dynamical Time (TDB)"),
        ("BJDREFI", BTJD_OFFSET, "integer part of BTJD reference date"),
        ("BJDREFF", 0.0, "fraction of the day in BTJD reference date"),
        ("TIMEUNIT", "d", "time unit for TIME, TSTART and TSTOP"),
        ("TSTART", tstart, "observation start time in BTJD"),
        ("TSTOP", tstop, "observation stop time in BTJD"),
        ("TELAPSE", tstop - tstart, "[d] TSTOP - TSTART"),
        ("TIMEDEL", float(np.median(step)) if step.size else 0.0, "[d] time resolution of data"),
        ("OBJECT", name, "string version of target id"),
    ]
    for key, value, comment in cards:
        th[key] = (value, comment)
    if "TICID" in h:
        th["TICID"] = (h["TICID"], "unique tess target identifier")
    for key in ("SECTOR", "CAMERA", "CCD", "RA_OBJ", "DEC_OBJ"):
        if key in h:
            th[key] = (h[key], h.comments[key])
    th.add_comment("tess-ffi aperture photometry of calibrated FFIs. SAP_FLUX: raw aperture")
    th.add_comment("flux; PDCSAP_FLUX and FLUX: SAP_FLUX divided by tess-ffi's common-mode")
    th.add_comment("(cotrending) model where the light curve was cleaned, else SAP_FLUX.")
    if "btjd_ccd" in lc.columns and np.any(lc["btjd_ccd"].to_numpy(dtype=np.float64) != time):
        th.add_comment("TIME: the star's own barycentric time (FFI header time, which is for")
        th.add_comment("the CCD centre, plus the star's light-travel-time offset).")
    th.add_comment("QUALITY: TESS DQUALITY bits 0-15; tess-ffi bits 20 EDGE, 21 SATURATED,")
    th.add_comment("22 NEGATIVE_FLUX, 23 OUTSIDE, 24 CONTAMINATED, 25 OUTLIER, 26 BAD_EPOCH")
    th.add_comment("(25-26 from the light-curve cleaning); rows tess-ffi rejects also carry")
    th.add_comment("bit 128 (MANUAL_EXCLUDE).")
    return fits.HDUList([primary, table])


def write_lightcurve_fits(path: Path | str, lc: pd.DataFrame, meta: Mapping[str, Any]) -> Path:
    """Write :func:`lightcurve_hdulist` to ``path`` (atomically) and return the path."""
    hdul = lightcurve_hdulist(lc, meta)
    buf = io.BytesIO()
    hdul.writeto(buf, checksum=True)
    data = buf.getvalue()
    path = Path(path)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return path


def export_lightcurve_fits(
    star_id: int,
    path: Path | str,
    sector: int | None = None,
    camera: int | None = None,
    ccd: int | None = None,
    *,
    data_dir: Path | str | None = None,
    target: Any = None,
) -> Path:
    """Write star ``star_id``'s light curve (from the job's Parquet outputs) as FITS.

    The target may be given in part when only one stored target matches (or as a
    :class:`~tess_ffi.products.tables.Target`); the star's position, Tmag and TIC id come
    from ``stars.parquet``.
    """
    from .tables import load_lightcurve, load_stars, resolve_target, star_row

    if target is None:
        target = resolve_target(sector, camera, ccd, data_dir=data_dir)
    lc = load_lightcurve(star_id, target=target, data_dir=data_dir)
    star = star_row(load_stars(target=target, data_dir=data_dir), star_id, target.label)
    meta = {"sector": target.sector, "camera": target.camera, "ccd": target.ccd,
            "star_id": int(star_id), "ra": star.get("ra"), "dec": star.get("dec"),
            "tmag": star.get("tmag"), "tic_id": star.get("tic_id")}
    return write_lightcurve_fits(path, lc, meta)
