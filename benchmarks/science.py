"""Science benchmark: a simulated sector through the real pipeline, scored against the truth,
and the analyzer on real TESS light curves with known answers.

Run: ``python benchmarks/science.py [--quick] [--json OUT] [--data-dir DIR [--reuse]]``

What runs
---------
``run_job(JobSpec(sector=1, camera=1, ccd=1, source="sim", sim=...))``: the five services
in-process on the embedded bus, exactly as ``tess-ffi process --source sim`` runs them.

* full (default): 1500 stars, a 27-day sector at 1800 s (1248 cadences: two 13-day orbits
  and a 1-day gap), every FFI (``cadence_skip=1``), 30 % of the stars injected variables
  (the simulator's default is 12 %; more variables give per-class counts large enough for
  a 95 % figure while leaving ~1000 constant stars for the false-alarm figure). The
  pipeline took 350-400 s on the 2 shared cores this was written on (load average 1-4),
  scoring ~40 s: about 7 minutes in all. ``--cadence-skip 2`` (one FFI per hour) halves the
  rendering and measuring; the shortest pulsators (P down to 2 h) then sit at the Nyquist
  period.
* ``--quick``: 300 stars, ``cadence_skip=6`` (208 frames, 3-hour sampling) for a smoke run
  of about a minute. Its figures are not the targets' (at 3-hour sampling pulsators and
  contact binaries are above the Nyquist frequency, for one).

How the outputs are scored
--------------------------
Matching
    Detected stars (``stars.parquet``) and truth stars (``SimulatedSector.catalog``) are
    paired when each is the other's nearest within 1 px (21"), in pixel coordinates.
    Saturated truth stars (the simulator's ``saturated``; the photometer flags them and the
    analyzer drops their points by design) are left out of every figure.
Expected noise
    ``SimulatedSector.expected_noise(2.0)``: photon noise of star and background plus read
    noise in the photometer's 2-px aperture (exact pixel weights) at each measured cadence,
    divided by the expected aperture flux: ``sigma_i``, relative, per cadence. It does not
    include the error of the background estimate from the 4-7 px annulus (about 5-10 % more
    noise for stars near the sky level), pointing jitter or neighbours: the pipeline has to
    stay within 15 % of the ideal.
Precision (target <= 1.15)
    Constant truth stars of Tmag 9-14, isolated (no other truth star within 10 px less than
    5 mag fainter). Each light curve (the pipeline's ``flux_corrected``, points without any of
    ``DEFAULT_BAD_BITS``, the cleaning's included) is divided by its median and binned to 1
    hour (bins start at the first cadence); measured = robust standard deviation (1.4826
    MAD) of the bin means; expected = median over bins of ``sqrt(sum sigma_i**2) / n`` of
    the bin's points. The figure is the median over stars of measured / expected. At 1800 s
    a 1-hour bin holds two exposures (one with ``cadence_skip=2``). The same figure for the
    raw ``flux`` (before the common-mode correction) and per magnitude are printed for
    reference.
Recovery (target >= 95 % per class)
    Injected EA, EW, ROT, DSCT and TRANSIT stars (matched, not saturated) with SNR >= 10,
    where SNR is the signal's optimal (matched-filter) S/N on the points actually measured:
    ``SNR**2 = sum_i ((m_i - mean(m)) / sigma_i)**2`` with ``m`` the exposure-averaged truth
    relative flux (``SimulatedSector.relative_flux_all``) at the star's good cadences. For a
    sinusoid of semi-amplitude ``a`` this is ``a / sigma * sqrt(N / 2)``; for a box-shaped
    eclipse of depth ``d`` with ``N_in`` points in eclipse about ``d / sigma * sqrt(N_in)``.
    A star is recovered when ``|P_found / P_true - 1| <= 0.5 %``. ``P_true / 2`` (within
    0.5 %) counts as right only when the light curve itself cannot tell ``P`` from ``P / 2``:
    the part of the truth model that differs between the two halves of the cycle,
    ``(m(t) - m(t + P/2)) / 2``, has S/N below 7 on the star's cadences (the analyzer's own
    odd/even threshold is 5 sigma). In practice that admits EA with nearly equal eclipses and
    EW with nearly equal minima, never ROT, DSCT or TRANSIT (for those the halves differ by
    the whole signal). ``2 P`` never counts.
False alarms (target <= 1 %)
    Constant truth stars (matched, not saturated) with no injected variable within 10 px
    (whose light would leak into the aperture or annulus) that the pipeline classes anything
    but CONST or UNKNOWN. The figure over every constant star is printed too.
Real data
    Every light curve in ``../shared/data/tess/lightcurves`` (beside the repo) through
    ``read_lightcurve`` and ``analyze_lightcurve``: TOI-519 (TIC 218795833, four TGLC files) must give
    P = 1.2652 d within 0.5 %; V889 Aql (TIC 300000680) P = 11.1208 d or P / 2 (equal
    eclipses) within 0.5 %; the other eclipsing binaries must be found periodic (their periods
    are printed); TIC 389023759 (no known variability) is printed for information.

Each figure is printed next to its target with PASS/MISS, then a summary table and the
``BENCH_RESULT {json}`` line of the other benchmarks; ``--json OUT`` writes the same JSON.
This is not a pytest test (it is timed and long); ``tests/test_science_benchmark.py`` checks
the matching and metric functions on a small synthetic pair.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

try:
    from benchmarks import _common as C
except ImportError:  # run as a script from the benchmarks folder
    import _common as C  # type: ignore[no-redef]

FloatArray = npt.NDArray[np.float64]

#: Photometer aperture radius (px); the expected noise is computed for it.
RADIUS = 2.0
PERIODIC = ("EA", "EW", "ROT", "DSCT", "TRANSIT")
PRECISION_TARGET = 1.15
RECOVERY_TARGET = 0.95
FALSE_ALARM_TARGET = 0.01
MIN_SNR = 10.0
PERIOD_TOL = 0.005
#: Below this S/N of the part of the signal that differs between the halves of the cycle,
#: P/2 cannot be told from P by the data and counts as right.
HALF_PERIOD_MAX_SNR = 7.0
MATCH_RADIUS_PX = 1.0
ISOLATION_PX = 10.0
BIN_DAYS = 1.0 / 24.0
REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tess" / "lightcurves"
#: Known answers of the real light curves: TIC -> (period in days, P/2 also right).
KNOWN_PERIODS: dict[int, tuple[float, bool]] = {218795833: (1.2652, False),
                                                300000680: (11.1208, True)}
NOT_VARIABLE_TICS = (389023759,)

CONFIGS: dict[str, dict[str, Any]] = {
    "full": {"n_stars": 1500, "n_cadences": 1248, "cadence_skip": 1, "seed": 11,
             "variable_fraction": 0.3},
    "quick": {"n_stars": 300, "n_cadences": 1248, "cadence_skip": 6, "seed": 11,
              "variable_fraction": 0.3},
}


# --------------------------------------------------------------------------------------------
# Matching and metrics (pure functions; tests/test_science_benchmark.py checks them)
# --------------------------------------------------------------------------------------------


def match_stars(
    det_x: npt.ArrayLike, det_y: npt.ArrayLike, truth_x: npt.ArrayLike, truth_y: npt.ArrayLike,
    radius: float = MATCH_RADIUS_PX,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], FloatArray]:
    """Pairs of detected and truth stars that are each other's nearest within ``radius``.

    Returns the detected indices, the truth indices and the separations (px).

    >>> d, t, s = match_stars([10.0, 50.0, 90.0], [10.0, 50.0, 90.0], [50.3, 10.1, 300.0],
    ...                       [50.0, 10.0, 300.0])
    >>> d.tolist(), t.tolist(), s.round(2).tolist()
    ([0, 1], [1, 0], [0.1, 0.3])
    """
    from scipy.spatial import cKDTree

    det = np.column_stack([np.asarray(det_x, float), np.asarray(det_y, float)])
    tru = np.column_stack([np.asarray(truth_x, float), np.asarray(truth_y, float)])
    empty = (np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0))
    if len(det) == 0 or len(tru) == 0:
        return empty
    d_to_t, t_idx = cKDTree(tru).query(det, k=1)
    _, d_idx = cKDTree(det).query(tru, k=1)
    det_i = np.arange(len(det))
    mutual = (d_idx[t_idx] == det_i) & (d_to_t <= radius)
    return det_i[mutual].astype(np.intp), t_idx[mutual].astype(np.intp), d_to_t[mutual]


def count_neighbours(
    x: npt.ArrayLike, y: npt.ArrayLike, tmag: npt.ArrayLike, radius: float,
    *, max_dmag: float = 5.0, among: npt.ArrayLike | None = None,
) -> npt.NDArray[np.int64]:
    """Other stars within ``radius`` px of each star that are less than ``max_dmag`` fainter
    (``among``: only those stars count as neighbours).

    >>> count_neighbours([0.0, 5.0, 100.0], [0.0, 0.0, 0.0], [10.0, 16.0, 10.0], 10.0).tolist()
    [0, 1, 0]
    """
    from scipy.spatial import cKDTree

    pts = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
    mag = np.asarray(tmag, float)
    sel = np.ones(len(pts), bool) if among is None else np.asarray(among, bool)
    out = np.zeros(len(pts), dtype=np.int64)
    if not sel.any():
        return out
    cand = np.flatnonzero(sel)
    pairs = cKDTree(pts).query_ball_point(pts, r=radius)
    lens = np.fromiter((len(p) for p in pairs), dtype=np.int64, count=len(pairs))
    owner = np.repeat(np.arange(len(pts)), lens)
    other = np.concatenate([np.asarray(p, dtype=np.int64) for p in pairs]) if lens.sum() else \
        np.zeros(0, np.int64)
    keep = (other != owner) & np.isin(other, cand) & (mag[other] < mag[owner] + max_dmag)
    np.add.at(out, owner[keep], 1)
    return out


def _normalised(flux: FloatArray, good: npt.NDArray[np.bool_]) -> FloatArray:
    f = np.where(good, flux, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        med = np.nanmedian(np.where(np.isfinite(f), f, np.nan), axis=1, keepdims=True)
        return np.asarray(f / med)


def _bins(time: FloatArray, bin_days: float) -> tuple[npt.NDArray[np.intp], int]:
    b = np.floor((time - np.nanmin(time)) / bin_days).astype(np.intp)
    _, inv = np.unique(b, return_inverse=True)
    return inv.reshape(-1), int(inv.max()) + 1


def binned_robust_scatter(
    time: npt.ArrayLike, flux: npt.ArrayLike, good: npt.ArrayLike, bin_days: float = BIN_DAYS,
) -> FloatArray:
    """Per star: robust std (1.4826 MAD) of the means of its normalised flux in time bins.

    ``time`` is ``(n_cadences,)``; ``flux`` and ``good`` are ``(n_stars, n_cadences)``.

    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(2000) / 48.0                       # 30-min cadence: 2 points per hour
    >>> f = 100.0 * (1 + 0.01 * rng.standard_normal((1, 2000)))
    >>> round(float(binned_robust_scatter(t, f, np.ones_like(f, bool))[0]) / 0.01 * 2**0.5, 1)
    1.0
    """
    t = np.asarray(time, float)
    g = np.asarray(good, bool) & np.isfinite(np.asarray(flux, float))
    fn = _normalised(np.asarray(flux, float), g)
    idx, nb = _bins(t, bin_days)
    onehot = np.zeros((t.size, nb))
    onehot[np.arange(t.size), idx] = 1.0
    sums = np.where(g, fn, 0.0) @ onehot
    counts = g.astype(float) @ onehot
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / counts, np.nan)
    med = np.nanmedian(means, axis=1, keepdims=True)
    return np.asarray(1.4826 * np.nanmedian(np.abs(means - med), axis=1))


def expected_binned_noise(
    time: npt.ArrayLike, sigma: npt.ArrayLike, good: npt.ArrayLike, bin_days: float = BIN_DAYS,
) -> FloatArray:
    """Per star: median over its time bins of the expected noise of the bin mean,
    ``sqrt(sum sigma_i**2) / n`` over the bin's good points (``sigma`` relative, per point).

    >>> t = np.arange(48) / 48.0
    >>> float(expected_binned_noise(t, np.full((1, 48), 0.01), np.ones((1, 48), bool))[0])
    0.007071067811865475
    """
    t = np.asarray(time, float)
    g = np.asarray(good, bool)
    s = np.asarray(sigma, float)
    idx, nb = _bins(t, bin_days)
    onehot = np.zeros((t.size, nb))
    onehot[np.arange(t.size), idx] = 1.0
    var = np.where(g, s * s, 0.0) @ onehot
    counts = g.astype(float) @ onehot
    with np.errstate(invalid="ignore", divide="ignore"):
        per_bin = np.where(counts > 0, np.sqrt(var) / counts, np.nan)
    return np.asarray(np.nanmedian(per_bin, axis=1))


def signal_snr(model: npt.ArrayLike, sigma: npt.ArrayLike, good: npt.ArrayLike) -> FloatArray:
    """Matched-filter S/N of a noiseless signal on the good points:
    ``sqrt(sum(((m - weighted mean m) / sigma)**2))`` per star.

    >>> t = np.arange(1000) / 48.0
    >>> m = 1 + 0.01 * np.sin(2 * np.pi * t / 3.0)       # semi-amplitude 1 %
    >>> round(float(signal_snr(m[None], np.full((1, 1000), 0.01), np.ones((1, 1000), bool))[0]), 1)
    22.4
    """
    m = np.asarray(model, float)
    s = np.asarray(sigma, float)
    g = np.asarray(good, bool) & np.isfinite(m) & np.isfinite(s) & (s > 0)
    w = np.where(g, 1.0 / np.where(g, s, 1.0) ** 2, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.sum(w * np.where(g, m, 0.0), axis=1, keepdims=True) / np.sum(w, axis=1,
                                                                              keepdims=True)
    return np.asarray(np.sqrt(np.sum(w * np.where(g, m - mean, 0.0) ** 2, axis=1)))


def half_period_snr(model: npt.ArrayLike, model_half: npt.ArrayLike, sigma: npt.ArrayLike,
                    good: npt.ArrayLike) -> FloatArray:
    """S/N of what tells ``P`` from ``P / 2``: ``(m(t) - m(t + P/2)) / 2`` on the good points.

    >>> ph = np.arange(1000) / 100.0 % 1.0
    >>> ew = 1 - 0.1 * np.cos(4 * np.pi * ph)                  # equal minima
    >>> sig, ok = np.full((1, 1000), 0.01), np.ones((1, 1000), bool)
    >>> float(half_period_snr(ew[None], ew[None], sig, ok)[0])
    0.0
    """
    m = np.asarray(model, float)
    mh = np.asarray(model_half, float)
    s = np.asarray(sigma, float)
    g = np.asarray(good, bool) & np.isfinite(m) & np.isfinite(mh) & (s > 0)
    d = np.where(g, (m - mh) / 2.0 / np.where(g, s, 1.0), 0.0)
    return np.asarray(np.sqrt(np.sum(d * d, axis=1)))


def period_ok(p_found: npt.ArrayLike, p_true: npt.ArrayLike, half_ok: npt.ArrayLike,
              tol: float = PERIOD_TOL) -> npt.NDArray[np.bool_]:
    """True where the period found is the true one within ``tol`` (relative), or half of it
    where ``half_ok``.

    >>> period_ok([2.0, 1.0, 1.0, 4.0, np.nan], [2.005, 2.0, 2.0, 2.0, 2.0],
    ...           [False, True, False, True, True]).tolist()
    [True, True, False, False, False]
    """
    pf = np.asarray(p_found, float)
    pt = np.asarray(p_true, float)
    with np.errstate(invalid="ignore"):
        full = np.abs(pf / pt - 1.0) <= tol
        half = np.asarray(half_ok, bool) & (np.abs(pf / (pt / 2.0) - 1.0) <= tol)
    return np.asarray(full | half)


def recovery_by_class(true_class: Iterable[str], recovered: npt.ArrayLike,
                      classes: Iterable[str] = PERIODIC) -> dict[str, tuple[int, int, float]]:
    """Per class: (eligible stars, recovered, fraction; NaN when none).

    >>> recovery_by_class(["EA", "EA", "ROT"], [True, False, True], ["EA", "ROT", "DSCT"])
    {'EA': (2, 1, 0.5), 'ROT': (1, 1, 1.0), 'DSCT': (0, 0, nan)}
    """
    cls = np.asarray(list(true_class), dtype=object)
    rec = np.asarray(recovered, bool)
    out: dict[str, tuple[int, int, float]] = {}
    for c in classes:  # five classes
        sel = cls == c
        n, k = int(sel.sum()), int(rec[sel].sum())
        out[c] = (n, k, k / n if n else float("nan"))
    return out


def false_alarm_fraction(found_class: Iterable[str]) -> float:
    """Fraction classed anything but CONST or UNKNOWN.

    >>> false_alarm_fraction(["CONST", "UNKNOWN", "ROT", "CONST"])
    0.25
    """
    cls = np.asarray(list(found_class), dtype=object)
    if cls.size == 0:
        return float("nan")
    return float(np.mean(~np.isin(cls, ["CONST", "UNKNOWN"])))


def lightcurve_matrix(
    phot: pd.DataFrame, star_ids: npt.ArrayLike,
) -> tuple[FloatArray, npt.NDArray[np.int64], dict[str, Any]]:
    """Long-format photometry to matrices ``(n_stars, n_cadences)`` in the order of
    ``star_ids``: returns the mid-exposure times, the cadence numbers and a dict of ``flux``,
    ``flux_err``, ``flux_corrected`` when present (NaN where missing) and ``quality`` (-1
    where missing).

    >>> phot = pd.DataFrame({"star_id": [2, 1, 2], "cadence": [0, 2, 2], "btjd": [1.0, 2.0, 2.0],
    ...                      "flux": [5.0, 6.0, 7.0], "flux_err": [1.0, 1.0, 1.0],
    ...                      "quality": [0, 0, 32]})
    >>> t, cad, m = lightcurve_matrix(phot, [1, 2])
    >>> t.tolist(), cad.tolist(), m["flux"].tolist(), m["quality"].tolist()
    ([1.0, 2.0], [0, 2], [[nan, 6.0], [5.0, 7.0]], [[-1, 0], [0, 32]])
    """
    ids = np.asarray(star_ids, dtype=np.int64)
    cad = np.unique(phot["cadence"].to_numpy())
    t = phot.groupby("cadence")["btjd"].first().reindex(cad).to_numpy(float)
    order = np.argsort(ids)
    sid = phot["star_id"].to_numpy(np.int64)
    pos = np.searchsorted(ids[order], sid)
    pos = np.clip(pos, 0, len(ids) - 1)
    known = ids[order][pos] == sid
    rows = order[pos[known]]
    cols = np.searchsorted(cad, phot["cadence"].to_numpy()[known])
    out: dict[str, Any] = {}
    for name in ("flux", "flux_err", "flux_corrected"):
        if name not in phot:
            continue
        m = np.full((len(ids), len(cad)), np.nan)
        m[rows, cols] = phot[name].to_numpy(float)[known]
        out[name] = m
    q = np.full((len(ids), len(cad)), -1, dtype=np.int64)
    q[rows, cols] = phot["quality"].to_numpy(np.int64)[known]
    out["quality"] = q
    return t, cad.astype(np.int64), out


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def job_spec(cfg: Mapping[str, Any]) -> Any:
    from tess_ffi.shared.contracts import JobSpec

    sim = {k: cfg[k] for k in ("n_stars", "n_cadences", "seed", "variable_fraction")}
    return JobSpec(sector=1, camera=1, ccd=1, source="sim", cadence_skip=int(cfg["cadence_skip"]),
                   workers=2, sim=sim)


def run_pipeline(cfg: Mapping[str, Any], data_dir: Path) -> dict[str, Any]:
    from tess_ffi.pipeline import run_job
    from tess_ffi.shared.config import load_settings

    return asyncio.run(run_job(job_spec(cfg), load_settings(data_dir=data_dir,
                                                            log_level="WARNING")))


def _truth_model_half(sim: Any, cadences: npt.NDArray[np.int64]) -> tuple[FloatArray, FloatArray]:
    """Truth relative flux of every star at the mid-times of ``cadences`` and half a period
    later, shape (n_cadences, n_stars) each. Uses the simulator's model functions (private:
    no public call evaluates the model at arbitrary times)."""
    from tess_ffi.shared import simulation as S

    t = sim.tmid[cadences][None, :]
    now = np.ones((cadences.size, sim.n_stars))
    later = np.ones_like(now)
    for cls, params in sim._vars.items():  # six classes
        idx = sim._var_index[cls]
        if idx.size == 0 or cls == "FLARE":
            continue
        shaped = {k: (v[:, None] if v.ndim == 1 else v) for k, v in params.items()}
        model = S._MODELS[cls]
        now[:, idx] = model(t, shaped).T
        later[:, idx] = model(t + shaped["period"] / 2.0, shaped).T
    return now, later


def _period_precision(sim: Any, cadences: npt.NDArray[np.int64], rows: npt.NDArray[np.intp],
                      sigma: FloatArray, good: npt.NDArray[np.bool_]) -> FloatArray:
    """Cramer-Rao bound of the relative period error, ``sigma_P / P``, of each matched star
    from its truth model on its good cadences (the phase is referred to the middle of the
    data, where it is uncorrelated with the period); NaN for stars without a period."""
    from tess_ffi.shared import simulation as S

    t = sim.tmid[cadences][None, :]
    t_mid = 0.5 * (float(t.min()) + float(t.max()))
    eps = 1e-5
    deriv = np.full((cadences.size, sim.n_stars), np.nan)
    for cls, params in sim._vars.items():  # six classes
        idx = sim._var_index[cls]
        if idx.size == 0 or cls == "FLARE":
            continue
        shaped = {k: (v[:, None] if v.ndim == 1 else v) for k, v in params.items()}
        out = []
        for sign in (1.0, -1.0):
            q = dict(shaped)
            q["period"] = shaped["period"] * (1 + sign * eps)
            q["epoch"] = t_mid - (t_mid - shaped["epoch"]) * (1 + sign * eps)
            out.append(S._MODELS[cls](t, q))
        deriv[:, idx] = ((out[0] - out[1]) / (2 * eps)).T  # dm / d(ln P)
    d = deriv[:, rows].T
    ok = good & np.isfinite(d)
    info = np.sum(np.where(ok, (d / np.where(ok, sigma, 1.0)) ** 2, 0.0), axis=1)
    with np.errstate(divide="ignore"):
        return np.where(info > 0, 1.0 / np.sqrt(info), np.nan)


def _score_periods(
    report: C.Report, m: pd.DataFrame, found_period: npt.ArrayLike,
    found_class: npt.ArrayLike, snr: FloatArray, hsnr: FloatArray, prec: FloatArray,
    near_var: npt.NDArray[np.bool_],
) -> dict[str, Any]:
    """Recovery per class and false alarms for one set of analyzer results."""
    cls = m["var_class"].to_numpy()
    found = np.asarray(found_class, dtype=object)
    half_ok = hsnr < HALF_PERIOD_MAX_SNR
    ok = period_ok(found_period, m["period"], half_ok)
    elig = np.isin(cls, PERIODIC) & (snr >= MIN_SNR)
    resolvable = elig & (2.0 * prec <= PERIOD_TOL)
    rec = recovery_by_class(cls[elig], ok[elig])
    rec_res = recovery_by_class(cls[resolvable], ok[resolvable])
    figs: dict[str, Any] = {"recovery": {}, "recovery_resolvable": {}}
    for c, (n, k, f) in rec.items():
        figs["recovery"][c] = {"n": n, "recovered": k, "fraction": f}
        n2, k2, f2 = rec_res[c]
        figs["recovery_resolvable"][c] = {"n": n2, "recovered": k2, "fraction": f2}
        note = (f"{k}/{n}; P/2 allowed for {int((half_ok & elig & (cls == c)).sum())}; "
                f"{k2}/{n2} where the data fix P to 0.5 % (2 sigma)")
        report.add(f"recovery {c}: period within 0.5 %, SNR >= {MIN_SNR:g}", 100 * f, "%",
                   f">= {100 * RECOVERY_TARGET:g} %",
                   bool(f >= RECOVERY_TARGET) if n else None, note=note)
    for c in PERIODIC:
        e = elig & (cls == c)
        if e.any():
            classes = pd.Series(found[e]).value_counts().to_dict()
            by_snr = []
            for lo, hi in ((10, 20), (20, 50), (50, 200), (200, np.inf)):
                b = e & (snr >= lo) & (snr < hi)
                by_snr.append(f"{lo:g}-{hi:g}: {int((ok & b).sum())}/{int(b.sum())}")
            report.note(f"{c}: classes found {classes}; recovered by SNR "
                        + ", ".join(by_snr))
    bad = elig & ~ok
    misses = m[bad].assign(snr=snr[bad], half_snr=hsnr[bad], sigma_p=prec[bad],
                           period_found=np.asarray(found_period, float)[bad],
                           class_found=found[bad])
    cols = ["var_class", "tmag", "period", "amplitude", "snr", "half_snr", "sigma_p",
            "period_found", "class_found"]
    figs["recovery_misses"] = misses[["sim_id", *cols]].to_dict(orient="records")
    if len(misses):
        print("  recovery misses (sigma_p: Cramer-Rao relative period error):")
        with pd.option_context("display.width", 160, "display.max_rows", 100):
            print(misses[cols].sort_values(["var_class", "snr"]).to_string(
                index=False, float_format=lambda v: f"{v:.4g}"))
    const = cls == "CONST"
    fa = false_alarm_fraction(found[const & ~near_var])
    fa_all = false_alarm_fraction(found[const])
    figs["false_alarm"], figs["false_alarm_all_const"] = fa, fa_all
    note = f"{int((const & ~near_var).sum())} stars without a variable within {ISOLATION_PX:g} px"
    report.add("false alarms: CONST classed variable", 100 * fa, "%",
               f"<= {100 * FALSE_ALARM_TARGET:g} %", fa <= FALSE_ALARM_TARGET, note=note)
    report.add("false alarms over every CONST star (info)", 100 * fa_all, "%",
               note=f"{int(const.sum())} stars")
    flagged = const & ~np.isin(found, ["CONST", "UNKNOWN"])
    if flagged.any():
        per = pd.Series(np.round(np.asarray(found_period, float)[flagged], 2))
        report.note("CONST stars classed variable: classes "
                    f"{pd.Series(found[flagged]).value_counts().to_dict()}, most common "
                    f"periods {per.value_counts().head(6).to_dict()}")
    return figs


def evaluate(out_dir: Path, cfg: Mapping[str, Any], report: C.Report) -> dict[str, Any]:
    """Score the pipeline's outputs in ``out_dir`` against the simulator's truth."""
    import pyarrow.dataset as ds

    from tess_ffi.shared.contracts import STORED_PHOTOMETRY_SCHEMA
    from tess_ffi.shared.quality import CLEANING_BITS, DEFAULT_BAD_BITS
    from tess_ffi.shared.simulation import SimulatedSector, simulation_config

    sim = SimulatedSector(simulation_config(job_spec(cfg)))
    truth = sim.catalog.reset_index(drop=True)
    stars = pd.read_parquet(out_dir / "stars.parquet")
    var = pd.read_parquet(out_dir / "variability.parquet")
    phot = ds.dataset(out_dir / "photometry.parquet", format="parquet",
                      schema=STORED_PHOTOMETRY_SCHEMA).to_table(
        columns=["star_id", "cadence", "btjd", "flux", "flux_err", "quality",
                 "flux_corrected"]).to_pandas()

    d_i, t_i, _ = match_stars(stars["x"], stars["y"], truth["x"], truth["y"])
    m = truth.iloc[t_i].reset_index(drop=True)
    m["truth_row"] = t_i
    m["star_id"] = stars["star_id"].to_numpy()[d_i]
    m = m.merge(var[["star_id", "period", "var_class", "n_points"]].rename(
        columns={"period": "period_found", "var_class": "class_found"}), on="star_id", how="left")
    unsat = ~truth["saturated"].to_numpy()
    report.note(f"{len(stars)} stars detected, {len(m)} matched to the {len(truth)} injected "
                f"({int(unsat.sum())} unsaturated); {int(truth['saturated'].sum())} "
                "saturated truth stars left out")
    m = m[~m["saturated"].to_numpy()].reset_index(drop=True)

    t, cad, mat = lightcurve_matrix(phot, m["star_id"].to_numpy())
    q = mat["quality"]
    measured = (q >= 0) & np.isfinite(mat["flux"]) & (mat["flux"] > 0)
    # What the pipeline keeps (its cleaning's bits included), and the raw photometry's own
    # mask (without them) for the raw figure.
    good = measured & ((q & DEFAULT_BAD_BITS) == 0)
    good_raw = measured & ((q & (DEFAULT_BAD_BITS & ~CLEANING_BITS)) == 0)
    rows = m["truth_row"].to_numpy()
    sigma = (sim.expected_noise(RADIUS, list(cad), include_variability=False)
             / sim.expected_aperture_flux(RADIUS, list(cad), include_variability=False)).T[rows]
    report.note(f"{len(cad)} cadences measured (of {sim.n_cadences}); good points per star: "
                f"median {int(np.median(good.sum(axis=1)))} (raw mask "
                f"{int(np.median(good_raw.sum(axis=1)))})")

    tx, ty, tmag = (truth[c].to_numpy() for c in ("x", "y", "tmag"))
    crowded = count_neighbours(tx, ty, tmag, ISOLATION_PX)[rows] > 0
    near_var = count_neighbours(tx, ty, np.full(len(truth), -99.0), ISOLATION_PX,
                                among=truth["var_class"].to_numpy() != "CONST")[rows] > 0
    cls = m["var_class"].to_numpy()
    figures: dict[str, Any] = {}

    # -- precision (the pipeline's corrected flux; the raw flux for reference) --------------
    corrected = mat["flux_corrected"]
    sel = (cls == "CONST") & (m["tmag"].to_numpy() >= 9) & (m["tmag"].to_numpy() <= 14) & ~crowded
    ratio = binned_robust_scatter(t, corrected[sel], good[sel]) / \
        expected_binned_noise(t, sigma[sel], good[sel])
    prec = float(np.nanmedian(ratio))
    figures["precision_ratio"] = prec
    report.add("precision: 1-h scatter / expected, const Tmag 9-14", prec, "x",
               f"<= {PRECISION_TARGET}", prec <= PRECISION_TARGET,
               note=f"{int(sel.sum())} stars, corrected flux")
    raw = binned_robust_scatter(t, mat["flux"][sel], good_raw[sel]) / \
        expected_binned_noise(t, sigma[sel], good_raw[sel])
    figures["precision_ratio_raw"] = float(np.nanmedian(raw))
    report.add("precision of the raw flux (info)", float(np.nanmedian(raw)), "x",
               note="before the common-mode correction")
    mags = m["tmag"].to_numpy()[sel]
    expct = expected_binned_noise(t, sigma[sel], good[sel])
    figures["precision_by_tmag"] = {}
    for lo in range(9, 14):
        b = (mags >= lo) & (mags < lo + 1)
        if b.any():
            figures["precision_by_tmag"][f"{lo}-{lo + 1}"] = {
                "n": int(b.sum()), "ratio": float(np.nanmedian(ratio[b])),
                "ratio_raw": float(np.nanmedian(raw[b])),
                "expected_ppm": float(np.nanmedian(expct[b]) * 1e6)}
            report.note(f"precision Tmag {lo}-{lo + 1}: median ratio {np.nanmedian(ratio[b]):.3f}, "
                        f"raw {np.nanmedian(raw[b]):.3f} ({int(b.sum())} stars; expected "
                        f"1-h noise {np.nanmedian(expct[b]) * 1e6:.0f} ppm)")
    sel_all = (cls == "CONST") & (m["tmag"].to_numpy() >= 9) & (m["tmag"].to_numpy() <= 14)
    r_all = binned_robust_scatter(t, corrected[sel_all], good[sel_all]) / \
        expected_binned_noise(t, sigma[sel_all], good[sel_all])
    report.note(f"precision including crowded stars: {np.nanmedian(r_all):.3f} "
                f"({int(sel_all.sum())} stars)")

    # -- recovery and false alarms ----------------------------------------------------------
    rel = sim.relative_flux_all()[cad][:, rows].T  # exposure-averaged truth at the cadences
    snr = signal_snr(rel, sigma, good)
    now, later = _truth_model_half(sim, cad)
    hsnr = half_period_snr(now[:, rows].T, later[:, rows].T, sigma, good)
    pprec = _period_precision(sim, cad, rows, sigma, good)
    figures.update(_score_periods(report, m, m["period_found"], m["class_found"], snr,
                                  hsnr, pprec, near_var))
    return figures


def real_data(report: C.Report, folder: Path = REAL_DATA) -> dict[str, Any]:
    """The analyzer on every real light curve with a known periodic signal."""
    from tess_ffi.services.analyzer.lightcurve_files import read_lightcurve
    from tess_ffi.services.analyzer.variability import PERIODIC_CLASSES, analyze_lightcurve

    rows = []
    files = sorted(folder.glob("*.fits")) if folder.is_dir() else []
    if not files:
        report.note(f"no real light curves in {folder}: real-data figures skipped")
        return {}
    for path in files:
        lc = read_lightcurve(path)
        r = analyze_lightcurve(lc.time, lc.flux, lc.flux_err, lc.quality)
        tic = int(lc.meta.get("tic_id") or 0)
        name = f"TIC {tic} s{int(lc.meta.get('sector') or 0):02d} {lc.meta.get('format')}"
        row = {"file": path.name, "tic": tic, "sector": lc.meta.get("sector"),
               "format": lc.meta.get("format"), "period": r.period, "var_class": r.var_class,
               "score": r.score}
        if tic in KNOWN_PERIODS:
            p_true, half = KNOWN_PERIODS[tic]
            good = bool(period_ok([r.period], [p_true], [half])[0])
            report.add(f"real: {name} P={p_true} d{' (or P/2)' if half else ''}", r.period, "d",
                       f"{p_true} +-0.5 %", good, note=r.var_class)
        elif tic in NOT_VARIABLE_TICS:
            good = None
            report.add(f"real: {name} (no known variability, info)", r.period, "d",
                       note=f"{r.var_class}")
        else:
            good = r.var_class in PERIODIC_CLASSES
            report.add(f"real: {name} eclipsing binary found periodic", r.period, "d",
                       "periodic", good, note=r.var_class)
        row["ok"] = good
        rows.append(row)
    return {"real": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a small sector for a smoke run")
    p.add_argument("--stars", type=int, help="number of stars (default 1500, quick 300)")
    p.add_argument("--cadence-skip", type=int, help="every Kth FFI (default 1, quick 6)")
    p.add_argument("--seed", type=int)
    p.add_argument("--json", type=Path, help="write the figures as JSON to this file")
    p.add_argument("--data-dir", type=Path, help="keep the pipeline's outputs here")
    p.add_argument("--reuse", action="store_true",
                   help="score the outputs already in --data-dir instead of running again")
    p.add_argument("--no-real", action="store_true", help="skip the real light curves")
    args = p.parse_args(argv)

    from tess_ffi.shared.config import output_dir
    from tess_ffi.shared.logging import configure_logging

    configure_logging("WARNING")
    cfg = dict(CONFIGS["quick" if args.quick else "full"])
    for key, val in (("n_stars", args.stars), ("cadence_skip", args.cadence_skip),
                     ("seed", args.seed)):
        if val is not None:
            cfg[key] = val
    C.header("science benchmark" + (" (quick: not the targets' configuration)" if args.quick
                                    else ""))
    print(f"  simulated sector: {json.dumps(cfg)}", flush=True)
    report = C.Report("science")
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="tess-ffi-science-"))
    out = output_dir(data_dir, 1, 1, 1)
    try:
        if not (args.reuse and (out / "variability.parquet").exists()):
            t0 = time.perf_counter()
            summary = run_pipeline(cfg, data_dir)
            wall = time.perf_counter() - t0
            report.add("pipeline wall time (info)", wall, "s",
                       note=f"{summary.get('stars')} stars, classes {summary.get('classes')}")
        t0 = time.perf_counter()
        figures = evaluate(out, cfg, report)
        report.note(f"scoring took {time.perf_counter() - t0:.0f} s")
        if not args.no_real:
            figures.update(real_data(report))
    finally:
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    report.finish()
    if args.json:
        payload = {"benchmark": "science", "config": cfg,
                   "figures": [asdict(f) for f in report.figures], "notes": report.notes,
                   "details": figures}
        args.json.write_text(json.dumps(_plain_json(payload), indent=2) + "\n")
        print(f"  wrote {args.json}")
    missed = [f.name for f in report.figures if f.ok is False]
    return 1 if missed else 0


def _plain_json(value: Any) -> Any:
    """``value`` with numpy scalars made plain and NaN/inf made null (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


if __name__ == "__main__":
    os.environ.setdefault("TESS_FFI_LOG_LEVEL", "WARNING")
    raise SystemExit(main())
