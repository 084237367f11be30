"""Variability science for one star's light curve: metrics, period, class and score.

Pure numpy/scipy/astropy, no I/O. The entry point is :func:`analyze_lightcurve`, which takes
one star's time series (BTJD, flux, flux error and the quality bitmask of
:mod:`tess_ffi.shared.quality`) and returns a :class:`VariabilityResult`:

1. bad-quality and non-finite points are dropped and the flux is normalised by its median;
2. isolated single-point upward outliers are clipped and flares (runs of several high points
   with a fast rise) are counted; dips are never clipped, so eclipses and transits survive;
3. :func:`variability_metrics` gives the classical indices (amplitude, reduced chi^2,
   Stetson J, MAD, von Neumann ratio, skewness, SNR);
4. :func:`find_period` runs a Lomb-Scargle periodogram (pulsators, rotators, contact binaries)
   and a box least squares search (eclipses and transits), rejects aliases of TESS systematics,
   and decides between ``P`` and ``2P`` (odd/even eclipse depths, unequal minima, the shape of
   a contact binary's light curve);
5. :func:`classify` applies the rules that give the class and a score in [0, 1].

Examples
--------
>>> import numpy as np
>>> from tess_ffi.services.analyzer.variability import analyze_lightcurve
>>> rng = np.random.default_rng(0)
>>> t = np.arange(0.0, 27.0, 1800 / 86400)
>>> flux = 1000.0 * (1 + 0.02 * np.sin(2 * np.pi * t / 3.3)) + rng.normal(0, 1.0, t.size)
>>> r = analyze_lightcurve(t, flux, np.full(t.size, 1.0))
>>> r.var_class, round(r.period, 2)
('ROT', 3.3)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.timeseries import BoxLeastSquares, LombScargle
from scipy import ndimage, special, stats

from tess_ffi.shared.quality import DEFAULT_BAD_BITS, QualityFlags, good_mask

__all__ = [
    "VAR_CLASSES",
    "PERIODIC_CLASSES",
    "MIN_POINTS",
    "FAP_THRESHOLD",
    "TESS_SYSTEMATIC_PERIODS",
    "VariabilityResult",
    "PeriodResult",
    "FlareSearch",
    "variability_metrics",
    "detect_flares",
    "find_period",
    "analyze_lightcurve",
    "classify",
]

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]

VAR_CLASSES = ("EA", "EW", "ROT", "DSCT", "TRANSIT", "FLARE", "CONST", "UNKNOWN")
#: Classes that come with a period.
PERIODIC_CLASSES = ("EA", "EW", "ROT", "DSCT", "TRANSIT")
#: Fewer good points than this give ``var_class == "UNKNOWN"``.
MIN_POINTS = 10
#: A period is significant when its false alarm probability is below this.
FAP_THRESHOLD = 1e-3

#: Periods (days) of TESS systematics and the relative half-width of the window around each in
#: which a weak signal is rejected: the 13.7 d orbit, its harmonics, and the ~3.1 d cadence of
#: momentum dumps (which changes from sector to sector, hence the wider window).
TESS_SYSTEMATIC_PERIODS: tuple[tuple[float, float], ...] = (
    (13.7, 0.04),
    (13.7 / 2, 0.04),
    (13.7 / 3, 0.04),
    (13.7 / 4, 0.04),
    (3.1, 0.08),
)
#: An alias of a systematic period is kept when the signal is at least this strong
#: (fraction of variance explained for Lomb-Scargle, depth S/N for box least squares).
_STRONG_LS_POWER = 0.5
_STRONG_BLS_SNR = 25.0

_LS_OVERSAMPLE = 5  # frequency grid points per 1/baseline (the peak is refined afterwards)
_LS_MAX_FREQUENCIES = 250_000
_LS_MIN_POWER_RATIO = 8.0  # peak power over the local mean power of the periodogram
_MAX_FREQUENCY = 360.0  # cycles/day (4 min); TESS's fastest FFI cadence is 200 s
_BLS_MIN_PERIOD = 0.2  # days; shorter signals are left to Lomb-Scargle
_BLS_GRID_OVERSAMPLE = 1.5  # period grid density: phase drift over the baseline <= d / 1.5
_BLS_BIN_OVERSAMPLE = 2  # astropy BLS phase bins per shortest duration
_BLS_FLOOR_DURATION = 0.015  # days
#: (shortest period, longest period, shortest duration, longest duration), days.
_BLS_SEGMENTS = ((0.2, 1.0, 0.015, 0.12), (1.0, 4.0, 0.025, 0.3), (4.0, math.inf, 0.04, 0.6))
_BLS_TRIALS_PER_PERIOD = 400.0  # effective independent trials per grid period (calibrated on noise)
_BLS_MIN_LOO_SNR = 4.0  # S/N of the box without its strongest event (one glitch is no period)
_DETREND_WINDOW = 2.0  # days: running median removed before the box search
_DOUBLING_HARMONICS = 4
_DOUBLING_LOG10P = -6.0  # F-test p-value for "the odd harmonics of 2P are real"
_DOUBLING_MIN_RATIO = 0.01  # odd-harmonic amplitude relative to the even ones
_MAX_DOUBLED_LS_PERIOD = 1.0  # days: Lomb-Scargle periods that may be doubled
_ODD_EVEN_SIGMA = 5.0
_ODD_EVEN_MIN_FRACTION = 0.03
_EW_MAX_LS_PERIOD = 0.5  # days: LS period of a contact binary is P_orb / 2 < ~0.5 d
_EW_MIN_LS_PERIOD = 0.1
_EW_MAX_FRACTION_BELOW_MID = 0.42
_EW_MAX_ASYMMETRY = 0.1  # contact binaries' minima are symmetric
_EW_MIN_SHAPE_AMPLITUDE = 0.04  # by shape alone, a contact binary varies by 4 % at least
_DSCT_MAX_PERIOD = 0.25
_EW_MAX_PERIOD = 1.0
_TRANSIT_MAX_DEPTH = 0.03
_TRANSIT_MAX_DEPTH_NO_SECONDARY = 0.15
_TRANSIT_MAX_DUTY = 0.1
_SECONDARY_SNR = 5.0  # a secondary eclipse at any phase (the search tries many)
_FLARE_SIGMA = 5.0
_FLARE_RUN_SIGMA = 3.0
_FLARE_MAX_EVENTS = 10


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True)
class VariabilityResult:
    """Metrics, period, class and score of one light curve.

    ``period`` is NaN unless a significant period was found (``var_class`` in
    :data:`PERIODIC_CLASSES`); ``period_power`` and ``false_alarm_probability`` always describe
    the best Lomb-Scargle or box least squares peak, significant or not. ``epoch`` is the BTJD
    of primary minimum (eclipses, transits, contact binaries) or of maximum light (pulsators,
    rotators), the first one at or after the start of the data.
    """

    n_points: int
    amplitude: float
    amplitude_robust: float
    reduced_chi2: float
    stetson_j: float
    mad: float
    von_neumann: float
    skewness: float
    snr: float
    period: float
    period_power: float
    false_alarm_probability: float
    period_method: str
    epoch: float
    var_class: str
    score: float
    n_flares: int = 0
    n_clipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (the row of the variability table).

        >>> VariabilityResult(**{**_EMPTY_METRICS, "n_points": 3}).to_dict()["var_class"]
        'UNKNOWN'
        """
        return {k: _plain(v) for k, v in asdict(self).items()}

    @property
    def is_variable(self) -> bool:
        """True unless the class is CONST or UNKNOWN."""
        return self.var_class not in ("CONST", "UNKNOWN")


_NAN = float("nan")
_EMPTY_METRICS: dict[str, Any] = {
    "n_points": 0,
    "amplitude": _NAN,
    "amplitude_robust": _NAN,
    "reduced_chi2": _NAN,
    "stetson_j": _NAN,
    "mad": _NAN,
    "von_neumann": _NAN,
    "skewness": _NAN,
    "snr": _NAN,
    "period": _NAN,
    "period_power": _NAN,
    "false_alarm_probability": _NAN,
    "period_method": "LS",
    "epoch": _NAN,
    "var_class": "UNKNOWN",
    "score": 0.0,
}


@dataclass(frozen=True)
class PeriodResult:
    """Outcome of :func:`find_period`.

    The first fields describe the adopted signal (``method`` "LS" or "BLS"); ``significant``
    says whether it passed the false-alarm threshold. The ``ls_*`` and ``bls_*`` fields keep
    the best peak of each search for diagnostics. ``doubled`` is True when the adopted period
    is twice the periodogram's peak, with the reason in ``doubling_reason``.
    """

    period: float
    power: float
    false_alarm_probability: float
    method: str
    epoch: float
    significant: bool
    amplitude: float = _NAN  # peak-to-peak of the adopted model (fraction of the median flux)
    delta_chi2: float = 0.0  # chi^2 improvement of the adopted model (noise-scaled errors)
    noise_scale: float = 1.0  # point-to-point scatter / median quoted error (>= 1)
    doubled: bool = False
    doubling_reason: str = ""
    alias_rejected: bool = False
    ls_period: float = _NAN
    ls_power: float = _NAN
    ls_fap: float = 1.0
    ls_power_ratio: float = _NAN
    fraction_below_mid: float = _NAN
    bls_period: float = _NAN
    bls_power: float = _NAN
    bls_fap: float = 1.0
    bls_snr: float = _NAN
    bls_depth: float = _NAN
    bls_duration: float = _NAN
    bls_n_transits: int = 0
    depth_odd: float = _NAN
    depth_even: float = _NAN
    depth_secondary: float = _NAN
    secondary_snr: float = _NAN
    secondary_phase: float = _NAN
    out_of_transit_chi2: float = _NAN
    red_noise_beta: float = _NAN

    @property
    def duty_cycle(self) -> float:
        """Box duration over the adopted period (BLS only, else NaN)."""
        if self.method != "BLS" or not self.period > 0:
            return _NAN
        return self.bls_duration / self.period

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values."""
        return {k: _plain(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class FlareSearch:
    """Outcome of :func:`detect_flares` (masks are over the input points)."""

    n_flares: int
    max_sigma: float
    flare_mask: npt.NDArray[np.bool_]
    outlier_mask: npt.NDArray[np.bool_]
    noise: float


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _as_float_array(name: str, values: ArrayLike) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} is not numeric: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _check_inputs(
    time: ArrayLike, flux: ArrayLike, flux_err: ArrayLike | None
) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    t = _as_float_array("time", time)
    f = _as_float_array("flux", flux)
    if t.size != f.size:
        raise ValueError(f"time and flux differ in length ({t.size} != {f.size})")
    e = None
    if flux_err is not None:
        e = _as_float_array("flux_err", flux_err)
        if e.size == 1 and t.size != 1:
            e = np.full(t.size, float(e[0]))
        if e.size != t.size:
            raise ValueError(f"time and flux_err differ in length ({t.size} != {e.size})")
    return t, f, e


def _mad_std(x: FloatArray) -> float:
    """Robust standard deviation (1.4826 x median absolute deviation)."""
    if x.size == 0:
        return _NAN
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def _p2p_noise(y: FloatArray) -> float:
    """White-noise level from point-to-point differences (robust to slow variability)."""
    if y.size < 3:
        return _NAN
    return _mad_std(np.diff(y)) / math.sqrt(2.0)


def _median_cadence(t: FloatArray) -> float:
    d = np.diff(t)
    d = d[d > 0]
    return float(np.median(d)) if d.size else _NAN


def _odd(n: float) -> int:
    k = max(int(round(n)), 1)
    return k if k % 2 else k + 1


def _systematic_alias(period: float) -> bool:
    return any(abs(period / p - 1.0) < tol for p, tol in TESS_SYSTEMATIC_PERIODS)


def _box_systematic(
    period: float, duration: float, t0: float, t: FloatArray,
    systematic_times: FloatArray | None,
) -> bool:
    """Is a box a systematic? With the times of known events (momentum dumps) its own
    events must not coincide with them (half of those with data or more within half a
    duration plus 0.1 d); a transit that merely has a period near a systematic one is kept.
    Without them, its period must be outside :data:`TESS_SYSTEMATIC_PERIODS`."""
    if systematic_times is None:
        return _systematic_alias(period)
    if abs(period / TESS_SYSTEMATIC_PERIODS[0][0] - 1.0) < TESS_SYSTEMATIC_PERIODS[0][1]:
        return True  # the orbit itself
    if systematic_times.size == 0:
        return False
    k = np.arange(math.floor((t[0] - t0) / period), math.ceil((t[-1] - t0) / period) + 1)
    tc = t0 + k * period
    half = 0.5 * duration
    with_data = (np.searchsorted(t, tc + half) - np.searchsorted(t, tc - half)) > 0
    if not with_data.any():
        return False
    tc = tc[with_data]
    at = np.clip(np.searchsorted(systematic_times, tc), 1, systematic_times.size - 1)
    nearest = np.minimum(np.abs(systematic_times[at] - tc), np.abs(systematic_times[at - 1] - tc))
    if systematic_times.size == 1:
        nearest = np.abs(systematic_times[0] - tc)
    return bool(np.mean(nearest <= half + 0.1) >= 0.5)


def _running_trend(t: FloatArray, y: FloatArray, window: float) -> FloatArray:
    """Robust running median of ``y`` over ``window`` days (medians of 1/10-window bins).

    A dip shorter than about half the window (an eclipse, a transit) does not pull the trend.
    """
    span = t[-1] - t[0]
    if span <= window / 2 or t.size < 20:
        return np.full(t.size, float(np.median(y)))
    width = window / 10.0
    idx = np.floor((t - t[0]) / width).astype(np.int64)
    order = np.lexsort((y, idx))
    ys, ids = y[order], idx[order]
    bins, start, counts = np.unique(ids, return_index=True, return_counts=True)
    lo = ys[start + (counts - 1) // 2]
    hi = ys[start + counts // 2]
    bmed = 0.5 * (lo + hi)
    tb = t[0] + (bins + 0.5) * width
    near = np.abs(tb[:, None] - tb[None, :]) <= window / 2
    stack = np.where(near, bmed[None, :], np.nan)
    trend_b = np.nanmedian(stack, axis=1)
    return np.interp(t, tb, trend_b)


def _local_noise_ratio(t: FloatArray, y: FloatArray) -> FloatArray:
    """Running white-noise level over ~2 d relative to the global one (>= 1).

    From second differences, which ignore the straight ingress and egress of eclipses.
    """
    n = y.size
    cadence = _median_cadence(t)
    if n < 50 or not math.isfinite(cadence):
        return np.ones(n)
    d2 = np.abs(y[2:] - 2.0 * y[1:-1] + y[:-2])
    d2 = np.r_[d2[0], d2, d2[-1]]
    glob = float(np.median(d2))
    if not glob > 0:
        return np.ones(n)
    size = min(_odd(max(25.0, 2.0 / cadence)), _odd(n / 4))
    local = ndimage.median_filter(d2, size=size, mode="nearest")
    return np.maximum(1.0, local / glob)


def _fourier_design(t: FloatArray, freq: float, nharm: int, t_ref: float) -> FloatArray:
    phase = 2.0 * np.pi * freq * (t - t_ref)
    k = np.arange(1, nharm + 1)
    arg = phase[:, None] * k[None, :]
    cols = np.empty((t.size, 2 * nharm + 1))
    cols[:, 0] = 1.0
    cols[:, 1::2] = np.cos(arg)
    cols[:, 2::2] = np.sin(arg)
    return cols


def _wlstsq(x: FloatArray, y: FloatArray, w: FloatArray) -> tuple[FloatArray, float]:
    """Weighted linear least squares: (coefficients, chi^2).

    Normal equations (fast; Fourier and box bases are well conditioned), with a fallback to
    an SVD solution when they are singular.
    """
    xw = x * w[:, None]
    gram = x.T @ xw
    rhs = xw.T @ y
    try:
        coef = np.linalg.solve(gram, rhs)
        if not np.all(np.isfinite(coef)):
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        sw = np.sqrt(w)
        coef, *_ = np.linalg.lstsq(x * sw[:, None], y * sw, rcond=None)
    resid = y - x @ coef
    return np.asarray(coef, dtype=np.float64), float(np.sum(w * resid * resid))


def _fourier_curve(coef: FloatArray, phase: FloatArray) -> FloatArray:
    nharm = (coef.size - 1) // 2
    k = np.arange(1, nharm + 1)
    arg = 2.0 * np.pi * phase[:, None] * k[None, :]
    return coef[0] + np.cos(arg) @ coef[1::2] + np.sin(arg) @ coef[2::2]


def _first_epoch(t0: float, period: float, t_start: float) -> float:
    """The first time ``t0 + n * period`` at or after ``t_start``."""
    if not (math.isfinite(t0) and period > 0):
        return _NAN
    return float(t0 + period * math.ceil((t_start - t0) / period - 1e-9))


def _chi2_const(y: FloatArray, w: FloatArray) -> float:
    mean = np.sum(w * y) / np.sum(w)
    return float(np.sum(w * (y - mean) ** 2))


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def variability_metrics(time: ArrayLike, flux: ArrayLike, flux_err: ArrayLike) -> dict[str, Any]:
    """Classical variability indices of a light curve.

    Non-finite points (and points with non-positive errors) are ignored.

    Parameters
    ----------
    time, flux, flux_err : array_like
        One-dimensional arrays of equal length (days, any flux unit, same unit as ``flux``).

    Returns
    -------
    dict
        ``n_points``; ``amplitude`` = (max - min) / median; ``amplitude_robust`` =
        (p95 - p5) / median; ``reduced_chi2`` about the weighted mean; ``stetson_j`` (Stetson
        1996, single-band form with consecutive pairs closer than 3 cadences, the per-point
        form when there are few such pairs; ~0 for a constant star with correct errors);
        ``mad`` = median(|flux / median - 1|); ``von_neumann`` = mean squared successive
        difference / variance (~2 for white noise); ``skewness``; ``snr`` = median flux /
        median error.

    Raises
    ------
    ValueError
        On arrays of different lengths or not one-dimensional.

    Examples
    --------
    >>> m = variability_metrics([0, 1, 2, 3], [9.0, 11.0, 9.0, 11.0], [1.0, 1.0, 1.0, 1.0])
    >>> m["amplitude"], m["reduced_chi2"], m["snr"]
    (0.2, 1.3333333333333333, 10.0)
    """
    t, f, e = _check_inputs(time, flux, flux_err)
    if e is None:  # pragma: no cover - guarded by the signature
        raise ValueError("flux_err is required")
    ok = np.isfinite(t) & np.isfinite(f) & np.isfinite(e) & (e > 0)
    t, f, e = t[ok], f[ok], e[ok]
    order = np.argsort(t, kind="stable")
    t, f, e = t[order], f[order], e[order]
    n = int(f.size)
    out: dict[str, Any] = {
        "n_points": n,
        "amplitude": _NAN,
        "amplitude_robust": _NAN,
        "reduced_chi2": _NAN,
        "stetson_j": _NAN,
        "mad": _NAN,
        "von_neumann": _NAN,
        "skewness": _NAN,
        "snr": _NAN,
    }
    if n < 3:
        return out
    med = float(np.median(f))
    if med > 0:
        p5, p95 = np.percentile(f, [5.0, 95.0])
        out["amplitude"] = float((f.max() - f.min()) / med)
        out["amplitude_robust"] = float((p95 - p5) / med)
        out["mad"] = float(np.median(np.abs(f / med - 1.0)))
        out["snr"] = float(med / np.median(e))
    w = 1.0 / (e * e)
    mean_w = float(np.sum(w * f) / np.sum(w))
    out["reduced_chi2"] = float(np.sum(w * (f - mean_w) ** 2) / (n - 1))
    # Stetson J: delta_i = sqrt(n / (n - 1)) (f_i - mean) / sigma_i.
    delta = math.sqrt(n / (n - 1)) * (f - mean_w) / e
    dt = np.diff(t)
    cadence = _median_cadence(t)
    pair = dt <= 3.0 * cadence if math.isfinite(cadence) else np.zeros(n - 1, bool)
    if pair.sum() >= max(2, n // 4):
        prod = delta[:-1][pair] * delta[1:][pair]
    else:
        prod = delta * delta - 1.0
    out["stetson_j"] = float(np.mean(np.sign(prod) * np.sqrt(np.abs(prod))))
    var = float(np.var(f, ddof=1))
    if var > 0:
        out["von_neumann"] = float(np.sum(np.diff(f) ** 2) / (n - 1) / var)
        out["skewness"] = float(stats.skew(f))
    else:
        out["skewness"] = 0.0
    return out


# --------------------------------------------------------------------------------------------
# Flares and outliers
# --------------------------------------------------------------------------------------------


def detect_flares(time: ArrayLike, flux: ArrayLike, *, sigma: float = _FLARE_SIGMA) -> FlareSearch:
    """Find flares and isolated upward outliers in a (normalised, time-sorted) light curve.

    The flux is compared with a running median over ~0.1 d (at least 7 points). A *flare* is a
    run of at least two consecutive points above 3 sigma whose peak exceeds ``sigma`` and comes
    early in the run (fast rise, slower decay); an *outlier* is a single point above ``sigma``
    whose neighbours are not high. Downward excursions are never flagged. When more than
    ten such runs are found they are taken as variability, not flares.

    Examples
    --------
    >>> t = np.arange(500) * 0.01
    >>> f = 1 + 0.001 * np.random.default_rng(1).normal(size=500)
    >>> f[200:205] += [0.05, 0.03, 0.018, 0.01, 0.006]
    >>> f[300] += 0.02
    >>> fs = detect_flares(t, f)
    >>> fs.n_flares, int(fs.outlier_mask.sum()), bool(fs.flare_mask[201])
    (1, 1, True)
    """
    t = _as_float_array("time", time)
    y = _as_float_array("flux", flux)
    n = y.size
    none = np.zeros(n, dtype=bool)
    if n < MIN_POINTS:
        return FlareSearch(0, 0.0, none, none.copy(), _NAN)
    cadence = _median_cadence(t)
    size = min(_odd(max(7.0, 0.1 / cadence)) if math.isfinite(cadence) else 7, _odd(n / 2))
    base = ndimage.median_filter(y, size=size, mode="nearest")
    resid = y - base
    noise = _mad_std(resid)
    if not noise > 0:
        return FlareSearch(0, 0.0, none, none.copy(), noise)
    # Local noise (running MAD over ~0.2 d): a stretch of bad pointing is noisy both ways and
    # must not look like flares; a flare barely moves the median of |residual| around it.
    size_noise = min(_odd(max(15.0, 0.2 / cadence)), _odd(n / 2))
    local = 1.4826 * ndimage.median_filter(np.abs(resid), size=size_noise, mode="nearest")
    z = resid / np.maximum(local, noise)
    high = z > _FLARE_RUN_SIGMA
    if not high.any():
        return FlareSearch(0, 0.0, none, none.copy(), noise)
    # Runs of consecutive high points (a gap in time breaks a run).
    gap = np.ones(n, dtype=bool)
    gap[1:] = np.diff(t) > 3.0 * cadence
    starts = np.flatnonzero(high & (gap | ~np.r_[False, high[:-1]]))
    ends = np.flatnonzero(high & (np.r_[gap[1:], True] | ~np.r_[high[1:], False])) + 1
    flare_mask = none.copy()
    outlier_mask = none.copy()
    events: list[tuple[int, int, float]] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        peak = float(z[s:e].max())
        if peak < sigma:
            continue
        if e - s == 1:
            outlier_mask[s] = True
            continue
        rise = int(np.argmax(z[s:e]))
        # A flare rises fast and stands alone: no deep low point right around it (a noisy
        # stretch of bad pointing scatters both ways).
        pad = 2 * (e - s) + 3
        quiet = float(z[max(0, s - pad) : min(n, e + pad)].min()) > -_FLARE_RUN_SIGMA - 1.0
        if rise <= max(1, int(0.4 * (e - s))) and quiet:
            events.append((int(s), int(e), peak))
    if len(events) > _FLARE_MAX_EVENTS:
        events = []
    for s, e, _ in events:
        flare_mask[s : min(n, e + (e - s))] = True  # the run and a decay tail as long again
    if outlier_mask.sum() > max(3, 0.02 * n):  # too many to be outliers: leave them alone
        outlier_mask[:] = False
    max_sigma = max((p for _, _, p in events), default=0.0)
    return FlareSearch(len(events), float(max_sigma), flare_mask, outlier_mask, noise)


# --------------------------------------------------------------------------------------------
# Lomb-Scargle
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _LSPeak:
    frequency: float
    power: float
    fap: float
    power_ratio: float
    alias_rejected: bool


def _ls_search(
    t: FloatArray, y: FloatArray, dy: FloatArray, fmin: float, fmax: float, oversample: int
) -> _LSPeak | None:
    span = t[-1] - t[0]
    if not (fmax > fmin > 0) or span <= 0:
        return None
    df = 1.0 / (oversample * span)
    nf = int((fmax - fmin) / df) + 1
    if nf > _LS_MAX_FREQUENCIES:
        df = (fmax - fmin) / _LS_MAX_FREQUENCIES
        nf = _LS_MAX_FREQUENCIES + 1
    if nf < 3:
        return None
    freq = fmin + df * np.arange(nf)
    ls = LombScargle(t, y, dy)
    power = ls.power(freq, method="fast", assume_regular_frequency=True)
    power = np.nan_to_num(power, nan=0.0)
    # Local maxima, strongest first.
    interior = (power[1:-1] >= power[:-2]) & (power[1:-1] >= power[2:])
    peaks = np.flatnonzero(interior) + 1
    if peaks.size == 0:
        peaks = np.array([int(np.argmax(power))])
    peaks = peaks[np.argsort(power[peaks])[::-1][:20]]
    best = int(peaks[0])
    rejected = False
    all_aliases = True
    for i in peaks:
        if power[i] >= _STRONG_LS_POWER or not _systematic_alias(1.0 / freq[i]):
            best = int(i)
            all_aliases = False
            break
        rejected = True
    # Refine the peak with the exact periodogram on a fine local grid, then a parabola.
    fine = freq[best] + df * np.linspace(-1.5, 1.5, 31)
    fine = fine[(fine > 0)]
    pfine = ls.power(fine, method="cython")
    j = int(np.argmax(pfine))
    f_best, p_best = float(fine[j]), float(pfine[j])
    if 0 < j < fine.size - 1:
        y0, y1, y2 = pfine[j - 1], pfine[j], pfine[j + 1]
        denom = y0 - 2 * y1 + y2
        if denom < 0:
            shift = 0.5 * (y0 - y2) / denom
            f_best = float(fine[j] + shift * (fine[1] - fine[0]))
            p_best = float(max(p_best, y1 - 0.25 * (y0 - y2) * shift))
    p_best = min(p_best, 1.0)
    fap = float(
        ls.false_alarm_probability(
            p_best, method="baluev", minimum_frequency=fmin, maximum_frequency=fmax
        )
    )
    # Peak power over the local mean power (robust: median / ln 2), excluding the peak itself.
    half = max(1.0, 25.0 / span)
    near = (np.abs(freq - f_best) <= half) & (np.abs(freq - f_best) > 3.0 / span)
    local = power[near]
    mean_local = float(np.median(local)) / math.log(2.0) if local.size > 10 else _NAN
    ratio = p_best / mean_local if mean_local > 0 else math.inf
    if all_aliases:  # nothing but weak systematics among the strongest peaks
        fap = 1.0
    return _LSPeak(f_best, p_best, min(max(fap, 0.0), 1.0), float(ratio), rejected)


# --------------------------------------------------------------------------------------------
# Box least squares
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BoxFit:
    period: float  # after the odd/even decision
    box_period: float  # the period of the box itself (half ``period`` after odd/even doubling)
    duration: float
    t0: float  # a primary (deeper) event
    depth: float
    depth_err: float  # with the red-noise factor
    snr: float  # after the red-noise correction
    beta: float
    delta_chi2: float
    power: float  # fraction of chi^2 explained
    fap: float
    n_transits: int
    depth_odd: float
    depth_even: float
    doubled: bool
    doubling_reason: str
    depth_secondary: float
    secondary_snr: float
    secondary_phase: float
    sine_delta_chi2: float
    oot_chi2: float
    loo_snr: float  # S/N without the strongest event
    few_events_consistent: bool  # <= 3 events: similar depths, >= 2 points each
    alias_rejected: bool


def _bin_for_bls(
    t: FloatArray, y: FloatArray, dy: FloatArray, width: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    idx = np.floor((t - t[0]) / width).astype(np.int64)
    w = 1.0 / (dy * dy)
    n = int(idx[-1]) + 1
    sw = np.bincount(idx, w, n)
    keep = sw > 0
    tb = np.bincount(idx, w * t, n)[keep] / sw[keep]
    yb = np.bincount(idx, w * y, n)[keep] / sw[keep]
    return tb, yb, 1.0 / np.sqrt(sw[keep])


def _box_stats(
    t: FloatArray, y: FloatArray, w: FloatArray, period: float, duration: float, t0: float
) -> dict[str, float] | None:
    """Depths (primary, odd, even, phase 0.5), transit count, red noise and flatness."""
    hp = 0.5 * period
    dphase = np.abs((t - t0 + hp) % period - hp)
    m_in = dphase < 0.5 * duration
    m_out = ~m_in
    if m_in.sum() < 1 or m_out.sum() < 3:
        return None

    def level(mask: npt.NDArray[np.bool_]) -> tuple[float, float]:
        sw = float(np.sum(w[mask]))
        if sw <= 0:
            return _NAN, math.inf
        return float(np.sum(w[mask] * y[mask]) / sw), 1.0 / sw

    y_out, v_out = level(m_out)
    y_in, v_in = level(m_in)
    depth = y_out - y_in
    depth_err = math.sqrt(v_in + v_out)
    cycle = np.round((t - t0) / period).astype(np.int64)
    odd = m_in & (cycle % 2 == 1)
    even = m_in & (cycle % 2 == 0)
    y_odd, v_odd = level(odd) if odd.any() else (_NAN, math.inf)
    y_even, v_even = level(even) if even.any() else (_NAN, math.inf)
    m_sec = np.abs(dphase - hp) < 0.5 * duration
    # "Out of transit" for the baseline, red noise and flatness: away from the box's wings
    # (an eclipse is often wider than its best box) and from phase 0.5.
    wing = min(1.5 * duration, 0.2 * period)
    oot = (dphase > wing) & (np.abs(dphase - hp) > wing)
    y_base, v_base = level(oot) if oot.sum() >= 3 else (y_out, v_out)
    y_sec, v_sec = level(m_sec) if m_sec.any() else (_NAN, math.inf)
    depth_sec = y_base - y_sec
    sec_err = math.sqrt(v_sec + v_base)
    ids, inv = np.unique(cycle[m_in], return_inverse=True)
    n_transits = int(ids.size)
    w_ev = np.bincount(inv, w[m_in])
    y_ev = np.bincount(inv, w[m_in] * y[m_in]) / np.where(w_ev > 0, w_ev, 1.0)
    # chi^2 that one depth per event would gain over one depth for all (depth consistency)
    inconsistency = float(np.sum(w_ev * (y_ev - y_in) ** 2))
    d_ev = y_out - y_ev
    n_ev = np.bincount(inv)
    event_ratio = float(d_ev.max() / d_ev.min()) if d_ev.min() > 0 else math.inf
    # Leave out the event that contributes most: is the rest still a dip?
    loo_snr = _NAN
    if n_transits >= 2:
        contrib = w_ev * (y_out - y_ev) * np.abs(y_out - y_ev)
        drop = int(np.argmax(contrib))
        w_rest = float(np.sum(w_ev) - w_ev[drop])
        if w_rest > 0:
            y_rest = float((np.sum(w_ev * y_ev) - w_ev[drop] * y_ev[drop]) / w_rest)
            loo_snr = (y_out - y_rest) / math.sqrt(1.0 / w_rest + v_out)
    n_odd = int(np.unique(cycle[odd]).size)
    n_even = int(np.unique(cycle[even]).size)
    # Red noise: scatter of out-of-transit means over bins of one duration vs white noise.
    beta = 1.0
    r = y[oot] - y_base
    if r.size > 20:
        idx = np.floor((t[oot] - t[0]) / duration).astype(np.int64)
        wo = w[oot]
        sw = np.bincount(idx, wo)
        good = np.bincount(idx) >= 2
        if good.sum() >= 8:  # robust: other eclipses or flares in a few bins do not count
            means = np.bincount(idx, wo * r)[good] / sw[good]
            expected = float(np.median(1.0 / np.sqrt(sw[good])))
            beta = max(1.0, _mad_std(means) / expected)
    oot_chi2 = float(np.sum(w[oot] * r * r) / max(r.size - 1, 1)) if r.size > 1 else _NAN
    # A sinusoid at the same period, for the box-versus-sine comparison.
    x = _fourier_design(t, 1.0 / period, 1, t0)
    _, chi2_sine = _wlstsq(x, y, w)
    chi2_0 = _chi2_const(y, w)
    return {
        "depth": depth,
        "depth_err": depth_err,
        "depth_odd": y_out - y_odd,
        "depth_odd_err": math.sqrt(v_odd + v_out),
        "depth_even": y_out - y_even,
        "depth_even_err": math.sqrt(v_even + v_out),
        "depth_secondary": depth_sec,
        "secondary_snr": depth_sec / sec_err if sec_err > 0 else _NAN,
        "n_transits": n_transits,
        "n_odd": n_odd,
        "n_even": n_even,
        "beta": beta,
        "oot_chi2": oot_chi2,
        "sine_delta_chi2": chi2_0 - chi2_sine,
        "chi2_0": chi2_0,
        "box_delta_chi2": depth * depth / (v_in + v_out) if depth > 0 else 0.0,
        "inconsistency": inconsistency,
        "loo_snr": loo_snr,
        "event_ratio": event_ratio,  # deepest / shallowest event
        "min_event_points": int(n_ev.min()),
    }


def _odd_even_differs(st: Mapping[str, float]) -> bool:
    """Do odd and even events differ in depth (> 5 sigma with red noise, and > 3 %)?"""
    diff = abs(st["depth_odd"] - st["depth_even"])
    err = math.hypot(st["depth_odd_err"], st["depth_even_err"]) * st["beta"]
    return bool(
        math.isfinite(diff)
        and diff > _ODD_EVEN_SIGMA * err
        and diff > _ODD_EVEN_MIN_FRACTION * max(st["depth_odd"], st["depth_even"])
    )


def _parity_fit(
    t: FloatArray,
    y: FloatArray,
    w: FloatArray,
    period: float,
    duration: float,
    t0: float,
    exposure: float,
) -> dict[str, float] | None:
    """Odd and even event depths from a symmetric profile fitted to each parity.

    Box means of odd and even events differ when the two sets are sampled at different
    phases (``period / cadence`` near a half-integer and an eclipse a few cadences long). Here
    the profile is piecewise linear in ``|time from mid-event|`` (ten nodes over 1.5 durations)
    and averaged over each exposure, so the sampling of each parity does not bias its depth
    (the profile at mid-event).
    """
    radius = 1.5 * duration + exposure
    x = (t - t0 + 0.5 * period) % period - 0.5 * period
    win = np.abs(x) < radius + 0.25 * duration
    if win.sum() < 24:
        return None
    xs, ys, ws = x[win], y[win], w[win]
    odd = (np.round((t[win] - t0) / period).astype(np.int64) % 2) == 1
    step = max(radius / 8.0, 0.6 * exposure)
    n_nodes = max(3, int(radius / step))
    nodes = step * np.arange(n_nodes)  # the profile is 0 from ``n_nodes * step`` on
    sub = exposure * ((np.arange(5) + 0.5) / 5.0 - 0.5)
    sw = np.sqrt(ws)

    def basis(c: float) -> FloatArray:
        u = np.abs(xs[:, None] + sub[None, :] - c)  # (n, sub)
        hats = np.clip(1.0 - np.abs(u[:, :, None] - nodes[None, None, :]) / step, 0.0, None)
        return hats.mean(axis=1)  # (n, nodes)

    def fit(c: float, split: bool) -> tuple[float, FloatArray, FloatArray]:
        b = basis(c)
        if split:
            a = np.column_stack([np.ones_like(xs), -b * odd[:, None], -b * ~odd[:, None]])
        else:
            a = np.column_stack([np.ones_like(xs), -b])
        coef, *_ = np.linalg.lstsq(a * sw[:, None], ys * sw, rcond=None)
        r = ys - a @ coef
        return float(np.sum(ws * r * r)), coef, a

    shifts = np.linspace(-0.25, 0.25, 11) * duration
    chi = [fit(float(c), False)[0] for c in shifts]
    c_best = float(shifts[int(np.argmin(chi))])
    chi2, coef, a = fit(c_best, True)
    try:
        cov = np.linalg.pinv((a * ws[:, None]).T @ a)
    except np.linalg.LinAlgError:
        return None
    dof = max(int(win.sum()) - a.shape[1], 1)
    inflate = math.sqrt(max(1.0, chi2 / dof))
    # Depth of each parity: its profile averaged over the central half duration.
    u = np.linspace(0.0, 0.5 * duration, 50)
    avg = np.clip(1.0 - np.abs(u[:, None] - nodes[None, :]) / step, 0.0, None).mean(axis=0)
    k = n_nodes
    g_odd = np.zeros(a.shape[1])
    g_odd[1 : 1 + k] = avg
    g_even = np.zeros(a.shape[1])
    g_even[1 + k :] = avg
    return {
        "depth_odd": float(g_odd @ coef),
        "depth_odd_err": math.sqrt(max(float(g_odd @ cov @ g_odd), 0.0)) * inflate,
        "depth_even": float(g_even @ coef),
        "depth_even_err": math.sqrt(max(float(g_even @ cov @ g_even), 0.0)) * inflate,
    }


def _parities_differ(
    st: dict[str, float],
    t: FloatArray,
    y: FloatArray,
    w: FloatArray,
    period: float,
    duration: float,
    t0: float,
) -> bool:
    """Odd/even test: box means first (cheap), then confirmed by :func:`_parity_fit`.

    Updates ``st``'s odd/even depths with the fitted ones when the fit runs.
    """
    if not _odd_even_differs(st):
        return False
    cadence = _median_cadence(t)
    fit = _parity_fit(t, y, w, period, duration, t0, cadence if math.isfinite(cadence) else 0.0)
    if fit is None:
        return True
    st.update(fit)
    # The fit's errors already carry the excess scatter around the events: no beta on top.
    return _odd_even_differs({**st, "beta": 1.0})


def _submultiple_consistent(
    t: FloatArray, y: FloatArray, w: FloatArray, period: float, duration: float, t0: float, k: int
) -> bool:
    """Are the events that ``period / k`` adds unobserved or as deep as the others?"""
    sub = period / k
    if duration >= 0.5 * sub:
        return False
    hp = 0.5 * sub
    m_in = np.abs((t - t0 + hp) % sub - hp) < 0.5 * duration
    cycle = np.round((t - t0) / sub).astype(np.int64)
    new = m_in & (cycle % k != 0)
    old = m_in & (cycle % k == 0)
    wing = min(1.5 * duration, 0.2 * sub)
    out = np.abs((t - t0 + hp) % sub - hp) > wing
    if old.sum() < 1 or out.sum() < 3:
        return False
    if new.sum() < 3:
        return True
    base = float(np.sum(w[out] * y[out]) / np.sum(w[out]))
    d_old = base - float(np.sum(w[old] * y[old]) / np.sum(w[old]))
    d_new = base - float(np.sum(w[new] * y[new]) / np.sum(w[new]))
    err = math.sqrt(1.0 / np.sum(w[old]) + 1.0 / np.sum(w[new]))
    return bool(abs(d_new - d_old) < max(5.0 * err, 0.1 * abs(d_old)))


def _secondary_search(
    t: FloatArray, y: FloatArray, dy: FloatArray, period: float, duration: float, t0: float
) -> tuple[float, float, float, float, npt.NDArray[np.bool_]]:
    """Deepest box at any other phase than the primary's.

    Returns (depth, depth / error, time of mid-event, duration, mask of the points used), NaNs
    when there is no room for a second box.
    """
    hp = 0.5 * period
    dphase = np.abs((t - t0 + hp) % period - hp)
    cadence = _median_cadence(t)
    keep = dphase > min(1.5 * duration + cadence, 0.2 * period)
    durations = np.geomspace(0.5 * duration, 2.0 * duration, 5)
    durations = durations[durations < 0.4 * period]
    if keep.sum() < 20 or durations.size == 0:
        return _NAN, _NAN, _NAN, _NAN, keep
    res = BoxLeastSquares(t[keep], y[keep], dy[keep]).power(
        np.array([period]), durations, objective="likelihood", oversample=5
    )
    depth = float(res.depth[0])
    err = float(res.depth_err[0])
    snr = depth / err if err > 0 else _NAN
    return depth, snr, float(res.transit_time[0]), float(res.duration[0]), keep


def _bls_fap(snr: float, n_trials: float) -> float:
    if not math.isfinite(snr):
        return 1.0
    p = 0.5 * special.erfc(snr / math.sqrt(2.0))
    return float(-math.expm1(-n_trials * p)) if p > 0 else 0.0


@dataclass
class _Candidate:
    period: float
    duration: float
    t0: float
    score: float
    snr: float


def _few_events_consistent(st: Mapping[str, float]) -> bool:
    """A box of three events or fewer needs two points in each and events of one depth:
    within 50 % of each other, or consistent within their errors (chi^2 of the event depths
    about their mean, red noise included, not beyond its 1 % tail); a shallow transit's
    events scatter by noise alone, two eclipses of different depth do not."""
    n = int(st["n_transits"])
    if n > 3:
        return True
    if st["min_event_points"] < 2:
        return False
    if st["event_ratio"] <= 1.5:
        return True
    chi2 = float(st["inconsistency"]) / max(float(st["beta"]), 1.0) ** 2
    return bool(n >= 2 and stats.chi2.sf(chi2, n - 1) > 0.01)


def _score_candidate(
    t: FloatArray, y: FloatArray, dy: FloatArray, period: float, duration: float, t0: float
) -> _Candidate | None:
    """Two-box model at ``period``: primary box plus the best box at any other phase.

    The score is the chi^2 both boxes explain, less what one depth per event would add
    (events of unequal depth in one box point to a wrong period). The right period folds
    every eclipse into the two boxes; a wrong one leaves some out or mixes unequal ones.
    """
    w = 1.0 / (dy * dy)
    st = _box_stats(t, y, w, period, duration, t0)
    if st is None or st["n_transits"] < 2 or not st["depth"] > 0:
        return None

    # The depth-consistency penalty matters for boxes of a few events (pairing the wrong two
    # eclipses of a long-period binary); with many events, sampling alone (an eclipse a couple
    # of cadences long) makes event means scatter, and a wrong period loses events anyway.
    def penalty(stats: Mapping[str, float]) -> float:
        return stats["inconsistency"] if stats["n_transits"] <= 3 else 0.0

    score = st["box_delta_chi2"] - penalty(st)
    depth2, snr2, t2, d2, keep = _secondary_search(t, y, dy, period, duration, t0)
    if math.isfinite(snr2) and snr2 >= _SECONDARY_SNR:
        st2 = _box_stats(t[keep], y[keep], w[keep], period, d2, t2)
        if st2 is not None and st2["depth"] > 0:
            score += max(0.0, st2["box_delta_chi2"] - penalty(st2))
    return _Candidate(period, duration, t0, float(score), st["depth"] / st["depth_err"])


def _bls_search(
    t: FloatArray, y: FloatArray, dy: FloatArray, pmin: float, pmax: float,
    systematic_times: FloatArray | None = None,
) -> _BoxFit | None:
    span = t[-1] - t[0]
    cadence = _median_cadence(t)
    if not (pmax > pmin * 1.05) or t.size < 20 or not math.isfinite(cadence):
        return None
    floor = max(_BLS_FLOOR_DURATION, cadence)
    if cadence < floor / 3.0:
        tb, yb, dyb = _bin_for_bls(t, y, dy, floor / 3.0)
    else:
        tb, yb, dyb = t, y, dy
    bls = BoxLeastSquares(tb, yb, dyb)
    periods: list[FloatArray] = []
    result_cols: dict[str, list[FloatArray]] = {k: [] for k in ("power", "duration", "t0")}
    n_trials = 0.0
    for p_lo, p_hi, d_lo, d_hi in _BLS_SEGMENTS:
        lo, hi = max(p_lo, pmin), min(p_hi, pmax)
        if hi <= lo * 1.001:
            continue
        d_lo = max(d_lo, cadence)
        d_hi = max(min(d_hi, 0.5 * lo), d_lo)
        n_dur = max(1, int(math.ceil(math.log(d_hi / d_lo) / math.log(1.6))) + 1)
        durations = np.geomspace(d_lo, d_hi, n_dur) if n_dur > 1 else np.array([d_lo])
        step = d_lo / (span * _BLS_GRID_OVERSAMPLE)
        freqs = np.exp(np.arange(math.log(1.0 / hi), math.log(1.0 / lo), math.log1p(step)))
        if freqs.size == 0:
            continue
        per = 1.0 / freqs[::-1]
        res = bls.power(per, durations, objective="likelihood", oversample=_BLS_BIN_OVERSAMPLE)
        periods.append(np.asarray(per))
        result_cols["power"].append(np.nan_to_num(np.asarray(res.power), nan=0.0))
        result_cols["duration"].append(np.asarray(res.duration))
        result_cols["t0"].append(np.asarray(res.transit_time))
        n_trials += per.size * _BLS_TRIALS_PER_PERIOD
    if not periods:
        return None
    per = np.concatenate(periods)
    power = np.concatenate(result_cols["power"])
    dur = np.concatenate(result_cols["duration"])
    t0s = np.concatenate(result_cols["t0"])

    # Long periods whose box holds a single event (the others fall in gaps or outside the
    # data) are no periods: drop them before ranking.
    long = per > span / 4.0
    if long.any():
        pl, t0l, dl = per[long], t0s[long], dur[long]
        kmax = int(math.ceil(span / pl.min())) + 1
        k = np.arange(-kmax, kmax + 1)
        tc = t0l[:, None] + k[None, :] * pl[:, None]
        half = 0.5 * dl[:, None]
        n_in = np.searchsorted(tb, tc + half) - np.searchsorted(tb, tc - half)
        n_events = np.sum(n_in > 0, axis=1)
        power[np.flatnonzero(long)[n_events < 2]] = 0.0

    # Candidates: the strongest distinct peaks with two events or more, and twice and half
    # the strongest (a peak is as wide as the phase drift of one duration over the baseline).
    order = np.argsort(power)[::-1]
    rejected = False
    cands: list[_Candidate] = []
    seen: list[tuple[float, float]] = []
    for i in order[:2000]:
        p, d, t0 = float(per[i]), float(dur[i]), float(t0s[i])
        if any(abs(p / q - 1.0) < width for q, width in seen):
            continue
        cand = _score_candidate(tb, yb, dyb, p, d, t0)
        # A valid peak masks its neighbourhood; a one-event plateau only its own grid point.
        seen.append((p, max(0.01, 2.0 * d / span) if cand is not None else 0.002))
        if cand is not None:
            if cand.snr < _STRONG_BLS_SNR and _box_systematic(p, d, t0, t, systematic_times):
                rejected = True
            else:
                cands.append(cand)
        if len(cands) >= 6 or len(seen) >= 40:
            break
    if not cands:
        return None
    p_top, d_top, t0_top = cands[0].period, cands[0].duration, cands[0].t0
    for mult in (2.0, 0.5):
        pm = p_top * mult
        if (
            pmin <= pm <= pmax
            and d_top < 0.5 * pm
            and not any(abs(pm / c.period - 1.0) < 0.01 for c in cands)
        ):
            cand = _score_candidate(tb, yb, dyb, pm, d_top, t0_top)
            if cand is not None and not (
                cand.snr < _STRONG_BLS_SNR
                and _box_systematic(pm, d_top, t0_top, t, systematic_times)
            ):
                cands.append(cand)
    # The best candidate, unless its refined box holds a single event (the refinement moved
    # it onto one eclipse): then the next best.
    while True:
        best = max(cands, key=lambda c: c.score)
        # A multiple of another candidate must explain clearly more (else keep the shorter one).
        for c in sorted(cands, key=lambda c: c.period):
            ratio = best.period / c.period
            if c is not best and ratio > 1.5 and abs(ratio - round(ratio)) < 0.01 * ratio:
                if c.score >= (best.score - 25.0) / 1.02:
                    best = c
                    break
        p, d, t0 = best.period, best.duration, best.t0
        two_box_doubled = abs(p / p_top - 2.0) < 0.02
        # When the extra events of P/2 or P/3 fall in gaps (or agree), prefer the shorter period.
        w_b = 1.0 / (dyb * dyb)
        for factor in (3, 2):
            if p / factor >= pmin and _submultiple_consistent(tb, yb, w_b, p, d, t0, factor):
                p /= factor
                two_box_doubled = False
                break
        # Refine on the unbinned data: fine periods around the peak, durations around the best.
        step = max(d, cadence) / (span * _BLS_GRID_OVERSAMPLE)
        fine_p = p * (1.0 + step * np.linspace(-2.0, 2.0, 41))
        fine_d = np.geomspace(max(d / 1.6, 0.5 * cadence), d * 1.6, 9)
        fine_d = fine_d[fine_d < 0.9 * fine_p.min()]
        if fine_d.size:
            res = BoxLeastSquares(t, y, dy).power(fine_p, fine_d, objective="likelihood", oversample=10)
            j = int(np.nanargmax(np.asarray(res.power)))
            p, d, t0 = float(fine_p[j]), float(res.duration[j]), float(res.transit_time[j])
        w = 1.0 / (dy * dy)
        st = _box_stats(t, y, w, p, d, t0)
        if st is None or not st["depth"] > 0:
            return None
        if st["n_transits"] >= 2 or len(cands) == 1:
            break
        cands = [c for c in cands if c is not best]
    beta = st["beta"]
    snr = st["depth"] / (st["depth_err"] * beta)
    loo_snr = st["loo_snr"] / beta
    doubled = two_box_doubled
    box_period = p
    if not doubled and _parities_differ(st, t, y, w, p, d, t0):
        deeper_odd = st["depth_odd"] > st["depth_even"]
        if (st["n_odd"] if deeper_odd else st["n_even"]) >= 2:
            doubled = True
            box_period = p
            if deeper_odd:
                t0 += p
            p *= 2.0
    depth2, snr2, t2, d2, _ = _secondary_search(t, y, dy, p, d, t0)
    primary_depth = (
        max(st["depth_odd"], st["depth_even"]) if doubled and box_period != p else st["depth"]
    )
    if math.isfinite(snr2) and snr2 >= _SECONDARY_SNR:
        # The box may sit on the wider of two eclipses; the epoch is the deeper one's.
        narrow = min(d, d2)
        here = _box_stats(t, y, w, p, narrow, t0)
        there = _box_stats(t, y, w, p, narrow, t2)
        if here is not None and there is not None and there["depth"] > here["depth"]:
            t0, t2 = t2, t0
            depth2, primary_depth = primary_depth, depth2
    return _BoxFit(
        period=p,
        box_period=box_period,
        duration=d,
        t0=t0,
        depth=primary_depth,
        depth_err=st["depth_err"] * beta,
        snr=snr,
        beta=beta,
        delta_chi2=st["box_delta_chi2"] / beta**2,
        power=float(min(1.0, st["box_delta_chi2"] / st["chi2_0"])) if st["chi2_0"] > 0 else 0.0,
        fap=_bls_fap(snr, n_trials),
        n_transits=int(st["n_transits"]),
        depth_odd=st["depth_odd"],
        depth_even=st["depth_even"],
        doubled=doubled,
        doubling_reason=(
            "two-box model at 2P (eclipses at two phases)"
            if two_box_doubled
            else "odd/even eclipse depths differ"
            if doubled
            else ""
        ),
        depth_secondary=depth2,
        secondary_snr=snr2 / beta if math.isfinite(snr2) else _NAN,
        secondary_phase=float(((t2 - t0) / p) % 1.0) if math.isfinite(t2) else _NAN,
        sine_delta_chi2=st["sine_delta_chi2"],
        oot_chi2=st["oot_chi2"],
        loo_snr=loo_snr,
        few_events_consistent=_few_events_consistent(st),
        alias_rejected=rejected,
    )


# --------------------------------------------------------------------------------------------
# Period search
# --------------------------------------------------------------------------------------------


def _doubling_test(
    t: FloatArray, y: FloatArray, w: FloatArray, period: float
) -> tuple[bool, FloatArray, FloatArray]:
    """Are the odd harmonics of ``2 * period`` real? Returns (verdict, coef at P, coef at 2P).

    The model at ``P`` has four harmonics whose amplitudes may drift linearly and
    quadratically over the light curve (spots evolve; a drifting amplitude makes alternate
    cycles differ a little); the model at ``2P`` adds the four odd harmonics of ``2P``. An
    F-test on the residuals (p < 1e-6) and odd harmonics at least 2 % of the even ones
    double the period: unequal minima of a binary, two different spots.
    """
    k = _DOUBLING_HARMONICS
    t_ref = float(t[0])
    span = float(t[-1] - t[0]) or 1.0
    tau = (t - 0.5 * (t[0] + t[-1])) / span
    base = _fourier_design(t, 1.0 / period, k, t_ref)  # [1, cos1, sin1, ..., cos k, sin k]
    drift = np.column_stack([base * tau[:, None], base * (tau * tau)[:, None]])
    x1 = np.column_stack([base, drift])
    half = _fourier_design(t, 0.5 / period, 2 * k, t_ref)
    odd_cols = np.concatenate([[1 + 4 * j, 2 + 4 * j] for j in range(k)])  # harmonics 1, 3, ..
    x2 = np.column_stack([x1, half[:, odd_cols]])
    _, chi1 = _wlstsq(x1, y, w)
    c2, chi2 = _wlstsq(x2, y, w)
    c1, _ = _wlstsq(base, y, w)
    c_half, _ = _wlstsq(half, y, w)
    dof2 = t.size - x2.shape[1]
    if dof2 <= 2 * k or chi2 <= 0:
        return False, c1, c_half
    fstat = ((chi1 - chi2) / (2 * k)) / (chi2 / dof2)
    logp = stats.f.logsf(fstat, 2 * k, dof2) / math.log(10.0)
    odd = c2[x1.shape[1] :]
    even = c1[1:]
    ratio = float(np.sqrt(np.sum(odd**2) / max(np.sum(even**2), 1e-300)))
    verdict = bool(logp < _DOUBLING_LOG10P and ratio > _DOUBLING_MIN_RATIO)
    if verdict:
        # Another signal (a second pulsation mode) leaks into any added regressor: the
        # strongest peak left after the model at P must be an odd harmonic of 2P itself.
        c_p, _ = _wlstsq(x1, y, w)
        resid = y - x1 @ c_p
        cadence = _median_cadence(t)
        fmax = min(0.5 / cadence, _MAX_FREQUENCY) if math.isfinite(cadence) else 0.0
        peak = _ls_search(t, resid, 1.0 / np.sqrt(w), 1.0 / span, fmax, 2)
        if peak is None:
            return False, c1, c_half
        odd_freqs = (2 * np.arange(k) + 1) * 0.5 / period
        verdict = bool(np.min(np.abs(odd_freqs - peak.frequency)) < 2.0 / span)
    return verdict, c1, c_half


def _fraction_below_mid(coef: FloatArray) -> tuple[float, float]:
    """Fraction of the cycle below mid-light, and the phase of minimum, of a Fourier model."""
    ph = np.linspace(0.0, 1.0, 1000, endpoint=False)
    curve = _fourier_curve(coef, ph)
    mid = 0.5 * (curve.max() + curve.min())
    return float(np.mean(curve < mid)), float(ph[int(np.argmin(curve))])


def _asymmetry(coef: FloatArray) -> float:
    """RMS of the part of a Fourier model antisymmetric about its minimum, over its RMS."""
    ph = np.linspace(0.0, 1.0, 1000, endpoint=False)
    curve = _fourier_curve(coef, ph)
    i0 = int(np.argmin(curve))
    mirrored = np.roll(curve[::-1], 2 * i0 + 1)  # curve(2 * phi_min - phi)
    anti = 0.5 * (curve - mirrored)
    spread = float(np.std(curve))
    return float(np.sqrt(np.mean(anti**2)) / spread) if spread > 0 else _NAN


def _refine_frequency(t: FloatArray, y: FloatArray, w: FloatArray, f0: float) -> float:
    """Frequency of two harmonics under a slowly changing amplitude (spots evolve).

    Lomb-Scargle's single sinusoid of constant amplitude is pulled off the true frequency when
    the amplitude changes over the few cycles of a slow rotator. Here the model is
    ``(1 + a1 tau + a2 tau^2) * (two harmonics)``, fitted by nonlinear least squares over the
    frequency and the envelope (the harmonics are solved linearly). The result is kept if it
    lies within one grid step of ``f0`` and fits better.
    """
    from scipy.optimize import least_squares

    span = float(t[-1] - t[0])
    if t.size < 30 or span <= 0:
        return f0
    tau = (t - 0.5 * (t[0] + t[-1])) / span
    sw = np.sqrt(w)
    t_ref = float(t[0])

    def resid(params: FloatArray) -> FloatArray:
        f, a1, a2 = params
        base = _fourier_design(t, f, 2, t_ref)
        env = 1.0 + a1 * tau + a2 * tau * tau
        x = np.column_stack([base[:, 0], base[:, 1:] * env[:, None]])
        coef, _ = _wlstsq(x, y, w)
        return (y - x @ coef) * sw

    step = 1.0 / (_LS_OVERSAMPLE * span)
    try:
        fit = least_squares(
            resid,
            np.array([f0, 0.0, 0.0]),
            x_scale=np.array([0.05 * step, 0.1, 0.1]),
            bounds=([f0 - step, -1.5, -1.5], [f0 + step, 1.5, 1.5]),
            max_nfev=60,
        )
    except (ValueError, np.linalg.LinAlgError):
        return f0
    f = float(fit.x[0])
    if not np.isfinite(f) or 2.0 * fit.cost > float(np.sum(resid(np.array([f0, 0.0, 0.0])) ** 2)):
        return f0
    return f


def find_period(
    time: ArrayLike,
    flux: ArrayLike,
    flux_err: ArrayLike | None = None,
    *,
    min_period: float | None = None,
    max_period: float | None = None,
    systematic_times: ArrayLike | None = None,
) -> PeriodResult:
    """Best period of a light curve from Lomb-Scargle and box least squares.

    Errors: scaled up to the point-to-point scatter when that is larger (after removing a
    significant periodic signal), and per point to the running scatter over ~2 d (second
    differences, blind to eclipse ingresses), so stretches of bad pointing weigh little.

    Lomb-Scargle (astropy, ``method="fast"``) runs on a frequency grid oversampled five times
    from 2/baseline to the Nyquist frequency of the median cadence; the best peak is refined
    with the exact periodogram on a fine local grid and a parabola (the result is not a grid
    value), then by a fit of two harmonics under a slowly changing amplitude (spot evolution
    pulls a single sinusoid off a slow rotator's period); its false alarm probability is
    Baluev's. A peak at a TESS systematic period
    (13.7 d, its harmonics, ~3.1 d: :data:`TESS_SYSTEMATIC_PERIODS`) is skipped unless it explains
    at least half the variance. A significant peak also stands out of the periodogram around it
    (power over local mean >= 8), which rejects red noise.

    Box least squares (astropy) runs on the flux divided by a 2-day running median, binned to
    5 min, over three period ranges with duration grids from the cadence to 0.6 d, the period
    grid spaced so the phase drifts by less than 2/3 of the shortest box over the baseline.
    Periods whose box would hold a single event are dropped. The strongest distinct peaks
    (and twice and half the strongest) are ranked by a two-box model: the primary box plus the
    best box at any other phase (a secondary eclipse, eccentric or not), less the gain of one
    depth per event when a box holds three events or fewer (so two eclipses of unequal depth
    are not paired). A multiple of another candidate must do clearly better; when the extra
    events of P/2 or P/3 fall in gaps, the shorter period is kept. The winner is refined on the
    unbinned data. Its S/N is corrected for red noise (robust scatter of out-of-transit means
    over one duration); its false alarm probability is the Gaussian tail of that S/N times an
    effective number of trials calibrated on white noise. A box is adopted when its FAP is
    below :data:`FAP_THRESHOLD`, it has two events or more, it stays significant without its
    strongest event (S/N >= 4), with at most three events they agree in depth within 50 %
    and have two points each, a box fits better than a sinusoid at its period, and it explains
    more than the Lomb-Scargle sinusoid in both the detrended and the raw flux.

    ``P`` versus ``2P``: a box's odd and even events are compared with a symmetric profile
    averaged over each exposure and fitted to each parity (box means would differ by sampling
    alone); depths differing by > 5 sigma and 3 % double the period. A Lomb-Scargle period up to
    1 d is doubled when the odd harmonics of ``2P`` are real (F-test, p < 1e-6, of a
    4-harmonic series at ``P`` with amplitudes drifting over the sector against one with the
    odd harmonics of ``2P`` added: unequal minima), or, between 0.1 and 0.5 d, for the shape of
    a contact binary (less than 42 % of the cycle below mid-light, symmetric minima, an
    amplitude of 4 % or more).

    Parameters
    ----------
    time, flux : array_like
        Times (days) and fluxes; non-finite points are ignored, the flux is divided by its
        median.
    flux_err : array_like, optional
        Uncertainties; missing or non-finite ones are replaced by the point-to-point scatter,
        and all are scaled up when the point-to-point scatter is larger.
    min_period, max_period : float, optional
        Period limits in days (defaults: two cadences, and half the baseline for Lomb-Scargle;
        0.2 d and the whole baseline for box least squares, which needs two events).
    systematic_times : array_like, optional
        Times of known instrumental events (momentum dumps). A box whose events coincide
        with them is rejected as a systematic (unless strong); with them given, a box with a
        period near a systematic one is no longer rejected for its period alone (a transit
        may well have a period near 3.1 d). Without them, the box's period must stay out of
        :data:`TESS_SYSTEMATIC_PERIODS`.

    Returns
    -------
    PeriodResult

    Examples
    --------
    >>> rng = np.random.default_rng(3)
    >>> t = np.arange(0.0, 27.0, 600 / 86400)
    >>> flux = 1 - 0.01 * (np.abs((t - 0.7 + 1.0) % 2.0 - 1.0) < 0.06) + rng.normal(0, 1e-3, t.size)
    >>> pr = find_period(t, flux, np.full(t.size, 1e-3))
    >>> pr.method, round(pr.period, 2), pr.significant
    ('BLS', 2.0, True)
    """
    t, f, e = _check_inputs(time, flux, flux_err)
    ok = np.isfinite(t) & np.isfinite(f)
    t, f = t[ok], f[ok]
    e = e[ok] if e is not None else None
    order = np.argsort(t, kind="stable")
    t, f = t[order], f[order]
    e = e[order] if e is not None else None
    n = t.size
    nothing = PeriodResult(_NAN, _NAN, 1.0, "LS", _NAN, False)
    if n < MIN_POINTS:
        return nothing
    med = float(np.median(f))
    if not med > 0:
        return nothing
    y = f / med
    noise = _p2p_noise(y)
    if e is not None:
        e = e / med
        bad = ~(np.isfinite(e) & (e > 0))
        if bad.all():
            e = None
        elif bad.any():
            e = e.copy()
            e[bad] = np.median(e[~bad])
    if e is None:
        e = np.full(n, noise if noise > 0 else 1.0)
    span = float(t[-1] - t[0])
    cadence = _median_cadence(t)
    if not (span > 0 and math.isfinite(cadence)):
        return nothing
    # Error scale from the residuals of a quick periodic fit (fast signals inflate raw p2p).
    scale = 1.0
    if noise > 0:
        scale = max(1.0, noise / float(np.median(e)))
    # Stretches noisier than the rest (bad pointing, scattered light) get larger errors.
    local = _local_noise_ratio(t, y)
    dy = e * scale * local
    w = 1.0 / (dy * dy)

    # --- Lomb-Scargle -----------------------------------------------------------------------
    fmax = min(0.5 / cadence, _MAX_FREQUENCY)
    if min_period:
        fmax = min(fmax, 1.0 / min_period)
    p_ls_max = span / 2.0 if max_period is None else min(max_period, span)
    fmin = 1.0 / p_ls_max if p_ls_max > 0 else _NAN
    ls = _ls_search(t, y, dy, fmin, fmax, _LS_OVERSAMPLE)
    ls_ok = False
    ls_period = _NAN
    if ls is not None:
        ls_period = 1.0 / ls.frequency
        ls_ok = ls.fap < FAP_THRESHOLD and ls.power_ratio >= _LS_MIN_POWER_RATIO
        if ls_ok:  # refine the noise scale with the periodic signal removed
            x = _fourier_design(t, ls.frequency, 3, float(t[0]))
            coef, _ = _wlstsq(x, y, w)
            resid_noise = _p2p_noise(y - x @ coef)
            if resid_noise > 0:
                scale = max(1.0, resid_noise / float(np.median(e)))
                dy = e * scale * local
                w = 1.0 / (dy * dy)

    # --- Box least squares on the detrended flux ---------------------------------------------
    b_min = max(_BLS_MIN_PERIOD, min_period or 0.0, 3.0 * cadence)
    b_max = span if max_period is None else min(max_period, span)
    trend = _running_trend(t, y, _DETREND_WINDOW)
    yd = y / trend
    sys_times = None if systematic_times is None else np.sort(
        np.asarray(systematic_times, dtype=np.float64).ravel())
    box = _bls_search(t, yd, dy, b_min, b_max, sys_times)
    box_ok = False
    if box is not None:
        box_ok = (
            box.fap < FAP_THRESHOLD
            and box.n_transits >= 2
            and box.loo_snr >= _BLS_MIN_LOO_SNR
            and box.few_events_consistent
            and box.sine_delta_chi2 < box.delta_chi2 * box.beta**2
            and box.duration / box.period <= 0.3
        )
        if box_ok and ls_ok and ls is not None:
            # The box must also explain more than the Lomb-Scargle sinusoid, both in the
            # detrended flux and in the flux itself (where a slow rotator's signal lives and
            # its detrending residuals can look like boxes).
            x = _fourier_design(t, ls.frequency, 1, float(t[0]))
            for series in (yd, y):
                _, chi2_sine = _wlstsq(x, series, w)
                sine_gain = _chi2_const(series, w) - chi2_sine
                st = _box_stats(t, series, w, box.box_period, box.duration, box.t0)
                box_gain = st["box_delta_chi2"] if st is not None else 0.0
                box_ok = box_ok and box_gain >= sine_gain

    common: dict[str, Any] = {
        "noise_scale": float(scale),
        "ls_period": float(ls_period),
        "ls_power": float(ls.power) if ls else _NAN,
        "ls_fap": float(ls.fap) if ls else 1.0,
        "ls_power_ratio": float(ls.power_ratio) if ls else _NAN,
    }
    if box is not None:
        common.update(
            bls_period=box.box_period,
            bls_power=box.power,
            bls_fap=box.fap,
            bls_snr=box.snr,
            bls_depth=box.depth,
            bls_duration=box.duration,
            bls_n_transits=box.n_transits,
            red_noise_beta=box.beta,
        )

    if box_ok and box is not None:
        return PeriodResult(
            period=float(box.period),
            power=box.power,
            false_alarm_probability=box.fap,
            method="BLS",
            epoch=_first_epoch(box.t0, box.period, float(t[0])),
            significant=True,
            amplitude=float(box.depth),
            delta_chi2=box.delta_chi2,
            doubled=box.doubled,
            doubling_reason=box.doubling_reason,
            alias_rejected=box.alias_rejected,
            depth_odd=float(box.depth_odd),
            depth_even=float(box.depth_even),
            depth_secondary=float(box.depth_secondary),
            secondary_snr=float(box.secondary_snr),
            secondary_phase=float(box.secondary_phase),
            out_of_transit_chi2=box.oot_chi2,
            **common,
        )

    if ls is None:
        return PeriodResult(_NAN, _NAN, 1.0, "LS", _NAN, False, **common)
    if not ls_ok:
        return PeriodResult(
            _NAN, ls.power, ls.fap, "LS", _NAN, False, alias_rejected=ls.alias_rejected, **common
        )

    period = ls_period = 1.0 / _refine_frequency(t, y, w, ls.frequency)
    doubled, c1, c2 = _doubling_test(t, y, w, period)
    # Alternate cycles of a slow rotator differ as its spots evolve: the doubling is for
    # binaries and ellipsoidal variables (orbit <= 2 d), seen over two doubled cycles at least.
    doubled = doubled and period <= _MAX_DOUBLED_LS_PERIOD and 4.0 * period <= span
    reason = "odd harmonics of 2P (unequal minima)" if doubled else ""
    frac, _ = _fraction_below_mid(c1)
    if (
        not doubled
        and _EW_MIN_LS_PERIOD <= period <= _EW_MAX_LS_PERIOD
        and frac < _EW_MAX_FRACTION_BELOW_MID
        and _asymmetry(c1) < _EW_MAX_ASYMMETRY
        and float(np.ptp(_fourier_curve(c1, np.linspace(0, 1, 200)))) >= _EW_MIN_SHAPE_AMPLITUDE
    ):
        doubled, reason = True, "contact-binary shape (sharp, symmetric minima)"
    t_ref = float(t[0])
    if doubled:
        period *= 2.0
        _, ph_min = _fraction_below_mid(c2)
        epoch = _first_epoch(t_ref + ph_min * period, period, t_ref)
        model = _fourier_curve(c2, np.linspace(0, 1, 1000, endpoint=False))
        x = _fourier_design(t, 1.0 / period, 2 * _DOUBLING_HARMONICS, t_ref)
    else:
        ph = np.linspace(0, 1, 1000, endpoint=False)
        model = _fourier_curve(c1, ph)
        epoch = _first_epoch(t_ref + ph[int(np.argmax(model))] * period, period, t_ref)
        x = _fourier_design(t, 1.0 / period, _DOUBLING_HARMONICS, t_ref)
    _, chi2_model = _wlstsq(x, y, w)
    return PeriodResult(
        period=float(period),
        power=ls.power,
        false_alarm_probability=ls.fap,
        method="LS",
        epoch=epoch,
        significant=True,
        amplitude=float(model.max() - model.min()),
        delta_chi2=float(_chi2_const(y, w) - chi2_model),
        doubled=doubled,
        doubling_reason=reason,
        alias_rejected=ls.alias_rejected,
        fraction_below_mid=frac,
        **common,
    )


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------


def _const_tolerances(n: int) -> tuple[float, float]:
    """Largest reduced chi^2 and |Stetson J| of a constant star with ``n`` points."""
    n = max(n, 2)
    return 1.0 + max(0.25, 6.0 * math.sqrt(2.0 / (n - 1))), max(0.1, 6.0 / math.sqrt(n))


def classify(
    metrics: Mapping[str, Any],
    period: PeriodResult | None,
    *,
    n_flares: int = 0,
    max_flare_sigma: float = 0.0,
) -> tuple[str, float]:
    """Class and score of a light curve from its metrics, period search and flares.

    Rules, in order:

    * fewer than :data:`MIN_POINTS` points: ``UNKNOWN``;
    * a significant box (BLS) period: ``TRANSIT`` when no odd/even difference, no secondary
      eclipse (< 5 sigma at any phase), a short duty cycle (< 10 %) and either shallow (< 3 %)
      or, up to 15 % deep, flat out of transit with a duty cycle < 6 %; otherwise ``EA``;
    * a significant Lomb-Scargle period: ``EW`` when it was doubled (unequal minima or
      contact-binary shape) and the orbital period is < 1 d; ``DSCT`` below 0.25 d; ``ROT``
      otherwise (including doubled periods above 1 d: spotted stars, ellipsoidal variables);
    * no period but flares with a positively skewed flux distribution: ``FLARE``;
    * no period, no flares, reduced chi^2 (errors scaled to the point-to-point scatter) near 1
      and Stetson J small: ``CONST`` (score 0);
    * anything else: ``UNKNOWN`` (variable or noisy without a classifiable signal; score 0).

    The score of a periodic class is the geometric mean of detection strength
    (``1 - exp(-(z - 7) / 30)`` with ``z = sqrt(delta chi^2)``), size (``A / (A + 0.5 %)`` for
    the peak-to-peak amplitude ``A``) and cleanness (fraction of the variance the periodic
    model explains). The score of ``FLARE`` grows with the strongest flare's significance
    (at most 0.8).

    Examples
    --------
    >>> m = {"n_points": 1000, "reduced_chi2": 1.02, "stetson_j": 0.01, "skewness": 0.0}
    >>> classify(m, None)
    ('CONST', 0.0)
    >>> pr = PeriodResult(3.3, 0.9, 1e-30, "LS", 1.0, True, amplitude=0.04, delta_chi2=4e4)
    >>> cls, score = classify(m, pr)
    >>> cls, round(score, 2)
    ('ROT', 0.93)
    """
    n = int(metrics.get("n_points", 0) or 0)
    if n < MIN_POINTS:
        return "UNKNOWN", 0.0
    if period is not None and period.significant and math.isfinite(period.period):
        p = period.period
        if period.method == "BLS":
            duty = period.duty_cycle
            no_secondary = not (period.secondary_snr >= _SECONDARY_SNR)
            flat = not (period.out_of_transit_chi2 > 2.0)
            depth = period.amplitude
            transit = (
                not period.doubled
                and no_secondary
                and duty < _TRANSIT_MAX_DUTY
                and (
                    depth < _TRANSIT_MAX_DEPTH
                    or (depth < _TRANSIT_MAX_DEPTH_NO_SECONDARY and flat and duty < 0.06)
                )
            )
            cls = "TRANSIT" if transit else "EA"
        elif period.doubled and p < _EW_MAX_PERIOD:
            cls = "EW"
        elif p < _DSCT_MAX_PERIOD:
            cls = "DSCT"
        else:
            cls = "ROT"
        z = math.sqrt(max(period.delta_chi2, 0.0))
        s_det = max(0.0, -math.expm1(-(z - 7.0) / 30.0))
        amp = period.amplitude if math.isfinite(period.amplitude) else 0.0
        s_amp = amp / (amp + 0.005) if amp > 0 else 0.0
        s_clean = min(max(period.power, 0.0), 1.0) if math.isfinite(period.power) else 0.0
        score = (s_det * s_amp * s_clean) ** (1.0 / 3.0)
        return cls, float(min(max(score, 0.0), 1.0))
    skew = float(metrics.get("skewness", 0.0) or 0.0)
    if n_flares >= 1 and (skew > 0.5 or max_flare_sigma > 10.0):
        score = 0.8 * max(0.0, -math.expm1(-(max_flare_sigma - _FLARE_SIGMA) / 20.0))
        return "FLARE", float(score)
    scale = period.noise_scale if period is not None else 1.0
    chi2 = float(metrics.get("reduced_chi2", _NAN)) / scale**2
    stetson = abs(float(metrics.get("stetson_j", _NAN))) / scale
    chi2_tol, j_tol = _const_tolerances(n)
    if chi2 <= chi2_tol and stetson <= j_tol:
        return "CONST", 0.0
    return "UNKNOWN", 0.0


# --------------------------------------------------------------------------------------------
# The whole analysis
# --------------------------------------------------------------------------------------------


def _prewhitened(t: FloatArray, y: FloatArray, e: FloatArray) -> FloatArray:
    """``y`` minus its dominant periodic signal (3 harmonics) when that one is significant."""
    span = t[-1] - t[0]
    cadence = _median_cadence(t)
    if not (span > 0 and math.isfinite(cadence)) or t.size < 30:
        return y
    peak = _ls_search(t, y, e, 2.0 / span, min(0.5 / cadence, _MAX_FREQUENCY), 3)
    if peak is None or peak.fap >= FAP_THRESHOLD:
        return y
    x = _fourier_design(t, peak.frequency, 3, float(t[0]))
    coef, _ = _wlstsq(x, y, 1.0 / (e * e))
    return y - x @ coef + coef[0]


def analyze_lightcurve(
    time: ArrayLike,
    flux: ArrayLike,
    flux_err: ArrayLike | None = None,
    quality: ArrayLike | None = None,
    *,
    bad_bits: int = DEFAULT_BAD_BITS,
    min_period: float | None = None,
    max_period: float | None = None,
) -> VariabilityResult:
    """Metrics, period, class and score of one star's light curve.

    Points with any of ``bad_bits`` set in ``quality``, non-finite values or non-positive
    errors are dropped; the rest are sorted in time and divided by the median flux. Isolated
    single-point upward outliers are clipped (never dips, so eclipses survive) and flares are
    counted and kept out of the period search (see :func:`detect_flares`). Then
    :func:`variability_metrics`, :func:`find_period` and :func:`classify`. The times of
    momentum dumps (``MOMENTUM_DUMP`` in ``quality``) go to :func:`find_period` as
    ``systematic_times``.

    Parameters
    ----------
    time : array_like
        BTJD (days).
    flux, flux_err : array_like
        Flux and its uncertainty (any unit). Missing errors (``None``, all NaN) are estimated
        from the point-to-point scatter.
    quality : array_like of int, optional
        Quality bitmask per point (:mod:`tess_ffi.shared.quality`).
    bad_bits : int
        Bits that make a point unusable.
    min_period, max_period : float, optional
        Passed to :func:`find_period`.

    Returns
    -------
    VariabilityResult
        ``var_class == "UNKNOWN"`` when fewer than :data:`MIN_POINTS` good points remain or
        the median flux is not positive.

    Raises
    ------
    ValueError
        When the arrays are not one-dimensional or differ in length.

    Examples
    --------
    >>> rng = np.random.default_rng(7)
    >>> t = np.arange(0.0, 27.0, 1800 / 86400)
    >>> r = analyze_lightcurve(t, 500 + rng.normal(0, 1, t.size), np.ones(t.size))
    >>> r.var_class, r.score, bool(np.isnan(r.period))
    ('CONST', 0.0, True)
    >>> analyze_lightcurve(t[:5], np.ones(5), np.ones(5)).var_class
    'UNKNOWN'
    """
    t, f, e = _check_inputs(time, flux, flux_err)
    ok = np.isfinite(t) & np.isfinite(f)
    if quality is not None:
        q = np.asarray(quality)
        if q.shape != t.shape:
            raise ValueError(f"time and quality differ in length ({t.size} != {q.size})")
        ok &= good_mask(q, bad_bits)
    if e is not None:
        e_ok = np.isfinite(e) & (e > 0)
        if e_ok[ok].any():
            ok &= e_ok
        else:
            e = None
    dumps = None
    if quality is not None:
        flagged = (np.asarray(quality, dtype=np.int64) & int(QualityFlags.MOMENTUM_DUMP)) != 0
        dumps = t[flagged & np.isfinite(t)]
    t, f = t[ok], f[ok]
    e = e[ok] if e is not None else None
    order = np.argsort(t, kind="stable")
    t, f = t[order], f[order]
    e = e[order] if e is not None else None
    n = int(t.size)
    med = float(np.median(f)) if n else _NAN
    if n < MIN_POINTS or not med > 0:
        return VariabilityResult(**{**_EMPTY_METRICS, "n_points": n})
    y = f / med
    if e is None:
        noise = _p2p_noise(y)
        dy = np.full(n, noise if noise > 0 else 1e-3)
    else:
        dy = e / med
    flares = detect_flares(t, y)
    white = _prewhitened(t, y, dy)
    if white is not y:  # a strong periodic signal: search its residuals when they are quieter
        flares_w = detect_flares(t, white)
        if flares_w.noise < flares.noise:
            flares = flares_w
    keep = ~flares.outlier_mask
    t, y, dy = t[keep], y[keep], dy[keep]
    search = ~flares.flare_mask[keep]
    metrics = variability_metrics(t, y, dy)
    if search.sum() >= MIN_POINTS:
        pr = find_period(
            t[search], y[search], dy[search], min_period=min_period, max_period=max_period,
            systematic_times=dumps,
        )
    else:
        pr = PeriodResult(_NAN, _NAN, 1.0, "LS", _NAN, False)
    var_class, score = classify(
        metrics, pr, n_flares=flares.n_flares, max_flare_sigma=flares.max_sigma
    )
    periodic = var_class in PERIODIC_CLASSES
    return VariabilityResult(
        n_points=int(metrics["n_points"]),
        amplitude=float(metrics["amplitude"]),
        amplitude_robust=float(metrics["amplitude_robust"]),
        reduced_chi2=float(metrics["reduced_chi2"]),
        stetson_j=float(metrics["stetson_j"]),
        mad=float(metrics["mad"]),
        von_neumann=float(metrics["von_neumann"]),
        skewness=float(metrics["skewness"]),
        snr=float(metrics["snr"]),
        period=float(pr.period) if periodic else _NAN,
        period_power=float(pr.power if periodic else pr.ls_power),
        false_alarm_probability=float(
            pr.false_alarm_probability if periodic else min(pr.ls_fap, 1.0)
        ),
        period_method=pr.method if periodic else "LS",
        epoch=float(pr.epoch) if periodic else _NAN,
        var_class=var_class,
        score=float(score),
        n_flares=int(flares.n_flares),
        n_clipped=int(flares.outlier_mask.sum()),
    )
