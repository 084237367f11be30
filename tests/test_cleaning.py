"""Light-curve cleaning (services/aggregator/cleaning.py) on synthetic light curves."""

from __future__ import annotations

import numpy as np
import pytest

from tess_ffi.services.aggregator.cleaning import (
    CLEANING_BAD_BITS,
    clean_lightcurves,
    clip_outliers,
    common_mode,
    epoch_quality,
    good_points,
    orbit_edge_windows,
    robust_std,
    select_reference,
    window_mask,
)
from tess_ffi.shared.quality import QualityFlags

N_STARS = 200
SLOPE = 0.004
DT = 1800 / 86400


def _time() -> np.ndarray:
    """Two 13-day orbits at 30 min with a 1-day gap: 1248 cadences."""
    t = np.arange(1248) * DT
    return t + np.where(np.arange(1248) >= 624, 1.0, 0.0)


def _sector(seed: int = 0):
    """200 stars with a common trend (orbit ramps, a per-cadence pointing term and a term
    that grows across the CCD), white noise set by brightness, and a few variables."""
    rng = np.random.default_rng(seed)
    t = _time()
    n = N_STARS
    x, y = rng.uniform(44, 2092, n), rng.uniform(0, 2048, n)
    tmag = rng.uniform(9.0, 14.0, n)
    sigma = 2e-4 * 10 ** (0.3 * (tmag - 9.0))  # 0.02 % at Tmag 9 to 0.6 % at Tmag 14
    orbit_t = np.where(t < 13.5, t, t - 14.0)
    ramp = 0.015 * np.exp(-orbit_t / 0.7) - 0.01 * np.exp(-(13.0 - orbit_t) / 1.2)
    jitter = 0.002 * rng.standard_normal(t.size)
    slope = SLOPE * np.sin(2 * np.pi * t / 9.0)
    trend = (1.0 + ramp[None, :] + jitter[None, :]
             + (x[:, None] / 2048.0) * slope[None, :])
    flux0 = 10_000 * 10 ** (-0.4 * (tmag - 10))
    white = 1.0 + sigma[:, None] * rng.standard_normal((n, t.size))
    signal = np.ones((n, t.size))
    variables = rng.choice(n, 20, replace=False)
    for k, i in enumerate(variables):  # 20 sinusoidal variables, 0.5-5 %
        signal[i] = 1 + 0.005 * (1 + k % 10) * np.sin(2 * np.pi * t / (0.7 + 0.37 * k))
    flux = flux0[:, None] * trend * white * signal
    err = flux0[:, None] * sigma[:, None] * np.ones((1, t.size))
    quality = np.zeros((n, t.size), dtype=np.int64)
    return dict(t=t, flux=flux, err=err, quality=quality, x=x, y=y, tmag=tmag, sigma=sigma,
                variables=variables, trend=trend, white=white, signal=signal, flux0=flux0)


@pytest.fixture(scope="module")
def sector():
    return _sector()


def test_common_trend_is_removed_to_white_noise(sector) -> None:
    s = sector
    const = np.setdiff1d(np.arange(N_STARS), s["variables"])
    raw = s["flux"] / np.median(s["flux"], axis=1, keepdims=True)
    raw_ratio = robust_std(raw, axis=1)[const] / s["sigma"][const]
    model = common_mode(s["flux"], s["err"], s["quality"], s["x"], s["y"], s["tmag"])
    corrected = s["flux"] / model
    resid = corrected / np.median(corrected, axis=1, keepdims=True)
    ratio = robust_std(resid, axis=1)[const] / s["sigma"][const]
    assert np.median(raw_ratio) > 2.5  # the trend dominates before
    assert np.median(ratio) < 1.10, np.median(ratio)  # white noise after
    assert np.percentile(ratio, 90) < 1.25, np.percentile(ratio, 90)
    # The model is the injected trend (up to the per-star normalisation).
    trend = s["trend"] / np.median(s["trend"], axis=1, keepdims=True)
    m = model / np.median(model, axis=1, keepdims=True)
    bright = const[s["tmag"][const] < 11]
    assert np.median(robust_std(m[bright] - trend[bright], axis=1)) < 1e-3
    # The variables keep their signal.
    var = s["variables"]
    sig = s["signal"][var] / np.median(s["signal"][var], axis=1, keepdims=True)
    left = resid[var] - sig
    assert np.median(robust_std(left, axis=1) / s["sigma"][var]) < 1.3


def test_star_specific_responses_to_pointing_are_removed() -> None:
    """Each star loses flux to a pointing excursion in its own proportions of dx**2 and
    dy**2 (where it sits in its pixel): no mean of other stars models that; the ensemble's
    basis vectors, fitted per star, do."""
    rng = np.random.default_rng(11)
    t = _time()
    n = N_STARS
    x, y = rng.uniform(44, 2092, n), rng.uniform(0, 2048, n)
    tmag = rng.uniform(9.0, 12.0, n)
    sigma = 2e-4 * 10 ** (0.3 * (tmag - 9.0))
    since_dump = (t % 3.125) / 3.125
    dx = 0.05 * rng.standard_normal(t.size) + 0.1 * since_dump
    dy = 0.05 * rng.standard_normal(t.size) - 0.06 * since_dump
    cx, cy = rng.uniform(0.1, 0.6, n), rng.uniform(0.1, 0.6, n)
    loss = cx[:, None] * dx[None, :] ** 2 + cy[:, None] * dy[None, :] ** 2
    flux = 5000.0 * (1.0 - loss) * (1.0 + sigma[:, None] * rng.standard_normal((n, t.size)))
    variables = np.arange(0, n, 10)
    signal = np.ones((n, t.size))
    signal[variables] = 1 + 0.02 * np.sin(2 * np.pi * t[None, :] / (1.1 + 0.3 * np.arange(
        variables.size))[:, None])
    flux *= signal
    raw = flux / np.median(flux, axis=1, keepdims=True)
    model = common_mode(flux, None, None, x, y, tmag)
    local_only = common_mode(flux, None, None, x, y, tmag, fit=False)
    const = np.setdiff1d(np.arange(n), variables)

    def ratio(m: np.ndarray) -> np.ndarray:
        c = flux / m
        return robust_std(c / np.median(c, axis=1, keepdims=True), axis=1)[const] / sigma[const]

    assert np.median(robust_std(raw, axis=1)[const] / sigma[const]) > 2
    assert np.median(ratio(local_only)) > 1.3  # a neighbour mean leaves much of it
    # Near white noise; what is left is the noise of basis vectors estimated from only
    # ~100 quiet stars (it falls as the square root of their number).
    assert np.median(ratio(model)) < 1.2
    assert np.median(ratio(model)) < 0.85 * np.median(ratio(local_only))
    # The variables keep their sinusoids: within 1 % typically; within 15 % even for the one
    # whose period (3.2 d) is next to that of the systematics (3.125 d).
    c = flux / model
    c = c / np.median(c, axis=1, keepdims=True)
    sig = signal[variables] / np.median(signal[variables], axis=1, keepdims=True)
    amp = np.sum((c[variables] - 1) * (sig - 1), axis=1) / np.sum((sig - 1) ** 2, axis=1)
    assert np.median(np.abs(amp - 1)) < 0.01 and np.all(np.abs(amp - 1) < 0.15), amp


def test_reference_is_quiet_and_a_star_is_never_its_own_reference(sector) -> None:
    s = sector
    ref = select_reference(s["flux"], s["quality"], s["x"], s["y"], s["tmag"], flux_err=s["err"])
    assert len(ref) > 0.7 * N_STARS
    strong = [i for k, i in enumerate(s["variables"]) if k % 10 >= 1]  # >= 1 % amplitude
    assert not set(strong) & set(ref.ids.tolist())
    # With one neighbour a star using itself would model its own noise away.
    model = common_mode(s["flux"], s["err"], s["quality"], s["x"], s["y"], s["tmag"],
                        n_neighbours=1, reference=ref, fit=False)
    resid = s["flux"] / model
    resid /= np.median(resid, axis=1, keepdims=True)
    in_ref = ref.ids
    assert np.all(robust_std(resid[in_ref], axis=1) > 0.7 * s["sigma"][in_ref])


def test_chunked_use_with_a_reference_from_a_sample_matches_the_whole(sector) -> None:
    """How the aggregator would use it: a reference picked once from a sample of stars,
    then the model built chunk by chunk of stars."""
    s = sector
    sample = np.arange(0, N_STARS, 2)
    ref = select_reference(s["flux"][sample], s["quality"][sample], s["x"][sample],
                           s["y"][sample], s["tmag"][sample], flux_err=s["err"][sample],
                           ids=sample)
    parts = []
    for a in range(0, N_STARS, 64):
        sl = slice(a, a + 64)
        parts.append(common_mode(s["flux"][sl], None, s["quality"][sl], s["x"][sl], s["y"][sl],
                                 s["tmag"][sl], reference=ref, ids=np.arange(N_STARS)[sl]))
    model = np.concatenate(parts)
    corrected = s["flux"] / model
    resid = corrected / np.median(corrected, axis=1, keepdims=True)
    const = np.setdiff1d(np.arange(N_STARS), s["variables"])
    ratio = robust_std(resid, axis=1)[const] / s["sigma"][const]
    assert np.median(ratio) < 1.12


def test_eclipse_and_flare_survive_clipping_and_cotrending() -> None:
    s = _sector(seed=1)
    t = s["t"]
    flux = s["flux"].copy()
    order = np.argsort(s["tmag"])
    ecl_star, flare_star = int(order[40]), int(order[60])  # Tmag about 10
    # Eclipses: 8 % deep, 6 cadences (3 h) with a one-point ingress and egress, P = 3.7 d.
    phase = ((t - 1.3) / 3.7 + 0.5) % 1.0 - 0.5
    dur = 3 / 24
    depth = 0.08 * np.clip((dur / 2 - np.abs(phase * 3.7)) / (DT * 1.0), 0.0, 1.0)
    flux[ecl_star] *= 1.0 - depth
    # A flare: rises within one cadence, decays over about 4 (peak +30 %).
    tf = 17.3
    dtf = t - tf
    profile = np.where(dtf < 0, np.exp(-0.5 * (dtf / 0.004) ** 2), np.exp(-np.maximum(dtf, 0) / (2.5 * DT)))
    flux[flare_star] *= 1.0 + 0.3 * profile
    out = clean_lightcurves(t, flux, s["err"], s["quality"], s["x"], s["y"], s["tmag"])
    assert out.flux_raw is not None and np.array_equal(out.flux_raw, flux)  # raw kept
    in_ecl = depth > 0.02
    assert in_ecl.sum() >= 20
    assert out.mask[ecl_star, in_ecl].all(), "eclipse points were clipped"
    measured = 1.0 - out.flux_norm[ecl_star, in_ecl]
    assert np.allclose(measured, depth[in_ecl], atol=0.01)
    in_flare = 0.3 * profile > 10 * s["sigma"][flare_star]
    assert in_flare.sum() >= 3
    assert out.mask[flare_star, in_flare].all(), "flare points were clipped"
    peak = int(np.argmax(profile))
    assert out.flux_norm[flare_star, peak] == pytest.approx(1.0 + 0.3 * profile[peak], abs=0.02)
    assert ecl_star not in out.reference.ids and flare_star not in out.reference.ids
    # Almost nothing else is clipped.
    assert out.outliers.mean() < 1e-3


def test_isolated_single_point_outliers_are_clipped() -> None:
    rng = np.random.default_rng(7)
    t = _time()
    n = 50
    noise = 0.001
    flux = 1.0 + noise * rng.standard_normal((n, t.size))
    rows = rng.integers(0, n, 200)
    cols = rng.integers(2, t.size - 2, 200)
    keep = np.unique(rows * t.size + cols)
    rows, cols = keep // t.size, keep % t.size
    isolated = np.ones(rows.size, dtype=bool)  # drop pairs of adjacent injections
    same_row_adjacent = (np.diff(rows) == 0) & (np.diff(cols) <= 5)
    isolated[1:] &= ~same_row_adjacent
    isolated[:-1] &= ~same_row_adjacent
    rows, cols = rows[isolated], cols[isolated]
    signs = rng.choice([-1.0, 1.0], rows.size)
    flux[rows, cols] += signs * noise * rng.uniform(8, 30, rows.size)
    mask = clip_outliers(t, flux)
    assert mask[rows, cols].mean() >= 0.98
    clean = np.ones_like(mask)
    clean[rows, cols] = False
    assert mask[clean].mean() < 2e-4
    # One light curve at a time gives the same answer; NaN points are skipped.
    assert np.array_equal(clip_outliers(t, flux[rows[0]]), mask[rows[0]])
    f1 = flux[rows[0]].copy()
    f1[cols[0] - 1] = np.nan
    assert clip_outliers(t, f1)[cols[0]]


def test_epoch_quality_flags_scattered_light_cadences() -> None:
    rng = np.random.default_rng(3)
    t = _time()
    f = 1.0 + 0.002 * rng.standard_normal((300, t.size))
    bad = np.zeros(t.size, dtype=bool)
    bad[600:624] = True  # the end of orbit 1: every star twice as noisy
    f[:, bad] = 1.0 + 0.004 * rng.standard_normal((300, int(bad.sum())))
    quality = np.zeros(f.shape, dtype=np.int64)
    quality[:, 100] = int(QualityFlags.MOMENTUM_DUMP)
    eq = epoch_quality(f, quality)
    assert eq.bad[bad].all()
    assert eq.bad[100] and eq.frac_flagged[100] == 1.0
    assert eq.bad.sum() == bad.sum() + 1


def test_masks_and_windows() -> None:
    t = _time()
    windows = orbit_edge_windows(t, start_days=0.5, end_days=1.0)
    assert len(windows) == 4
    inside = window_mask(t, windows)
    assert inside[0] and inside[623] and inside[624] and inside[-1] and not inside[300]
    q = np.zeros(t.size, dtype=np.int64)
    q[10] = int(QualityFlags.MOMENTUM_DUMP)
    q[20] = int(QualityFlags.SCATTERED_LIGHT)  # caution, not exclusion
    q[30] = int(QualityFlags.SATURATED)
    ok = good_points(np.ones(t.size), q, time=t, windows=windows)
    assert not ok[10] and ok[300] and not ok[30] and not ok[0]
    assert good_points(np.ones(t.size), q)[20]
    assert CLEANING_BAD_BITS & int(QualityFlags.MOMENTUM_DUMP)


# -- the aggregator's chunked cleaner (services/aggregator/cleaner.py) --------------------------


def _photometry_table(s, star_ids: np.ndarray | None = None):
    """The sector as star-sorted stored photometry (star ids 1..N)."""
    import pyarrow as pa

    n, c = s["flux"].shape
    rows = np.arange(n) if star_ids is None else np.asarray(star_ids) - 1
    return pa.table({
        "star_id": np.repeat(rows + 1, c).astype(np.int64),
        "cadence": np.tile(np.arange(c), rows.size).astype(np.int32),
        "btjd": np.tile(1325.0 + s["t"], rows.size),
        "flux": s["flux"][rows].ravel().astype(np.float32),
        "flux_err": s["err"][rows].ravel().astype(np.float32),
        "quality": s["quality"][rows].ravel().astype(np.int32),
    })


def _star_list(s):
    import pyarrow as pa

    n = s["flux"].shape[0]
    return pa.table({"star_id": np.arange(1, n + 1, dtype=np.int64), "x": s["x"], "y": s["y"],
                     "tmag": s["tmag"]})


def test_chunked_cleaner_corrects_each_chunk_as_the_whole_and_keeps_the_raw_flux(sector) -> None:
    from tess_ffi.services.aggregator.cleaner import LightCurveCleaner, reference_sample

    s = sector
    n, c = s["flux"].shape
    table = _photometry_table(s)
    # The reference from a seeded half of the stars, as the aggregator does for big jobs.
    sample_ids = reference_sample(np.arange(1, n + 1), c, max_values=100 * c)
    assert sample_ids.size == 100
    cleaner = LightCurveCleaner.select(_photometry_table(s, sample_ids), _star_list(s))
    assert len(cleaner.reference) > 50 and cleaner.reference.basis.shape[0] >= 1
    whole = cleaner.clean(table)
    parts = [cleaner.clean(_photometry_table(s, np.arange(a, min(a + 37, n + 1))))
             for a in range(1, n + 1, 37)]
    import pyarrow as pa

    chunked = pa.concat_tables(parts)
    np.testing.assert_array_equal(whole.column("flux_corrected").to_numpy(),
                                  chunked.column("flux_corrected").to_numpy())
    np.testing.assert_array_equal(whole.column("quality").to_numpy(),
                                  chunked.column("quality").to_numpy())
    np.testing.assert_array_equal(whole.column("flux").to_numpy(), table.column("flux").to_numpy())
    corrected = whole.column("flux_corrected").to_numpy().reshape(n, c).astype(float)
    const = np.setdiff1d(np.arange(n), s["variables"])
    resid = corrected / np.median(corrected, axis=1, keepdims=True)
    ratio = robust_std(resid, axis=1)[const] / s["sigma"][const]
    assert np.median(ratio) < 1.15, np.median(ratio)
    # The variables keep their signal: corrected / injected signal is white noise too.
    v = s["variables"]
    kept = resid[v] / s["signal"][v]
    assert np.median(robust_std(kept / np.median(kept, axis=1, keepdims=True), axis=1)
                     / s["sigma"][v]) < 1.3


def test_chunked_cleaner_flags_outliers_and_bad_epochs_and_recomputes_its_bits(sector) -> None:
    from tess_ffi.services.aggregator.cleaner import LightCurveCleaner
    from tess_ffi.shared.quality import CLEANING_BITS

    s = dict(sector)
    rng = np.random.default_rng(7)
    flux = s["flux"].copy()
    flux[:, 300] *= 1 + 0.05 * s["sigma"][:, None].ravel() / s["sigma"].min() \
        * rng.standard_normal(N_STARS) * 0.2  # every star much noisier at one cadence
    flux[17, 500] *= 1 + 40 * s["sigma"][17]  # a cosmic ray on one star
    s["flux"] = flux
    table = _photometry_table(s)
    cleaner = LightCurveCleaner.select(table, _star_list(s))
    assert 300 in np.flatnonzero(cleaner.bad_epochs)
    out = cleaner.clean(table)
    q = out.column("quality").to_numpy().reshape(N_STARS, -1)
    assert q[17, 500] & QualityFlags.OUTLIER
    assert np.all(q[:, 300] & QualityFlags.BAD_EPOCH)
    assert (q[:, 200] & CLEANING_BITS).sum() == 0
    # Cleaning again what was stored (bits included) gives the same bits, not more.
    again = cleaner.clean(out.drop(["flux_corrected"]))
    np.testing.assert_array_equal(again.column("quality").to_numpy(), q.ravel())


def test_chunked_cleaner_refuses_photometry_of_unknown_stars(sector) -> None:
    from tess_ffi.services.aggregator.cleaner import LightCurveCleaner

    s = sector
    table = _photometry_table(s)
    stars = _star_list(s).slice(0, N_STARS - 1)  # the last star is missing from the list
    with pytest.raises(ValueError, match="not in the star list"):
        LightCurveCleaner.select(table, stars)


def test_each_star_keeps_the_aperture_with_the_lowest_scatter_and_keeps_it_on_resume() -> None:
    import pyarrow as pa

    from tess_ffi.services.aggregator.cleaner import LightCurveCleaner

    rng = np.random.default_rng(11)
    n, c = 60, 400
    faint = np.arange(n) < n // 2  # noisier in big apertures (background); bright: in small
    noise = {1.5: np.where(faint, 0.002, 0.003), 2.0: np.where(faint, 0.0025, 0.0025),
             3.0: np.where(faint, 0.004, 0.0015)}
    level = {1.5: 800.0, 2.0: 1000.0, 3.0: 1100.0}
    flux = {r: level[r] * (1 + noise[r][:, None] * rng.standard_normal((n, c))) for r in noise}

    def table(cadences: np.ndarray, stored: bool = False) -> pa.Table:
        k = cadences.size
        cols = {"star_id": np.repeat(np.arange(1, n + 1), k).astype(np.int64),
                "cadence": np.tile(cadences, n).astype(np.int32),
                "btjd": np.tile(1500 + cadences / 48.0, n),
                "flux": flux[2.0][:, cadences].ravel().astype(np.float32),
                "flux_err": np.full(n * k, 2.5, np.float32),
                "quality": np.zeros(n * k, np.int32)}
        for suffix, r in (("r1p5", 1.5), ("r3", 3.0)):
            cols[f"flux_{suffix}"] = flux[r][:, cadences].ravel().astype(np.float32)
            cols[f"flux_err_{suffix}"] = np.full(n * k, 2.5, np.float32)
        return pa.table(cols)

    stars = pa.table({"star_id": np.arange(1, n + 1, dtype=np.int64),
                      "x": rng.uniform(50, 2000, n), "y": rng.uniform(50, 2000, n),
                      "tmag": np.where(faint, 14.0, 10.0)})
    first = table(np.arange(300))
    cleaner = LightCurveCleaner.select(first, stars)
    out = cleaner.clean(first)
    radius = out.column("aperture_radius").to_numpy().reshape(n, -1)[:, 0]
    assert np.all(radius[faint] == 1.5) and np.all(radius[~faint] == 3.0)
    got = out.column("flux").to_numpy().reshape(n, -1)
    np.testing.assert_allclose(got[faint], flux[1.5][faint, :300].astype(np.float32))
    np.testing.assert_allclose(got[~faint], flux[3.0][~faint, :300].astype(np.float32))
    # Resume: the compacted rows (chosen flux, no other apertures) and new per-cadence rows.
    stored = out.drop([f"flux_{s}" for s in ("r1p5", "r3")] + [f"flux_err_{s}" for s in ("r1p5", "r3")])
    stored = stored.drop(["flux_corrected"])
    new = table(np.arange(300, 400))
    new = new.append_column("aperture_radius", pa.nulls(new.num_rows, pa.float32()))
    both = pa.concat_tables([stored, new.select(stored.column_names).cast(stored.schema)])
    both = both.sort_by([("star_id", "ascending"), ("cadence", "ascending")])
    # New rows still carry every aperture: give them back their columns.
    extra = {name: np.concatenate([np.full((n, 300), np.nan),
                                   np.asarray(new.column(name)).reshape(n, -1)], axis=1).ravel()
             for name in ("flux_r1p5", "flux_err_r1p5", "flux_r3", "flux_err_r3")}
    for name, values in extra.items():
        both = both.append_column(name, pa.array(values.astype(np.float32)))
    again = LightCurveCleaner.select(both, stars).clean(both)
    got = again.column("flux").to_numpy().reshape(n, -1)
    np.testing.assert_allclose(got[faint, 300:], flux[1.5][faint, 300:].astype(np.float32))
    np.testing.assert_allclose(got[~faint, 300:], flux[3.0][~faint, 300:].astype(np.float32))
    np.testing.assert_allclose(got[:, :300], out.column("flux").to_numpy().reshape(n, -1))
    assert set(again.column("aperture_radius").to_numpy()[:n * 300:300].tolist()) <= {1.5, 3.0}


def test_known_windows_are_bad_epochs_for_every_star(sector) -> None:
    from tess_ffi.services.aggregator.cleaner import LightCurveCleaner

    table = _photometry_table(sector)
    t = 1325.0 + sector["t"]
    window = (float(t[100]) - 1e-6, float(t[120]) + 1e-6)
    cleaner = LightCurveCleaner.select(table, _star_list(sector), windows=[window])
    assert np.all(cleaner.bad_epochs[100:121])
    q = cleaner.clean(table).column("quality").to_numpy().reshape(N_STARS, -1)
    assert np.all(q[:, 100:121] & QualityFlags.BAD_EPOCH)
    assert not np.any(q[:, 130:200] & QualityFlags.BAD_EPOCH)


def test_exclude_window_option_is_parsed_and_checked() -> None:
    from tess_ffi.cli import _job_from_args, build_parser, main
    from tess_ffi.shared.contracts import JobSpec

    args = build_parser().parse_args(
        ["process", "--sector", "1", "--camera", "1", "--ccd", "1", "--source", "sim",
         "--exclude-window", "1338.5:1339.6", "--exclude-window", "1350:1351"])
    job = _job_from_args(args)
    assert job.exclude_windows == [(1338.5, 1339.6), (1350.0, 1351.0)]
    back = JobSpec.from_json(job.to_json())  # as every message carries it
    assert [tuple(w) for w in back.exclude_windows] == job.exclude_windows
    with pytest.raises(SystemExit) as exc:
        main(["process", "--sector", "1", "--camera", "1", "--ccd", "1",
              "--exclude-window", "1339:1338", "--source", "sim"])
    assert exc.value.code == 2


def test_too_few_stars_for_a_reference_still_clean(sector) -> None:
    """Two stars, or three cadences: no reference ensemble, the raw flux comes back as
    corrected flux, each star still keeps an aperture."""
    from tess_ffi.services.aggregator.cleaner import LightCurveCleaner

    for table in (_photometry_table(sector, np.array([1, 2])),
                  _photometry_table(sector).filter(
                      np.isin(_photometry_table(sector).column("cadence").to_numpy(), [0, 1]))):
        cleaner = LightCurveCleaner.select(table, _star_list(sector))
        assert len(cleaner.reference) == 0
        out = cleaner.clean(table)
        np.testing.assert_allclose(out.column("flux_corrected").to_numpy(),
                                   table.column("flux").to_numpy())
        assert np.all(out.column("aperture_radius").to_numpy() == 2.0)
