"""Tests of the photometer's science (tess_ffi.services.photometer.photometry).

Everything runs on deterministic synthetic full-size FFIs: pixel-integrated circular Gaussian
stars (FWHM 1.8 px) of known flux on a sloped 100-200 e-/s sky, with Gaussian noise from a
Poisson + read-noise model of a 1800-s FFI (so the "uncertainty image" is known exactly).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree
from scipy.special import erf

from tess_ffi.services.photometer.photometry import (
    FFI_SHAPE,
    SCIENCE_COLS,
    SCIENCE_ROWS,
    ApertureWeights,
    PhotometryResult,
    build_aperture_weights,
    detect_stars,
    estimate_background,
    forced_aperture_photometry,
)
from tess_ffi.shared.quality import QualityFlags

FWHM = 1.8
PSF_SIGMA = FWHM / (2.0 * math.sqrt(2.0 * math.log(2.0)))
EXPOSURE = 1425.6  # s, effective exposure of a 1800-s FFI
READ_NOISE = 268.0  # e-, co-added read noise of one FFI pixel
SCI = (SCIENCE_ROWS, SCIENCE_COLS)


# --------------------------------------------------------------------------------------------
# synthetic data
# --------------------------------------------------------------------------------------------


def render_stars(
    shape: tuple[int, int], x: np.ndarray, y: np.ndarray, flux: np.ndarray, half: int = 7
) -> np.ndarray:
    """Pixel-integrated circular Gaussians (exact integral over each pixel), float64."""
    image = np.zeros(shape, dtype=np.float64)
    if len(x) == 0:
        return image
    ic = np.floor(x + 0.5).astype(int)
    ir = np.floor(y + 0.5).astype(int)
    k = np.arange(-half, half + 1)
    cols = ic[:, None] + k
    rows = ir[:, None] + k
    c = math.sqrt(2.0) * PSF_SIGMA

    def prof(pix: np.ndarray, centre: np.ndarray) -> np.ndarray:
        u = pix - centre[:, None]
        return 0.5 * (erf((u + 0.5) / c) - erf((u - 0.5) / c))

    stamps = flux[:, None, None] * prof(rows, y)[:, :, None] * prof(cols, x)[:, None, :]
    rr = np.broadcast_to(rows[:, :, None], stamps.shape)
    cc = np.broadcast_to(cols[:, None, :], stamps.shape)
    ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
    np.add.at(image, (rr[ok], cc[ok]), stamps[ok])
    return image


def sloped_sky(shape: tuple[int, int] = FFI_SHAPE) -> np.ndarray:
    """100 e-/s at the first science pixel rising to 200 e-/s at the last one."""
    rows, cols = np.indices(shape, dtype=np.float64)
    return 100.0 + 60.0 * (cols - 44.0) / 2047.0 + 40.0 * rows / 2047.0


def noise_sigma(model: np.ndarray) -> np.ndarray:
    """1-sigma per pixel (e-/s) for Poisson + read noise of a 1800-s FFI."""
    return np.sqrt(np.maximum(model, 0.0) / EXPOSURE + (READ_NOISE / EXPOSURE) ** 2).astype(
        np.float32
    )


class Scene:
    """A full-size FFI with ~300 isolated stars of known position and flux."""

    def __init__(self, seed: int = 20240601, n_stars: int = 300) -> None:
        rng = np.random.default_rng(seed)
        x = rng.uniform(44 + 12, 2092 - 12, 4 * n_stars)
        y = rng.uniform(12, 2048 - 12, 4 * n_stars)
        close = cKDTree(np.c_[x, y]).query_pairs(15.0, output_type="ndarray")
        isolated = np.ones(x.size, dtype=bool)
        isolated[close.ravel()] = False
        self.x = x[isolated][:n_stars]
        self.y = y[isolated][:n_stars]
        assert self.x.size == n_stars
        # ~5 to 1e5 e-/s (Tmag ~17 to ~6.5): a quarter are too faint to detect.
        self.flux = 10.0 ** rng.uniform(0.7, 5.0, n_stars)
        self.sky = sloped_sky()
        self.model = (self.sky + render_stars(FFI_SHAPE, self.x, self.y, self.flux)).astype(
            np.float32
        )
        self.sigma = noise_sigma(self.model)
        self.rng = rng
        self.image = self.realisation()

    def realisation(self) -> np.ndarray:
        noise = self.rng.standard_normal(FFI_SHAPE, dtype=np.float32)
        noise *= self.sigma
        noise += self.model
        return noise

    @property
    def peak_snr(self) -> np.ndarray:
        """Peak amplitude of each star over the sky noise at its position."""
        amp = self.flux / (2.0 * math.pi * PSF_SIGMA**2)
        sky_sigma = np.sqrt(self.sky[self.y.round().astype(int), self.x.round().astype(int)]
                            / EXPOSURE + (READ_NOISE / EXPOSURE) ** 2)  # fmt: skip
        return amp / sky_sigma


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene()


@pytest.fixture(scope="module")
def detected(scene: Scene) -> pd.DataFrame:
    return detect_stars(scene.image)


@pytest.fixture(scope="module")
def small_image() -> np.ndarray:
    """Flat 150 e-/s FFI with mild noise."""
    rng = np.random.default_rng(7)
    return (150.0 + rng.normal(0.0, 0.4, FFI_SHAPE)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# background
# --------------------------------------------------------------------------------------------


def test_background_follows_slope(scene: Scene) -> None:
    bkg, rms = estimate_background(scene.image)
    assert bkg.shape == rms.shape == FFI_SHAPE
    assert bkg.dtype == rms.dtype == np.float32
    # Outside the science area: NaN, never a value.
    assert np.isnan(bkg[:, :44]).all() and np.isnan(bkg[:, 2092:]).all()
    assert np.isnan(bkg[2048:, :]).all() and np.isnan(rms[2048:, :]).all()
    sci_bkg = bkg[SCI].astype(np.float64)
    assert np.isfinite(sci_bkg).all()
    err = sci_bkg - scene.sky[SCI]
    # The map tracks the 100-200 e-/s sky to a few hundredths of the pixel noise (0.38 e-/s).
    assert abs(float(np.median(err))) < 0.02
    assert float(np.percentile(np.abs(err), 99.9)) < 0.1
    # The fitted plane has the simulated slopes (60 e-/s over the columns, 40 over the rows).
    rows, cols = np.indices(sci_bkg.shape)
    a = np.c_[np.ones(rows.size), cols.ravel(), rows.ravel()][::97]
    coef, *_ = np.linalg.lstsq(a, sci_bkg.ravel()[::97], rcond=None)
    assert coef[1] * 2047 == pytest.approx(60.0, rel=0.01)
    assert coef[2] * 2047 == pytest.approx(40.0, rel=0.01)
    # The rms is the pixel noise of the sky (0.34-0.42 e-/s here).
    ratio = rms[SCI] / noise_sigma(scene.sky[SCI])
    assert float(np.median(ratio)) == pytest.approx(1.0, abs=0.05)


def test_background_estimators_and_masks(scene: Scene) -> None:
    mask = np.zeros(FFI_SHAPE, dtype=bool)
    mask[0:300, 44:400] = True  # masked boxes are filled from their neighbours
    for est in ("median", "mean", "sextractor"):
        bkg, _ = estimate_background(scene.image, 100, estimator=est, mask=mask)
        err = bkg[SCI] - scene.sky[SCI]
        assert np.isfinite(err).all()
        assert float(np.percentile(np.abs(err), 99)) < 1.5


def test_background_on_cutout_needs_science_area() -> None:
    cut = np.full((64, 80), 10.0, dtype=np.float32)
    with pytest.raises(ValueError, match="science_area"):
        estimate_background(cut, 16)
    bkg, rms = estimate_background(cut, 16, science_area=(slice(0, 64), slice(8, 72)))
    assert np.isnan(bkg[:, :8]).all() and np.allclose(bkg[:, 8:72], 10.0)
    assert np.allclose(rms[:, 8:72], 0.0)


# --------------------------------------------------------------------------------------------
# detection
# --------------------------------------------------------------------------------------------


def test_detect_stars_finds_bright_stars(scene: Scene, detected: pd.DataFrame) -> None:
    assert {"x", "y", "flux", "snr", "peak", "sharpness", "roundness1", "roundness2"} <= set(
        detected
    )
    assert (detected["snr"] >= 3.0).all()
    truth = cKDTree(np.c_[scene.x, scene.y])
    found = cKDTree(detected[["x", "y"]].to_numpy())
    bright = scene.peak_snr > 10.0
    assert bright.sum() > 150
    dist, _ = found.query(np.c_[scene.x, scene.y][bright])
    assert np.mean(dist < 0.2) >= 0.95, np.sort(dist)[-10:]
    assert np.median(dist) < 0.03
    # Few spurious detections: nothing farther than 1 px from a simulated star.
    dist_to_truth, _ = truth.query(detected[["x", "y"]].to_numpy())
    assert int(np.sum(dist_to_truth > 1.0)) <= 3


def test_detect_stars_flux_and_order(scene: Scene, detected: pd.DataFrame) -> None:
    flux = detected["flux"].to_numpy()
    assert np.all(np.diff(flux[np.isfinite(flux)]) <= 0)  # brightest first
    assert detected.index.equals(pd.RangeIndex(len(detected)))
    _, idx = cKDTree(np.c_[scene.x, scene.y]).query(detected[["x", "y"]].to_numpy())
    bright = scene.flux[idx] > 2000.0
    # r = 2 px holds ~93 % of a FWHM-1.8 pixelated Gaussian.
    ratio = flux[bright] / scene.flux[idx][bright]
    assert 0.9 < float(np.median(ratio)) < 0.96
    assert float(np.std(ratio)) < 0.02
    assert np.all(detected["bkg"].between(95.0, 205.0))
    assert (detected["quality"] & int(QualityFlags.SATURATED)).sum() == 0


def test_detect_stars_deterministic_and_options(scene: Scene, detected: pd.DataFrame) -> None:
    again = detect_stars(scene.image.copy())
    pd.testing.assert_frame_equal(detected, again)
    top = detect_stars(scene.image, max_stars=20, edge_px=50)
    assert len(top) == 20
    assert top["x"].between(44 + 50, 2091 - 50).all() and top["y"].between(50, 2047 - 50).all()
    pd.testing.assert_series_equal(
        top["flux"], detected[detected["x"].between(94, 2041) & detected["y"].between(50, 1997)]
        ["flux"].head(20).reset_index(drop=True),
    )  # fmt: skip


def test_detect_stars_edges_and_empty() -> None:
    image = sloped_sky().astype(np.float32)
    xs = np.array([45.0, 300.0, 1000.0, 2090.5])
    ys = np.array([500.0, 1.0, 1000.0, 1500.0])
    image += render_stars(FFI_SHAPE, xs, ys, np.full(4, 5000.0)).astype(np.float32)
    image += np.random.default_rng(3).normal(0, 0.3, FFI_SHAPE).astype(np.float32)
    stars = detect_stars(image, edge_px=3)
    assert len(stars) == 1 and stars.loc[0, ["x", "y"]].tolist() == pytest.approx(
        [1000, 1000], abs=0.05
    )
    assert len(detect_stars(image, edge_px=0)) == 4
    empty = detect_stars(sloped_sky().astype(np.float32))
    assert len(empty) == 0 and "x" in empty and "flux" in empty


def test_detect_saturated_and_close_pairs() -> None:
    x = np.array([800.3, 1200.0, 1500.0, 1504.0])
    y = np.array([900.6, 300.0, 1000.0, 1000.0])
    flux = np.array([3e6, 5e4, 5000.0, 2000.0])
    image = np.minimum(sloped_sky() + render_stars(FFI_SHAPE, x, y, flux), 1.5e5)
    image = (image + np.random.default_rng(1).normal(0, 0.4, FFI_SHAPE)).astype(np.float32)
    stars = detect_stars(image)
    # The flat-topped saturated star is one source, flagged SATURATED; the pair is resolved.
    assert len(stars) == 4
    assert stars.loc[0, "quality"] == int(QualityFlags.SATURATED)
    assert stars.loc[0, ["x", "y"]].tolist() == pytest.approx([800.3, 900.6], abs=0.3)
    merged = detect_stars(image, min_separation=4.5)
    assert len(merged) == 3
    assert merged.loc[2, ["x", "y"]].tolist() == pytest.approx([1500.0, 1000.0], abs=0.3)


# --------------------------------------------------------------------------------------------
# forced photometry
# --------------------------------------------------------------------------------------------


def test_weights_match_photutils_exact(scene: Scene) -> None:
    from astropy.stats import SigmaClip
    from photutils.aperture import (
        ApertureStats,
        CircularAnnulus,
        CircularAperture,
        aperture_photometry,
    )

    xy = np.c_[scene.x, scene.y]
    for method in ("exact", "subpixel"):
        w = build_aperture_weights(scene.x, scene.y, 2.0, (4.0, 7.0), method=method)
        res = forced_aperture_photometry(scene.image, scene.x, scene.y, weights=w)
        tab = aperture_photometry(scene.image, CircularAperture(xy, 2.0), method=method)
        raw = res.flux.astype(np.float64) + res.npix.astype(np.float64) * res.bkg
        np.testing.assert_allclose(raw, np.asarray(tab["aperture_sum"]), rtol=1e-5)
        if method == "exact":
            np.testing.assert_allclose(w.npix, np.pi * 4.0, rtol=1e-6)
    # The local background is photutils' sigma-clipped annulus median (centre-in-annulus pixels).
    stats = ApertureStats(
        scene.image, CircularAnnulus(xy, 4.0, 7.0), sigma_clip=SigmaClip(sigma=3.0, maxiters=5)
    )
    np.testing.assert_allclose(res.bkg, np.asarray(stats.median), rtol=1e-5)


def test_flux_recovered_with_large_aperture(scene: Scene) -> None:
    res = forced_aperture_photometry(
        scene.image, scene.x, scene.y, uncertainty=scene.sigma, radius=5.0, annulus=(9.0, 14.0)
    )
    assert isinstance(res, PhotometryResult)
    for name in ("flux", "flux_err", "bkg", "x", "y"):
        assert getattr(res, name).dtype == np.float32 and getattr(res, name).shape == (300,)
    assert res.quality.dtype == np.int32
    # A 5-px aperture holds all the light: fluxes agree with the truth within their errors.
    pull = (res.flux - scene.flux) / res.flux_err
    assert abs(float(np.mean(pull))) < 0.25
    assert 0.8 < float(np.std(pull)) < 1.2
    bright = scene.flux > 1e4
    np.testing.assert_allclose(res.flux[bright], scene.flux[bright], rtol=0.01)
    sky_at_star = scene.sky[scene.y.round().astype(int), scene.x.round().astype(int)]
    np.testing.assert_allclose(res.bkg, sky_at_star, atol=0.1)


def test_small_aperture_encircled_energy_and_relative_flux(scene: Scene) -> None:
    """r = 2 px: the flux is the Gaussian encircled energy of a pixelated PSF, and flux ratios
    between two frames recover a 2 % brightening."""
    w = build_aperture_weights(scene.x, scene.y, 2.0, (4.0, 7.0))
    a = forced_aperture_photometry(
        scene.image, scene.x, scene.y, weights=w, uncertainty=scene.sigma
    )
    bright = scene.flux > 1e4
    # Exact apertures on pixel-averaged data see the PSF blurred by two pixel boxes.
    ee = 1.0 - math.exp(-(2.0**2) / (2.0 * (PSF_SIGMA**2 + 2.0 / 12.0)))
    frac = a.flux[bright] / scene.flux[bright]
    assert float(np.median(frac)) == pytest.approx(ee, abs=0.01)
    # Second frame: every star 2 % brighter, new noise.
    model2 = scene.sky + 1.02 * render_stars(FFI_SHAPE, scene.x, scene.y, scene.flux)
    sigma2 = noise_sigma(model2)
    rng = np.random.default_rng(11)
    frame2 = (model2 + sigma2 * rng.standard_normal(FFI_SHAPE)).astype(np.float32)
    b = forced_aperture_photometry(frame2, scene.x, scene.y, weights=w, uncertainty=sigma2)
    ratio = b.flux / a.flux
    ratio_err = ratio * np.hypot(a.flux_err / a.flux, b.flux_err / b.flux)
    good = scene.flux > 1000
    pull = (ratio[good] - 1.02) / ratio_err[good]
    assert abs(float(np.mean(pull))) < 0.3 and 0.7 < float(np.std(pull)) < 1.3


def test_flux_err_matches_empirical_scatter(scene: Scene) -> None:
    w = build_aperture_weights(scene.x, scene.y, 2.0, (4.0, 7.0))
    truth = forced_aperture_photometry(scene.model, scene.x, scene.y, weights=w).flux
    fluxes, errs = [], []
    for _ in range(24):
        r = forced_aperture_photometry(
            scene.realisation(), scene.x, scene.y, weights=w, uncertainty=scene.sigma
        )
        fluxes.append(r.flux)
        errs.append(r.flux_err)
    f, e = np.array(fluxes, dtype=np.float64), np.array(errs, dtype=np.float64)
    pulls = (f - truth) / e
    assert float(np.std(pulls)) == pytest.approx(1.0, abs=0.08)
    assert abs(float(np.mean(pulls))) < 0.05
    ratio = f.std(axis=0, ddof=1) / e.mean(axis=0)
    assert float(np.median(ratio)) == pytest.approx(1.0, abs=0.15)
    # Faint (sky-dominated) and bright (source-dominated) stars are both calibrated.
    for sel in (scene.flux < 100, scene.flux > 1e4):
        assert float(np.std(pulls[:, sel])) == pytest.approx(1.0, abs=0.15)


def test_fallback_noise_model_without_uncertainty(scene: Scene) -> None:
    w = build_aperture_weights(scene.x, scene.y, 2.0, (4.0, 7.0))
    with_unc = forced_aperture_photometry(
        scene.image, scene.x, scene.y, weights=w, uncertainty=scene.sigma
    )
    fallback = forced_aperture_photometry(scene.image, scene.x, scene.y, weights=w)
    np.testing.assert_array_equal(with_unc.flux, fallback.flux)
    # The fallback uses the same Poisson + read model as the simulation: errors agree closely.
    np.testing.assert_allclose(fallback.flux_err, with_unc.flux_err, rtol=0.1)


def test_quality_flags(small_image: np.ndarray) -> None:
    image = small_image.copy()
    x = np.array([45.0, 2091.0, 1000.0, 20.0, 1000.0, -50.0, 1e9, 600.0, 700.0, 1200.0, 1000.0])
    y = np.array([500.0, 900.0, 2047.4, 700.0, 2047.6, 1e5, 3.0, 600.0, 700.0, 1200.0, 100.0])
    # star 7: saturated; star 8: a "hole" gives negative flux; star 9: plain; 10: plain
    image += render_stars(FFI_SHAPE, x[[7, 9, 10]], y[[7, 9, 10]],
                          np.array([2e6, 3000.0, 3000.0])).astype(np.float32)  # fmt: skip
    image[699:702, 699:702] -= 30.0
    res = forced_aperture_photometry(image, x, y, saturation_level=1.5e5)
    q = res.quality
    edge, sat = int(QualityFlags.EDGE), int(QualityFlags.SATURATED)
    neg, out = int(QualityFlags.NEGATIVE_FLUX), int(QualityFlags.OUTSIDE)
    assert q[0] & edge and q[1] & edge and q[2] & edge  # apertures cut by the science edge
    assert not q[0] & out and np.isfinite(res.flux[:3]).all()
    assert res.npix[0] < np.pi * 4 and res.npix[9] == pytest.approx(np.pi * 4, rel=1e-6)
    for i in (3, 4, 5, 6):  # collateral column, virtual row, far off the chip
        assert q[i] == out and np.isnan(res.flux[i]) and np.isnan(res.flux_err[i])
    assert q[7] == sat
    assert q[8] == neg and res.flux[8] < 0
    assert q[9] == 0 and q[10] == 0
    assert res.flux[9] == pytest.approx(3000.0 * 0.93, rel=0.03)
    # Pixels beyond the science area never leak into the flux, whatever they hold.
    poisoned = image.copy()
    poisoned[:, :44] = np.nan
    poisoned[2048:, :] = 1e9
    res2 = forced_aperture_photometry(poisoned, x, y)
    np.testing.assert_array_equal(res2.flux[:3], res.flux[:3])
    np.testing.assert_array_equal(res2.quality, q)


def test_nonfinite_pixels(small_image: np.ndarray) -> None:
    image = small_image.copy()
    image[500, 500] = np.nan  # in the aperture of star 0
    image[800, 805] = np.nan  # in the annulus of star 1: ignored
    res = forced_aperture_photometry(image, [500.0, 800.0], [500.0, 800.0])
    assert np.isnan(res.flux[0]) and np.isfinite(res.flux[1])


def test_cutout_with_science_area() -> None:
    image = np.zeros((64, 64), dtype=np.float32)
    image += render_stars((64, 64), np.array([30.4]), np.array([31.7]), np.array([1000.0])).astype(
        np.float32
    )
    box = (slice(0, 64), slice(0, 64))
    res = forced_aperture_photometry(image, [30.4], [31.7], radius=5.0, annulus=(8.0, 12.0),
                                     science_area=box)  # fmt: skip
    assert res.flux[0] == pytest.approx(1000.0, rel=1e-3) and res.quality[0] == 0
    with pytest.raises(ValueError, match="science_area"):
        forced_aperture_photometry(image, [30.4], [31.7])


def test_empty_star_list(small_image: np.ndarray) -> None:
    w = build_aperture_weights(np.zeros(0), np.zeros(0))
    res = forced_aperture_photometry(small_image, np.zeros(0), np.zeros(0), weights=w)
    assert len(res) == 0 and res.flux.dtype == np.float32 and res.quality.dtype == np.int32
    assert list(res.to_frame().columns)[:4] == ["x", "y", "flux", "flux_err"]


def test_weights_are_immutable_and_reusable(small_image: np.ndarray) -> None:
    w = build_aperture_weights([100.0, 200.5], [300.0, 400.25])
    assert isinstance(w, ApertureWeights) and w.n_stars == 2 and w.stamp_size == 5
    with pytest.raises(ValueError):
        w.ap_weight[0, 0] = 1.0  # read-only arrays
    a = forced_aperture_photometry(small_image, [100.0, 200.5], [300.0, 400.25], weights=w)
    b = forced_aperture_photometry(small_image, [100.0, 200.5], [300.0, 400.25])
    np.testing.assert_array_equal(a.flux, b.flux)


def test_timing_10k_stars(small_image: np.ndarray) -> None:
    """Loose guard against per-star Python loops (measured ~25 ms; budget 100 ms)."""
    rng = np.random.default_rng(5)
    x = rng.uniform(44, 2092, 10_000)
    y = rng.uniform(0, 2048, 10_000)
    w = build_aperture_weights(x, y, 2.0, (4.0, 7.0))
    unc = np.full(FFI_SHAPE, 0.4, dtype=np.float32)
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        forced_aperture_photometry(small_image, x, y, weights=w, uncertainty=unc)
        best = min(best, time.perf_counter() - t0)
    assert best < 0.25


# --------------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------------

GOOD = np.zeros(FFI_SHAPE, dtype=np.float32)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image": np.zeros(10, dtype=np.float32)}, "2-D"),
        ({"image": np.zeros((2, *FFI_SHAPE), dtype=np.float32)}, "2-D"),
        ({"image": np.zeros(FFI_SHAPE[::-1], dtype=np.float32)}, r"shape \(2078, 2136\)"),
        ({"image": np.zeros(FFI_SHAPE, dtype=complex)}, "real numbers"),
        ({"image": [[0.0]]}, "numpy.ndarray"),
        ({"x": [1.0, 2.0]}, "same length"),
        ({"x": [[100.0]]}, "1-D"),
        ({"x": [np.nan]}, "finite"),
        ({"y": [np.inf]}, "finite"),
        ({"radius": 0.0}, "radius"),
        ({"radius": -1.0}, "radius"),
        ({"radius": np.nan}, "radius"),
        ({"annulus": (2.0, 7.0)}, "inner radius"),
        ({"annulus": (1.0, 7.0)}, "inner radius"),
        ({"annulus": (5.0, 5.0)}, "outer radius"),
        ({"annulus": (5.0,)}, "pair"),
        ({"uncertainty": np.zeros((10, 10), dtype=np.float32)}, "uncertainty shape"),
        ({"saturation_level": -1.0}, "saturation_level"),
    ],
)
def test_forced_photometry_bad_input(kwargs: dict, match: str) -> None:
    args = {"image": GOOD, "x": [100.0], "y": [200.0]}
    args.update(kwargs)
    image, x, y = args.pop("image"), args.pop("x"), args.pop("y")
    with pytest.raises(ValueError, match=match):
        forced_aperture_photometry(image, x, y, **args)


def test_weights_mismatch_raises() -> None:
    w = build_aperture_weights([100.0, 200.0], [300.0, 400.0], 2.0, (4.0, 7.0))
    with pytest.raises(ValueError, match="2 stars"):
        forced_aperture_photometry(GOOD, [100.0], [300.0], weights=w)
    with pytest.raises(ValueError, match="positions the weights"):
        forced_aperture_photometry(GOOD, [100.0, 201.0], [300.0, 400.0], weights=w)
    with pytest.raises(ValueError, match="radius"):
        forced_aperture_photometry(GOOD, [100.0, 200.0], [300.0, 400.0], weights=w, radius=3.0)
    with pytest.raises(ValueError, match="annulus"):
        forced_aperture_photometry(
            GOOD, [100.0, 200.0], [300.0, 400.0], weights=w, annulus=(5.0, 8.0)
        )
    with pytest.raises(ValueError, match="weights' shape"):
        forced_aperture_photometry(
            np.zeros((64, 64), dtype=np.float32), [100.0, 200.0], [300.0, 400.0], weights=w
        )
    with pytest.raises(ValueError, match="ApertureWeights"):
        forced_aperture_photometry(GOOD, [100.0], [300.0], weights="nope")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (10,)}, "shape"),
        ({"shape": (100, 100)}, "science_area"),
        ({"method": "center"}, "method"),
        ({"subpixels": 0}, "subpixels"),
        ({"science_area": (slice(0, 10),), "shape": (100, 100)}, "two slices"),
        ({"science_area": (slice(0, 10, 2), slice(0, 10)), "shape": (100, 100)}, "step 1"),
        ({"science_area": (slice(5, 5), slice(0, 10)), "shape": (100, 100)}, "empty"),
    ],
)
def test_build_weights_bad_input(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_aperture_weights([5.0], [5.0], 2.0, (4.0, 7.0), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fwhm": 0.0}, "fwhm"),
        ({"threshold_sigma": -1.0}, "threshold_sigma"),
        ({"max_stars": 0}, "max_stars"),
        ({"edge_px": -1}, "edge_px"),
        ({"reference": np.zeros(FFI_SHAPE[::-1], dtype=np.float32)}, "shape"),
    ],
)
def test_detect_stars_bad_input(kwargs: dict, match: str) -> None:
    reference = kwargs.pop("reference", GOOD)
    with pytest.raises(ValueError, match=match):
        detect_stars(reference, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"box_size": 2}, "box_size"),
        ({"box_size": 4096}, "exceeds"),
        ({"filter_size": 2}, "filter_size"),
        ({"estimator": "mode"}, "estimator"),
        ({"mask": np.zeros((3, 3), dtype=bool)}, "mask shape"),
        ({"sigma": 0.0}, "sigma"),
    ],
)
def test_estimate_background_bad_input(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        estimate_background(GOOD, **kwargs)


def test_estimate_background_all_nan_raises() -> None:
    with pytest.raises(ValueError, match="no box"):
        estimate_background(np.full(FFI_SHAPE, np.nan, dtype=np.float32))
