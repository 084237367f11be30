"""Tests of the photometer's several aperture radii per star (one shared annulus background).

* every radius against photutils (exact overlap, sigma-clipped annulus median) on a
  deterministic noiseless synthetic FFI, and the fraction of a Gaussian star each holds
  against the analytic encircled energy;
* the multi-radius path against separate single-radius measurements, grid weights, the
  science-area edge, non-finite pixels;
* on a sequence of jittered simulated frames measured by ``measure_ffi``: a bright constant
  star scatters less in the 3-px aperture than in the 2-px one, a faint star less in the
  1.5-px aperture than in the 3-px one;
* the per-FFI contract's new columns, and precise ``ValueError`` messages on bad radii.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from scipy.spatial import cKDTree
from scipy.special import erf

from tess_ffi.services.photometer import service
from tess_ffi.services.photometer.photometry import (
    DEFAULT_RADIUS,
    FFI_SHAPE,
    SCIENCE_COLS,
    SCIENCE_ROWS,
    PhotometryResult,
    aperture_contamination,
    build_aperture_weights,
    forced_aperture_photometry,
)
from tess_ffi.shared.contracts import (
    APERTURE_RADII,
    PHOTOMETRY_SCHEMA,
    FFIImage,
    JobSpec,
    photometry_table,
    star_catalog_table,
)
from tess_ffi.shared.quality import SATURATION_E_S, QualityFlags
from tess_ffi.shared.simulation import SimulatedSector, SimulationConfig

EXTRA = (1.5, 3.0)
RADII = (DEFAULT_RADIUS, *EXTRA)
FWHM = 1.8
PSF_SIGMA = FWHM / (2.0 * math.sqrt(2.0 * math.log(2.0)))
EXPOSURE = 1425.6  # s, effective exposure of a 1800-s FFI
READ_NOISE = 268.0  # e-, co-added read noise of one FFI pixel
EDGE = int(QualityFlags.EDGE)


# --------------------------------------------------------------------------------------------
# synthetic frames
# --------------------------------------------------------------------------------------------


def render_stars(x: np.ndarray, y: np.ndarray, flux: np.ndarray, half: int = 8) -> np.ndarray:
    """Pixel-integrated circular Gaussians (exact integrals over each pixel) on an FFI-shaped
    float64 array; the stars must lie ``half`` px or more inside the array."""
    image = np.zeros(FFI_SHAPE)
    ic = np.floor(x + 0.5).astype(int)
    ir = np.floor(y + 0.5).astype(int)
    k = np.arange(-half, half + 1)
    c = math.sqrt(2.0) * PSF_SIGMA

    def prof(pix: np.ndarray, centre: np.ndarray) -> np.ndarray:
        u = pix - centre[:, None]
        return 0.5 * (erf((u + 0.5) / c) - erf((u - 0.5) / c))

    rows, cols = ir[:, None] + k, ic[:, None] + k
    stamps = flux[:, None, None] * prof(rows, y)[:, :, None] * prof(cols, x)[:, None, :]
    rr = np.broadcast_to(rows[:, :, None], stamps.shape)
    cc = np.broadcast_to(cols[:, None, :], stamps.shape)
    np.add.at(image, (rr, cc), stamps)
    return image


def sloped_sky() -> np.ndarray:
    """100 e-/s at the first science pixel rising to 200 e-/s at the last one."""
    rows, cols = np.indices(FFI_SHAPE, dtype=np.float64)
    return 100.0 + 60.0 * (cols - 44.0) / 2047.0 + 40.0 * rows / 2047.0


class Field:
    """~250 isolated stars (100 to 1e5 e-/s) on a sloped sky, noiseless, plus its noise."""

    def __init__(self, seed: int = 3, n: int = 250) -> None:
        rng = np.random.default_rng(seed)
        x = rng.uniform(SCIENCE_COLS.start + 12, SCIENCE_COLS.stop - 12, 5 * n)
        y = rng.uniform(SCIENCE_ROWS.start + 12, SCIENCE_ROWS.stop - 12, 5 * n)
        close = cKDTree(np.c_[x, y]).query_pairs(16.0, output_type="ndarray")
        keep = np.ones(x.size, dtype=bool)
        keep[close.ravel()] = False
        self.x, self.y = x[keep][:n], y[keep][:n]
        assert self.x.size == n
        self.flux = 10.0 ** rng.uniform(2.0, 5.0, n)
        self.model = (sloped_sky() + render_stars(self.x, self.y, self.flux)).astype(np.float32)
        self.sigma = np.sqrt(self.model / EXPOSURE + (READ_NOISE / EXPOSURE) ** 2).astype(
            np.float32)  # fmt: skip
        self.noisy = (self.model + self.sigma * rng.standard_normal(FFI_SHAPE, np.float32))


@pytest.fixture(scope="module")
def field() -> Field:
    return Field()


def all_fluxes(res: PhotometryResult) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """``{radius: (flux, flux_err)}`` of a multi-radius result."""
    assert res.extra_flux is not None and res.extra_flux_err is not None
    out = {DEFAULT_RADIUS: (res.flux, res.flux_err)}
    for j, r in enumerate(res.extra_radii):
        out[r] = (res.extra_flux[j], res.extra_flux_err[j])
    return out


# --------------------------------------------------------------------------------------------
# each radius against photutils and the analytic encircled energy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grid", [None, 0.01])
def test_every_radius_matches_photutils(field: Field, grid: float | None) -> None:
    from astropy.stats import SigmaClip
    from photutils.aperture import (
        ApertureStats,
        CircularAnnulus,
        CircularAperture,
        aperture_photometry,
    )

    w = build_aperture_weights(field.x, field.y, extra_radii=EXTRA, grid=grid)
    res = forced_aperture_photometry(field.model, w.x, w.y, weights=w)
    xy = np.c_[w.x, w.y]
    bkg = np.asarray(ApertureStats(field.model, CircularAnnulus(xy, 4.0, 7.0),
                                   sigma_clip=SigmaClip(sigma=3.0, maxiters=5)).median)
    np.testing.assert_allclose(res.bkg, bkg, rtol=1e-6)
    fluxes = all_fluxes(res)
    assert sorted(fluxes) == sorted(RADII)
    for r, (flux, _) in fluxes.items():
        aperture = CircularAperture(xy, r)
        expected = np.asarray(aperture_photometry(field.model, aperture, method="exact")[
            "aperture_sum"]) - bkg * aperture.area  # fmt: skip
        np.testing.assert_allclose(flux, expected, rtol=1e-4, err_msg=f"radius {r}")
    np.testing.assert_allclose(w.radii_npix, np.broadcast_to(np.pi * np.square(RADII)[:, None],
                                                             w.radii_npix.shape), rtol=1e-6)
    assert np.all(res.quality == 0)


def test_bigger_radius_holds_more_of_a_gaussian_star(field: Field) -> None:
    """The fraction of a star's light in each aperture is the Gaussian encircled energy
    ``1 - exp(-r^2 / (2 s^2))``, with ``s^2 = sigma^2 + 2/12``: the exact-overlap weights on
    pixel-integrated data see the PSF blurred by two pixel boxes. A larger aperture also
    depends less on where the star sits within its pixel."""
    res = forced_aperture_photometry(field.model, field.x, field.y, extra_radii=EXTRA)
    fluxes = all_fluxes(res)
    fractions = {r: fluxes[r][0].astype(np.float64) / field.flux for r in RADII}
    s2 = PSF_SIGMA**2 + 2.0 / 12.0
    analytic = {r: 1.0 - math.exp(-(r**2) / (2.0 * s2)) for r in RADII}
    assert analytic[1.5] == pytest.approx(0.776, abs=1e-3)
    assert analytic[3.0] == pytest.approx(0.9975, abs=1e-4)
    for r in RADII:
        assert float(np.median(fractions[r])) == pytest.approx(analytic[r], abs=0.003)
    assert np.all(fractions[1.5] < fractions[2.0]) and np.all(fractions[2.0] < fractions[3.0])
    # Sub-pixel phase sensitivity: spread of the fraction over the random phases of the
    # brighter stars (for faint ones, the annulus median's small bias on the sloped sky shows).
    bright = field.flux > 3000.0
    assert np.count_nonzero(bright) > 50
    spread = {r: float(np.std(fractions[r][bright])) for r in RADII}
    assert spread[1.5] > 2.0 * spread[2.0] > 4.0 * spread[3.0]
    assert spread[2.0] > 5e-4 and spread[3.0] < 3e-4


# --------------------------------------------------------------------------------------------
# the multi-radius path: same numbers as separate measurements
# --------------------------------------------------------------------------------------------


def test_same_as_one_radius_at_a_time(field: Field) -> None:
    multi = forced_aperture_photometry(field.noisy, field.x, field.y, uncertainty=field.sigma,
                                       extra_radii=EXTRA)
    fluxes = all_fluxes(multi)
    for r in RADII:
        single = forced_aperture_photometry(field.noisy, field.x, field.y,
                                            uncertainty=field.sigma, radius=r)
        np.testing.assert_allclose(fluxes[r][0], single.flux, rtol=2e-6, atol=1e-4)
        np.testing.assert_allclose(fluxes[r][1], single.flux_err, rtol=2e-6)
        np.testing.assert_array_equal(multi.bkg, single.bkg)
        np.testing.assert_array_equal(multi.bkg_err, single.bkg_err)
    # The fallback noise model too.
    multi = forced_aperture_photometry(field.noisy, field.x, field.y, extra_radii=(3.0,))
    single = forced_aperture_photometry(field.noisy, field.x, field.y, radius=3.0)
    assert multi.extra_flux_err is not None
    np.testing.assert_allclose(multi.extra_flux_err[0], single.flux_err, rtol=2e-6)
    # Result layout.
    assert multi.extra_radii == (3.0,)
    assert multi.extra_flux is not None and multi.extra_flux.shape == (1, field.x.size)
    assert multi.extra_flux.dtype == np.float32 and multi.extra_flux_err.dtype == np.float32
    assert multi.extra_npix is not None
    np.testing.assert_allclose(multi.extra_npix[0], 9.0 * np.pi, rtol=1e-6)
    frame = multi.to_frame()
    assert list(frame.columns)[-2:] == ["flux_r3", "flux_err_r3"]
    np.testing.assert_array_equal(frame["flux_r3"].to_numpy(), multi.extra_flux[0])


def test_weights_layout_and_grid() -> None:
    rng = np.random.default_rng(8)
    x = rng.uniform(30.0, 2110.0, 2000)  # some off the science area, some on its edges
    y = rng.uniform(-10.0, 2060.0, 2000)
    g = build_aperture_weights(x, y, extra_radii=EXTRA, grid=0.01)
    e = build_aperture_weights(g.x, g.y, extra_radii=EXTRA)
    assert g.radii == RADII and g.extra_radii == EXTRA and g.stamp_size == 7
    assert g.radii_weight.shape == (3, x.size, 49) and g.radii_weight.dtype == np.float32
    assert "extra_radii=(1.5, 3.0)" in repr(g)
    np.testing.assert_array_equal(g.ap_index, e.ap_index)
    np.testing.assert_allclose(g.radii_weight, e.radii_weight, atol=1e-6)
    np.testing.assert_allclose(g.radii_npix, e.radii_npix, rtol=1e-6)
    for name in ("radii_edge", "outside", "ap_mask"):
        np.testing.assert_array_equal(getattr(g, name), getattr(e, name))
    # The main radius's weights are those of a single-radius build, padded to the 7x7 stamp.
    one = build_aperture_weights(g.x, g.y)
    core = g.ap_weight.reshape(-1, 7, 7)[:, 1:-1, 1:-1].reshape(-1, 25)
    np.testing.assert_allclose(core, one.ap_weight, rtol=1e-6, atol=1e-12)
    assert not g.ap_weight.reshape(-1, 7, 7)[:, [0, -1], :].any()
    np.testing.assert_array_equal(g.edge, one.edge)
    # Cut apertures: the larger, the more often.
    cut = g.radii_edge.sum(axis=1)
    assert cut[1] <= cut[0] < cut[2]
    with pytest.raises(ValueError):
        g.extra_weight[0, 0, 0] = 1.0  # read-only


def test_edge_star_keeps_its_2px_flux_and_is_flagged(field: Field) -> None:
    """A star 2.5 px from the first science column: its 3-px aperture is cut, its 2-px and
    1.5-px ones are whole. EDGE is set (the largest aperture is cut); the 2-px flux is the
    same as without extra radii, the 3-px one covers the pixels inside only."""
    x = np.array([46.2, 300.2, 40.0])
    y = np.array([500.3, 500.3, 500.3])
    flux = np.array([20000.0, 20000.0, 0.0])
    image = (150.0 + render_stars(x[:2], y[:2], flux[:2])).astype(np.float32)
    image[:, :44] = np.nan  # collateral pixels are never used
    res = forced_aperture_photometry(image, x, y, extra_radii=EXTRA)
    single = forced_aperture_photometry(image, x, y)
    assert res.quality[0] & EDGE and not single.quality[0] & EDGE
    assert not res.quality[1] & EDGE
    assert res.quality[2] == int(QualityFlags.OUTSIDE) == single.quality[2]
    np.testing.assert_allclose(res.flux[:2], single.flux[:2], rtol=1e-6)
    assert res.extra_flux is not None and res.extra_npix is not None
    r15, r3 = res.extra_flux[:, 0]
    assert r15 == pytest.approx(res.extra_flux[0, 1], rel=1e-5)  # whole
    assert 0.9 * res.extra_flux[1, 1] < r3 < 0.99999 * res.extra_flux[1, 1]  # cut
    assert res.extra_npix[1, 0] < 9.0 * np.pi - 0.5
    assert np.isnan(res.extra_flux[:, 2]).all() and np.isnan(res.flux[2])


def test_nonfinite_pixels_spoil_only_the_apertures_that_hold_them() -> None:
    x = np.array([500.0, 600.0, 700.0, 800.0])
    y = np.full(4, 1000.0)
    image = (150.0 + render_stars(x, y, np.full(4, 5000.0))).astype(np.float32)
    sigma = np.full(FFI_SHAPE, 0.5, dtype=np.float32)
    clean = forced_aperture_photometry(image, x, y, uncertainty=sigma, extra_radii=EXTRA)
    image[1000, 502] = np.nan  # 2 px from star 0: outside r = 1.5, inside r = 2 and 3
    image[1003, 603] = np.inf  # the stamp corner of star 1: outside every aperture
    sigma[1000, 703] = np.nan  # uncertainty 3 px from star 2: only in r = 3 (at its rim)
    res = forced_aperture_photometry(image, x, y, uncertainty=sigma, extra_radii=EXTRA)
    assert res.extra_flux is not None and res.extra_flux_err is not None
    assert clean.extra_flux is not None
    assert np.isnan(res.flux[0]) and np.isnan(res.extra_flux[1, 0])
    assert res.extra_flux[0, 0] == pytest.approx(clean.extra_flux[0, 0], rel=1e-6)
    # (The inf pixel is also in star 1's annulus, which ignores it: its background moves by
    # a hair.)
    np.testing.assert_allclose(res.flux[1:], clean.flux[1:], rtol=1e-5)
    np.testing.assert_allclose(res.extra_flux[:, 1:], clean.extra_flux[:, 1:], rtol=1e-5)
    assert np.isnan(res.extra_flux_err[1, 2]) and np.isfinite(res.extra_flux[1, 2])
    assert np.isfinite(res.flux_err[2]) and np.isfinite(res.extra_flux_err[0, 2])
    assert np.all(np.isfinite(res.extra_flux_err[:, 3]))


# --------------------------------------------------------------------------------------------
# jittered simulated frames: the best radius depends on the star's brightness
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> SimulatedSector:
    # 30 cadences of 30 min before the first momentum dump: white jitter (0.05 px rms) and
    # a slow drift; no variable stars.
    return SimulatedSector(SimulationConfig(n_stars=1500, n_cadences=30, seed=11,
                                            variable_fraction=0.0))


def catalog(sim: SimulatedSector) -> pa.Table:
    c = sim.catalog
    return star_catalog_table(np.arange(1, sim.n_stars + 1), c.ra, c.dec, c.x, c.y, c.tmag)


def ffi_message(sim: SimulatedSector, cadence: int, stars: pa.Table) -> FFIImage:
    image, unc, header = sim.render(cadence)
    return FFIImage(job=JobSpec(sector=1, camera=1, ccd=1, source="sim"), cadence=cadence,
                    filename=sim.ffi_filename(cadence), header=header.tostring(), image=image,
                    uncertainty=unc, stars=stars)


@pytest.fixture(scope="module")
def tables(sim: SimulatedSector) -> list[pa.Table]:
    stars = catalog(sim)
    service._weights_cache.clear()
    return [service.measure_ffi(ffi_message(sim, k, stars))[2] for k in range(sim.n_cadences)]


def test_measure_ffi_fills_the_aperture_columns(sim: SimulatedSector, tables: list[pa.Table]) -> None:
    assert service.EXTRA_RADII == tuple(APERTURE_RADII.values()) == EXTRA
    table = tables[0]
    assert table.schema.equals(PHOTOMETRY_SCHEMA)
    cols = {name: table.column(name).to_numpy() for name in table.column_names}
    on_chip = (cols["quality"] & int(QualityFlags.OUTSIDE)) == 0
    assert on_chip.mean() > 0.99
    for suffix in APERTURE_RADII:
        for name in (f"flux_{suffix}", f"flux_err_{suffix}"):
            assert np.isfinite(cols[name][on_chip]).all(), name
    # The same numbers as forced photometry at the reported (tracked, on-grid) positions.
    image, unc, _ = sim.render(0)
    x, y = (cols[k].astype(np.float64) for k in ("x", "y"))
    w = build_aperture_weights(x, y, extra_radii=EXTRA, grid=0.01)
    res = forced_aperture_photometry(image, w.x, w.y, uncertainty=unc, weights=w,
                                     saturation_level=0.98 * SATURATION_E_S)
    # The table's quality holds these bits (plus CONTAMINATED and the frame's DQUALITY).
    assert np.all((cols["quality"] & res.quality) == res.quality)
    assert res.extra_flux is not None and res.extra_flux_err is not None
    sel = on_chip
    np.testing.assert_allclose(cols["flux"][sel], res.flux[sel], rtol=1e-4, atol=1e-3)
    for j, suffix in enumerate(APERTURE_RADII):
        np.testing.assert_allclose(cols[f"flux_{suffix}"][sel], res.extra_flux[j][sel],
                                   rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(cols[f"flux_err_{suffix}"][sel], res.extra_flux_err[j][sel],
                                   rtol=1e-4)
    # Bright stars: the larger aperture holds more light.
    bright = on_chip & (sim.catalog.tmag.to_numpy() < 11)
    assert np.all(cols["flux_r3"][bright] > cols["flux"][bright])
    assert np.all(cols["flux"][bright] > cols["flux_r1p5"][bright])


def test_measure_ffi_is_stateless_with_extra_radii(sim: SimulatedSector,
                                                   tables: list[pa.Table]) -> None:
    stars = catalog(sim)
    again = service.measure_ffi(ffi_message(sim, 0, stars))[2]  # after cadences 1-29
    for name in tables[0].column_names:
        np.testing.assert_array_equal(again.column(name).to_numpy(),
                                      tables[0].column(name).to_numpy(), err_msg=name)


def test_best_radius_follows_brightness(sim: SimulatedSector, tables: list[pa.Table]) -> None:
    """Constant stars on jittered frames: bright ones scatter least with r = 3 px (the 2-px
    flux moves with the star's sub-pixel phase), faint, background-limited ones with
    r = 1.5 px."""
    c = sim.catalog
    x0, y0, tmag = c.x.to_numpy(), c.y.to_numpy(), c.tmag.to_numpy()
    contamination = aperture_contamination(x0, y0, 15000.0 * 10 ** (-0.4 * (tmag - 10.0)), 3.0)
    clean = ((contamination < 0.01) & ~c.saturated.to_numpy() & (x0 > 60) & (x0 < 2076)
             & (y0 > 16) & (y0 < 2032))  # fmt: skip

    def scatter(column: str) -> np.ndarray:
        f = np.array([t.column(column).to_numpy() for t in tables], dtype=np.float64)
        return np.std(f / f.mean(axis=0), axis=0)

    s15, s2, s3 = scatter("flux_r1p5"), scatter("flux"), scatter("flux_r3")
    bright = clean & (tmag > 7.5) & (tmag < 10.5)
    faint = clean & (tmag > 14.0)
    assert np.count_nonzero(bright) >= 30 and np.count_nonzero(faint) >= 300
    # Bright: r = 3 px clearly better than 2 px (measured 0.39x), for nearly every star.
    assert np.median(s3[bright]) < 0.6 * np.median(s2[bright])
    assert np.mean(s3[bright] < s2[bright]) > 0.85
    # Faint: r = 1.5 px clearly better than 3 px (measured 0.61x), for nearly every star.
    assert np.median(s15[faint]) < 0.8 * np.median(s3[faint])
    assert np.mean(s15[faint] < s3[faint]) > 0.9


# --------------------------------------------------------------------------------------------
# the contract
# --------------------------------------------------------------------------------------------


def test_contract_columns() -> None:
    assert APERTURE_RADII == {"r1p5": 1.5, "r3": 3.0}
    names = PHOTOMETRY_SCHEMA.names
    assert names[:7] == ["star_id", "flux", "flux_err", "bkg", "x", "y", "quality"]
    assert names[7:] == ["flux_r1p5", "flux_err_r1p5", "flux_r3", "flux_err_r3"]
    assert all(PHOTOMETRY_SCHEMA.field(n).type == pa.float32() for n in names[7:])
    t = photometry_table([1, 2], flux=[1.0, 2.0], flux_r3=np.array([3.0, 4.0]))
    assert t.schema.equals(PHOTOMETRY_SCHEMA)
    assert t.column("flux_r3").to_pylist() == [3.0, 4.0]
    assert np.isnan(t.column("flux_err_r1p5").to_numpy()).all()


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ((4.0,), r"extra_radii\[0\] \(4.0\) must be < the annulus inner radius \(4.0\)"),
        ((1.5, 5.0), r"extra_radii\[1\] \(5.0\) must be < the annulus inner radius \(4.0\)"),
        ((0.0,), r"extra_radii\[0\] must be finite and > 0, got 0.0"),
        ((-1.5,), r"extra_radii\[0\] must be finite and > 0, got -1.5"),
        ((float("nan"),), r"extra_radii\[0\] must be finite and > 0, got nan"),
        ((float("inf"),), r"extra_radii\[0\] must be finite and > 0, got inf"),
        ((2.0,), r"extra_radii\[0\] \(2.0\) repeats a radius already measured"),
        ((1.5, 1.5), r"extra_radii\[1\] \(1.5\) repeats a radius already measured"),
        (("a",), r"extra_radii\[0\] must be a number, got 'a'"),
        ((None,), r"extra_radii\[0\] must be a number, got None"),
        (3.0, r"extra_radii must be a sequence of radii \(e.g. \(1.5, 3.0\)\), got 3.0"),
        ("3", r"extra_radii must be a sequence of radii"),
    ],
)
def test_bad_extra_radii(extra: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_aperture_weights([100.0], [200.0], extra_radii=extra)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=match):
        forced_aperture_photometry(np.zeros(FFI_SHAPE, dtype=np.float32), [100.0], [200.0],
                                   extra_radii=extra)  # type: ignore[arg-type]


def test_bad_extra_radii_relative_to_annulus_and_weights() -> None:
    with pytest.raises(ValueError, match=r"extra_radii\[0\] \(5.5\) must be < the annulus inner"
                                         r" radius \(5.0\)"):
        build_aperture_weights([100.0], [200.0], annulus=(5.0, 8.0), extra_radii=(5.5,))
    # A larger annulus allows larger extra radii.
    w = build_aperture_weights([100.0], [200.0], annulus=(6.0, 9.0), extra_radii=(5.5,))
    assert w.stamp_size == 13
    image = np.zeros(FFI_SHAPE, dtype=np.float32)
    w = build_aperture_weights([100.0], [200.0], extra_radii=EXTRA)
    with pytest.raises(ValueError, match=r"extra_radii \(3.0,\) differ from the weights' "
                                         r"extra_radii \(1.5, 3.0\)"):
        forced_aperture_photometry(image, [100.0], [200.0], weights=w, extra_radii=(3.0,))
    res = forced_aperture_photometry(image, [100.0], [200.0], weights=w, extra_radii=[1.5, 3])
    assert res.extra_radii == EXTRA
