"""Helpers shared by the benchmarks: simulated frames, timing, RSS, and reporting.

Every benchmark prints each figure on one line next to its target, then one machine-readable
line ``BENCH_RESULT {json}`` that ``benchmarks/run_all.py`` collects into its summary.
The machine is shared and noisy: figures that are comparisons are always ratios of
measurements taken in the same run (interleaved where possible), never absolute times
compared with numbers from another run.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
TESTS = ROOT / "tests"

#: The product's design point: stars measured on every FFI of one CCD.
N_STARS = 10_000
#: RabbitMQ for the broker benchmarks (TESS_FFI_BENCH_BROKER overrides).
BROKER_URL = os.environ.get("TESS_FFI_BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672/")


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: str = ""
    ok: bool | None = None
    note: str = ""


@dataclass
class Report:
    """Collects a benchmark's figures, prints them as they come and once more at the end."""

    benchmark: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value: float, unit: str = "", target: str = "",
            ok: bool | None = None, note: str = "") -> Figure:
        fig = Figure(name, float(value), unit, target, ok, note)
        self.figures.append(fig)
        print(format_figure(fig), flush=True)
        return fig

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def finish(self) -> None:
        print(f"\n== {self.benchmark}: summary ==")
        for fig in self.figures:
            print(format_figure(fig))
        payload = {"benchmark": self.benchmark, "figures": [asdict(f) for f in self.figures],
                   "notes": self.notes}
        print("BENCH_RESULT " + json.dumps(payload), flush=True)


def format_figure(fig: Figure) -> str:
    verdict = {True: "PASS", False: "MISS", None: "    "}[fig.ok]
    value = f"{fig.value:.3g}" if abs(fig.value) < 1000 else f"{fig.value:,.0f}"
    target = f"target {fig.target}" if fig.target else ""
    line = f"  [{verdict}] {fig.name:<58} {value:>10} {fig.unit:<8} {target}"
    return line + (f"   ({fig.note})" if fig.note else "")


def header(title: str) -> None:
    load = os.getloadavg()
    print(f"=== {title} ===")
    print(f"  machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f} (other jobs share the cores: compare ratios, not times)", flush=True)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


class Timer:
    """``with Timer() as t: ...`` then ``t.s`` (wall seconds) and ``t.cpu`` (CPU seconds of
    the calling thread: unlike wall time, it does not count time spent waiting for a core
    that another job holds, so it is the steadier measure of single-threaded work)."""

    def __enter__(self) -> Timer:
        self.c0 = time.thread_time()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.s = time.perf_counter() - self.t0
        self.cpu = time.thread_time() - self.c0


# -- simulated data ----------------------------------------------------------------------------


def sector(n_stars: int = N_STARS, n_cadences: int = 24, seed: int = 7, **kw: Any) -> Any:
    """A simulated sector (sector 1, camera 1, CCD 1 unless told otherwise)."""
    from tess_ffi.shared.simulation import SimulatedSector, SimulationConfig

    return SimulatedSector(SimulationConfig(n_stars=n_stars, n_cadences=n_cadences, seed=seed,
                                            **kw))


def catalog_stars(sim: Any) -> Any:
    """The simulation's catalog as the job's star list (star_catalog_table, ids 1..n)."""
    import numpy as np

    from tess_ffi.shared.contracts import star_catalog_table

    c = sim.catalog
    return star_catalog_table(np.arange(1, len(c) + 1), c["ra"], c["dec"], c["x"], c["y"],
                              c["tmag"])


def ffi_message(sim: Any, cadence: int, data: bytes, stars: Any, job: Any) -> Any:
    """The fetcher's FFIImage for one frame, built from its FITS bytes as the fetcher does."""
    from tess_ffi.shared.contracts import FFIImage
    from tess_ffi.shared.fits_io import read_calibrated_ffi

    ffi = read_calibrated_ffi(data, name=sim.ffi_filename(cadence))
    return FFIImage(job=job, cadence=cadence, filename=ffi.name, header=ffi.header.tostring(),
                    image=ffi.image, uncertainty=ffi.uncertainty, stars=stars)


# -- processes ---------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process in bytes, from /proc/PID/status."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def service_env(namespace: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TESS_FFI_BROKER=BROKER_URL, TESS_FFI_NAMESPACE=namespace,
               TESS_FFI_DATA_DIR=str(data_dir), TESS_FFI_LOG_LEVEL="WARNING")
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def start_service(name: str, namespace: str, data_dir: Path, log_dir: Path,
                  **extra_env: str) -> Any:
    """``python -m tess_ffi.cli serve NAME`` as a child process (its log in ``log_dir``)."""
    import subprocess

    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"{name}-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "tess_ffi.cli", "serve", name],
        env=service_env(namespace, data_dir, **extra_env), stdout=log, stderr=subprocess.STDOUT,
    )
    proc.log_path = log.name  # type: ignore[attr-defined]
    log.close()
    return proc


def stop_process(proc: Any, timeout: float = 20.0) -> None:
    """SIGTERM the child we started (by its pid), then SIGKILL if it does not exit."""
    import subprocess

    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


async def wait_consumers(bus: Any, queue: str, n: int, timeout: float = 120.0) -> None:
    """Wait until ``queue`` has at least ``n`` consumers (services subscribed and ready)."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        # A channel of its own: the bus's robust channel caches queue declarations.
        channel = await bus._connection.channel()
        try:
            q = await channel.declare_queue(queue, passive=True)
            count = int(q.declaration_result.consumer_count or 0)
        finally:
            await channel.close()
        if count >= n:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{queue}: fewer than {n} consumers after {timeout:.0f} s")
        await asyncio.sleep(0.2)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc/PID/stat; NaN if unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def broker_pid(port: int = 5672) -> int | None:
    """The local RabbitMQ node's process (Erlang ``beam.smp`` listening on ``port``), read
    only, to report the CPU the broker spent; None when it is not visible here."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{f[9]}]")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "beam.smp":
                continue
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                return int(entry.name)
        except OSError:
            continue
    return None


def mb(n_bytes: float) -> float:
    return n_bytes / 2**20
