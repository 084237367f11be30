"""Faults: the job completes and loses nothing when the broker restarts, connections are cut
or slowed, the output disk fills up or turns read-only, or every service gets SIGTERM.

(Also faults, elsewhere: a photometer SIGKILLed mid-FFI and a poison message in
test_pipeline.py; 503s, stalls and truncated bodies from the archive in test_mast_pipeline.py.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
from faults_support import RabbitNode, SmallDisk, TCPProxy, free_port

from tess_ffi.pipeline import JobFailed, run_job
from tess_ffi.shared.config import load_settings, output_dir
from tess_ffi.shared.contracts import JobSpec

pytestmark = [pytest.mark.faults]

SIM = {"n_stars": 200, "n_cadences": 40, "seed": 9}


def job(**kwargs: Any) -> JobSpec:
    return JobSpec(sector=1, camera=1, ccd=1, source="sim", sim=dict(SIM), **kwargs)


def out_dir(data_dir: Path) -> Path:
    return output_dir(data_dir, 1, 1, 1)


def stored(data_dir: Path) -> int:
    folder = out_dir(data_dir) / "photometry.parquet"
    return len(list(folder.glob("cadence-*.parquet"))) if folder.is_dir() else 0


async def wait_stored(data_dir: Path, n: int, task: asyncio.Task[Any] | None = None) -> None:
    for _ in range(3000):
        if stored(data_dir) >= n:
            return
        if task is not None and task.done():
            task.result()
            raise AssertionError("job ended before the fault was injected")
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {n} cadences stored in time")


def assert_complete(data_dir: Path) -> None:
    phot = ds.dataset(out_dir(data_dir) / "photometry.parquet").to_table().to_pandas()
    stars = ds.dataset(out_dir(data_dir) / "stars.parquet").to_table()
    assert sorted(phot["cadence"].unique()) == list(range(SIM["n_cadences"]))  # no cadence lost
    assert not phot.duplicated(["star_id", "cadence"]).any()  # none duplicated
    assert len(phot) == stars.num_rows * SIM["n_cadences"]
    assert (out_dir(data_dir) / "candidates.parquet").exists()


@pytest.fixture(scope="module")
def rabbit_node() -> Iterator[RabbitNode]:
    if not subprocess.run(["which", "rabbitmq-server"], capture_output=True).returncode == 0:
        pytest.fail("rabbitmq-server is not installed (.ci/run installs it)")
    node = RabbitNode()
    node.start()
    try:
        yield node
    finally:
        node.stop()


async def test_broker_restart_mid_job(rabbit_node: RabbitNode, tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, broker_url=rabbit_node.url,
                             namespace=f"fault-{uuid.uuid4().hex[:8]}", stall_timeout_s=8)
    task = asyncio.create_task(run_job(job(), settings, services=["all"]))
    await wait_stored(tmp_path, 12, task)
    await asyncio.to_thread(rabbit_node.restart)
    summary = await asyncio.wait_for(task, 400)
    assert summary["stars"] > 0
    assert_complete(tmp_path)


@pytest.mark.parametrize("mode", ["cut", "slow"])
async def test_connection_cut_or_slowed(mode: str, broker_url: str, tmp_path: Path) -> None:
    proxy = TCPProxy(5672 if "5672" in broker_url else int(broker_url.rsplit(":", 1)[1].strip("/")))
    await proxy.start()
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
    settings = load_settings(data_dir=tmp_path, broker_url=url,
                             namespace=f"fault-{uuid.uuid4().hex[:8]}", stall_timeout_s=8)
    task = asyncio.create_task(run_job(job(), settings, services=["all"]))
    try:
        await wait_stored(tmp_path, 8, task)
        if mode == "cut":
            proxy.cut()
            await wait_stored(tmp_path, 20, task)
            proxy.cut()
        else:
            proxy.delay_s = 0.003  # per 64 KiB read: latency and a bandwidth cap
        await asyncio.wait_for(task, 400)
    finally:
        await proxy.close()
    assert_complete(tmp_path)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    if not SmallDisk.available():
        if os.environ.get("CI"):
            pytest.fail("disk fault tests need root to mount a tmpfs")
        pytest.skip("disk fault tests need root to mount a tmpfs")
    disk = SmallDisk(tmp_path / "disk", size="300k")  # fills up part-way through the job
    try:
        yield disk
    finally:
        disk.unmount()


def _no_partial_files(root: Path) -> None:
    leftovers = [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == [], leftovers
    for part in root.rglob("*.parquet"):
        if part.is_file():
            ds.dataset(part).to_table()  # every Parquet file that exists reads whole


@pytest.mark.parametrize("fault", ["full", "read-only"])
async def test_output_disk_full_or_read_only(fault: str, small_disk: SmallDisk) -> None:
    data_dir = small_disk.path
    settings = load_settings(data_dir=data_dir, stall_timeout_s=30)
    task = asyncio.create_task(run_job(job(), settings))
    if fault == "read-only":
        small_disk.remount("size=200m")
        await wait_stored(data_dir, 5, task)
        small_disk.remount("ro")
    with pytest.raises(JobFailed) as info:
        await asyncio.wait_for(task, 300)
    message = str(info.value)
    expected = "No space left on device" if fault == "full" else "Read-only file system"
    assert expected in message and "\n" not in message
    small_disk.remount("rw,size=200m")
    _no_partial_files(data_dir)
    await asyncio.wait_for(run_job(job(), settings), 300)  # a rerun completes
    assert_complete(data_dir)
    _no_partial_files(data_dir)


@pytest.fixture
def serve_all(broker_url: str, tmp_path: Path) -> Iterator[Any]:
    namespace = f"fault-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "TESS_FFI_BROKER": broker_url, "TESS_FFI_NAMESPACE": namespace,
           "TESS_FFI_DATA_DIR": str(tmp_path)}
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tess_ffi.cli", "serve", "all", "--http-port",
             str(free_port())], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        procs.append(proc)
        return proc

    start.namespace = namespace  # type: ignore[attr-defined]
    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_sigterm_to_every_service_then_restart(
    serve_all: Any, broker_url: str, tmp_path: Path
) -> None:
    settings = load_settings(data_dir=tmp_path, broker_url=broker_url,
                             namespace=serve_all.namespace)
    services = serve_all()
    first = asyncio.create_task(run_job(job(), settings))
    await wait_stored(tmp_path, 10, first)
    services.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(services.wait, 60)
    assert code == 0, services.stderr.read().decode()[-2000:] if services.stderr else ""
    first.cancel()
    partial = stored(tmp_path)
    assert 10 <= partial < SIM["n_cadences"]
    _no_partial_files(tmp_path)
    serve_all()  # restart: the rerun finishes the job
    await asyncio.wait_for(run_job(job(), settings), 400)
    assert_complete(tmp_path)
