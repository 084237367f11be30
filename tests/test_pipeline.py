"""End to end: a simulated sector through all five services, on both transports."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

from tess_ffi.pipeline import run_job
from tess_ffi.shared.bus import RabbitBus
from tess_ffi.shared.config import load_settings, output_dir
from tess_ffi.shared.contracts import JobSpec, Topic

SIM = {"n_stars": 400, "n_cadences": 96, "cadence_s": 1800.0, "seed": 5, "variable_fraction": 0.3}


def job(**kwargs: Any) -> JobSpec:
    return JobSpec(sector=1, camera=1, ccd=1, source="sim", sim=dict(SIM), **kwargs)


def read(path: Path) -> Any:
    return ds.dataset(path, format="parquet").to_table().to_pandas()


def outputs(data_dir: Path) -> Path:
    return output_dir(data_dir, 1, 1, 1)


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("embedded")
    summary = asyncio.run(run_job(job(), load_settings(data_dir=data_dir)))
    assert summary["stars"] > 0
    return data_dir


def test_embedded_job_writes_every_output(embedded_run: Path) -> None:
    out = outputs(embedded_run)
    stars = read(out / "stars.parquet")
    phot = read(out / "photometry.parquet")
    var = read(out / "variability.parquet")
    cands = read(out / "candidates.parquet")
    assert list(stars.columns) == ["star_id", "ra", "dec", "x", "y", "tmag", "tic_id"]
    assert stars["star_id"].is_unique and len(stars) > 100
    assert {"star_id", "cadence", "btjd", "flux", "flux_err", "bkg", "x", "y", "quality"} <= set(phot.columns)
    # Every star on every cadence, exactly once.
    assert len(phot) == len(stars) * SIM["n_cadences"]
    assert not phot.duplicated(["star_id", "cadence"]).any()
    assert phot["btjd"].is_monotonic_increasing or phot.groupby("star_id")["btjd"].apply(
        lambda s: s.is_monotonic_increasing).all()
    assert set(var["star_id"]) == set(stars["star_id"])
    for col in ["n_points", "amplitude", "amplitude_robust", "reduced_chi2", "stetson_j", "mad",
                "snr", "period", "period_power", "var_class", "score"]:
        assert col in var.columns
    assert len(cands) > 0 and cands["score"].is_monotonic_decreasing
    assert cands["catalog_id"].notna().mean() > 0.9  # matched to the simulator's catalog


def test_light_curves_are_cleaned_and_the_raw_flux_is_kept(embedded_run: Path) -> None:
    from tess_ffi.shared.quality import DEFAULT_BAD_BITS, QualityFlags
    from tess_ffi.shared.simulation import SimulatedSector, SimulationConfig

    phot = read(outputs(embedded_run) / "photometry.parquet")
    stars = read(outputs(embedded_run) / "stars.parquet").set_index("star_id")
    measured = np.isfinite(phot["flux"])
    assert phot.loc[measured, "flux_corrected"].notna().all()
    # Each star kept one aperture: faint stars the small one, bright stars the large one.
    radius = phot.groupby("star_id")["aperture_radius"].agg(["min", "max"])
    assert (radius["min"] == radius["max"]).all()
    tmag = stars.loc[radius.index, "tmag"]
    assert tmag[radius["min"] == 3.0].median() + 1.0 < tmag[radius["min"] == 1.5].median()
    # Constant, isolated stars: the corrected flux scatters no more than the raw flux, and
    # about as much as its errors say.
    truth = SimulatedSector(SimulationConfig(sector=1, camera=1, ccd=1, **SIM)).catalog
    const = truth[(truth["var_class"] == "CONST") & truth["tmag"].between(9, 14)]
    near = np.hypot(stars["x"].to_numpy()[:, None] - const["x"].to_numpy()[None, :],
                    stars["y"].to_numpy()[:, None] - const["y"].to_numpy()[None, :]) < 0.5
    ids = stars.index.to_numpy()[near.any(axis=1)]
    assert len(ids) >= 30
    sel = phot[phot["star_id"].isin(ids) & ((phot["quality"] & DEFAULT_BAD_BITS) == 0)]
    err = (sel["flux_err"] / sel["flux"]).groupby(sel["star_id"]).median()

    def scatter(col: str) -> pd.Series:
        rel = sel[col] / sel.groupby("star_id")[col].transform("median")
        return rel.groupby(sel["star_id"]).std() / err

    assert scatter("flux_corrected").median() <= scatter("flux").median()
    assert 0.7 < scatter("flux_corrected").median() < 1.2, scatter("flux_corrected").median()
    # The cleaning rejects a few points (outliers, bad epochs), never a large share.
    bits = phot["quality"] & int(QualityFlags.OUTLIER | QualityFlags.BAD_EPOCH)
    assert (bits != 0).mean() < 0.05


def test_injected_variables_are_found_with_their_periods(embedded_run: Path) -> None:
    from tess_ffi.shared.simulation import SimulatedSector, SimulationConfig

    truth = SimulatedSector(SimulationConfig(sector=1, camera=1, ccd=1, **SIM)).catalog
    cands = read(outputs(embedded_run) / "candidates.parquet")
    periodic = truth[truth["var_class"].isin(["EA", "EW", "ROT", "DSCT"]) & (truth["tmag"] < 13)
                     & (truth["amplitude"] > 0.02)]
    assert len(periodic) >= 5
    matched = cands.merge(periodic, left_on="catalog_id", right_on="sim_id", suffixes=("", "_true"))
    ratio = matched["period"] / matched["period_true"]
    # Eclipsing binaries with equal minima may legitimately be reported at P/2.
    binary = matched["var_class_true"].isin(["EA", "EW"])
    # A two-day span limits period precision to about a percent (the full-sector precision
    # figures are benchmarks/science.py's).
    good = np.isclose(ratio, 1, rtol=0.02) | (binary & np.isclose(ratio, 0.5, rtol=0.02))
    assert good.sum() >= 0.8 * len(periodic), matched[["var_class", "period", "period_true"]]


def test_rerun_resumes_and_measures_nothing_again(embedded_run: Path) -> None:
    phot_dir = outputs(embedded_run) / "photometry.parquet"
    before = {p.name: p.stat().st_mtime_ns for p in phot_dir.iterdir()}
    var_before = read(outputs(embedded_run) / "variability.parquet").sort_values("star_id")
    summary = asyncio.run(run_job(job(), load_settings(data_dir=embedded_run)))
    after = {p.name: p.stat().st_mtime_ns for p in phot_dir.iterdir()}
    assert before == after  # no cadence measured or rewritten
    # The light curves sent again are cleaned the same way: the same results.
    var_after = read(outputs(embedded_run) / "variability.parquet").sort_values("star_id")
    cols = ["star_id", "var_class", "period", "amplitude", "reduced_chi2"]
    assert var_after[cols].reset_index(drop=True).equals(var_before[cols].reset_index(drop=True))
    assert summary["stars"] == len(read(outputs(embedded_run) / "stars.parquet"))


# --- RabbitMQ, with photometers in their own processes ------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def photometers(broker_url: str, namespace: str, tmp_path: Path) -> Iterator[list[dict[str, Any]]]:
    procs = []
    env = {**os.environ, "TESS_FFI_BROKER": broker_url, "TESS_FFI_NAMESPACE": namespace,
           "TESS_FFI_LOG_LEVEL": "INFO"}
    for i in range(2):
        port = _free_port()
        log = open(tmp_path / f"photometer-{i}.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [sys.executable, "-m", "tess_ffi.cli", "serve", "photometer", "--http-port", str(port),
             "--data-dir", str(tmp_path)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        procs.append({"proc": proc, "port": port, "log": log})
    try:
        for p in procs:
            _wait_ready(p["port"], p["proc"])
        yield procs
    finally:
        for p in procs:
            if p["proc"].poll() is None:
                p["proc"].send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p["proc"].wait(20)
            except subprocess.TimeoutExpired:
                p["proc"].kill()
            p["log"].close()


def _get(port: int, path: str, timeout: float = 5.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            body = r.read().decode()
            return r.status, json.loads(body) if path != "/metrics" else body
    except urllib.error.HTTPError as exc:
        return exc.code, None


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "service exited early"
        try:
            if _get(port, "/readyz", 1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("service never became ready")


@pytest.mark.broker
def test_rabbitmq_with_two_photometers_matches_embedded(
    embedded_run: Path, photometers: list[dict[str, Any]], broker_url: str, namespace: str,
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "rabbit"
    settings = load_settings(data_dir=data_dir, broker_url=broker_url, namespace=namespace)
    seen_busy: list[dict[str, Any]] = []
    killed: list[int] = []

    async def scenario() -> dict[str, Any]:
        task = asyncio.create_task(
            run_job(job(), settings, services=["fetcher", "aggregator", "analyzer", "enricher"])
        )
        # While photometers work: their HTTP endpoints answer, and a poison message and a
        # killed photometer do not stop the job.
        poisoner = RabbitBus(broker_url, namespace=namespace)
        await poisoner.connect()
        await poisoner.publish_raw(Topic.FFI, b"\x00 not a contract")
        while not task.done():
            for p in photometers:
                if p["proc"].poll() is not None:
                    continue
                try:
                    code, status = await asyncio.to_thread(_get, p["port"], "/status")
                    health, _ = await asyncio.to_thread(_get, p["port"], "/healthz")
                except OSError:
                    if p["port"] in killed:
                        continue  # the one we killed: its socket may close mid-request
                    raise
                assert health == 200 and code == 200
                svc = status["services"]["photometer"]
                if svc["busy"]:
                    seen_busy.append(svc)
                    if not killed and svc["counters"].get("ffi_measured", 0) >= 3:
                        p["proc"].kill()  # SIGKILL mid-FFI: its unacked image is redelivered
                        killed.append(p["port"])
            await asyncio.sleep(0.05)
        letters = await poisoner.dead_letters()
        await poisoner.close()
        summary = await task
        summary["dead_letters"] = letters
        return summary

    summary = asyncio.run(asyncio.wait_for(scenario(), 600))
    assert seen_busy, "never saw a photometer busy"
    assert killed, "no photometer was killed mid-job"
    assert any("invalid message" in dl.reason for dl in summary["dead_letters"])

    rabbit_out, embedded_out = outputs(data_dir), outputs(embedded_run)
    stars_r = read(rabbit_out / "stars.parquet")
    stars_e = read(embedded_out / "stars.parquet")
    assert stars_r.equals(stars_e)
    phot_r = read(rabbit_out / "photometry.parquet").sort_values(["star_id", "cadence"])
    phot_e = read(embedded_out / "photometry.parquet").sort_values(["star_id", "cadence"])
    assert not phot_r.duplicated(["star_id", "cadence"]).any()  # no duplicate
    assert len(phot_r) == len(stars_r) * SIM["n_cadences"]  # no gap
    cols = ["star_id", "cadence", "btjd", "flux", "flux_err", "bkg", "x", "y", "quality"]
    assert phot_r[cols].reset_index(drop=True).equals(phot_e[cols].reset_index(drop=True))
    var_r = read(rabbit_out / "variability.parquet")
    var_e = read(embedded_out / "variability.parquet")
    assert var_r[["star_id", "var_class"]].equals(var_e[["star_id", "var_class"]])
