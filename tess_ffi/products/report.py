"""A variable star's report: the plots and numbers a VSX submission needs.

:func:`build_report` writes, into ``DIR/variable_stars/<TIC_n or STAR_id_sSSSS-C-D>/``, files
prefixed with the target label (a star observed in several sectors keeps one folder):

* ``sSSSS-C-D_VSX_lightcurve.png``: the light curve in TESS magnitudes against the star's
  own BTJD, from the corrected flux where the job cleaned it
  (:func:`~tess_ffi.products.tables.best_flux`; the title says which);
* ``sSSSS-C-D_VSX_phase.png``: the phase-folded curve, with period and epoch (periodic stars);
* ``sSSSS-C-D_periodogram.png``: Lomb-Scargle (and box least squares for eclipses);
* ``sSSSS-C-D_summary.txt`` and ``.json``: coordinates, type, period, epochs of minimum and
  maximum (BJD), amplitude and magnitude range in T, data span;
* ``sSSSS-C-D_lc.fits``: the light curve as a TESS light-curve FITS file
  (:mod:`tess_ffi.products.lcfits`).

Period, epoch and class come from ``variability.parquet`` (the pipeline's analysis), or from
:func:`tess_ffi.services.analyzer.variability.analyze_lightcurve` when the job has not
written it yet; a period and epoch given by the caller override both.

Examples
--------
>>> vsx_type("TRANSIT"), vsx_type("EA")
('EP', 'EA')
>>> import numpy as np
>>> t = np.linspace(0.0, 10.0, 2000)
>>> flux = 100.0 * (1 - 0.1 * (np.mod(t - 0.3, 2.0) < 0.1))
>>> ep = fold_extrema(t, flux, 2.0, 0.0)
>>> round(ep["epoch_min"], 1), round(ep["amplitude_mag"], 2)
(0.3, 0.11)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from .lcfits import BTJD_OFFSET, object_name, write_lightcurve_fits
from .tables import (
    ProductError,
    Target,
    best_flux,
    default_data_dir,
    expected_cadences,
    find_star_by_tic,
    flux_label,
    flux_to_mag,
    load_lightcurve,
    resolve_target,
    star_row,
    target_dir,
)

__all__ = [
    "VSX_TYPES",
    "ECLIPSING_CLASSES",
    "Report",
    "vsx_type",
    "periodogram",
    "fold_extrema",
    "report_folder",
    "build_report",
]

#: The VSX variability type of each pipeline class.
VSX_TYPES = {
    "EA": "EA", "EW": "EW", "ROT": "ROT", "DSCT": "DSCT", "TRANSIT": "EP", "FLARE": "UV",
    "CONST": "CST", "UNKNOWN": "VAR",
}
#: Classes whose pipeline epoch is a primary minimum (the others give maximum light).
ECLIPSING_CLASSES = ("EA", "EW", "TRANSIT")

Progress = Callable[[int, int, str], None]


def vsx_type(var_class: str) -> str:
    """The VSX type of a pipeline class (``VAR`` when unknown)."""
    return VSX_TYPES.get(str(var_class), "VAR")


def periodogram(
    time: npt.ArrayLike,
    flux: npt.ArrayLike,
    flux_err: npt.ArrayLike | None = None,
    *,
    method: str = "LS",
    min_period: float | None = None,
    max_period: float | None = None,
    n_periods: int = 20000,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Periods (d) and power of a Lomb-Scargle (``"LS"``) or box least squares (``"BLS"``)
    periodogram of normalised flux, on a grid uniform in frequency.

    The default range runs from three cadences (at least 0.02 d) to the baseline.

    >>> t = np.linspace(0, 20, 1000)
    >>> p, w = periodogram(t, 1 + 0.01 * np.sin(2 * np.pi * t / 2.5))
    >>> round(float(p[np.argmax(w)]), 2)
    2.5
    """
    t = np.asarray(time, float)
    f = np.asarray(flux, float)
    e = None if flux_err is None else np.asarray(flux_err, float)
    ok = np.isfinite(t) & np.isfinite(f)
    if e is not None:
        ok &= np.isfinite(e) & (e > 0)
    t, f = t[ok], f[ok]
    e = e[ok] if e is not None else None
    if t.size < 5:
        raise ProductError("too few good points for a periodogram")
    med = float(np.median(f))
    y = f / med if med > 0 else f
    dy = None if e is None else e / abs(med)
    span = float(t.max() - t.min())
    cadence = float(np.median(np.diff(np.sort(t)))) if t.size > 1 else 0.02
    p_min = max(min_period or 0.0, 3.0 * cadence, 0.02)
    p_max = min(max_period or span, span) if span > 0 else 1.0
    if method.upper() == "BLS":
        p_min = max(p_min, 0.2)
    if not p_max > p_min:
        raise ProductError(f"the data span ({span:.2f} d) is too short for a periodogram")
    freq = np.linspace(1.0 / p_max, 1.0 / p_min, n_periods)
    if method.upper() == "LS":
        from astropy.timeseries import LombScargle

        power = LombScargle(t, y, dy).power(freq)
    elif method.upper() == "BLS":
        from astropy.timeseries import BoxLeastSquares

        periods = 1.0 / freq
        durations = [d for d in (0.02, 0.04, 0.08, 0.12, 0.2) if d < 0.5 * p_min]
        if not durations:
            durations = [0.25 * p_min]
        bls = BoxLeastSquares(t, y, dy)
        power = np.asarray(bls.power(periods, durations, objective="snr").power, float)
    else:
        raise ProductError(f"unknown periodogram method {method!r} (LS or BLS)")
    return 1.0 / freq, np.asarray(power, float)


def fold_extrema(
    time: npt.ArrayLike,
    flux: npt.ArrayLike,
    period: float,
    epoch: float,
    *,
    bins: int | None = None,
) -> dict[str, float]:
    """Epochs of minimum and maximum light and the amplitude of a folded light curve.

    The curve is folded on ``period`` from ``epoch`` (BTJD) and binned (median per bin);
    ``epoch_min``/``epoch_max`` are the first times at or after the start of the data of the
    faintest and brightest bins, ``amplitude_mag`` the difference of the binned curve's
    extreme magnitudes and ``bright_mag``/``faint_mag`` those extremes relative to the median
    flux (negative = brighter).
    """
    t = np.asarray(time, float)
    f = np.asarray(flux, float)
    ok = np.isfinite(t) & np.isfinite(f) & (f > 0)
    t, f = t[ok], f[ok]
    if t.size < 5 or not (period > 0):
        raise ProductError("too few good points to fold the light curve")
    if bins is None:
        bins = int(np.clip(t.size // 8, 10, 200))
    mag = flux_to_mag(f, float(np.median(f)))
    phase = np.mod((t - epoch) / period, 1.0)
    idx = np.minimum((phase * bins).astype(np.int64), bins - 1)
    binned = pd.Series(mag).groupby(idx).median()
    faint_bin = int(binned.idxmax())
    bright_bin = int(binned.idxmin())
    t0 = float(t.min())

    def first_after(phase_centre: float) -> float:
        e = epoch + phase_centre * period
        return float(e + period * math.ceil((t0 - e) / period - 1e-9))

    return {
        "epoch_min": first_after((faint_bin + 0.5) / bins),
        "epoch_max": first_after((bright_bin + 0.5) / bins),
        "amplitude_mag": float(binned.max() - binned.min()),
        "bright_mag": float(binned.min()),
        "faint_mag": float(binned.max()),
    }


def report_folder(
    data_dir: Path | str, star_id: int, target: Target, tic_id: int | None = None
) -> Path:
    """``DIR/variable_stars/TIC_<n>`` when the TIC id is known, else
    ``DIR/variable_stars/STAR_<id>_<sSSSS-C-D>`` (star ids are per target).

    >>> report_folder("data", 36, Target(1, 1, 1)).as_posix()
    'data/variable_stars/STAR_000036_s0001-1-1'
    >>> report_folder("data", 36, Target(1, 1, 1), tic_id=12345).as_posix()
    'data/variable_stars/TIC_12345'
    """
    root = Path(data_dir) / "variable_stars"
    if tic_id is not None:
        return root / f"TIC_{int(tic_id)}"
    return root / f"STAR_{int(star_id):06d}_{target.label}"


@dataclass
class Report:
    """What :func:`build_report` wrote: the folder, the files and the summary values."""

    folder: Path
    files: list[Path] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def _opt_float(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _row_or_none(path: Path, star_id: int) -> pd.Series | None:
    if not path.exists():
        return None
    import pyarrow.dataset as ds

    table = ds.dataset(path).to_table(filter=ds.field("star_id") == int(star_id))
    frame = table.to_pandas()
    return None if frame.empty else frame.iloc[0]


def _summary_text(s: dict[str, Any]) -> str:
    def fmt(value: Any, spec: str = "", none: str = "-") -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return none
        return format(value, spec)

    where_time = "star" if s.get("time_reference") == "star" else "CCD centre"
    lines = [
        "# tess-ffi variable star report",
        f"name:              {s['name']}",
        f"star_id:           {s['star_id']} ({s['target']}: sector {s['sector']}, "
        f"camera {s['camera']}, CCD {s['ccd']})",
        f"tic_id:            {fmt(s.get('tic_id'))}",
        f"catalog match:     {s.get('catalog_match') or '-'}",
        f"VSX:               {s.get('vsx') or 'not consulted'}",
        f"ra (J2000):        {s['ra_hms']}  ({s['ra_deg']:.6f} deg)",
        f"dec (J2000):       {s['dec_dms']}  ({s['dec_deg']:.6f} deg)",
        f"type (VSX):        {s['vsx_type']}  (pipeline class {s['var_class']}, "
        f"score {fmt(s.get('score'), '.3f')})",
        f"period:            {fmt(s.get('period_d'), '.6f')} d  "
        f"({s.get('period_source', '-')}, method {s.get('period_method') or '-'})",
        f"epoch of minimum:  BJD {fmt(s.get('epoch_min_bjd'), '.5f')}  "
        f"(BTJD {fmt(s.get('epoch_min_btjd'), '.5f')})",
        f"epoch of maximum:  BJD {fmt(s.get('epoch_max_bjd'), '.5f')}  "
        f"(BTJD {fmt(s.get('epoch_max_btjd'), '.5f')})",
        f"amplitude:         {fmt(s.get('amplitude_tmag'), '.3f')} mag (TESS band; "
        f"{s.get('amplitude_basis', '-')})",
        f"magnitude range:   {fmt(s.get('max_tmag'), '.3f')} - {fmt(s.get('min_tmag'), '.3f')} "
        f"T (brightest - faintest, from Tmag {fmt(s.get('tmag_ref'), '.3f')} "
        f"{s.get('tmag_source', '')})",
        f"data:              TESS FFIs, {s['n_good']} good of {s['n_expected']} cadences, "
        f"BTJD {s['btjd_start']:.4f} - {s['btjd_end']:.4f}, "
        f"cadence {fmt(s.get('cadence_s'), '.0f')} s; {s.get('flux', 'raw flux')}, "
        f"times barycentric for the {where_time}",
        "files:             " + ", ".join(s.get("files", [])),
        "",
    ]
    return "\n".join(lines)


def build_report(
    star_id: int | None = None,
    sector: int | None = None,
    camera: int | None = None,
    ccd: int | None = None,
    *,
    tic_id: int | None = None,
    data_dir: Path | str | None = None,
    out_dir: Path | str | None = None,
    period: float | None = None,
    epoch: float | None = None,
    progress: Progress | None = None,
) -> Report:
    """Write a star's report folder (plots, summary, FITS) and return what was written.

    Parameters
    ----------
    star_id : int, optional
        The star (``star_id`` of ``stars.parquet``); or give ``tic_id``.
    sector, camera, ccd : int, optional
        The target (parts may be left out when one stored target matches).
    tic_id : int, optional
        Find the star by its TIC id (``stars.tic_id`` or a TIC cross-match).
    data_dir : path, optional
        The output root (default ``TESS_FFI_DATA_DIR`` or ``./data``).
    out_dir : path, optional
        The folder to write (default :func:`report_folder`).
    period, epoch : float, optional
        Use this period (d) and epoch (BTJD, phase zero) instead of the pipeline's.
    progress : callable, optional
        ``progress(done, total, what)`` after each step.
    """
    root = default_data_dir(data_dir)
    target = resolve_target(sector, camera, ccd, data_dir=root)
    folder_of_target = target_dir(target, root)
    if star_id is None and tic_id is None:
        raise ProductError("give a star id or a TIC id")
    if star_id is None:
        assert tic_id is not None
        star_id = find_star_by_tic(tic_id, target=target, data_dir=root)
    star_id = int(star_id)
    steps, step = 6, 0

    def tick(what: str) -> None:
        nonlocal step
        step += 1
        if progress is not None:
            progress(step, steps, what)

    stars_path = folder_of_target / "stars.parquet"
    if not stars_path.exists():
        raise ProductError(f"no star list in {folder_of_target}")
    star = star_row(pd.read_parquet(stars_path), star_id, target.label)
    var = _row_or_none(folder_of_target / "variability.parquet", star_id)
    cand = _row_or_none(folder_of_target / "candidates.parquet", star_id)
    lc = load_lightcurve(star_id, target=target, data_dir=root)
    t = lc["btjd"].to_numpy(dtype=float)  # the star's own barycentric time
    f, e = best_flux(lc)
    kind = flux_label(lc)
    good = lc["good"].to_numpy() & np.isfinite(f)
    if good.sum() < 5:
        raise ProductError(f"star {star_id} of {target.label} has only {int(good.sum())} good "
                           "points: nothing to report")
    tick("light curve loaded")

    tic = star.get("tic_id")
    tic = int(tic) if tic is not None and pd.notna(tic) else tic_id
    catalog_match = vsx = None
    tmag_ref, tmag_source = _opt_float(star.get("tmag")), "estimated by the pipeline"
    if cand is not None:
        catalog = str(cand.get("catalog", "catalog"))
        is_tic = catalog.lower() in ("tic", "offline")
        if pd.notna(cand.get("catalog_id", pd.NA)):
            sep = _opt_float(cand.get("catalog_sep_arcsec"))
            catalog_match = f"{'TIC' if is_tic else catalog} {int(cand['catalog_id'])}" + (
                f" at {sep:.1f} arcsec" if sep is not None else "")
            ctmag = _opt_float(cand.get("catalog_tmag"))
            if ctmag is not None:
                tmag_ref, tmag_source = ctmag, f"from the {'TIC' if is_tic else catalog} catalog"
        cand_tic = cand.get("tic_id", pd.NA)
        if tic is None and pd.notna(cand_tic):
            tic = int(cand_tic)
        elif tic is None and is_tic and pd.notna(cand.get("catalog_id", pd.NA)):
            tic = int(cand["catalog_id"])
        known = cand.get("known", pd.NA)
        if pd.notna(known):
            if bool(known):
                vsx = f"known: {cand.get('vsx_name') or '?'}"
                if pd.notna(cand.get("vsx_type", pd.NA)):
                    vsx += f" ({cand['vsx_type']}"
                    vp = _opt_float(cand.get("vsx_period"))
                    vsx += f", P = {vp:.6f} d)" if vp is not None else ")"
            else:
                vsx = "no VSX star within the match radius: a new variable"

    if var is not None:
        var_class = str(var.get("var_class", "UNKNOWN"))
        score = _opt_float(var.get("score"))
        p_found = _opt_float(var.get("period"))
        e_found = _opt_float(var.get("epoch"))
        method = str(var.get("period_method") or "") or None
        source = "variability.parquet"
    else:
        from tess_ffi.services.analyzer.variability import analyze_lightcurve

        result = analyze_lightcurve(t, f, e, lc["quality"].to_numpy())
        var_class, score = result.var_class, result.score
        p_found, e_found = _opt_float(result.period), _opt_float(result.epoch)
        method, source = result.period_method, "analyze_lightcurve"
    if period is not None:
        if not period > 0:
            raise ProductError(f"--period must be positive, got {period}")
        p_found, source, method = float(period), "given", None
        e_found = epoch if epoch is not None else None
    elif epoch is not None:
        e_found = float(epoch)
    tick("analysis")

    if tic is None:
        folder = Path(out_dir) if out_dir else report_folder(root, star_id, target)
    else:
        folder = Path(out_dir) if out_dir else report_folder(root, star_id, target, tic)
    prefix = f"{target.label}_"
    meta = {"sector": target.sector, "camera": target.camera, "ccd": target.ccd,
            "star_id": star_id, "ra": float(star["ra"]), "dec": float(star["dec"]),
            "tmag": tmag_ref, "tic_id": tic}
    name = object_name(meta)
    title = f"{name}  sector {target.sector} cam {target.camera} CCD {target.ccd}"
    files: list[Path] = []

    from . import plots

    files.append(plots.plot_lightcurve(t, f, folder / f"{prefix}VSX_lightcurve.png",
                                       flux_err=e, good=good, tmag=tmag_ref,
                                       title=f"{title}: light curve ({kind})", flux_label=kind))
    tick("light curve plot")
    tg, fg, eg = t[good], f[good], e[good]
    try:
        periods, power = periodogram(tg, fg, eg, method="LS")
        extra = {}
        if method == "BLS" or var_class in ECLIPSING_CLASSES:
            extra["BLS (S/N)"] = periodogram(tg, fg, eg, method="BLS", n_periods=5000)
        files.append(plots.plot_periodogram(periods, power, folder / f"{prefix}periodogram.png",
                                            best_period=p_found, extra=extra,
                                            title=f"{title}: periodogram"))
    except ProductError:
        pass  # too short a baseline: no periodogram
    tick("periodogram")

    summary: dict[str, Any] = {}
    epoch_min: float | None
    epoch_max: float | None
    amplitude_basis = "5-95 % range of the good points"
    if p_found is not None:
        if e_found is None:
            e_found = fold_extrema(tg, fg, p_found, float(tg.min()))["epoch_min"]
        ext = fold_extrema(tg, fg, p_found, e_found)
        epoch_min = e_found if var_class in ECLIPSING_CLASSES and source != "given" else ext[
            "epoch_min"]
        if epoch is not None:
            epoch_min = float(epoch)
        epoch_max = ext["epoch_max"]
        amplitude = ext["amplitude_mag"]
        bright, faint = ext["bright_mag"], ext["faint_mag"]
        amplitude_basis = "peak to peak of the binned phase curve"
        files.append(plots.plot_phase(tg, fg, p_found, epoch_min,
                                      folder / f"{prefix}VSX_phase.png", tmag=tmag_ref,
                                      title=f"{title}: {vsx_type(var_class)}, phase plot ({kind})",
                                      flux_label=kind))
    else:
        epoch_min = epoch_max = None
        mag = flux_to_mag(fg, float(np.median(fg)))
        bright, faint = (float(v) for v in np.nanpercentile(mag, [5, 95]))
        amplitude = faint - bright
    tick("phase plot")

    lc_meta = dict(meta)
    lc_meta["object"] = name
    files.append(write_lightcurve_fits(folder / f"{prefix}lc.fits", lc, lc_meta))

    from astropy import units as u
    from astropy.coordinates import SkyCoord

    coord = SkyCoord(float(star["ra"]) * u.deg, float(star["dec"]) * u.deg, frame="icrs")
    cadence = np.diff(np.unique(t))
    n_expected = max(expected_cadences(target, root), len(lc))
    summary.update({
        "name": name,
        "star_id": star_id,
        "target": target.label,
        "sector": target.sector,
        "camera": target.camera,
        "ccd": target.ccd,
        "tic_id": tic,
        "catalog_match": catalog_match,
        "vsx": vsx,
        "ra_deg": float(star["ra"]),
        "dec_deg": float(star["dec"]),
        "ra_hms": coord.ra.to_string(unit=u.hourangle, sep=":", precision=2, pad=True),
        "dec_dms": coord.dec.to_string(unit=u.deg, sep=":", precision=1, alwayssign=True,
                                       pad=True),
        "var_class": var_class,
        "vsx_type": vsx_type(var_class),
        "score": score,
        "period_d": p_found,
        "period_source": source,
        "period_method": method,
        "epoch_min_btjd": epoch_min,
        "epoch_min_bjd": None if epoch_min is None else epoch_min + BTJD_OFFSET,
        "epoch_max_btjd": epoch_max,
        "epoch_max_bjd": None if epoch_max is None else epoch_max + BTJD_OFFSET,
        "amplitude_tmag": amplitude,
        "amplitude_basis": amplitude_basis,
        "tmag_ref": tmag_ref,
        "tmag_source": tmag_source,
        "max_tmag": None if tmag_ref is None else tmag_ref + bright,
        "min_tmag": None if tmag_ref is None else tmag_ref + faint,
        "n_good": int(good.sum()),
        "n_expected": int(n_expected),
        "btjd_start": float(tg.min()),
        "btjd_end": float(tg.max()),
        "cadence_s": float(np.median(cadence) * 86400.0) if cadence.size else None,
        "flux": kind,
        "time_reference": lc.attrs.get("time_reference", "ccd"),
    })
    txt = folder / f"{prefix}summary.txt"
    js = folder / f"{prefix}summary.json"
    summary["files"] = [p.name for p in [*files, txt, js]]
    from tess_ffi.shared.storage import atomic_write, atomic_write_json

    atomic_write(txt, lambda tmp: Path(tmp).write_text(_summary_text(summary)))
    atomic_write_json(summary, js)
    files += [txt, js]
    tick("summary written")
    return Report(folder=folder, files=files, summary=summary)
