"""Tests of the photometer's pointing tracking and contamination flags.

* ``measure_frame_offset`` against the simulator's true pointing offset (header cards
  SIMDX/SIMDY, read here only: the pipeline never uses them) and against shifts, a rotation
  and a plate-scale change injected into deterministic synthetic full-size FFIs;
* on a simulated sequence of jittered frames, the aperture flux of constant stars scatters
  clearly less with tracking than without;
* ``aperture_contamination`` and the ``CONTAMINATED`` bit set by ``measure_ffi``;
* ``build_aperture_weights(grid=...)``, the fast weights the photometer rebuilds per frame;
* precise ``ValueError`` messages on bad input.
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
    FFI_SHAPE,
    SCIENCE_COLS,
    SCIENCE_ROWS,
    FrameOffset,
    aperture_contamination,
    build_aperture_weights,
    forced_aperture_photometry,
    measure_frame_offset,
    select_tracking_stars,
)
from tess_ffi.shared.contracts import FFIImage, JobSpec, star_catalog_table
from tess_ffi.shared.fits_io import header_wcs
from tess_ffi.shared.quality import SATURATION_E_S, QualityFlags
from tess_ffi.shared.simulation import SimulatedSector, SimulationConfig

EXPOSURE = 1425.6  # s, effective exposure of a 1800-s FFI
READ_NOISE = 268.0  # e-, co-added read noise of one FFI pixel
CENTRE = ((SCIENCE_COLS.start + SCIENCE_COLS.stop - 1) / 2, (SCIENCE_ROWS.start + SCIENCE_ROWS.stop - 1) / 2)
CONTAMINATED = int(QualityFlags.CONTAMINATED)


def tmag_flux(tmag: np.ndarray) -> np.ndarray:
    return 15000.0 * 10.0 ** (-0.4 * (np.asarray(tmag, dtype=np.float64) - 10.0))


# --------------------------------------------------------------------------------------------
# synthetic frames
# --------------------------------------------------------------------------------------------


def render_psf(
    shape: tuple[int, int], x: np.ndarray, y: np.ndarray, flux: np.ndarray, *,
    sigma: float = 0.74, halo_fraction: float = 0.1, halo_scale: float = 2.5, half: int = 9,
) -> np.ndarray:
    """Pixel-integrated core + halo circular Gaussians (exact integrals), float64."""
    image = np.zeros(shape)
    ic = np.floor(x + 0.5).astype(int)
    ir = np.floor(y + 0.5).astype(int)
    k = np.arange(-half, half + 1)
    cols, rows = ic[:, None] + k, ir[:, None] + k

    def prof(pix: np.ndarray, centre: np.ndarray, s: float) -> np.ndarray:
        u = pix - centre[:, None]
        c = math.sqrt(2.0) * s
        return 0.5 * (erf((u + 0.5) / c) - erf((u - 0.5) / c))

    stamps = np.zeros((x.size, k.size, k.size))
    for frac, s in ((1.0 - halo_fraction, sigma), (halo_fraction, halo_scale * sigma)):
        stamps += frac * prof(rows, y, s)[:, :, None] * prof(cols, x, s)[:, None, :]
    stamps *= flux[:, None, None]
    rr = np.broadcast_to(rows[:, :, None], stamps.shape)
    cc = np.broadcast_to(cols[:, None, :], stamps.shape)
    ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
    np.add.at(image, (rr[ok], cc[ok]), stamps[ok])
    return image


def noisy_frame(x: np.ndarray, y: np.ndarray, flux: np.ndarray, seed: int) -> np.ndarray:
    """A full-size FFI: the stars on a 150 e-/s sky, Poisson + read noise of an 1800-s FFI."""
    model = 150.0 + render_psf(FFI_SHAPE, x, y, flux)
    sigma = np.sqrt(model / EXPOSURE + (READ_NOISE / EXPOSURE) ** 2)
    rng = np.random.default_rng(seed)
    return (model + sigma * rng.standard_normal(FFI_SHAPE)).astype(np.float32)


def isolated_positions(n: int, seed: int, min_sep: float = 12.0, margin: float = 20.0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(SCIENCE_COLS.start + margin, SCIENCE_COLS.stop - margin, 4 * n)
    y = rng.uniform(SCIENCE_ROWS.start + margin, SCIENCE_ROWS.stop - margin, 4 * n)
    close = cKDTree(np.c_[x, y]).query_pairs(min_sep, output_type="ndarray")
    keep = np.ones(x.size, dtype=bool)
    keep[close.ravel()] = False
    return x[keep][:n], y[keep][:n], rng


# --------------------------------------------------------------------------------------------
# simulated sector
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> SimulatedSector:
    # 80 cadences of 30 min: the first momentum dump (a kick of ~0.3 px rms) is cadence 72.
    return SimulatedSector(SimulationConfig(n_stars=1500, n_cadences=80, seed=11,
                                            variable_fraction=0.0))


@pytest.fixture(scope="module")
def tracking(sim: SimulatedSector) -> np.ndarray:
    c = sim.catalog
    return select_tracking_stars(c.x.to_numpy(), c.y.to_numpy(), c.tmag.to_numpy())


@pytest.mark.parametrize("cadence", [0, 7, 31, 72, 79])
def test_offset_matches_simulated_pointing(sim: SimulatedSector, tracking: np.ndarray,
                                           cadence: int) -> None:
    image, _, header = sim.render(cadence)
    x, y = sim.catalog.x.to_numpy()[tracking], sim.catalog.y.to_numpy()[tracking]
    off = measure_frame_offset(image, x, y, saturation_level=0.98 * SATURATION_E_S)
    true_dx, true_dy = float(header["SIMDX"]), float(header["SIMDY"])
    assert off.ok and off.reason == ""
    assert off.affine and off.n_stars == tracking.size and off.n_used >= 0.9 * tracking.size
    # Target 0.01 px; the estimate does ~30x better.
    assert abs(off.dx - true_dx) < 0.01 and abs(off.dy - true_dy) < 0.01
    assert abs(off.dx - true_dx) < 0.002 and abs(off.dy - true_dy) < 0.002
    # A pure translation: the linear terms move no star of the CCD by more than 0.002 px.
    corners_x = np.array([SCIENCE_COLS.start, SCIENCE_COLS.stop - 1] * 2, dtype=float)
    corners_y = np.array([SCIENCE_ROWS.start] * 2 + [SCIENCE_ROWS.stop - 1] * 2, dtype=float)
    ox, oy = off.offset_at(corners_x, corners_y)
    assert np.all(np.abs(ox - true_dx) < 0.003) and np.all(np.abs(oy - true_dy) < 0.003)
    assert 0 < off.rms < 0.01 and 0 < off.dx_err < 0.002
    if cadence == 72:  # the momentum dump's kick, found by the coarse stage
        assert cadence in sim.momentum_dump_cadences
        assert math.hypot(true_dx, true_dy) > 0.3


def test_tracking_lowers_flux_scatter_of_constant_stars(sim: SimulatedSector,
                                                        tracking: np.ndarray) -> None:
    """Same frames, same apertures, at the WCS positions or at the tracked ones: tracking
    must clearly lower the frame-to-frame scatter of constant bright stars, and match what
    perfect knowledge of the pointing (the simulator's truth) gives."""
    c = sim.catalog
    x0, y0, tmag = c.x.to_numpy(), c.y.to_numpy(), c.tmag.to_numpy()
    contamination = aperture_contamination(x0, y0, tmag_flux(tmag))
    bright = ((tmag > 7.5) & (tmag < 10.5) & (contamination < 0.01) & ~c.saturated.to_numpy()
              & (x0 > 60) & (x0 < 2076) & (y0 > 16) & (y0 < 2032))  # fmt: skip
    assert np.count_nonzero(bright) >= 40
    xs, ys = x0[bright], y0[bright]
    fixed, tracked, truth = [], [], []
    cadences = range(0, 72)  # before the dump: white jitter (0.05 px rms) and slow drift
    for k in cadences:
        image, unc, header = sim.render(k)
        off = measure_frame_offset(image, x0[tracking], y0[tracking])
        assert off.ok
        xt, yt = off.apply(xs, ys)
        fixed.append(forced_aperture_photometry(image, xs, ys, uncertainty=unc).flux)
        tracked.append(forced_aperture_photometry(image, xt, yt, uncertainty=unc).flux)
        dx, dy = float(header["SIMDX"]), float(header["SIMDY"])
        truth.append(forced_aperture_photometry(image, xs + dx, ys + dy, uncertainty=unc).flux)

    def scatter(fluxes: list[np.ndarray]) -> np.ndarray:
        f = np.array(fluxes, dtype=np.float64)
        return np.std(f / f.mean(axis=0), axis=0)

    s_fixed, s_tracked, s_truth = scatter(fixed), scatter(tracked), scatter(truth)
    assert np.median(s_tracked) < 0.75 * np.median(s_fixed)
    assert np.mean(s_tracked < s_fixed) > 0.8
    np.testing.assert_allclose(np.median(s_tracked), np.median(s_truth), rtol=0.03)


# --------------------------------------------------------------------------------------------
# injected shifts and rotation on synthetic frames
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def field() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y, rng = isolated_positions(300, seed=3)
    return x, y, tmag_flux(rng.uniform(8.0, 11.5, x.size))


def transform(x: np.ndarray, y: np.ndarray, theta: float, scale: float, dx: float,
              dy: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate by ``theta`` and scale by ``1 + scale`` about the science-area centre, then
    shift."""
    u, v = x - CENTRE[0], y - CENTRE[1]
    c, s = math.cos(theta), math.sin(theta)
    return (CENTRE[0] + (1 + scale) * (c * u - s * v) + dx,
            CENTRE[1] + (1 + scale) * (s * u + c * v) + dy)


def test_offset_follows_rotation_and_plate_scale(field) -> None:
    x, y, flux = field
    theta, scale = 2e-4, 5e-5  # 0.2 px and 0.05 px at 1000 px from the centre
    xt, yt = transform(x, y, theta, scale, 0.07, -0.04)
    image = noisy_frame(xt, yt, flux, seed=4)
    off = measure_frame_offset(image, x, y)
    assert off.ok and off.affine and off.n_used >= 290
    ox, oy = off.offset_at(x, y)
    assert np.max(np.abs(ox - (xt - x))) < 0.01 and np.max(np.abs(oy - (yt - y))) < 0.01
    assert np.sqrt(np.mean((ox - (xt - x)) ** 2 + (oy - (yt - y)) ** 2)) < 0.002
    assert off.dxdy == pytest.approx(-theta, abs=1e-5) and off.dydx == pytest.approx(theta, abs=1e-5)
    assert off.dxdx == pytest.approx(scale, abs=1e-5) and off.dydy == pytest.approx(scale, abs=1e-5)
    # A translation alone cannot follow the rotation: the affine part is what keeps the
    # corners of the CCD within 0.01 px.
    shift = measure_frame_offset(image, x, y, fit_affine=False)
    assert not shift.affine
    sx, sy = shift.offset_at(x, y)
    assert np.max(np.hypot(sx - (xt - x), sy - (yt - y))) > 0.1


def test_large_offset_and_outliers_are_handled(field) -> None:
    x, y, flux = field
    xt, yt = x + 1.6, y - 1.3  # beyond a pixel: the coarse centroids re-centre the stamps
    # Ten stars that moved on their own (proper motion, a blend): clipped, not averaged in.
    xt[:10] += 0.4
    image = noisy_frame(xt, yt, flux, seed=5)
    off = measure_frame_offset(image, x, y)
    assert off.ok and abs(off.dx - 1.6) < 0.003 and abs(off.dy + 1.3) < 0.003
    assert off.n_used <= x.size - 10


def test_offset_with_few_stars() -> None:
    x, y, _ = isolated_positions(5, seed=6)
    flux = np.full(x.size, 2e4)
    image = noisy_frame(x + 0.1, y + 0.2, flux, seed=7)
    off = measure_frame_offset(image, x, y)
    # Few stars: a translation only, still measured.
    assert off.ok and not off.affine and off.n_used == 5
    assert abs(off.dx - 0.1) < 0.005 and abs(off.dy - 0.2) < 0.005
    few = measure_frame_offset(image, x[:2], y[:2])
    assert not few.ok and (few.dx, few.dy) == (0.0, 0.0) and few.n_used == 2
    assert few.reason == "only 2 of 2 tracking stars usable, 3 needed"
    assert few.apply([10.0], [20.0]) == (np.array([10.0]), np.array([20.0]))
    # Stars off the frame, on a saturated or a NaN pixel are not used.
    image[int(round(y[0] + 0.2)), int(round(x[0] + 0.1))] = 1e6
    image[int(round(y[1] + 0.2)), int(round(x[1] + 0.1))] = np.nan
    xo = np.r_[x, -1e4, 5000.0]
    yo = np.r_[y, -1e4, 10.0]
    part = measure_frame_offset(image, xo, yo)
    assert part.ok and part.n_stars == 7 and part.n_used == 3
    empty = measure_frame_offset(image, [], [])
    assert not empty.ok and empty.reason == "only 0 of 0 tracking stars usable, 3 needed"
    assert isinstance(empty, FrameOffset)


def test_offset_is_cheap(field) -> None:
    """Loose guard (measured ~4 ms for 200 stars on a full frame; budget 60 ms)."""
    import time

    x, y, flux = field
    image = noisy_frame(x + 0.05, y, flux, seed=8)
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        measure_frame_offset(image, x[:200], y[:200])
        best = min(best, time.perf_counter() - t0)
    assert best < 0.06


# --------------------------------------------------------------------------------------------
# tracking-star selection
# --------------------------------------------------------------------------------------------


def test_select_tracking_stars_rules() -> None:
    x = np.array([500.0, 503.0, 900.0, 1200.0, 1500.0, 46.0, 700.0, 704.0, 1000.0])
    y = np.array([500.0, 500.0, 900.0, 1200.0, 1500.0, 700.0, 300.0, 300.0, 1000.0])
    tmag = np.array([9.0, 10.0, 11.0, 13.5, 6.0, 9.0, 9.0, 12.5, 10.0])
    # 0, 1: a blend (1 mag apart at 3 px); 3: too faint; 4: saturates; 5: on the edge;
    # 6: its neighbour at 4 px is 3.5 mag fainter, so it is isolated enough; 7: too faint;
    # 8: a neighbour of unknown magnitude counts as bright.
    x = np.r_[x, 1002.0]
    y = np.r_[y, 1000.0]
    tmag = np.r_[tmag, np.nan]
    assert select_tracking_stars(x, y, tmag).tolist() == [2, 6]
    assert select_tracking_stars(x, y, tmag, isolation_px=0).tolist() == [0, 1, 2, 6, 8]
    assert select_tracking_stars(x, y, tmag, tmag_range=(5.0, 12.0)).tolist() == [2, 4, 6]


def test_select_tracking_stars_spread_and_cap() -> None:
    rng = np.random.default_rng(9)
    n = 5000
    x = rng.uniform(44, 2092, n)
    y = rng.uniform(0, 2048, n)
    tmag = rng.uniform(7.0, 15.0, n)
    # Make the brightest stars all crowd one corner: a brightness cut alone would take them.
    x[:400] = rng.uniform(50, 300, 400)
    y[:400] = rng.uniform(10, 260, 400)
    tmag[:400] = rng.uniform(7.5, 8.0, 400)
    sel = select_tracking_stars(x, y, tmag, max_stars=128)
    assert sel.size == 128 and np.all(np.diff(sel) > 0) and sel.dtype == np.int64
    cells = np.unique((np.clip((y[sel] / 256).astype(int), 0, 7)) * 8
                      + np.clip(((x[sel] - 44) / 256).astype(int), 0, 7))
    assert cells.size >= 60
    np.testing.assert_array_equal(sel, select_tracking_stars(x, y, tmag, max_stars=128))
    assert select_tracking_stars(x[:0], y[:0], tmag[:0]).size == 0


# --------------------------------------------------------------------------------------------
# contamination
# --------------------------------------------------------------------------------------------


def test_contamination_fraction() -> None:
    x = np.array([100.0, 102.0, 500.0, 800.0, 803.0])
    y = np.array([100.0, 100.0, 500.0, 800.0, 800.0])
    flux = np.array([1000.0, 2000.0, 1000.0, 1000.0, 10.0])
    c = aperture_contamination(x, y, flux)
    assert c[0] > 0.1 and c[0] == pytest.approx(0.9, abs=0.05)  # a brighter star at 2 px
    assert c[1] == pytest.approx(c[0] * 1000.0 / 2000.0 / 2.0, rel=1e-12)
    assert c[2] == 0.0  # isolated
    assert 0 < c[3] < 0.01  # a star 5 mag fainter at 3 px
    assert c[4] > 1.0  # ... which its bright neighbour swamps
    assert aperture_contamination(x, y, flux, max_distance=1.5).tolist() == [0.0] * 5
    zero = aperture_contamination([10.0, 11.0, 50.0], [10.0, 10.0, 50.0], [0.0, 5.0, 0.0])
    assert zero[0] == np.inf and zero[1] == 0.0 and zero[2] == 0.0
    assert aperture_contamination([], [], []).shape == (0,)


@pytest.mark.parametrize("sep", [2.0, 3.0, 4.0])
def test_contamination_matches_measured_leak(sep: float) -> None:
    """The model's leak equals what aperture photometry measures on the same PSF."""
    shape, area = (60, 60), (slice(0, 60), slice(0, 60))
    xa, ya, xb, yb = 30.3, 29.8, 30.3 + sep * 0.6, 29.8 + sep * 0.8
    alone = render_psf(shape, np.array([xa]), np.array([ya]), np.array([1.0]),
                       sigma=1.75 / 2.3548, halo_fraction=0.1, halo_scale=2.5, half=25)
    neighbour = render_psf(shape, np.array([xb]), np.array([yb]), np.array([3.0]),
                           sigma=1.75 / 2.3548, halo_fraction=0.1, halo_scale=2.5, half=25)
    w = build_aperture_weights([xa], [ya], 2.0, (4.0, 7.0), shape, science_area=area)
    own = float((alone.reshape(-1)[w.ap_index[0]] * w.ap_weight[0]).sum())
    leak = float((neighbour.reshape(-1)[w.ap_index[0]] * w.ap_weight[0]).sum())
    model = aperture_contamination([xa, xb], [ya, yb], [1.0, 3.0])[0]
    assert model == pytest.approx(leak / own, rel=0.05, abs=2e-4)


# --------------------------------------------------------------------------------------------
# the photometer: measure_ffi
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_sim() -> SimulatedSector:
    return SimulatedSector(SimulationConfig(n_stars=400, n_cadences=3, seed=5))


def ffi_message(sim: SimulatedSector, cadence: int, stars: pa.Table) -> FFIImage:
    image, unc, header = sim.render(cadence)
    return FFIImage(job=JobSpec(sector=1, camera=1, ccd=1, source="sim"), cadence=cadence,
                    filename=sim.ffi_filename(cadence), header=header.tostring(), image=image,
                    uncertainty=unc, stars=stars)


def test_measure_ffi_tracks_and_flags_contamination(small_sim: SimulatedSector) -> None:
    c = small_sim.catalog
    x, y, tmag = c.x.to_numpy(), c.y.to_numpy(), c.tmag.to_numpy()
    dist, _ = cKDTree(np.c_[x, y]).query(np.c_[x, y], k=2)
    inner = (x > 100) & (x < 2030) & (y > 60) & (y < 1990)
    isolated = np.flatnonzero((dist[:, 1] > 15) & inner & (tmag > 10) & (tmag < 12.5))
    a, b = isolated[:2]
    # A catalog star 1 mag brighter 2 px from star a (the frame is not changed: the flag
    # comes from the catalog alone).
    wcs = header_wcs(small_sim.image_header(0))
    ra_n, dec_n = (float(v) for v in wcs.all_pix2world(x[a] + 2.0, y[a], 0))
    stars = star_catalog_table(
        np.arange(1, x.size + 2), np.r_[c.ra, ra_n], np.r_[c.dec, dec_n], np.r_[x, x[a] + 2.0],
        np.r_[y, y[a]], np.r_[tmag, tmag[a] - 1.0],
    )
    for cadence in (0, 1):
        _, _, table = service.measure_ffi(ffi_message(small_sim, cadence, stars))
        q = table.column("quality").to_numpy()
        assert q[a] & CONTAMINATED and q[-1] & CONTAMINATED  # both of the pair
        assert not q[b] & CONTAMINATED
        # Reported positions: the tracked ones, on the 0.01-px aperture grid.
        hdr = small_sim.image_header(cadence)
        xt = table.column("x").to_numpy()[:-1].astype(np.float64)
        yt = table.column("y").to_numpy()[:-1].astype(np.float64)
        on = (xt > 50) & (xt < 2085) & (yt > 5) & (yt < 2040)
        assert np.max(np.abs(xt[on] - (x[on] + hdr["SIMDX"]))) < 0.008
        assert np.max(np.abs(yt[on] - (y[on] + hdr["SIMDY"]))) < 0.008
        np.testing.assert_array_equal(xt, np.float32(np.round(xt * 100) / 100))  # float32
    info = service._star_list_info(stars)
    assert info is service._star_list_info(stars)  # cached per star list
    assert np.count_nonzero(info.contaminated) < 0.15 * x.size


def test_measure_ffi_is_stateless(small_sim: SimulatedSector) -> None:
    """Whatever a photometer measured before, a frame gives the same table."""
    stars = star_catalog_table(np.arange(1, small_sim.n_stars + 1), small_sim.catalog.ra,
                               small_sim.catalog.dec, small_sim.catalog.x, small_sim.catalog.y,
                               small_sim.catalog.tmag)
    service._weights_cache.clear()
    first = service.measure_ffi(ffi_message(small_sim, 0, stars))[2]
    service.measure_ffi(ffi_message(small_sim, 1, stars))
    service.measure_ffi(ffi_message(small_sim, 2, stars))
    again = service.measure_ffi(ffi_message(small_sim, 0, stars))[2]
    assert first.equals(again)
    x0 = first.column("x").to_numpy()
    x1 = service.measure_ffi(ffi_message(small_sim, 1, stars))[2].column("x").to_numpy()
    assert not np.array_equal(x0, x1)  # the apertures moved with the pointing


# --------------------------------------------------------------------------------------------
# grid weights
# --------------------------------------------------------------------------------------------


def test_grid_weights_equal_exact_weights_at_grid_positions() -> None:
    rng = np.random.default_rng(12)
    n = 3000
    x = rng.uniform(30.0, 2110.0, n)  # some off the science area, some on its edges
    y = rng.uniform(-10.0, 2060.0, n)
    x[:20] = np.round(x[:20]) + 0.5  # half-integer positions
    x[20:30] = 1e7  # far off the array
    for grid in (0.01, 0.125):
        g = build_aperture_weights(x, y, grid=grid)
        e = build_aperture_weights(g.x, g.y)
        assert np.max(np.abs(g.x - x)) <= grid / 2 + 1e-9
        np.testing.assert_allclose(g.x / grid, np.round(g.x / grid), rtol=0, atol=1e-6)
        np.testing.assert_array_equal(g.ap_index, e.ap_index)
        np.testing.assert_allclose(g.ap_weight, e.ap_weight, atol=1e-6)
        for name in ("edge", "outside", "ap_mask"):
            np.testing.assert_array_equal(getattr(g, name), getattr(e, name))
        # Annulus: the same pixels, but for the rare pixel centre exactly on a radius.
        same = np.all(g.ann_mask == e.ann_mask, axis=1) & np.all(
            np.where(g.ann_mask, g.ann_index, 0) == np.where(e.ann_mask, e.ann_index, 0), axis=1)
        assert np.mean(same) > 0.99
        assert np.all(np.abs(g.n_annulus - e.n_annulus) <= 2)


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------

GOOD = np.zeros(FFI_SHAPE, dtype=np.float32)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image": np.zeros((2, 3, 4), dtype=np.float32)}, "image must be 2-D, got 3-D"),
        ({"image": np.zeros((100, 100), dtype=np.float32)},
         r"image must have the calibrated-FFI shape \(2078, 2136\).*pass science_area"),
        ({"image": [[1.0]]}, "image must be a numpy.ndarray, got list"),
        ({"x": [1.0, 2.0, 3.0]}, "x and y must have the same length, got 3 and 2"),
        ({"x": [np.nan, 1.0]}, "x and y must be finite; 1 non-finite position"),
        ({"box": 6}, "box must be odd, got 6"),
        ({"box": 3}, r"box must be in \[5, 15\], got 3"),
        ({"box": 7.0}, "box must be an integer, got 7.0"),
        ({"fwhm": 0.0}, "fwhm must be finite and > 0, got 0.0"),
        ({"min_stars": 0}, "min_stars must be >= 1, got 0"),
        ({"min_affine_stars": 5}, "min_affine_stars must be >= 6, got 5"),
        ({"clip_sigma": -1.0}, "clip_sigma must be finite and > 0, got -1.0"),
        ({"maxiters": 0}, "maxiters must be >= 1, got 0"),
        ({"iters": True}, "iters must be an integer, got True"),
        ({"saturation_level": float("nan")}, "saturation_level must be > 0"),
        ({"science_area": (slice(0, 10),)}, "science_area must be a"),
    ],
)
def test_measure_frame_offset_bad_input(kwargs: dict, match: str) -> None:
    args = {"image": GOOD, "x": [1000.0, 1200.0], "y": [500.0, 600.0], **kwargs}
    with pytest.raises(ValueError, match=match):
        measure_frame_offset(args.pop("image"), args.pop("x"), args.pop("y"), **args)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tmag": [9.0]}, r"tmag must have one value per star \(2\), got shape \(1,\)"),
        ({"y": [1.0]}, "x and y must have the same length, got 2 and 1"),
        ({"tmag_range": (12.0, 8.0)}, "tmag_range must be finite with brightest < faintest"),
        ({"tmag_range": 8.0}, "tmag_range must be a pair"),
        ({"isolation_px": -1.0}, "isolation_px must be finite and >= 0, got -1.0"),
        ({"max_stars": 0}, "max_stars must be >= 1, got 0"),
        ({"cells": 2.5}, "cells must be an integer, got 2.5"),
        ({"shape": (10, 10)}, "image must have the calibrated-FFI shape"),
        ({"shape": "big"}, "shape must be a pair of positive integers"),
    ],
)
def test_select_tracking_stars_bad_input(kwargs: dict, match: str) -> None:
    args = {"x": [1000.0, 1200.0], "y": [500.0, 600.0], "tmag": [9.0, 10.0], **kwargs}
    with pytest.raises(ValueError, match=match):
        select_tracking_stars(args.pop("x"), args.pop("y"), args.pop("tmag"), **args)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"flux": [1.0, -2.0]}, r"flux must be finite and >= 0; 1 bad value\(s\), first at index 1"),
        ({"flux": [1.0, np.nan]}, "flux must be finite and >= 0"),
        ({"flux": [1.0]}, r"flux must have one value per star \(2\), got shape \(1,\)"),
        ({"radius": 0.0}, "radius must be finite and > 0, got 0.0"),
        ({"fwhm": np.inf}, "fwhm must be finite and > 0, got inf"),
        ({"halo_fraction": 1.0}, r"halo_fraction must be in \[0, 1\), got 1.0"),
        ({"halo_scale": 0.5}, "halo_scale must be >= 1, got 0.5"),
        ({"max_distance": "far"}, "max_distance must be a number, got 'far'"),
        ({"x": [[1.0, 2.0]]}, "x and y must be 1-D arrays"),
    ],
)
def test_aperture_contamination_bad_input(kwargs: dict, match: str) -> None:
    args = {"x": [100.0, 102.0], "y": [100.0, 100.0], "flux": [1.0, 2.0], **kwargs}
    with pytest.raises(ValueError, match=match):
        aperture_contamination(args.pop("x"), args.pop("y"), args.pop("flux"), **args)


@pytest.mark.parametrize("grid", [0.3, 0.0, -0.01, 2.0, 1e-4, "fine", float("nan")])
def test_grid_bad_input(grid: object) -> None:
    with pytest.raises(ValueError, match="grid must be"):
        build_aperture_weights([1000.0], [500.0], grid=grid)  # type: ignore[arg-type]
