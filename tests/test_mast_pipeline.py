"""The whole pipeline against a MAST-like archive on 127.0.0.1: faults, status, resume."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
from mast_server import (  # noqa: F401 - registers the fixtures
    Faults,
    mast_server_factory_fixture,
)

from tess_ffi.pipeline import run_job
from tess_ffi.shared.config import load_settings, output_dir
from tess_ffi.shared.contracts import JobSpec

SECTOR = {"sector": 18, "camera": 1, "ccd": 3, "n_stars": 150, "seed": 3}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as r:
        return dict(json.loads(r.read()))


def _photometry(out: Path) -> Any:
    return ds.dataset(out / "photometry.parquet", format="parquet").to_table().to_pandas()


async def test_faulty_archive_job_stores_every_cadence_once(
    mast_server_factory: Any, tmp_path: Path
) -> None:
    server = await mast_server_factory(
        n_cadences=90, faults=Faults(seed=11, error_fraction=0.10, truncate_fraction=0.05,
                                     retry_after_s=0.2), **SECTOR,
    )
    # With so few files the fractions alone may not hit every fault kind: force one of each.
    server.faults.truncate_first = {server.sector.ffi_filename(36): 1}
    server.faults.fail_first = {server.sector.ffi_filename(54): 2}
    port = _free_port()
    settings = load_settings(data_dir=tmp_path, http_port=port)
    job = JobSpec(sector=18, camera=1, ccd=3, mast_url=server.base_url, cadence_skip=18, workers=3)
    statuses: list[dict[str, Any]] = []

    async def watch() -> None:
        while True:
            try:
                statuses.append(await asyncio.to_thread(_status, port))
            except OSError:
                pass
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.wait_for(run_job(job, settings), 300)
    finally:
        watcher.cancel()
    out = output_dir(tmp_path, 18, 1, 3)
    phot = _photometry(out)
    expected = list(range(0, 90, 18))
    assert sorted(phot["cadence"].unique()) == expected
    assert not phot.duplicated(["star_id", "cadence"]).any()
    assert server.injected["503"] > 0 and server.injected["truncated"] > 0
    fetch_stats = [s["services"]["fetcher"]["jobs"].get(job.job_id, {}).get("source", {})
                   for s in statuses]
    retries = max((st.get("retries", 0) for st in fetch_stats), default=0)
    assert retries > 0, "retries are not visible in /status"


async def test_killed_run_resumes_without_measuring_stored_cadences(
    mast_server_factory: Any, tmp_path: Path
) -> None:
    server = await mast_server_factory(n_cadences=24, **SECTOR)
    out = output_dir(tmp_path, 18, 1, 3)
    cmd = [sys.executable, "-m", "tess_ffi.cli", "process", "--sector", "18", "--camera", "1",
           "--ccd", "3", "--mast-url", server.base_url, "--data-dir", str(tmp_path),
           "--workers", "2"]
    env = {k: v for k, v in os.environ.items() if k != "TESS_FFI_BROKER"}
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    phot_dir = out / "photometry.parquet"
    for _ in range(1200):
        if phot_dir.is_dir() and len(list(phot_dir.glob("cadence-*.parquet"))) >= 10:
            break
        await asyncio.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    stored_first = {int(p.stem.split("-")[1]) for p in phot_dir.glob("cadence-*.parquet")}
    assert 10 <= len(stored_first) < 24, "the first run was not killed half-way"
    names = {i: server.sector.ffi_filename(i) for i in range(24)}
    server.reset_counts()

    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    refetched = [c for c in stored_first if server.completed[names[c]]]
    assert refetched == [], f"stored cadences fetched again: {refetched}"
    phot = _photometry(out)
    assert sorted(phot["cadence"].unique()) == list(range(24))  # no gap
    assert not phot.duplicated(["star_id", "cadence"]).any()  # no duplicate
