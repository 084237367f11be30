"""Peak memory (RSS) of each service during a job, and of the aggregator's store at the scale
of a full sector.

1. Services: the five services run as ``python -m tess_ffi.cli serve NAME`` child processes on
   RabbitMQ (unique namespace) and process a job from a MAST-like archive (a child process,
   unthrottled, every FFI pre-rendered) of 10,000 stars; each service's VmRSS is sampled
   during the job and its VmHWM (peak RSS) read at the end.
2. Aggregator at sector scale: a child process writes synthetic ``FFIPhotometry`` tables for
   10,000 stars through ``JobStore.write_cadence`` (one file per cadence, as the aggregator
   does), then makes the light-curve pass exactly as ``AggregatorService._send_lightcurves``
   does (``JobStore.iter_lightcurves`` with its chunk size, per-star slices, one
   ``StarLightCurve`` encoded per star), at two or three cadence counts. A full sector is
   about 10,700 cadences (200-s FFIs), about 100 million measurements.

Targets: photometer < 400 MB; aggregator < 1 GB, independent of the number of cadences.

Run: ``python benchmarks/memory.py [--ffis 24] [--cadences 1000 3000] [--full]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

try:
    from benchmarks import _common as C
    from benchmarks.end_to_end import CAMERA, CCD, SECTOR, start_archive
except ImportError:  # run as a script from the benchmarks folder
    import _common as C  # type: ignore[no-redef]
    from end_to_end import CAMERA, CCD, SECTOR, start_archive  # type: ignore[no-redef]

SERVICES = ("fetcher", "photometer", "aggregator", "analyzer", "enricher")
FULL_SECTOR_CADENCES = 10_700


# -- 1. the services during a job ---------------------------------------------------------------


async def services_job(args: argparse.Namespace, report: C.Report) -> None:
    from tess_ffi.pipeline import run_job
    from tess_ffi.shared.bus import RabbitBus
    from tess_ffi.shared.config import load_settings
    from tess_ffi.shared.contracts import ROUTES, JobSpec

    tmp = Path(tempfile.mkdtemp(prefix="tess-ffi-bench-mem-"))
    namespace = f"bench-memory-{uuid.uuid4().hex[:8]}"
    archive, info = start_archive(args.stars, args.ffis, 7, bandwidth=0)
    procs: dict[str, Any] = {}
    peak: dict[str, int] = {}
    bus = RabbitBus(C.BROKER_URL, namespace=namespace)
    try:
        await bus.connect()
        for name in SERVICES:
            extra = ({"TESS_FFI_PREFETCH": str(args.photometer_prefetch)}
                     if name == "photometer" and args.photometer_prefetch else {})
            procs[name] = C.start_service(name, namespace, tmp / "data", tmp / "logs", **extra)
        for route in ROUTES.values():
            for group in route.groups:
                await C.wait_consumers(bus, bus.queue_name(route.topic, group), 1)

        streaming: dict[str, int] = {}
        first_stored: list[float] = []

        def on_event(event: Any) -> None:
            if event.kind == "progress" and event.detail.get("stored") and not first_stored:
                first_stored.append(time.perf_counter())

        async def sample() -> None:
            while True:
                for name, proc in procs.items():
                    rss = C.proc_status(proc.pid).get("VmRSS", 0)
                    peak[name] = max(peak.get(name, 0), rss)
                    if first_stored:  # the star list exists: FFIs are streaming
                        streaming[name] = max(streaming.get(name, 0), rss)
                await asyncio.sleep(0.1)

        sampler = asyncio.create_task(sample())
        settings = dataclasses.replace(load_settings(data_dir=tmp / "data"),
                                       broker_url=C.BROKER_URL, namespace=namespace)
        job = JobSpec(sector=SECTOR, camera=CAMERA, ccd=CCD, source="mast",
                      mast_url=info["base_url"], workers=4, no_resume=True)
        t0 = time.perf_counter()
        summary = await asyncio.wait_for(run_job(job, settings, on_event=on_event),
                                         timeout=3600)
        elapsed = time.perf_counter() - t0
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        hwm = {name: C.proc_status(proc.pid).get("VmHWM", 0) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            C.stop_process(proc)
        C.stop_process(archive)
        with contextlib.suppress(Exception):
            await bus.delete_topology()
        await bus.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"  job of {args.ffis} FFIs x {summary.get('stars')} stars done in {elapsed:.0f} s",
          flush=True)
    targets = {"photometer": 400, "aggregator": 1024}
    for name in SERVICES:
        value = C.mb(max(hwm.get(name, 0), peak.get(name, 0)))
        limit = targets.get(name)
        label = (f"{name} (prefetch {args.photometer_prefetch})"
                 if name == "photometer" and args.photometer_prefetch else name)
        report.add(f"peak RSS during a job: {label}", value, "MB",
                   f"< {limit} MB" if limit else "", (value < limit) if limit else None,
                   note=f"sampled max {C.mb(peak.get(name, 0)):.0f} MB, while FFIs stream "
                   f"(after the star list) {C.mb(streaming.get(name, 0)):.0f} MB")


# -- 2. the aggregator's store at sector scale ---------------------------------------------------


def store_child(n_cadences: int, n_stars: int, root: Path) -> dict[str, Any]:
    """Runs in a fresh process: write ``n_cadences`` x ``n_stars`` and make the light-curve
    pass; returns peak RSS after each phase and the times."""
    import numpy as np

    from tess_ffi.services.aggregator.service import LIGHTCURVE_ROWS_IN_MEMORY
    from tess_ffi.services.aggregator.store import JobStore
    from tess_ffi.shared.contracts import JobSpec, StarLightCurve, photometry_table

    pid = os.getpid()
    peak = {"rss": 0}
    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            peak["rss"] = max(peak["rss"], C.proc_status(pid).get("VmRSS", 0))
            time.sleep(0.02)

    threading.Thread(target=sampler, daemon=True).start()
    rng = np.random.default_rng(0)
    ids = np.arange(1, n_stars + 1)
    x0 = rng.uniform(44, 2092, n_stars).astype(np.float32)
    y0 = rng.uniform(0, 2048, n_stars).astype(np.float32)
    level = (10 ** rng.uniform(2, 5, n_stars)).astype(np.float32)
    store = JobStore(root)
    base = C.proc_status(pid)["VmRSS"]
    t0 = time.perf_counter()
    for k in range(n_cadences):
        err = np.sqrt(level / 1425.6 + 0.5).astype(np.float32)
        table = photometry_table(
            ids, flux=level + err * rng.standard_normal(n_stars, dtype=np.float32),
            flux_err=err, bkg=(150 + rng.standard_normal(n_stars, dtype=np.float32)),
            x=x0, y=y0, quality=np.zeros(n_stars, np.int32))
        store.write_cadence(k, 1325.3 + k * 200 / 86400, table)
    t_write = time.perf_counter() - t0
    disk_before = sum(p.stat().st_size for p in store.photometry_dir.glob("*.parquet"))
    write_peak = max(peak["rss"], C.proc_status(pid)["VmHWM"])
    peak["rss"] = 0
    job = JobSpec(sector=1, camera=1, ccd=1)
    n_stored = len(store.stored_cadences())
    chunk = max(16, LIGHTCURVE_ROWS_IN_MEMORY // n_stored)
    # As _send_lightcurves does: one pass sends the light curves and, where the store
    # compacts its photometry star-major at the end of a job, writes the compacted file.
    compaction = None
    if hasattr(store, "has_uncompacted") and store.has_uncompacted():
        from tess_ffi.services.aggregator.store import Compaction

        compaction = Compaction(store)
    t0 = time.perf_counter()
    sent = 0
    for table in store.iter_lightcurves(ids, chunk=chunk):
        if compaction is not None:
            table = compaction.write(table)
        star_col = table.column("star_id").to_numpy()
        starts = np.flatnonzero(np.r_[True, star_col[1:] != star_col[:-1]])
        bounds = np.r_[starts, len(star_col)]
        cols = {c: table.column(c).to_numpy() for c in ("btjd", "flux", "flux_err", "quality")}
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            StarLightCurve(job=job, star_id=int(star_col[a]), n_stars=n_stars, ra=0.0, dec=0.0,
                           tmag=10.0, btjd=cols["btjd"][a:b], flux=cols["flux"][a:b],
                           flux_err=cols["flux_err"][a:b],
                           quality=cols["quality"][a:b]).encode(compression="zstd")
            sent += 1
        del table, cols, star_col
    if compaction is not None:
        compaction.commit()
    t_pass = time.perf_counter() - t0
    stop.set()
    pass_peak = max(peak["rss"], 0)
    disk = sum(p.stat().st_size for p in store.photometry_dir.glob("*.parquet"))
    return {"compacted": compaction is not None, "disk_before": disk_before,
            "cadences": n_cadences, "stars": n_stars, "base_rss": base, "write_peak": write_peak,
            "pass_peak": pass_peak, "hwm": C.proc_status(pid)["VmHWM"], "t_write": t_write,
            "t_pass": t_pass, "chunk": chunk, "chunks": -(-n_stars // chunk), "sent": sent,
            "disk": disk}


def run_store_child(n_cadences: int, n_stars: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="tess-ffi-bench-store-"))
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--store-child", str(n_cadences), "--stars", str(n_stars),
             "--dir", str(tmp / "job")],
            capture_output=True, text=True, env=C.service_env("unused", tmp), check=True,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def aggregator_scale(args: argparse.Namespace, report: C.Report) -> None:
    sizes = list(args.cadences) + ([FULL_SECTOR_CADENCES] if args.full else [])
    results = []
    for n in sizes:
        print(f"  aggregator store: {n} cadences x {args.stars} stars ...", flush=True)
        r = run_store_child(n, args.stars)
        results.append(r)
        peak = C.mb(max(r["pass_peak"], r["write_peak"], r["hwm"]))
        report.add(f"aggregator peak RSS, {n} cadences ({n * args.stars / 1e6:.0f} M meas.)",
                   peak, "MB", "< 1024 MB", peak < 1024,
                   note=f"writing {C.mb(r['write_peak']):.0f} MB, light-curve pass "
                   f"{C.mb(r['pass_peak']):.0f} MB, idle {C.mb(r['base_rss']):.0f} MB")
        report.add(f"  light-curve pass time, {n} cadences", r["t_pass"], "s",
                   note=f"{r['chunks']} chunks of {r['chunk']} stars, each scanning all {n} "
                   f"files{', compacting star-major' if r.get('compacted') else ''}; writing "
                   f"took {r['t_write']:.0f} s; {r.get('disk_before', r['disk']) / 1e9:.2f} GB "
                   f"on disk, {r['disk'] / 1e9:.2f} GB after")
    if len(results) >= 2:
        a, b = results[0], results[-1]
        growth = (b["pass_peak"] - a["pass_peak"]) / (b["cadences"] - a["cadences"])
        report.add("aggregator RSS growth per 1,000 cadences (light-curve pass)",
                   C.mb(growth * 1000), "MB", "~0 (independent)",
                   abs(C.mb(growth * 1000)) < 25)
        per_scan = b["t_pass"] / (b["chunks"] * b["cadences"] * args.stars)
        est = per_scan * (-(-args.stars // max(16, 4_000_000 // FULL_SECTOR_CADENCES))
                          * FULL_SECTOR_CADENCES * args.stars)
        if not args.full:
            report.add("  extrapolated light-curve pass, full sector (10,700 cadences)", est / 60,
                       "min", note="time grows as chunks x files: quadratic in cadences")


def main(argv: list[str] | None = None) -> C.Report | None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--stars", type=int, default=C.N_STARS)
    p.add_argument("--ffis", type=int, default=24, help="FFIs of the services' job")
    p.add_argument("--cadences", type=int, nargs="+", default=[1000, 3000],
                   help="cadence counts for the aggregator's store")
    p.add_argument("--full", action="store_true",
                   help=f"also {FULL_SECTOR_CADENCES} cadences (a full sector; slow)")
    p.add_argument("--photometer-prefetch", type=int, default=None,
                   help="TESS_FFI_PREFETCH of the photometer (default: the service default, 2)")
    p.add_argument("--skip-services", action="store_true")
    p.add_argument("--skip-store", action="store_true")
    p.add_argument("--store-child", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.store_child is not None:
        print(json.dumps(store_child(args.store_child, args.stars, args.dir)), flush=True)
        return None
    C.header("memory: peak RSS per service, and the aggregator's store at sector scale")
    report = C.Report("memory")
    if not args.skip_services:
        asyncio.run(services_job(args, report))
    if not args.skip_store:
        aggregator_scale(args, report)
    report.note("VmHWM is the kernel's peak resident set size of each process")
    report.finish()
    return report


if __name__ == "__main__":
    main()
