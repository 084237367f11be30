"""Variability science on deterministic synthetic TESS light curves and on known inputs.

The synthetic stars have the TESS sampling of one sector: a 27-day span at 1800 s (sectors
1-26) or 200 s (56 on), the ~1-day mid-sector downlink gap, and a momentum dump every ~3.1 d
whose cadences are flagged (quality bit 32) and corrupted, so quality masking is exercised too.
Noise is white and the quoted errors are right.

"SNR" of an injected signal is its peak-to-peak amplitude (depth for eclipses and transits,
peak for flares) over the per-point noise, drawn log-uniformly in [10, 100]. Targets (issue):
>= 95 % of periodic variables recovered within 0.5 % of the true period (for binaries the
orbital period), at most 1 % of constant stars flagged variable.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import numpy as np
import pytest

from tess_ffi.services.analyzer.variability import (
    MIN_POINTS,
    VAR_CLASSES,
    PeriodResult,
    VariabilityResult,
    analyze_lightcurve,
    classify,
    detect_flares,
    find_period,
    variability_metrics,
)

SPAN = 27.0
PERIODIC = ("ROT", "DSCT", "EW", "EA", "TRANSIT")
#: Stars per class and cadence in the recovery tests (200 s light curves are 9x longer).
N_STARS = {1800: 20, 200: 10}
N_CONST = {1800: 200, 200: 30}


# --------------------------------------------------------------------------------------------
# Synthetic light curves
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Star:
    cls: str
    time: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    quality: np.ndarray
    period: float  # true (orbital) period, NaN for FLARE and CONST
    t0: float  # a primary minimum (EA, EW, TRANSIT) or maximum (ROT, DSCT)
    sigma: float
    snr: float


def _sampling(rng: np.random.Generator, cadence_s: float) -> tuple[np.ndarray, np.ndarray]:
    dt = cadence_s / 86400.0
    start = 2000.0 + rng.uniform(0.0, 1.0)
    t = start + np.arange(0.0, SPAN, dt)
    gap = start + SPAN / 2 + rng.uniform(-0.5, 0.5)
    t = t[np.abs(t - gap) > 0.5]  # the ~1 d downlink gap
    quality = np.zeros(t.size, dtype=np.int64)
    for dump in np.arange(t[0] + rng.uniform(0.0, 3.0), t[-1], 3.1):
        quality[np.abs(t - dump) < 0.015] |= 32  # momentum dumps
    return t, quality


def _dip(x: np.ndarray, half: float, ingress: float) -> np.ndarray:
    """Trapezoid of unit depth: x = |time from mid-event|."""
    return np.clip((half - np.abs(x)) / max(half * ingress, 1e-9), 0.0, 1.0)


def _dist(t: np.ndarray, t0: float, p: float) -> np.ndarray:
    return np.abs((t - t0 + 0.5 * p) % p - 0.5 * p)


AMPLITUDES = {  # peak-to-peak amplitude (depth, flare peak) ranges, fraction of the flux
    "ROT": (0.002, 0.1),
    "DSCT": (0.001, 0.1),
    "EW": (0.05, 0.6),
    "EA": (0.05, 0.5),
    "TRANSIT": (0.002, 0.03),
    "FLARE": (0.01, 0.5),
}


def make_star(
    cls: str, rng: np.random.Generator, cadence_s: float, snr_range: tuple[float, float] = (10, 100)
) -> Star:
    """One synthetic star of class ``cls`` (see the module docstring)."""
    t, quality = _sampling(rng, cadence_s)
    snr = float(10 ** rng.uniform(*np.log10(snr_range)))
    t0 = float(t[0] + rng.uniform(0.0, 1.0))
    period = math.nan
    dt = cadence_s / 86400.0
    if cls == "ROT":  # spot modulation with a harmonic and slowly evolving amplitude
        period = float(10 ** rng.uniform(math.log10(0.3), 1.0))
        r, ph = rng.uniform(0.0, 0.3), rng.uniform(0.0, 2 * np.pi)
        evol = 1 + 0.1 * np.sin(2 * np.pi * (t - t[0]) / 40 + rng.uniform(0, 6))
        x = 2 * np.pi * (t - t0) / period
        unit = evol * (np.cos(x) + r * np.cos(2 * x + ph))
        grid = np.linspace(0.0, 2 * np.pi, 3600, endpoint=False)
        t0 += (
            float(grid[np.argmax(np.cos(grid) + r * np.cos(2 * grid + ph))]) / (2 * np.pi) * period
        )
    elif cls == "DSCT":  # a dominant mode and up to two weaker ones
        period = float(
            10 ** rng.uniform(math.log10(0.05 if cadence_s > 600 else 0.03), math.log10(0.2))
        )
        unit = np.cos(2 * np.pi * (t - t0) / period)
        nyquist = 0.5 / dt
        for _ in range(int(rng.integers(0, 3))):
            freq = rng.uniform(5.0, min(40.0, 0.8 * nyquist))
            unit = unit + rng.uniform(0.1, 0.4) * np.sin(
                2 * np.pi * freq * (t - t0) + rng.uniform(0, 6)
            )
    elif cls == "EW":  # W UMa: Rucinski's a2, a4 = a2 (0.125 - a2), unequal minima (a1)
        period = float(rng.uniform(0.22, 0.9))
        u = rng.uniform(0.03, 0.2)
        a2 = -rng.uniform(0.05, 0.3)
        a4 = a2 * (0.125 - a2)
        phi = 2 * np.pi * (t - t0) / period
        unit = -u * 0.25 * np.cos(phi) + a2 * np.cos(2 * phi) + a4 * np.cos(4 * phi)
    elif cls == "EA":  # detached: primary and secondary eclipses, 30 % eccentric
        period = float(10 ** rng.uniform(math.log10(0.5), math.log10(12.0)))
        q, ratio, ingress = rng.uniform(0.02, 0.08), rng.uniform(0.1, 0.8), rng.uniform(0.3, 1.0)
        ph2 = 0.5 + (rng.uniform(-0.08, 0.08) if rng.random() < 0.3 else 0.0)
        unit = -(
            _dip(_dist(t, t0, period), q * period / 2, ingress)
            + ratio * _dip(_dist(t, t0 + ph2 * period, period), q * period / 2, ingress)
        )
    elif cls == "TRANSIT":  # planet: duration ~ P^(1/3), no secondary
        period = float(10 ** rng.uniform(math.log10(0.5), 1.0))
        duration = min(0.3, 0.08 * period ** (1 / 3) * rng.uniform(0.6, 1.4))
        unit = -_dip(_dist(t, t0, period), duration / 2, rng.uniform(0.1, 0.3))
    elif cls == "FLARE":  # 1-3 flares: instant rise, exponential decay, exposure-averaged
        unit = np.zeros(t.size)
        tau_min = 20.0 if cadence_s > 600 else 5.0
        for _ in range(int(rng.integers(1, 4))):
            tf = rng.uniform(t[0] + 1.0, t[-1] - 1.0)
            tau = rng.uniform(tau_min, 90.0) / 1440.0
            lo = np.maximum(t - dt / 2, tf)
            hi = np.maximum(t + dt / 2, tf)
            unit += (
                rng.uniform(0.5, 1.0)
                * tau
                * (
                    np.exp(-np.minimum((lo - tf) / tau, 50))
                    - np.exp(-np.minimum((hi - tf) / tau, 50))
                )
                / dt
            )
    elif cls == "CONST":
        unit = np.zeros(t.size)
    else:
        raise ValueError(cls)
    if cls == "CONST":
        model = unit
        sigma = float(10 ** rng.uniform(-4.0, math.log10(2e-2)))
    else:
        amp = float(10 ** rng.uniform(*np.log10(AMPLITUDES[cls])))
        size = unit.max() if cls == "FLARE" else np.ptp(unit)
        model = unit * amp / size
        sigma = amp / snr
    flux = 1e4 * (1.0 + model + rng.normal(0.0, sigma, t.size))
    flux[quality != 0] *= 0.97  # flagged cadences are bad
    return Star(cls, t, flux, np.full(t.size, 1e4 * sigma), quality, period, t0, sigma, snr)


@functools.cache
def run_class(cls: str, cadence_s: int, n: int) -> tuple[tuple[Star, VariabilityResult], ...]:
    rng = np.random.default_rng([ord(c) for c in cls] + [cadence_s])
    out = []
    for _ in range(n):
        star = make_star(cls, rng, cadence_s)
        out.append((star, analyze_lightcurve(star.time, star.flux, star.flux_err, star.quality)))
    return tuple(out)


def recovered(star: Star, result: VariabilityResult, tol: float = 0.005) -> bool:
    return bool(np.isfinite(result.period) and abs(result.period / star.period - 1) < tol)


# --------------------------------------------------------------------------------------------
# Metrics on known inputs
# --------------------------------------------------------------------------------------------


def test_metrics_on_known_inputs() -> None:
    m = variability_metrics([0, 1, 2, 3], [9.0, 11.0, 9.0, 11.0], [1.0, 1.0, 1.0, 1.0])
    assert m["n_points"] == 4
    assert m["amplitude"] == pytest.approx(0.2)
    assert m["amplitude_robust"] == pytest.approx(0.2)  # p5 = 9, p95 = 11
    assert m["reduced_chi2"] == pytest.approx(4.0 / 3.0)
    assert m["mad"] == pytest.approx(0.1)
    assert m["snr"] == pytest.approx(10.0)
    assert m["skewness"] == pytest.approx(0.0)
    # alternating: successive differences 2, variance 4/3 -> eta = 4 / (4/3) = 3
    assert m["von_neumann"] == pytest.approx(3.0)
    # consecutive pairs of opposite sign: J < 0
    assert m["stetson_j"] < 0


def test_metrics_white_noise_and_correlated_signal() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(5000) * 0.02
    noise = variability_metrics(t, 100 + rng.normal(0, 1, t.size), np.ones(t.size))
    assert noise["reduced_chi2"] == pytest.approx(1.0, abs=0.06)
    assert abs(noise["stetson_j"]) < 0.03
    assert noise["von_neumann"] == pytest.approx(2.0, abs=0.1)
    assert abs(noise["skewness"]) < 0.1
    slow = 100 + 5 * np.sin(2 * np.pi * t / 10) + rng.normal(0, 1, t.size)
    var = variability_metrics(t, slow, np.ones(t.size))
    assert var["reduced_chi2"] > 10
    assert var["stetson_j"] > 2
    assert var["von_neumann"] < 0.5
    assert var["amplitude_robust"] == pytest.approx(0.1, rel=0.15)


def test_metrics_ignore_nonfinite_and_reject_bad_shapes() -> None:
    m = variability_metrics([0, 1, 2, 3, 4], [1.0, np.nan, 1.0, 1.0, 1.0], [1, 1, 1, 0, 1])
    assert m["n_points"] == 3  # NaN flux and zero error dropped
    with pytest.raises(ValueError, match="differ in length"):
        variability_metrics([0, 1, 2], [1.0, 2.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="one-dimensional"):
        variability_metrics(np.zeros((2, 2)), np.zeros((2, 2)), np.ones((2, 2)))


# --------------------------------------------------------------------------------------------
# analyze_lightcurve: inputs
# --------------------------------------------------------------------------------------------


def test_bad_inputs_raise() -> None:
    t = np.arange(100.0)
    with pytest.raises(ValueError, match="differ in length"):
        analyze_lightcurve(t, np.ones(99), np.ones(100))
    with pytest.raises(ValueError, match="differ in length"):
        analyze_lightcurve(t, np.ones(100), np.ones(3))
    with pytest.raises(ValueError, match="quality"):
        analyze_lightcurve(t, np.ones(100), np.ones(100), np.zeros(5, int))
    with pytest.raises(ValueError, match="numeric"):
        analyze_lightcurve(t, ["a"] * 100, np.ones(100))
    with pytest.raises(ValueError, match="one-dimensional"):
        find_period(np.zeros((10, 10)), np.zeros((10, 10)))


def test_too_few_good_points_give_unknown() -> None:
    t = np.linspace(0, 10, 40)
    flux = 1 + 0.1 * np.sin(t)
    q = np.full(t.size, 32)
    q[: MIN_POINTS - 1] = 0
    r = analyze_lightcurve(t, flux, np.full(t.size, 1e-3), q)
    assert r.var_class == "UNKNOWN" and r.n_points == MIN_POINTS - 1 and r.score == 0.0
    assert math.isnan(r.period)
    r = analyze_lightcurve(t, -np.ones(t.size), np.ones(t.size))  # no positive median
    assert r.var_class == "UNKNOWN"
    r = analyze_lightcurve([], [], [])
    assert r.var_class == "UNKNOWN" and r.n_points == 0


def test_quality_and_nonfinite_points_are_masked() -> None:
    rng = np.random.default_rng(2)
    t = np.arange(0, 27, 1800 / 86400)
    flux = 1000 + rng.normal(0, 1, t.size)
    err = np.ones(t.size)
    q = np.zeros(t.size, int)
    q[::50] = 32  # momentum dumps, hugely wrong flux
    flux[::50] = 0.0
    flux[7] = np.nan
    err[9] = np.inf
    r = analyze_lightcurve(t, flux, err, q)
    assert r.n_points == t.size - len(range(0, t.size, 50)) - 2
    assert r.var_class == "CONST"
    # the same points kept when no bit is bad: no longer constant
    r_all = analyze_lightcurve(t, flux, err, q, bad_bits=0)
    assert r_all.var_class != "CONST"


def test_missing_errors_are_estimated() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(0, 27, 1800 / 86400)
    flux = 500 * (1 + 0.01 * np.sin(2 * np.pi * t / 2.7)) + rng.normal(0, 0.5, t.size)
    for err in (None, np.full(t.size, np.nan)):
        r = analyze_lightcurve(t, flux, err)
        assert r.var_class == "ROT" and r.period == pytest.approx(2.7, rel=0.005)
        assert r.reduced_chi2 > 10


def test_isolated_upward_outliers_are_clipped_but_dips_kept() -> None:
    rng = np.random.default_rng(4)
    t = np.arange(0, 27, 1800 / 86400)
    flux = 1 + rng.normal(0, 1e-3, t.size)
    spikes = rng.choice(t.size, 5, replace=False)
    flux[spikes] += 0.05
    r = analyze_lightcurve(t, flux, np.full(t.size, 1e-3))
    assert r.n_clipped == 5 and r.var_class == "CONST"
    # eclipses (several points, downward) are never clipped
    star = make_star("EA", np.random.default_rng(5), 1800)
    r = analyze_lightcurve(star.time, star.flux, star.flux_err, star.quality)
    assert r.var_class == "EA" and recovered(star, r)
    assert r.amplitude > 0.04 and r.n_clipped == 0


def test_result_types_and_to_dict() -> None:
    star = make_star("ROT", np.random.default_rng(6), 1800)
    r = analyze_lightcurve(star.time, star.flux, star.flux_err, star.quality)
    d = r.to_dict()
    assert set(d) >= {
        "n_points",
        "amplitude",
        "amplitude_robust",
        "reduced_chi2",
        "stetson_j",
        "mad",
        "von_neumann",
        "skewness",
        "snr",
        "period",
        "period_power",
        "false_alarm_probability",
        "period_method",
        "epoch",
        "var_class",
        "score",
    }
    assert all(isinstance(v, (int, float, str)) for v in d.values())
    assert r.var_class in VAR_CLASSES and 0.0 <= r.score <= 1.0
    assert r.period_method in ("LS", "BLS")


# --------------------------------------------------------------------------------------------
# Periods: precision, P versus 2P, systematics
# --------------------------------------------------------------------------------------------


def test_period_is_refined_beyond_the_grid() -> None:
    rng = np.random.default_rng(7)
    t = np.arange(0, 27, 1800 / 86400)
    true = 2.3456
    flux = 1 + 0.01 * np.sin(2 * np.pi * t / true) + rng.normal(0, 1e-4, t.size)
    pr = find_period(t, flux, np.full(t.size, 1e-4))
    grid_step = true * true / (5 * np.ptp(t))  # period spacing of the frequency grid
    assert abs(pr.period - true) < 0.02 * grid_step
    assert pr.method == "LS" and pr.significant and pr.false_alarm_probability < 1e-10
    assert 0.9 < pr.power <= 1.0
    # epoch of maximum light: sin peaks at P / 4
    off = (pr.epoch - true / 4) % true
    assert min(off, true - off) < 0.01 * true and t[0] <= pr.epoch < t[0] + true


def test_contact_binary_reports_orbital_period() -> None:
    """Lomb-Scargle peaks at P/2 for a W UMa star; the result is the orbital period."""
    rng = np.random.default_rng(8)
    t = np.arange(0, 27, 600 / 86400)
    p = 0.3712
    phi = 2 * np.pi * t / p
    flux = 1 - 0.01 * np.cos(phi) - 0.2 * np.cos(2 * phi) - 0.065 * np.cos(4 * phi)
    flux += rng.normal(0, 2e-3, t.size)
    pr = find_period(t, flux, np.full(t.size, 2e-3))
    assert pr.ls_period == pytest.approx(p / 2, rel=1e-3)
    assert pr.doubled and pr.period == pytest.approx(p, rel=1e-3)
    r = analyze_lightcurve(t, flux, np.full(t.size, 2e-3))
    assert r.var_class == "EW" and r.period == pytest.approx(p, rel=1e-3)
    # epoch at the deeper minimum (phase 0 here)
    assert min(r.epoch % p, p - r.epoch % p) < 0.02 * p
    # equal minima: only the shape (sharp, symmetric minima) tells P from P/2
    equal = 1 - 0.2 * np.cos(2 * phi) - 0.065 * np.cos(4 * phi) + rng.normal(0, 2e-3, t.size)
    pr = find_period(t, equal, np.full(t.size, 2e-3))
    assert pr.doubled and "shape" in pr.doubling_reason
    assert pr.period == pytest.approx(p, rel=1e-3)
    # a rotator's sinusoid at the same period is not doubled
    spots = 1 + 0.02 * np.sin(2 * phi) + rng.normal(0, 2e-3, t.size)
    pr = find_period(t, spots, np.full(t.size, 2e-3))
    assert not pr.doubled and pr.period == pytest.approx(p / 2, rel=1e-3)


def test_eclipsing_binary_with_unequal_eclipses_gets_twice_the_box_period() -> None:
    rng = np.random.default_rng(9)
    t = np.arange(0, 27, 120 / 86400)
    p, t0 = 2.4, 0.3
    primary = _dip(_dist(t, t0, p), 0.06, 0.5)
    secondary = _dip(_dist(t, t0 + p / 2, p), 0.06, 0.5)
    flux = 1 - 0.3 * primary - 0.25 * secondary
    flux += rng.normal(0, 1e-3, t.size)
    r = analyze_lightcurve(t, flux, np.full(t.size, 1e-3))
    assert r.var_class == "EA" and r.period_method == "BLS"
    assert r.period == pytest.approx(p, rel=1e-3)
    assert min((r.epoch - t0) % p, p - (r.epoch - t0) % p) < 0.01 * p  # primary minimum


def test_transit_keeps_its_period() -> None:
    rng = np.random.default_rng(10)
    t = np.arange(0, 27, 1800 / 86400)
    p, t0 = 3.17, 0.9
    flux = 1 - 0.005 * _dip(_dist(t, t0, p), 0.05, 0.2) + rng.normal(0, 5e-4, t.size)
    pr = find_period(t, flux, np.full(t.size, 5e-4))
    assert pr.method == "BLS" and not pr.doubled
    assert pr.period == pytest.approx(p, rel=1e-3)
    assert pr.bls_depth == pytest.approx(0.005, rel=0.3)
    r = analyze_lightcurve(t, flux, np.full(t.size, 5e-4))
    assert r.var_class == "TRANSIT"


def test_weak_signal_at_tess_systematic_period_is_rejected() -> None:
    rng = np.random.default_rng(11)
    t = np.arange(0, 27, 1800 / 86400)
    weak = 1 + 3e-4 * np.sin(2 * np.pi * t / 6.85) + 0.02 * np.sin(2 * np.pi * t / 0.913)
    pr = find_period(t, weak + rng.normal(0, 1e-3, t.size), np.full(t.size, 1e-3))
    assert pr.period == pytest.approx(0.913, rel=1e-3)  # the real signal, not the orbit's
    only = 1 + 1.5e-3 * np.sin(2 * np.pi * t / 6.85) + rng.normal(0, 5e-3, t.size)
    pr = find_period(t, only, np.full(t.size, 5e-3))
    assert pr.alias_rejected
    assert not (pr.significant and abs(pr.period / 6.85 - 1) < 0.04)
    strong = 1 + 0.05 * np.sin(2 * np.pi * t / 6.85) + rng.normal(0, 1e-3, t.size)
    pr = find_period(t, strong, np.full(t.size, 1e-3))
    assert pr.significant and pr.period == pytest.approx(6.85, rel=0.01)


def test_min_and_max_period_limit_the_search() -> None:
    rng = np.random.default_rng(12)
    t = np.arange(0, 27, 1800 / 86400)
    flux = 1 + 0.01 * np.sin(2 * np.pi * t / 5.0) + 0.005 * np.sin(2 * np.pi * t / 0.7)
    flux += rng.normal(0, 1e-3, t.size)
    assert find_period(t, flux, None).period == pytest.approx(5.0, rel=0.01)
    assert find_period(t, flux, None, max_period=2.0).period == pytest.approx(0.7, rel=0.005)


def test_classify_rules() -> None:
    m = {"n_points": 1000, "reduced_chi2": 1.0, "stetson_j": 0.0, "skewness": 0.0}
    assert classify(m, None) == ("CONST", 0.0)
    assert classify({**m, "reduced_chi2": 50.0, "stetson_j": 5.0}, None)[0] == "UNKNOWN"
    assert classify({**m, "n_points": 3}, None)[0] == "UNKNOWN"
    assert classify({**m, "skewness": 3.0}, None, n_flares=2, max_flare_sigma=30.0)[0] == "FLARE"
    ls = dict(
        power=0.9,
        false_alarm_probability=1e-20,
        method="LS",
        epoch=0.0,
        significant=True,
        amplitude=0.05,
        delta_chi2=1e5,
    )
    assert classify(m, PeriodResult(period=0.1, **ls))[0] == "DSCT"
    assert classify(m, PeriodResult(period=3.0, **ls))[0] == "ROT"
    assert classify(m, PeriodResult(period=0.4, doubled=True, **ls))[0] == "EW"
    box = dict(ls, method="BLS", bls_duration=0.1, secondary_snr=0.0, out_of_transit_chi2=1.0)
    assert classify(m, PeriodResult(period=3.0, **{**box, "amplitude": 0.01}))[0] == "TRANSIT"
    assert classify(m, PeriodResult(period=3.0, **{**box, "amplitude": 0.3}))[0] == "EA"
    with_secondary = {**box, "amplitude": 0.01, "secondary_snr": 30.0}
    assert classify(m, PeriodResult(period=3.0, **with_secondary))[0] == "EA"
    weak = PeriodResult(period=3.0, **{**ls, "amplitude": 1e-4, "delta_chi2": 60.0, "power": 0.01})
    strong = PeriodResult(period=3.0, **ls)
    assert classify(m, weak)[1] < 0.2 < 0.9 < classify(m, strong)[1]


def test_detect_flares() -> None:
    rng = np.random.default_rng(13)
    t = np.arange(0, 5, 200 / 86400)
    flux = 1 + rng.normal(0, 1e-3, t.size)
    i = 600
    flux[i : i + 8] += 0.05 * np.exp(-np.arange(8) / 2.0)
    fs = detect_flares(t, flux)
    assert fs.n_flares == 1 and fs.flare_mask[i] and fs.max_sigma > 20
    # a symmetric noisy stretch (bad pointing) is not a flare
    flux2 = 1 + rng.normal(0, 1e-3, t.size)
    flux2[1000:1200] += rng.normal(0, 2e-2, 200)
    assert detect_flares(t, flux2).n_flares == 0


# --------------------------------------------------------------------------------------------
# Recovery and false-alarm rates on synthetic stars
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cadence", [1800, 200])
@pytest.mark.parametrize("cls", PERIODIC)
def test_periodic_recovery_rate(cls: str, cadence: int) -> None:
    runs = run_class(cls, cadence, N_STARS[cadence])
    rate = np.mean([recovered(s, r) for s, r in runs])
    missed = [
        (round(s.period, 4), round(r.period, 4), r.var_class)
        for s, r in runs
        if not recovered(s, r)
    ]
    assert rate >= 0.95, missed


@pytest.mark.parametrize("cadence", [1800, 200])
@pytest.mark.parametrize("cls", PERIODIC)
def test_periodic_classification(cls: str, cadence: int) -> None:
    runs = run_class(cls, cadence, N_STARS[cadence])
    accepted = {"TRANSIT": ("TRANSIT", "EA")}.get(cls, (cls,))
    rate = np.mean([r.var_class in accepted for _, r in runs])
    assert rate >= 0.9, [r.var_class for _, r in runs]
    assert np.median([r.score for _, r in runs]) > 0.5


@pytest.mark.parametrize("cadence", [1800, 200])
def test_flare_detection(cadence: int) -> None:
    runs = run_class("FLARE", cadence, N_STARS[cadence])
    assert np.mean([r.var_class == "FLARE" for _, r in runs]) >= 0.9
    assert all(math.isnan(r.period) for _, r in runs if r.var_class == "FLARE")


@pytest.mark.parametrize("cadence", [1800, 200])
def test_constant_star_false_alarm_rate(cadence: int) -> None:
    runs = run_class("CONST", cadence, N_CONST[cadence])
    flagged = [r for _, r in runs if r.var_class != "CONST"]
    assert len(flagged) <= 0.01 * len(runs), [(r.var_class, r.period) for r in flagged]
    assert all(r.score == 0.0 for _, r in runs if r.var_class == "CONST")
    assert np.median([r.reduced_chi2 for _, r in runs]) == pytest.approx(1.0, abs=0.05)


def test_epochs_of_synthetic_variables() -> None:
    """Epoch: the primary minimum of eclipsing binaries and transits."""
    for cls in ("EA", "TRANSIT", "EW"):
        for star, r in run_class(cls, 1800, N_STARS[1800]):
            if not recovered(star, r) or (cls == "EA" and r.var_class != "EA"):
                continue
            off = (r.epoch - star.t0) % star.period
            assert min(off, star.period - off) < 0.05 * star.period, (cls, star.period)


# --------------------------------------------------------------------------------------------
# Speed
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cadence", "budget"), [(1800, 0.3), (200, 2.0)])
def test_speed(cadence: int, budget: float) -> None:
    """CPU time per light curve (1300 / 11,600 points); twice the target as CI slack."""
    rng = np.random.default_rng(14)
    stars = [make_star(cls, rng, cadence) for cls in ("ROT", "EA", "CONST")]
    times = []
    for star in stars:
        start = time.process_time()
        analyze_lightcurve(star.time, star.flux, star.flux_err, star.quality)
        times.append(time.process_time() - start)
    assert np.median(times) < 2 * budget, times
