"""The read-side commands on real outputs: status, lightcurves, find-variables, report, export,
combine, FITS light curves and the Python API.

One small simulated sector runs once for the module; every command then runs in-process on
its outputs (``tess_ffi.cli.main``) and the test checks what it printed and wrote. A second
sector is made by copying the first with shuffled star ids, slightly moved positions and
scaled flux, so ``combine`` has to match stars by position.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import shutil
import struct
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.table import Table

import tess_ffi
from tess_ffi.cli import main
from tess_ffi.pipeline import run_job
from tess_ffi.shared.config import load_settings, output_dir
from tess_ffi.shared.contracts import JobSpec
from tess_ffi.shared.timing import BarycentricCorrection, ccd_reference_direction

SIM = {"n_stars": 300, "n_cadences": 60, "seed": 2, "variable_fraction": 0.3}
N_CADENCES = SIM["n_cadences"]
#: Real light curves beside the repository (never copied into it).
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "tess" / "lightcurves"
TOI_519 = sorted(REAL.glob("hlsp_tglc_*gaiaid-5707485527450614656-*_llc.fits"))
V889_AQL = REAL / "hlsp_tess-spoc_tess_phot_0000000300000680-s0040_tess_v1_lc.fits"

TIC = 123456789
slow = pytest.mark.slow
# SPOC's own units ("BJD - 2457000, days", "e-/s") are not FITS units; the files keep them.
pytestmark = [
    pytest.mark.filterwarnings("ignore::astropy.units.UnitsWarning"),
    pytest.mark.filterwarnings("ignore:.*tpfmodel submodule:UserWarning"),  # lightkurve's import
]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def read(path: Path) -> pd.DataFrame:
    return ds.dataset(path, format="parquet").to_table().to_pandas()


def star_btjd(out1: Path, star: int, btjd: np.ndarray) -> np.ndarray:
    """The star's own barycentric times from the header's (CCD centre), as the aggregator
    computes them: the CCD centre located from every star of the list."""
    stars = read(out1 / "stars.parquet")
    ref = ccd_reference_direction(stars["x"], stars["y"], stars["ra"], stars["dec"])
    row = stars.set_index("star_id").loc[star]
    offsets = BarycentricCorrection(btjd, *ref).offsets_days([row["ra"]], [row["dec"]])[0]
    return np.asarray(btjd, dtype=np.float64) + offsets


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("products")
    settings = dataclasses.replace(load_settings(data_dir=data), broker_url=None)
    job = JobSpec(sector=1, camera=1, ccd=1, source="sim", sim=dict(SIM))
    summary = asyncio.run(run_job(job, settings))
    assert summary["stars"] > 100 and summary["candidates"] > 3
    return data


@pytest.fixture(scope="module")
def out1(data_dir: Path) -> Path:
    return output_dir(data_dir, 1, 1, 1)


@pytest.fixture(scope="module")
def candidates(out1: Path) -> pd.DataFrame:
    return read(out1 / "candidates.parquet")


@pytest.fixture(scope="module")
def two_sectors(data_dir: Path, out1: Path) -> dict[int, int]:
    """Sector 2 = sector 1 copied with new star ids, positions moved by up to ~2 arcsec,
    flux scaled by 1.07 (plus noise) and times shifted by 27.4 d, and the best candidate given
    a TIC id. It has no variability table (as while a job runs). Returns {id1: id2}."""
    out2 = output_dir(data_dir, 2, 1, 1)
    shutil.rmtree(out2, ignore_errors=True)
    (out2 / "photometry.parquet").mkdir(parents=True)
    rng = np.random.default_rng(11)
    stars = read(out1 / "stars.parquet")
    new_ids = rng.permutation(len(stars)) + 1001
    mapping = dict(zip(stars["star_id"].tolist(), new_ids.tolist(), strict=True))
    s2 = stars.copy()
    s2["star_id"] = new_ids
    s2["ra"] += rng.uniform(-5e-4, 5e-4, len(s2)) / np.cos(np.radians(s2["dec"]))
    s2["dec"] += rng.uniform(-5e-4, 5e-4, len(s2))
    top = int(read(out1 / "candidates.parquet")["star_id"].iloc[0])
    s2["tic_id"] = np.where(s2["star_id"] == mapping[top], float(TIC), np.nan)
    pq.write_table(pa.Table.from_pandas(s2, preserve_index=False), out2 / "stars.parquet")
    for f in sorted((out1 / "photometry.parquet").glob("*.parquet")):
        p = pq.read_table(f).to_pandas()
        p["star_id"] = p["star_id"].map(mapping)
        p["btjd"] += 27.4
        flux = (p["flux"] * 1.07 + rng.normal(0, 0.5, len(p))).astype(np.float32)
        # The same common-mode model divides the new flux.
        p["flux_corrected"] = (flux * (p["flux_corrected"] / p["flux"])).astype(np.float32)
        p["flux"] = flux
        pq.write_table(pa.Table.from_pandas(p, preserve_index=False),
                       out2 / "photometry.parquet" / f.name)
    return mapping


# --- status ----------------------------------------------------------------------------------


@slow
def test_status_lists_what_exists(capsys: pytest.CaptureFixture[str], data_dir: Path,
                                  out1: Path) -> None:
    n_stars = len(read(out1 / "stars.parquet"))
    code, out, _ = run(capsys, "status", "--data-dir", str(data_dir), "--json")
    assert code == 0
    doc = json.loads(out)
    target = next(t for t in doc["targets"] if t["target"] == "s0001-1-1")
    assert target["state"] == "complete"
    assert target["cadences"] == target["expected"] == N_CADENCES
    assert target["stars"] == target["analysed"] == n_stars
    assert target["candidates"] == len(read(out1 / "candidates.parquet"))
    assert target["cadence_s"] == pytest.approx(1800.0)
    code, out, _ = run(capsys, "status", "--data-dir", str(data_dir))
    assert code == 0 and "s0001-1-1" in out and "complete" in out
    assert f"{n_stars} stars" in out.splitlines()[0]


def test_status_of_an_empty_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "status", "--data-dir", str(tmp_path))
    assert code == 0 and "no outputs" in out


def test_status_reports_live_progress_from_the_broker(
    capsys: pytest.CaptureFixture[str], broker_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tess_ffi.shared.bus import RabbitBus
    from tess_ffi.shared.contracts import JobEvent

    namespace = f"test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("TESS_FFI_NAMESPACE", namespace)
    job = JobSpec(sector=70, camera=1, ccd=1)

    async def publish_progress() -> None:
        bus = RabbitBus(broker_url, namespace=namespace)
        await bus.connect()
        try:
            for stored in (5, 9):
                await asyncio.sleep(0.7)
                await bus.publish(JobEvent(job=job, kind="progress", service="aggregator",
                                           detail={"stored": stored, "expected": 20}))
        finally:
            await bus.close()

    async def scenario() -> int:
        publisher = asyncio.create_task(publish_progress())
        code = await asyncio.to_thread(main, ["status", "--data-dir", str(tmp_path),
                                              "--broker", broker_url, "--watch", "2.5", "--json"])
        await publisher
        return code

    try:
        code = asyncio.run(scenario())
        out, _ = capsys.readouterr()
        assert code == 0
        broker = json.loads(out)["broker"]
        assert "guest:***@" in broker["url"] or "***" in broker["url"]
        assert f"{namespace}.ffi.photometer" in broker["queue_depths"]
        progress = broker["jobs"][f"{job.job_id}/{job.run_id}"]
        assert progress["kind"] == "progress" and progress["detail"]["stored"] == 9
    finally:
        async def cleanup() -> None:
            bus = RabbitBus(broker_url, namespace=namespace)
            await bus.connect()
            await bus.delete_topology()
            await bus.close()

        asyncio.run(cleanup())


def test_status_with_an_unreachable_broker_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "status", "--data-dir", str(tmp_path), "--broker",
                       "amqp://guest:pw@127.0.0.1:1/", "--watch", "0")
    assert code == 2
    assert err.strip().count("\n") == 0 and "cannot reach RabbitMQ" in err and "pw@" not in err


# --- lightcurves -----------------------------------------------------------------------------


@slow
def test_lightcurves_stats(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    code, out, _ = run(capsys, "lightcurves", "--data-dir", str(data_dir), "--sector", "1",
                       "--camera", "1", "--ccd", "1", "--stats")
    assert code == 0
    assert f"cadences:      {N_CADENCES} stored of {N_CADENCES} expected" in out
    assert "precision by magnitude:" in out and "median_rms_ppm" in out
    assert "classes:" in out and "candidates:" in out


@slow
def test_one_star_as_a_table(capsys: pytest.CaptureFixture[str], data_dir: Path,
                             out1: Path, candidates: pd.DataFrame) -> None:
    star = int(candidates["star_id"].iloc[0])
    code, out, _ = run(capsys, "lightcurves", "--data-dir", str(data_dir), "--sector", "1",
                       "--star", str(star), "--csv")
    assert code == 0
    table = pd.read_csv(io.StringIO(out))
    phot = read(out1 / "photometry.parquet")
    mine = phot[phot["star_id"] == star].sort_values("btjd")
    assert len(table) == len(mine) == N_CADENCES
    assert {"btjd", "btjd_ccd", "flux", "flux_err", "flux_corrected", "quality",
            "good"} <= set(table.columns)
    np.testing.assert_allclose(table["flux"], mine["flux"], rtol=1e-6)
    np.testing.assert_allclose(table["flux_corrected"], mine["flux_corrected"], rtol=1e-6)
    np.testing.assert_allclose(table["btjd_ccd"], mine["btjd"], rtol=0, atol=1e-9)
    assert table["btjd"].is_monotonic_increasing
    code, out, _ = run(capsys, "lightcurves", "--data-dir", str(data_dir), "--sector", "1",
                       "--star", str(star))
    assert code == 0 and out.startswith(f"# star {star} of s0001-1-1: {N_CADENCES} points")
    assert len(out.strip().splitlines()) == N_CADENCES + 2  # comment, header, rows


@slow
def test_plots_and_fits(capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path,
                        out1: Path, candidates: pd.DataFrame) -> None:
    star = int(candidates["star_id"].iloc[0])
    fits_path = tmp_path / "star.fits"
    code, out, _ = run(capsys, "lightcurves", "--data-dir", str(data_dir), "--sector", "1",
                       "--star", str(star), "--plot", "--fits", str(fits_path),
                       "--out", str(tmp_path / "plots"))
    assert code == 0
    png = tmp_path / "plots" / f"s0001-1-1_STAR_{star:06d}.png"
    assert png_size(png) == (1000, 400)
    check_lightcurve_fits(fits_path, star, out1)
    code, out, _ = run(capsys, "lightcurves", "--data-dir", str(data_dir), "--sector", "1",
                       "--plot", "--out", str(tmp_path / "plots"))
    assert code == 0
    assert png_size(tmp_path / "plots" / "s0001-1-1_overview.png") == (1200, 900)


def check_lightcurve_fits(path: Path, star: int, out1: Path) -> None:
    """The TESS light-curve layout in astropy, and lightkurve reads it when installed: TIME is
    the star's own barycentric time, SAP_FLUX the raw flux, PDCSAP_FLUX and FLUX the
    corrected flux (errors scaled alike)."""
    stars = read(out1 / "stars.parquet").set_index("star_id")
    phot = read(out1 / "photometry.parquet")
    mine = phot[phot["star_id"] == star].sort_values("btjd")
    raw = mine["flux"].to_numpy(np.float64)
    corrected = mine["flux_corrected"].to_numpy(np.float64)
    assert np.isfinite(corrected).all()  # a completed job: every frame cleaned
    time = star_btjd(out1, star, mine["btjd"].to_numpy())
    with fits.open(path) as hdul:
        assert hdul[1].name == "LIGHTCURVE"
        head, th = hdul[0].header, hdul[1].header
        assert head["TELESCOP"] == "TESS" and head["SECTOR"] == 1
        assert head["CAMERA"] == 1 and head["CCD"] == 1
        assert head["OBJECT"].startswith("STAR") or head["OBJECT"].startswith("TIC")
        assert head["RA_OBJ"] == pytest.approx(stars.loc[star, "ra"])
        assert head["DEC_OBJ"] == pytest.approx(stars.loc[star, "dec"])
        assert th["BJDREFI"] == 2457000 and th["TIMESYS"] == "TDB"
        assert th["TIMEREF"] == "SOLARSYSTEM" and th["TIMEUNIT"] == "d"
        names = set(hdul[1].columns.names)
        assert {"TIME", "FLUX", "FLUX_ERR", "SAP_FLUX", "PDCSAP_FLUX", "QUALITY"} <= names
    table = Table.read(path, hdu="LIGHTCURVE")
    assert len(table) == N_CADENCES
    np.testing.assert_allclose(table["TIME"], time, rtol=0, atol=1e-9)
    shift = (np.asarray(table["TIME"]) - mine["btjd"].to_numpy()) * 86400.0
    assert np.all(np.abs(shift) < 120.0) and np.any(shift != 0.0)
    np.testing.assert_allclose(table["SAP_FLUX"], raw, rtol=1e-6)
    np.testing.assert_allclose(table["SAP_FLUX_ERR"], mine["flux_err"], rtol=1e-6)
    np.testing.assert_allclose(table["PDCSAP_FLUX"], corrected, rtol=1e-6)
    np.testing.assert_allclose(table["FLUX"], corrected, rtol=1e-6)
    np.testing.assert_allclose(table["PDCSAP_FLUX_ERR"],
                               mine["flux_err"].to_numpy() * np.abs(corrected / raw), rtol=1e-5)
    assert np.any(np.abs(np.asarray(table["PDCSAP_FLUX"]) - np.asarray(table["SAP_FLUX"]))
                  > 1e-5 * np.abs(raw))  # the correction did something
    try:
        import lightkurve
    except ImportError:
        return
    lc = lightkurve.read(str(path), quality_bitmask="none")
    assert type(lc).__name__ == "TessLightCurve"
    assert len(lc) == N_CADENCES and lc.meta["SECTOR"] == 1
    assert lc.time.format == "btjd"
    np.testing.assert_allclose(lc.time.value, time, rtol=0, atol=1e-9)
    np.testing.assert_allclose(lc.flux.value, corrected, rtol=1e-6)  # PDCSAP_FLUX by default


@slow
def test_star_times_far_from_the_ccd_centre(data_dir: Path, out1: Path) -> None:
    """btjd is the star's own barycentric time: the header's (btjd_ccd, for the CCD centre)
    plus an offset that grows with the distance from the centre, under a minute or two."""
    stars = read(out1 / "stars.parquet")
    dist = np.hypot(stars["x"] - 1067.5, stars["y"] - 1023.5)
    far = int(stars["star_id"].iloc[int(np.argmax(dist))])
    near = int(stars["star_id"].iloc[int(np.argmin(dist))])
    lc_far = tess_ffi.load_lightcurve(far, 1, 1, 1, data_dir=data_dir)
    lc_near = tess_ffi.load_lightcurve(near, 1, 1, 1, data_dir=data_dir)
    shift_far = (lc_far["btjd"] - lc_far["btjd_ccd"]).to_numpy() * 86400.0
    shift_near = (lc_near["btjd"] - lc_near["btjd_ccd"]).to_numpy() * 86400.0
    assert np.all(np.abs(shift_far) < 120.0)
    assert np.all(np.abs(shift_far) > 1.0), shift_far  # non-zero at every cadence
    assert np.abs(shift_far).mean() > np.abs(shift_near).mean()
    np.testing.assert_allclose(lc_far["btjd"], star_btjd(out1, far, lc_far["btjd_ccd"].to_numpy()),
                               rtol=0, atol=1e-9)
    phot = read(out1 / "photometry.parquet")
    stored = phot[phot["star_id"] == far].sort_values("btjd")["btjd"].to_numpy()
    np.testing.assert_array_equal(lc_far["btjd_ccd"].to_numpy(), stored)  # the store's time


@slow
def test_running_job_without_corrected_flux(out1: Path, tmp_path: Path) -> None:
    """A per-cadence file written before the cleaning (no flux_corrected column) reads as
    null: NaN in the light curve, and the FITS file falls back to the raw flux there."""
    out = output_dir(tmp_path, 1, 1, 1)
    shutil.copytree(out1, out)
    folder = out / "photometry.parquet"
    stored = read(folder)
    for f in folder.glob("*.parquet"):
        f.unlink()
    last = int(stored["cadence"].max())
    done = stored[stored["cadence"] != last].sort_values(["star_id", "cadence"])
    pq.write_table(pa.Table.from_pandas(done, preserve_index=False),
                   folder / "compact-0123456789ab.parquet")
    running = stored[stored["cadence"] == last].drop(columns=["flux_corrected"])
    pq.write_table(pa.Table.from_pandas(running.sort_values("star_id"), preserve_index=False),
                   folder / f"cadence-{last:06d}.parquet")
    star = int(stored["star_id"].iloc[0])
    lc = tess_ffi.load_lightcurve(star, 1, 1, 1, data_dir=tmp_path)
    assert len(lc) == N_CADENCES
    missing = lc["cadence"] == last
    assert lc.loc[missing, "flux_corrected"].isna().all()
    assert np.isfinite(lc.loc[~missing, "flux_corrected"]).all()
    path = tess_ffi.export_lightcurve_fits(star, tmp_path / "s.fits", 1, 1, 1, data_dir=tmp_path)
    table = Table.read(path, hdu="LIGHTCURVE")
    pdc, sap = np.asarray(table["PDCSAP_FLUX"]), np.asarray(table["SAP_FLUX"])
    at = np.asarray(table["CADENCENO"]) == last
    np.testing.assert_array_equal(pdc[at], sap[at])
    np.testing.assert_allclose(pdc[~at], lc.loc[~missing, "flux_corrected"], rtol=1e-6)


# --- find-variables --------------------------------------------------------------------------


@slow
def test_find_variables_table_and_json(capsys: pytest.CaptureFixture[str], data_dir: Path,
                                       candidates: pd.DataFrame) -> None:
    code, out, _ = run(capsys, "find-variables", "--data-dir", str(data_dir), "--sector", "1",
                       "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == len(candidates)
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert {r["star_id"] for r in rows} == set(candidates["star_id"])
    first = rows[0]
    assert {"period", "var_class", "catalog", "catalog_id", "catalog_status"} <= set(first)
    assert first["catalog"] == "sim"
    threshold = float(candidates["amplitude"].median())
    code, out, _ = run(capsys, "find-variables", "--data-dir", str(data_dir), "--sector", "1",
                       "--camera", "1", "--ccd", "1", "--min-amplitude", str(threshold),
                       "--top", "3", "--json")
    picked = [json.loads(line) for line in out.splitlines()]
    assert 1 <= len(picked) <= 3 and all(r["amplitude"] >= threshold for r in picked)
    code, out, _ = run(capsys, "find-variables", "--data-dir", str(data_dir), "--sector", "1",
                       "--top", "4")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("4 candidates in sector 1")
    assert "catalog_status" in lines[1] and len(lines) == 6


def test_find_variables_in_light_curve_files(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    assert len(TOI_519) == 4 and V889_AQL.exists(), f"real light curves missing under {REAL}"
    corrupt = tmp_path / "corrupt_lc.fits"
    corrupt.write_bytes(V889_AQL.read_bytes()[:9000])  # a download cut short
    files = [*TOI_519[:2], corrupt, *TOI_519[2:], V889_AQL]
    code, out, err = run(capsys, "find-variables", "--lightcurve", *map(str, files), "--json")
    assert code == 1
    errors = [line for line in err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("tess-ffi: error: ")
    assert str(corrupt) in errors[0]
    results = [json.loads(line) for line in out.splitlines()]
    assert [r["source"] for r in results] == [str(f) for f in files if f != corrupt]
    for r in results:
        assert {"source", "period", "var_class", "score", "n_points"} <= set(r)
        assert r["n_points"] > 500
    for r in results[:4]:
        assert r["period"] == pytest.approx(1.2652, rel=2e-3), r
        assert r["tic_id"] == 218795833
    assert results[4]["period"] == pytest.approx(11.1208, rel=5e-3)
    assert results[4]["var_class"] == "EA"
    # All readable: exit 0; the table names each file.
    code, out, err = run(capsys, "find-variables", "--lightcurve", str(V889_AQL))
    assert code == 0 and err == "" and V889_AQL.name in out


# --- report ----------------------------------------------------------------------------------


@slow
def test_report_folder(capsys: pytest.CaptureFixture[str], data_dir: Path, out1: Path,
                       candidates: pd.DataFrame) -> None:
    periodic = candidates[candidates["period"].notna()]
    star = int(periodic["star_id"].iloc[0])
    code, out, _ = run(capsys, "report", "--data-dir", str(data_dir), "--star", str(star),
                       "--sector", "1", "--camera", "1", "--ccd", "1")
    assert code == 0
    folder = data_dir / "variable_stars" / f"STAR_{star:06d}_s0001-1-1"
    assert out.startswith(f"report: {folder}")
    prefix = folder / "s0001-1-1_"
    assert png_size(Path(f"{prefix}VSX_lightcurve.png")) == (1000, 400)
    assert png_size(Path(f"{prefix}VSX_phase.png")) == (800, 500)
    w, h = png_size(Path(f"{prefix}periodogram.png"))
    assert (w, h) == (1000, 400)
    text = Path(f"{prefix}summary.txt").read_text()
    summary = json.loads(Path(f"{prefix}summary.json").read_text())
    var = read(out1 / "variability.parquet").set_index("star_id").loc[star]
    assert summary["period_d"] == pytest.approx(var["period"])
    assert summary["var_class"] == var["var_class"]
    assert 2458000 < summary["epoch_min_bjd"] < 2459000
    assert summary["amplitude_tmag"] > 0
    assert summary["min_tmag"] > summary["max_tmag"]  # faintest is the larger magnitude
    assert summary["ra_deg"] == pytest.approx(var["ra"])
    for label in ("ra (J2000):", "dec (J2000):", "period:", "epoch of minimum:", "amplitude:",
                  "type (VSX):"):
        assert label in text
    assert f"{var['period']:.6f}" in text
    assert summary["flux"] == "corrected flux" and summary["time_reference"] == "star"
    assert "corrected flux, times barycentric for the star" in text
    check_lightcurve_fits(Path(f"{prefix}lc.fits"), star, out1)


@slow
def test_report_with_a_given_period_and_a_constant_star(
    capsys: pytest.CaptureFixture[str], data_dir: Path, out1: Path, tmp_path: Path
) -> None:
    var = read(out1 / "variability.parquet")
    const = int(var[var["var_class"] == "CONST"]["star_id"].iloc[0])
    code, out, _ = run(capsys, "report", "--data-dir", str(data_dir), "--star", str(const),
                       "--sector", "1", "--out", str(tmp_path / "r"))
    assert code == 0
    names = {p.name for p in (tmp_path / "r").iterdir()}
    assert "s0001-1-1_VSX_phase.png" not in names  # no period, no phase plot
    assert {"s0001-1-1_VSX_lightcurve.png", "s0001-1-1_summary.txt"} <= names
    code, out, _ = run(capsys, "report", "--data-dir", str(data_dir), "--star", str(const),
                       "--sector", "1", "--out", str(tmp_path / "p"), "--period", "0.7",
                       "--epoch", "1325.5")
    assert code == 0 and (tmp_path / "p" / "s0001-1-1_VSX_phase.png").exists()
    summary = json.loads((tmp_path / "p" / "s0001-1-1_summary.json").read_text())
    assert summary["period_d"] == 0.7 and summary["epoch_min_btjd"] == 1325.5


@slow
def test_report_by_tic_before_the_analysis_was_stored(
    capsys: pytest.CaptureFixture[str], data_dir: Path, out1: Path,
    two_sectors: dict[int, int], candidates: pd.DataFrame,
) -> None:
    code, out, _ = run(capsys, "report", "--data-dir", str(data_dir), "--tic", str(TIC),
                       "--sector", "2")
    assert code == 0
    folder = data_dir / "variable_stars" / f"TIC_{TIC}"
    summary = json.loads((folder / "s0002-1-1_summary.json").read_text())
    assert summary["star_id"] == two_sectors[int(candidates["star_id"].iloc[0])]
    assert summary["tic_id"] == TIC and summary["name"] == f"TIC {TIC}"
    assert summary["period_source"] == "analyze_lightcurve"  # no variability.parquet yet
    assert summary["period_d"] == pytest.approx(candidates["period"].iloc[0], rel=0.02)
    with fits.open(folder / "s0002-1-1_lc.fits") as hdul:
        assert hdul[0].header["TICID"] == TIC and hdul[0].header["OBJECT"] == f"TIC {TIC}"
        assert hdul[0].header["SECTOR"] == 2


# --- export ----------------------------------------------------------------------------------


@slow
def test_export_features_and_full_time_series(capsys: pytest.CaptureFixture[str],
                                              data_dir: Path, out1: Path) -> None:
    min_snr = float(read(out1 / "variability.parquet")["snr"].median())
    code, out, _ = run(capsys, "export", "--data-dir", str(data_dir), "--name", "ml",
                       "--min-completeness", "0.9", "--min-snr", str(min_snr), "--sector", "1")
    assert code == 0
    folder = data_dir / "exports" / "ml"
    features = pd.read_parquet(folder / "features.parquet")
    csv = pd.read_csv(folder / "features.csv")
    assert len(features) == len(csv) > 50
    assert (features["completeness"] >= 0.9).all() and (features["snr"] >= min_snr).all()
    assert {"star_id", "ra", "dec", "tmag", "amplitude", "period", "var_class", "rms_ppm",
            "is_candidate", "ts_file", "ts_row"} <= set(features.columns)
    stars = read(out1 / "stars.parquet")
    assert len(features) < len(stars)  # the filters removed some
    ts = np.load(folder / "timeseries" / "s0001-1-1.npz")
    n = len(features)
    for key in ("time", "flux", "flux_err", "flux_corrected", "flux_norm", "quality", "mask"):
        assert ts[key].shape == (n, N_CADENCES), key  # every cadence: nothing truncated
    assert ts["mask"].dtype == bool and ts["flux_corrected"].dtype == np.float32
    np.testing.assert_array_equal(ts["star_id"], features["star_id"].to_numpy())
    np.testing.assert_array_equal(features["ts_row"], np.arange(n))
    phot = read(out1 / "photometry.parquet")
    star = int(features["star_id"].iloc[3])
    mine = phot[phot["star_id"] == star].sort_values("cadence")
    np.testing.assert_allclose(ts["flux"][3], mine["flux"], rtol=1e-6)
    np.testing.assert_allclose(ts["flux_corrected"][3], mine["flux_corrected"], rtol=1e-6)
    assert np.any(ts["flux_corrected"][3] != ts["flux"][3])
    # flux_norm is the corrected flux over its median usable value.
    usable = ts["mask"][3]
    np.testing.assert_allclose(ts["flux_norm"][3],
                               mine["flux_corrected"] / np.median(mine["flux_corrected"][usable]),
                               rtol=1e-6)
    np.testing.assert_allclose(ts["time_ccd"], mine["btjd"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(ts["time"][3], star_btjd(out1, star, mine["btjd"].to_numpy()),
                               rtol=0, atol=1e-9)
    assert json.loads((folder / "manifest.json").read_text())["stars_exported"] == n
    assert "exported" in out and str(folder) in out


# --- combine ---------------------------------------------------------------------------------


@slow
def test_combine_one_star_across_sectors(capsys: pytest.CaptureFixture[str], data_dir: Path,
                                         two_sectors: dict[int, int],
                                         candidates: pd.DataFrame) -> None:
    star = int(candidates["star_id"].iloc[0])
    code, out, _ = run(capsys, "combine", "--data-dir", str(data_dir), "--star", str(star),
                       "--sectors", "1,2")
    assert code == 0
    path = data_dir / "combined" / f"STAR_{star:06d}_s0001-1-1_sectors_1-2.parquet"
    lc = pd.read_parquet(path)
    assert lc["sector"].value_counts().to_dict() == {1: N_CADENCES, 2: N_CADENCES}
    assert set(lc.loc[lc["sector"] == 2, "star_id"]) == {two_sectors[star]}
    assert lc["btjd"].is_monotonic_increasing
    good = lc[lc["good"]]
    medians = good.groupby("sector")["flux_norm"].median()
    np.testing.assert_allclose(medians, 1.0, atol=1e-6)
    # The corrected flux is what is normalised, and times are the star's own.
    assert lc["flux_corrected"].notna().all()
    corr_med = good.groupby("sector")["flux_corrected"].median()
    np.testing.assert_allclose(lc["flux_norm"], lc["flux_corrected"] / lc["sector"].map(corr_med),
                               rtol=1e-9)
    shift = (lc["btjd"] - lc["btjd_ccd"]) * 86400.0
    assert (shift.abs() < 120.0).all() and (shift != 0.0).any()
    # Normalised per sector, the 7 % flux offset is gone.
    raw = good.groupby("sector")["flux"].median()
    assert raw[2] / raw[1] == pytest.approx(1.07, rel=0.01)
    matches = pd.read_parquet(path.with_name(path.stem + "_matches.parquet"))
    assert (matches["sep_arcsec"] < 5.0).all() and len(matches) == 2


@slow
def test_combine_every_star(capsys: pytest.CaptureFixture[str], data_dir: Path, out1: Path,
                            two_sectors: dict[int, int]) -> None:
    code, out, _ = run(capsys, "combine", "--data-dir", str(data_dir), "--sectors", "1,2")
    assert code == 0
    lc = pd.read_parquet(data_dir / "combined" / "all_sectors_1-2.parquet")
    n_stars = len(read(out1 / "stars.parquet"))
    assert lc["group"].nunique() == n_stars
    pairs = lc[["group", "sector", "star_id"]].drop_duplicates()
    wide = pairs.pivot(index="group", columns="sector", values="star_id")
    assert (wide[2] == wide[1].map(two_sectors)).all()  # matched by position, not by id


# --- errors and the Python API ---------------------------------------------------------------


@slow
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["lightcurves", "--sector", "9"], "no outputs for sector 9"),
        (["lightcurves", "--sector", "1", "--star", "999999"], "no star 999999"),
        (["report", "--sector", "1", "--tic", "12345"], "TIC 12345 is not among"),
        (["export", "--name", "../up"], "export name"),
        (["export", "--name", "x", "--min-snr", "1e9"], "no star of"),
        (["combine", "--sectors", "1"], "at least two different sectors"),
        (["combine", "--sectors", "1,7"], "no star list for sector 7"),
        (["find-variables", "--sector", "5"], "no outputs for sector 5"),
    ],
)
def test_bad_requests_are_one_line(capsys: pytest.CaptureFixture[str], data_dir: Path,
                                   args: list[str], fragment: str) -> None:
    code, _, err = run(capsys, *args, "--data-dir", str(data_dir))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("tess-ffi: error: ") and fragment in lines[0]


@slow
def test_python_api(data_dir: Path, out1: Path, candidates: pd.DataFrame, tmp_path: Path) -> None:
    star = int(candidates["star_id"].iloc[0])
    lc = tess_ffi.load_lightcurve(star, 1, 1, 1, data_dir=data_dir)
    assert isinstance(lc, pd.DataFrame) and len(lc) == N_CADENCES
    assert lc["flux_corrected"].notna().all() and np.isfinite(lc["flux_corrected"]).all()
    table = tess_ffi.load_lightcurve(star, 1, data_dir=data_dir, format="astropy")
    assert isinstance(table, Table) and len(table) == N_CADENCES
    assert table.meta["star_id"] == star and table["btjd"].unit == "d"
    assert table["flux_corrected"].unit == "electron / s" and table["btjd_ccd"].unit == "d"
    assert table.meta["time_reference"] == "star"
    assert len(tess_ffi.load_stars(1, 1, 1, data_dir=data_dir)) == len(read(out1 / "stars.parquet"))
    phot = tess_ffi.load_photometry(1, data_dir=data_dir, star_ids=[star])
    assert len(phot) == N_CADENCES
    found = tess_ffi.find_variables(1, data_dir=data_dir, top=5)
    assert found["star_id"].tolist() == candidates["star_id"].head(5).tolist()
    result = tess_ffi.export_dataset("api", data_dir=data_dir, sectors=[1],
                                     out_dir=tmp_path / "export")
    assert (tmp_path / "export" / "features.parquet").exists() and len(result.features) > 0
    path = tess_ffi.export_lightcurve_fits(star, tmp_path / "s.fits", 1, 1, 1, data_dir=data_dir)
    check_lightcurve_fits(path, star, out1)
    stats: Any = tess_ffi.lightcurve_stats(phot)
    assert int(stats["n_points"].iloc[0]) == N_CADENCES
