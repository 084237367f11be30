"""The science benchmark's matching and metrics on a small synthetic truth/output pair.

Not the benchmark itself (``python benchmarks/science.py`` runs a whole simulated sector and
is timed); this checks that its figures mean what they say.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.science import (  # noqa: E402
    _plain_json,
    binned_robust_scatter,
    count_neighbours,
    expected_binned_noise,
    false_alarm_fraction,
    half_period_snr,
    lightcurve_matrix,
    match_stars,
    period_ok,
    recovery_by_class,
    signal_snr,
)


def _pair(seed: int = 0):
    """A truth table and a pipeline-like output: detected stars (shuffled, offset by a
    fraction of a pixel, one spurious, one truth star missed), photometry in long format
    with white noise of known size, and a variability table."""
    rng = np.random.default_rng(seed)
    n = 40
    truth = pd.DataFrame({
        "x": rng.uniform(100, 1900, n), "y": rng.uniform(100, 1900, n),
        "tmag": rng.uniform(9, 14, n),
        "var_class": ["CONST"] * 30 + ["EA"] * 4 + ["ROT"] * 4 + ["EW"] * 2,
        "period": [np.nan] * 30 + [2.0, 3.0, 4.0, 5.0] + [1.5, 2.5, 3.5, 4.5] + [0.4, 0.6],
    })
    order = rng.permutation(n)[:-1]  # the last one is not detected
    det = pd.DataFrame({"star_id": np.arange(1, n) + 100,
                        "x": truth["x"].to_numpy()[order] + rng.normal(0, 0.1, n - 1),
                        "y": truth["y"].to_numpy()[order] + rng.normal(0, 0.1, n - 1)})
    det.loc[len(det)] = [999, 5.0, 5.0]  # spurious
    t = np.arange(600) / 24.0  # one point per hour
    sigma = 0.002
    rows = []
    for sid in det["star_id"]:
        f = 1000 * (1 + sigma * rng.standard_normal(t.size))
        rows.append(pd.DataFrame({"star_id": sid, "cadence": 2 * np.arange(t.size), "btjd": t,
                                  "flux": f, "flux_err": 1000 * sigma, "quality": 0}))
    phot = pd.concat(rows, ignore_index=True).sample(frac=1.0, random_state=1)
    return truth, det, order, phot, t, sigma


def test_matching_pairs_each_detected_star_with_its_truth_star() -> None:
    truth, det, order, *_ = _pair()
    d, t, sep = match_stars(det["x"], det["y"], truth["x"], truth["y"])
    assert len(d) == len(truth) - 1  # every real detection, not the spurious one
    assert np.array_equal(t, order[d])
    assert (sep < 1.0).all()
    assert 999 not in det["star_id"].to_numpy()[d]


def test_precision_ratio_of_white_noise_is_one() -> None:
    truth, det, order, phot, t, sigma = _pair()
    tt, cad, m = lightcurve_matrix(phot, det["star_id"])
    assert np.allclose(tt, t) and cad[1] == 2 and m["flux"].shape == (len(det), t.size)
    good = m["quality"] == 0
    meas = binned_robust_scatter(tt, m["flux"], good)
    expected = expected_binned_noise(tt, np.full(m["flux"].shape, sigma), good)
    ratio = np.median(meas / expected)
    assert abs(ratio - 1.0) < 0.05
    # Two points per 1-h bin at 30 min: the bin mean's noise is sigma / sqrt(2).
    t2 = np.arange(1200) / 48.0
    rng = np.random.default_rng(3)
    f2 = 1 + sigma * rng.standard_normal((30, t2.size))
    ok = np.ones_like(f2, bool)
    exp2 = expected_binned_noise(t2, np.full(f2.shape, sigma), ok)
    assert np.allclose(exp2, sigma / np.sqrt(2))
    assert abs(np.median(binned_robust_scatter(t2, f2, ok) / exp2) - 1.0) < 0.05
    # A trend makes it worse; bad points are ignored.
    f3 = f2 * (1 + 0.01 * np.sin(t2 / 3.0))
    assert np.median(binned_robust_scatter(t2, f3, ok) / exp2) > 2
    f4 = f2.copy()
    f4[:, ::50] = 5.0
    bad = np.ones_like(ok)
    bad[:, ::50] = False
    assert np.allclose(binned_robust_scatter(t2, f4, bad), binned_robust_scatter(t2, np.where(
        bad, f2, np.nan), bad))


def test_snr_and_half_period_criterion() -> None:
    t = np.arange(1248) / 48.0
    sig = np.full((1, t.size), 0.001)
    ok = np.ones((1, t.size), bool)
    sine = 1 + 0.001 * np.sin(2 * np.pi * t / 2.0)  # semi-amplitude = sigma
    assert abs(signal_snr(sine[None], sig, ok)[0] - np.sqrt(t.size / 2)) < 0.5
    # EA: primary 10 %, secondary 9.5 % or 2 %; 4 points per eclipse.
    phase = (t / 2.0) % 1.0

    def ea(d2: float, shift: float = 0.0) -> np.ndarray:
        ph = (phase + shift) % 1.0
        return 1 - 0.1 * (np.minimum(ph, 1 - ph) < 0.02) - d2 * (np.abs(ph - 0.5) < 0.02)

    equal, unequal = ea(0.0995), ea(0.02)
    assert half_period_snr(equal[None], ea(0.0995, 0.5)[None], sig * 10, ok)[0] < 7
    assert half_period_snr(unequal[None], ea(0.02, 0.5)[None], sig * 10, ok)[0] > 7
    # A sinusoid is never periodic at P/2.
    assert half_period_snr(sine[None], (2 - sine)[None], sig, ok)[0] > 7


def test_recovery_and_false_alarm_figures() -> None:
    truth, det, order, *_ = _pair()
    d, t, _ = match_stars(det["x"], det["y"], truth["x"], truth["y"])
    m = truth.iloc[t].reset_index(drop=True)
    m["star_id"] = det["star_id"].to_numpy()[d]
    # The "pipeline" finds the EAs (one at P/2 with equal eclipses allowed, one at P/2
    # without), the ROTs within 0.3 %, one EW at 2P; two CONST stars are called ROT.
    p_true = m["period"].to_numpy()
    found = p_true * 1.003
    cls_found = np.where(m["var_class"] == "CONST", "CONST", m["var_class"]).astype(object)
    half_ok = np.zeros(len(m), bool)
    ea = np.flatnonzero(m["var_class"] == "EA")
    found[ea[0]] = p_true[ea[0]] / 2
    half_ok[ea[0]] = True
    found[ea[1]] = p_true[ea[1]] / 2
    ew = np.flatnonzero(m["var_class"] == "EW")
    found[ew[0]] = 2 * p_true[ew[0]]
    const = np.flatnonzero(m["var_class"] == "CONST")
    cls_found[const[:2]] = "ROT"
    ok = period_ok(found, p_true, half_ok)
    per = m["var_class"].isin(["EA", "EW", "ROT"]).to_numpy()
    rec = recovery_by_class(m["var_class"][per], ok[per], ["EA", "ROT", "EW", "DSCT"])
    n_ea = int((m["var_class"] == "EA").sum())
    n_ew = int((m["var_class"] == "EW").sum())
    assert rec["EA"] == (n_ea, n_ea - 1, (n_ea - 1) / n_ea)
    assert rec["ROT"][2] == 1.0
    assert rec["EW"][1] == n_ew - 1
    assert np.isnan(rec["DSCT"][2])
    fa = false_alarm_fraction(cls_found[const])
    assert fa == 2 / len(const)
    # Neighbour counts used to leave crowded stars out.
    assert count_neighbours([0, 3, 50], [0, 0, 0], [10, 10, 10], 10.0).tolist() == [1, 1, 0]
    assert count_neighbours([0, 3], [0, 0], [10, 10], 10.0, among=[False, True]).tolist() == [1, 0]
    assert _plain_json({"a": np.float64("nan"), "b": [np.int64(3)]}) == {"a": None, "b": [3]}
