"""End to end against a MAST-like archive throttled to 20 MB/s per connection: the pipeline's
wall time against the time to merely download the same files with the same concurrency.

The archive (``tests/mast_server.py``) runs in a child process, with every FFI rendered
before anything is timed (it renders on demand otherwise), so that serving costs the pipeline
no CPU in its own event loop. The pipeline is ``run_job``'s in-process path (embedded bus,
the five services) with ``JobSpec(source="mast", mast_url=..., workers=N)``; it is run
through the same functions ``run_job`` calls so that the phases can be timed from the
services' status records. The baseline is plain aiohttp GETs of the same files into memory,
``N`` at a time, measured before and after the pipeline (the mean is used).

Target: pipeline <= 1.3x the download time.

Run: ``python benchmarks/end_to_end.py [--stars 10000] [--ffis 24] [--workers 4]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

try:
    from benchmarks import _common as C
except ImportError:  # run as a script from the benchmarks folder
    import _common as C  # type: ignore[no-redef]

BANDWIDTH_BPS = 20e6
SECTOR, CAMERA, CCD = 18, 1, 3
#: The archive serves simulated cadences from this one on: mid-orbit, where frames are not
#: flagged for scattered light (the first ~18 cadences of an orbit are, and the fetcher then
#: fetches up to 15 candidates one by one for its reference stack).
FIRST_CADENCE = 100


class SectorSlice:
    """``n`` consecutive cadences of a simulated sector, in the duck type the archive serves."""

    def __init__(self, n_stars: int, n: int, seed: int) -> None:
        from types import SimpleNamespace

        self.sim = C.sector(n_stars, FIRST_CADENCE + n, seed, sector=SECTOR, camera=CAMERA,
                            ccd=CCD)
        self.config = SimpleNamespace(sector=SECTOR, camera=CAMERA, ccd=CCD, n_cadences=n)

    def ffi_filename(self, i: int) -> str:
        return str(self.sim.ffi_filename(FIRST_CADENCE + i))

    def ffi_bytes(self, i: int) -> bytes:
        return bytes(self.sim.ffi_bytes(FIRST_CADENCE + i))


# -- the archive, in a child process ----------------------------------------------------------


def _render(args: tuple[int, int, int, list[int]]) -> list[tuple[int, bytes]]:
    n_stars, n_ffis, seed, cadences = args
    sector = SectorSlice(n_stars, n_ffis, seed)
    return [(i, sector.ffi_bytes(i)) for i in cadences]


async def _serve(n_stars: int, n_ffis: int, seed: int, bandwidth: float) -> None:
    sys.path.insert(0, str(C.TESTS))
    from mast_server import Faults, MastLikeServer

    sector = SectorSlice(n_stars, n_ffis, seed)
    server = MastLikeServer(sector, faults=Faults(bandwidth_bps=bandwidth or None),
                            cache_frames=n_ffis + 1)
    workers = max(1, min(2, os.cpu_count() or 1))
    parts = [list(range(k, n_ffis, workers)) for k in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        for chunk in pool.map(_render, [(n_stars, n_ffis, seed, p) for p in parts]):
            for i, data in chunk:
                server.cache._frames[i] = data  # pre-rendered: nothing is rendered on demand
    await server.start()
    print(json.dumps({"base_url": server.base_url, "names": server.names,
                      "size": len(server.cache._frames[0])}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()


def start_archive(n_stars: int, n_ffis: int, seed: int, bandwidth: float = BANDWIDTH_BPS
                  ) -> tuple[subprocess.Popen[str], dict]:
    """The archive in a child process (every FFI rendered first); returns it and
    ``{"base_url", "names", "size"}``. ``bandwidth`` in bytes/s per response, 0 for none."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--stars", str(n_stars), "--ffis", str(n_ffis),
         "--seed", str(seed), "--bandwidth", str(bandwidth)],
        stdout=subprocess.PIPE, text=True, env=C.service_env("unused", Path("/tmp")),
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line:
        C.stop_process(proc)
        raise RuntimeError("the archive process did not start")
    return proc, json.loads(line)


# -- the two things timed ---------------------------------------------------------------------


async def download_all(base_url: str, names: list[str], workers: int) -> tuple[float, int]:
    """GET every file into memory, ``workers`` at a time: (seconds, bytes)."""
    import aiohttp

    limit = asyncio.Semaphore(workers)
    total = 0

    async def one(session: aiohttp.ClientSession, name: str) -> None:
        nonlocal total
        url = f"{base_url}api/v0.1/Download/file/?uri=mast:TESS/product/{name}"
        async with limit, session.get(url) as resp:
            resp.raise_for_status()
            body = bytearray()
            async for chunk in resp.content.iter_chunked(1 << 20):
                body += chunk
            total += len(body)

    t0 = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=workers + 2)) as s:
        await asyncio.gather(*(one(s, n) for n in names))
    return time.perf_counter() - t0, total


async def run_pipeline(base_url: str, workers: int, data_dir: Path) -> dict[str, Any]:
    """``run_job`` in-process, with the time each phase starts (seconds from the request)."""
    from tess_ffi.pipeline import _follow, make_bus, make_services
    from tess_ffi.shared.config import load_settings
    from tess_ffi.shared.contracts import JobSpec
    from tess_ffi.shared.runtime import running_services

    settings = dataclasses.replace(load_settings(data_dir=data_dir), broker_url=None)
    job = JobSpec(sector=SECTOR, camera=CAMERA, ccd=CCD, source="mast", mast_url=base_url,
                  workers=workers, no_resume=True)
    from tess_ffi.services.photometer import service as phot_service

    bus = make_bus(settings)
    services = make_services(["all"], bus, settings)
    by_name = {s.name: s for s in services}
    marks: dict[str, float] = {}
    t0 = time.perf_counter()

    def mark(key: str) -> None:
        marks.setdefault(key, time.perf_counter() - t0)

    # Time the star detection on the reference stack (the photometer calls this in a thread).
    detect = phot_service.build_star_catalog

    def timed_detect(*a: Any, **kw: Any) -> Any:
        mark("detection starts")
        try:
            return detect(*a, **kw)
        finally:
            mark("detection ends")

    phot_service.build_star_catalog = timed_detect

    async def watch() -> None:
        while True:
            fetch = by_name["fetcher"].jobs.get(job.job_id, {})
            agg = by_name["aggregator"].jobs.get(job.job_id, {})
            if fetch.get("state"):
                mark(f"fetcher {fetch['state']}")
            expected = agg.get("expected") or fetch.get("expected")
            if expected and agg.get("stored", 0) >= expected:
                mark("all FFIs stored")
            if agg.get("state") == "lightcurves sent":
                mark("light curves sent")
            await asyncio.sleep(0.02)

    def on_event(event: Any) -> None:
        if event.kind == "progress" and event.detail.get("stage") == "lightcurves":
            mark("light curves sent")

    try:
        async with running_services(services, bus, settings):
            watcher = asyncio.create_task(watch())
            try:
                summary = await _follow(bus, job, on_event)
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
    finally:
        phot_service.build_star_catalog = detect
    mark("completed")
    fetch_status = by_name["fetcher"].jobs.get(job.job_id, {})
    return {"marks": marks, "summary": summary, "source": fetch_status.get("source", {}),
            "stars": fetch_status.get("stars")}


# -- main ---------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> C.Report:
    from tess_ffi.shared.logging import configure_logging

    configure_logging("WARNING")
    C.header(f"end to end: {args.ffis} FFIs, {args.stars} stars, {args.workers} connections "
             f"at {BANDWIDTH_BPS / 1e6:.0f} MB/s each")
    report = C.Report("end_to_end")
    t0 = time.perf_counter()
    proc, info = start_archive(args.stars, args.ffis, args.seed)
    print(f"  archive ready in {time.perf_counter() - t0:.0f} s ({args.ffis} FFIs of "
          f"{info['size'] / 1e6:.1f} MB pre-rendered)", flush=True)
    data_dir = Path(tempfile.mkdtemp(prefix="tess-ffi-bench-e2e-"))
    try:
        base_url, names = info["base_url"], info["names"]
        d1, n_bytes = await download_all(base_url, names, args.workers)
        print(f"  download only: {d1:.1f} s ({n_bytes / d1 / 1e6:.1f} MB/s)", flush=True)
        result = await run_pipeline(base_url, args.workers, data_dir)
        d2, _ = await download_all(base_url, names, args.workers)
        print(f"  download only (again): {d2:.1f} s", flush=True)
    finally:
        C.stop_process(proc)
        shutil.rmtree(data_dir, ignore_errors=True)
    download = (d1 + d2) / 2
    marks = result["marks"]
    total = marks["completed"]
    one_ffi = download * args.workers / args.ffis  # one file over one connection
    for key, t in sorted(marks.items(), key=lambda kv: kv[1]):
        print(f"  phase: {key:<24} at {t:6.1f} s", flush=True)
    report.add("download only (mean of before/after)", download, "s",
               note=f"{n_bytes / 1e6:.0f} MB, {n_bytes / download / 1e6:.0f} MB/s")
    report.add("pipeline run_job wall (to 'completed')", total, "s",
               note=f"{result['stars']} stars detected and measured")
    report.add("pipeline / download", total / download, "x", "<= 1.3", total / download <= 1.3)
    stored = marks.get("all FFIs stored", float("nan"))
    report.add("streaming part: request -> last FFI stored, / download", stored / download, "x",
               "(<= 1.3)", stored / download <= 1.3)
    nan = float("nan")
    ref = marks.get("fetcher fetching", nan) - marks.get("fetcher reference", 0.0)
    report.add("  reference stage (5 frames fetched one by one + detection)", ref, "s",
               note=f"one FFI over one connection takes {one_ffi:.1f} s")
    report.add("    of which: fetch + median stack of the reference frames",
               marks.get("detection starts", nan) - marks.get("fetcher reference", 0.0), "s")
    report.add("    of which: star detection on the stack",
               marks.get("detection ends", nan) - marks.get("detection starts", nan), "s")
    floor = 5 * one_ffi + download
    report.add("  streaming part / its design floor (5 serial + all parallel downloads)",
               stored / floor, "x",
               note=f"floor {floor:.1f} s: the reference frames come one by one, then again")
    bulk = marks.get("fetcher done", float("nan")) - marks.get("fetcher fetching", float("nan"))
    report.add("  bulk fetch of every FFI (workers in parallel)", bulk, "s",
               note=f"{bulk / download:.2f}x the download-only time")
    report.add("  tail: last FFI stored -> light curves sent",
               marks.get("light curves sent", float("nan")) - stored, "s")
    report.add("  tail: light curves sent -> completed (analysis, enrichment)",
               total - marks.get("light curves sent", float("nan")), "s")
    stats = result["source"]
    if stats:
        report.note(f"fetcher source stats: {json.dumps(stats)[:300]}")
    report.note("the reference frames are fetched one at a time and again in the bulk fetch; "
                "the bulk fetch starts only once the star list exists, so the archive "
                "connections idle during detection; analysis starts only after the last FFI")
    report.finish()
    return report


def main(argv: list[str] | None = None) -> C.Report | None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--stars", type=int, default=C.N_STARS)
    p.add_argument("--ffis", type=int, default=24)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--bandwidth", type=float, default=BANDWIDTH_BPS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args.stars, args.ffis, args.seed, args.bandwidth))
        return None
    return asyncio.run(bench(args))


if __name__ == "__main__":
    main()
