"""Reading the light curves MAST publishes (real files, read in place) and analysing them.

Known answers (shared/data/tess/README.md): TOI-519 (four TGLC files) transits every 1.2652 d,
also in the 3x3 sum of its TGLC pixel cube; V889 Aql (TESS-SPOC sector 40) is an eclipsing
binary with P = 11.1208 d; TIC 389023759 (TGLC sector 1) has no known variability; the other
light curves are eclipsing binaries whose periods the analysis must find by itself.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from tess_ffi.services.analyzer.lightcurve_files import (
    FORMATS,
    SPOC_DEFAULT_BITMASK,
    LightCurve,
    aperture_photometry,
    read_lightcurve,
)
from tess_ffi.services.analyzer.variability import PERIODIC_CLASSES, analyze_lightcurve
from tess_ffi.shared.quality import DEFAULT_BAD_BITS

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tess"
LIGHTCURVES = sorted((DATA / "lightcurves").glob("*.fits*"))
PIXELS = sorted((DATA / "pixels").glob("*.fits*"))
TOI519 = [p for p in LIGHTCURVES if "gaiaid-5707485527450614656" in p.name]
V889_AQL = [p for p in LIGHTCURVES if "0000000300000680-s0040" in p.name]
QUIET = [p for p in LIGHTCURVES if "gaiaid-6399196263939178880" in p.name]
OTHER_EBS = [p for p in LIGHTCURVES if p not in TOI519 + V889_AQL + QUIET]
TOI519_PERIOD = 1.2652
V889_AQL_PERIOD = 11.1208
#: Below this score a variable is not a candidate (the enricher's MIN_CANDIDATE_SCORE).
STRONG_SCORE = 0.3


def _ids(paths: list[Path]) -> list[str]:
    return [p.name[:60] for p in paths]


def _expected_format(path: Path) -> str:
    name = path.name
    if name.startswith("hlsp_tglc"):
        return "tglc"
    if name.startswith("hlsp_tess-spoc"):
        return "tess-spoc"
    if "astrocut" in name:
        return "tesscut"
    if name.startswith("tess") and "_lc.fits" in name:
        return "spoc"
    return "spoc-tpf"


def test_real_data_is_there() -> None:
    assert DATA.is_dir(), f"real TESS test data not found at {DATA}"
    assert len(LIGHTCURVES) >= 11 and len(PIXELS) >= 3
    assert len(TOI519) == 4 and len(V889_AQL) == 1 and len(QUIET) == 1 and len(OTHER_EBS) >= 5


@pytest.mark.parametrize("path", LIGHTCURVES + PIXELS, ids=_ids(LIGHTCURVES + PIXELS))
def test_read_every_file(path: Path) -> None:
    lc = read_lightcurve(path)
    assert isinstance(lc, LightCurve) and lc.source == str(path)
    n = len(lc)
    assert n >= 5
    assert lc.flux.shape == lc.flux_err.shape == lc.quality.shape == lc.time.shape == (n,)
    assert lc.quality.dtype == np.int64
    assert np.isfinite(lc.time).all() and np.all(np.diff(lc.time) > 0)
    assert 1300 < lc.time.min() < 3500  # BTJD
    meta = lc.meta
    assert meta["format"] == _expected_format(path) and meta["format"] in FORMATS
    assert {"tic_id", "sector", "ra", "dec", "cadence_s", "format", "flux_column"} <= set(meta)
    assert isinstance(meta["sector"], int) and 1 <= meta["sector"] <= 100
    assert -90 <= meta["dec"] <= 90 and 0 <= meta["ra"] < 360
    assert meta["cadence_s"] in (120.0, 200.0, 600.0, 1800.0)
    good = lc.good
    assert good.sum() >= 0.7 * n
    assert np.isfinite(lc.flux[good]).all()
    # every row a format calls bad is rejected by the pipeline's default mask, and vice versa
    assert np.array_equal(lc.quality == 0, (lc.quality & DEFAULT_BAD_BITS) == 0)


@pytest.mark.parametrize("path", LIGHTCURVES, ids=_ids(LIGHTCURVES))
def test_light_curve_columns_and_flags(path: Path) -> None:
    lc = read_lightcurve(path)
    with fits.open(path) as hdul:
        data = hdul[1].data
        names = [c.lower() for c in data.columns.names]
        time = np.asarray(data[data.columns.names[names.index("time")]], dtype=float)
        n_finite_time = int(np.isfinite(time).sum())
        assert len(lc) == n_finite_time
        if lc.meta["format"] == "tglc":
            both_zero = (np.asarray(data["TESS_flags"]) == 0) & (
                np.asarray(data["TGLC_flags"]) == 0
            )
            assert int((lc.quality == 0).sum()) == int(both_zero[np.isfinite(time)].sum())
            assert lc.meta["flux_column"] == "cal_aper_flux"
            assert np.nanmedian(lc.flux) == pytest.approx(1.0, abs=0.01)
            assert np.all(lc.flux_err == hdul[1].header["CAPE_ERR"])
        else:
            assert lc.meta["flux_column"] == "PDCSAP_FLUX"
            assert np.all((lc.quality & ~SPOC_DEFAULT_BITMASK) == 0)
            raw = np.asarray(data["QUALITY"])[np.isfinite(time)]
            assert np.array_equal(lc.quality, raw & SPOC_DEFAULT_BITMASK)
            assert lc.meta["tic_id"] == int(hdul[0].header["TICID"])


def _analyze(lc: LightCurve):  # noqa: ANN202 - a VariabilityResult
    return analyze_lightcurve(lc.time, lc.flux, lc.flux_err, lc.quality)


@pytest.mark.parametrize("path", TOI519, ids=_ids(TOI519))
def test_toi519_transit_period(path: Path) -> None:
    r = _analyze(read_lightcurve(path))
    assert r.var_class in ("TRANSIT", "EA"), r
    assert r.period == pytest.approx(TOI519_PERIOD, rel=0.005), r
    assert r.period_method == "BLS" and r.score > 0.5


@pytest.mark.parametrize("path", TOI519, ids=_ids(TOI519))
def test_toi519_pixel_cube_3x3_aperture(path: Path) -> None:
    lc = read_lightcurve(path, pixels=True)
    assert lc.meta["flux_column"] == "PRIMARY[3x3]" and int(lc.meta["aperture"].sum()) == 9
    with fits.open(path) as hdul:  # the same 3x3 sum, done by hand
        cube = hdul[0].data
        x, y = round(hdul[0].header["STAR_X"]), round(hdul[0].header["STAR_Y"])
        manual = cube[:, y - 1 : y + 2, x - 1 : x + 2].sum(axis=(1, 2))
    assert np.allclose(lc.flux, manual, equal_nan=True)
    r = _analyze(lc)
    assert r.var_class in ("TRANSIT", "EA"), r
    assert r.period == pytest.approx(TOI519_PERIOD, rel=0.005), r


def test_v889_aql_eclipsing_binary() -> None:
    r = _analyze(read_lightcurve(V889_AQL[0]))
    assert r.var_class == "EA", r
    assert r.period == pytest.approx(V889_AQL_PERIOD, rel=0.005), r


def test_quiet_star_is_not_a_strong_periodic_variable() -> None:
    r = _analyze(read_lightcurve(QUIET[0]))
    assert not (r.var_class in PERIODIC_CLASSES and r.score >= STRONG_SCORE), r


@pytest.mark.parametrize("path", OTHER_EBS, ids=_ids(OTHER_EBS))
def test_other_eclipsing_binaries_are_periodic(path: Path) -> None:
    r = _analyze(read_lightcurve(path))
    assert r.var_class in ("EA", "EW"), r
    assert math.isfinite(r.period) and r.false_alarm_probability < 1e-3 and r.score > 0.5, r


# --------------------------------------------------------------------------------------------
# Pixel files
# --------------------------------------------------------------------------------------------


def test_blank_sky_cutout() -> None:
    path = next(p for p in PIXELS if "107.27_-70.0_5x5" in p.name)
    lc = read_lightcurve(path)
    assert len(lc) == 1282 and lc.meta["sector"] == 1 and lc.meta["camera"] == 4
    assert lc.meta["ccd"] == 3 and lc.meta["tic_id"] is None
    assert int((lc.quality != 0).sum()) == 15 and np.all(lc.quality[lc.quality != 0] & 32)
    assert lc.meta["background_subtracted"] is True
    with fits.open(path) as hdul:
        cube = np.asarray(hdul[1].data["FLUX"], float)
    background = np.nanmedian(cube[lc.quality == 0][:, lc.meta["background_pixels"]])
    assert 110 < background < 150
    # blank sky: the aperture holds only background residuals, small next to 9 x background
    assert abs(np.nanmedian(lc.flux[lc.good])) < 0.2 * 9 * background


def test_bright_star_cutout() -> None:
    path = next(p for p in PIXELS if "84.291190_-80.469170_6x6" in p.name)
    lc = read_lightcurve(path)
    assert len(lc) == 50 and lc.meta["format"] == "tesscut"
    ap = lc.meta["aperture"]
    assert ap.shape == (6, 6) and ap.sum() == 9
    assert np.nanmedian(lc.flux) > 5e5  # pi Men (saturated, T ~ 5)
    assert np.all(lc.flux_err > 0)


def test_target_pixel_file() -> None:
    path = next(p for p in PIXELS if p.name.startswith("tess25155310"))
    lc = read_lightcurve(path)
    assert len(lc) == 5 and lc.meta["format"] == "spoc-tpf" and lc.meta["tic_id"] == 25155310
    assert lc.meta["background_subtracted"] is False  # SPOC subtracted it already
    assert lc.meta["cadence_s"] == 120.0
    assert lc.meta["aperture"][4, 5]  # the star's brightest pixel
    assert np.all(np.nanmedian(lc.flux) > 3000)
    assert int((lc.quality != 0).sum()) == 1  # one cadence with an Earth-point flag


def test_aperture_photometry_on_a_synthetic_cube() -> None:
    rng = np.random.default_rng(0)
    n, ny, nx = 200, 9, 9
    cube = 100.0 + rng.normal(0, 1.0, (n, ny, nx))
    star = 5000.0 * (1 + 0.01 * np.sin(np.arange(n) / 10))
    psf = np.zeros((ny, nx))
    psf[3:6, 4:7] = [[0.05, 0.1, 0.05], [0.1, 0.4, 0.1], [0.05, 0.1, 0.05]]
    cube += star[:, None, None] * psf[None]
    res = aperture_photometry(cube, np.ones_like(cube))
    assert res.aperture[4, 5] and res.aperture.sum() == 9
    assert np.allclose(res.background, 100.0, atol=1.2)
    assert np.allclose(res.flux, star, rtol=0.005)
    assert np.all(res.flux_err > 3.0)  # 9 pixels of unit noise, plus the background's
    thr = aperture_photometry(cube, threshold=20.0)
    assert thr.aperture[4, 5] and 1 <= thr.aperture.sum() <= 9
    with pytest.raises(ValueError, match="pixel cube"):
        aperture_photometry(np.ones((3, 3)))


# --------------------------------------------------------------------------------------------
# Formats without a real file here, fallbacks and failures
# --------------------------------------------------------------------------------------------


def test_spoc_falls_back_to_sap_when_pdcsap_is_all_nan(tmp_path: Path) -> None:
    src = next(p for p in LIGHTCURVES if p.name.startswith("hlsp_tess-spoc"))
    dst = tmp_path / src.name
    with fits.open(src) as hdul:
        hdul[1].data["PDCSAP_FLUX"][:] = np.nan
        hdul.writeto(dst)
    lc = read_lightcurve(dst)
    assert lc.meta["flux_column"] == "SAP_FLUX" and np.isfinite(lc.flux[lc.good]).all()
    assert read_lightcurve(src, flux_column="SAP_FLUX").meta["flux_column"] == "SAP_FLUX"


def test_qlp_light_curve(tmp_path: Path) -> None:
    n = 500
    t = 2000.0 + np.arange(n) * 600 / 86400
    quality = np.zeros(n, np.int32)
    quality[10:20] = 4096
    cols = [
        fits.Column("TIME", "D", array=t),
        fits.Column("SAP_FLUX", "E", array=np.full(n, 1.01)),
        fits.Column("KSPSAP_FLUX", "E", array=np.ones(n)),
        fits.Column("KSPSAP_FLUX_ERR", "E", array=np.full(n, 1e-3)),
        fits.Column("QUALITY", "J", array=quality),
    ]
    primary = fits.PrimaryHDU()
    primary.header.update(ORIGIN="MIT/QLP", TICID=123, SECTOR=40, RA_OBJ=10.0, DEC_OBJ=-5.0)
    path = tmp_path / "hlsp_qlp_tess_ffi_s0040-0000000000000123_tess_v01_llc.fits"
    fits.HDUList([primary, fits.BinTableHDU.from_columns(cols, name="LIGHTCURVE")]).writeto(path)
    lc = read_lightcurve(path)
    assert lc.meta["format"] == "qlp" and lc.meta["flux_column"] == "KSPSAP_FLUX"
    assert lc.meta["tic_id"] == 123 and lc.meta["cadence_s"] == 600.0
    assert int((lc.quality != 0).sum()) == 10 and np.all(lc.quality[10:20] & 128)
    assert read_lightcurve(path, flux_column="SAP_FLUX").flux[0] == pytest.approx(1.01)


@pytest.mark.parametrize("fraction", [0.02, 0.3, 0.6, 0.95])
def test_truncated_file_raises(tmp_path: Path, fraction: float) -> None:
    src = next(p for p in LIGHTCURVES if p.name.startswith("hlsp_tglc"))
    blob = src.read_bytes()
    dst = tmp_path / src.name
    dst.write_bytes(blob[: int(len(blob) * fraction)])
    with pytest.raises(ValueError) as info:
        read_lightcurve(dst)
    message = str(info.value)
    assert message.startswith(f"{dst.name}:") and "\n" not in message


def test_unreadable_or_unknown_files_raise(tmp_path: Path) -> None:
    empty = tmp_path / "empty.fits"
    empty.write_bytes(b"")
    text = tmp_path / "notes.fits"
    text.write_text("not a FITS file\n" * 100)
    image_only = tmp_path / "image.fits"
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(image_only)
    other_table = tmp_path / "catalog.fits"
    fits.HDUList(
        [fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("RA", "D", array=[1.0])])]
    ).writeto(other_table)
    for path, why in [
        (tmp_path / "missing.fits", "no such file"),
        (empty, "corrupt"),
        (text, "corrupt"),
        (image_only, "no binary table"),
        (other_table, "unrecognised"),
    ]:
        with pytest.raises(ValueError, match=why) as info:
            read_lightcurve(path)
        assert str(info.value).startswith(f"{path.name}:")
    with pytest.raises(ValueError, match="TGLC"):
        read_lightcurve(V889_AQL[0], pixels=True)


def test_gzip_and_copies_are_read_alike(tmp_path: Path) -> None:
    src = next(p for p in PIXELS if p.name.endswith(".gz"))
    copy = tmp_path / src.name
    shutil.copy(src, copy)
    a, b = read_lightcurve(src), read_lightcurve(copy)
    assert np.array_equal(a.flux, b.flux, equal_nan=True)
