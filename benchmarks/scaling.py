"""Photometer throughput with 1 and 2 photometer processes on RabbitMQ.

``python -m tess_ffi.cli serve photometer`` runs as child processes (``TESS_FFI_BROKER``, a
unique ``TESS_FFI_NAMESPACE``); this process keeps the image queue full of ``FFIImage``
messages built from simulated FFIs with 10,000 stars (``RabbitBus.publish`` is
``encode()`` + ``publish_raw()``: the bodies are encoded once beforehand, so the publisher's
zstd compression does not compete with the photometers for the two cores), and counts the
``FFIPhotometry`` results on the photometry topic (as the aggregator's queue). Throughput is
measured from the first result of each photometer (their first frame builds the aperture
weights) to the last result.

Target: 2 photometers >= 1.7x the throughput of 1. On a 2-core machine the publisher, the
result consumer and the broker share the cores with the photometers: the report gives the
CPU each party used per FFI so that the bound is visible.

Run: ``python benchmarks/scaling.py [--stars 10000] [--ffis 24] [--prefetch 1 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

try:
    from benchmarks import _common as C
except ImportError:  # run as a script from the benchmarks folder
    import _common as C  # type: ignore[no-redef]


async def run_config(bodies: list[bytes], n_photometers: int, n_ffis: int, prefetch: int,
                     data_dir: Path, log_dir: Path) -> dict[str, Any]:
    from tess_ffi.shared.bus import RabbitBus
    from tess_ffi.shared.contracts import Topic

    namespace = f"bench-scaling-{uuid.uuid4().hex[:8]}"
    bus = RabbitBus(C.BROKER_URL, namespace=namespace)
    await bus.connect()
    results: list[float] = []
    done = asyncio.Event()

    async def on_result(message: Any, delivery: Any) -> None:
        results.append(time.perf_counter())
        if len(results) >= n_ffis:
            done.set()

    procs = []
    try:
        await bus.subscribe(Topic.PHOTOMETRY, "aggregator", on_result, prefetch=16)
        procs = [C.start_service("photometer", namespace, data_dir, log_dir,
                                 TESS_FFI_PREFETCH=str(prefetch))
                 for _ in range(n_photometers)]
        await C.wait_consumers(bus, bus.queue_name(Topic.FFI, "photometer"), n_photometers)
        cpu0 = [C.cpu_seconds(p.pid) for p in procs]
        broker = C.broker_pid()
        broker0 = C.cpu_seconds(broker) if broker else float("nan")
        me0 = time.process_time()
        t0 = time.perf_counter()

        async def publisher() -> None:
            for i in range(n_ffis):
                await bus.publish_raw(Topic.FFI, bodies[i % len(bodies)],
                                      schema="tess_ffi.ffi_image")

        pub = asyncio.create_task(publisher())
        await asyncio.wait_for(done.wait(), timeout=60 + 10 * n_ffis)
        await pub
        elapsed = time.perf_counter() - t0
        cpu = [C.cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0, strict=True)]
        me = time.process_time() - me0
        broker_cpu = (C.cpu_seconds(broker) - broker0) if broker else float("nan")
    finally:
        for proc in procs:
            C.stop_process(proc)
        with contextlib.suppress(Exception):
            await bus.delete_topology()
        await bus.close()
    warm = n_photometers  # each photometer's first frame builds the weights
    rate = (len(results) - 1 - warm) / (results[-1] - results[warm])
    return {"rate": rate, "elapsed": elapsed, "photometer_cpu": sum(cpu), "bench_cpu": me,
            "broker_cpu": broker_cpu,
            "n": len(results), "per_process_cpu": cpu}


async def bench(args: argparse.Namespace) -> C.Report:
    from tess_ffi.services.photometer.service import measure_ffi
    from tess_ffi.shared.contracts import JobSpec, decode_message

    C.header(f"scaling: photometer processes on RabbitMQ, {args.stars} stars per FFI")
    report = C.Report("scaling")
    sim = C.sector(args.stars, args.frames)
    stars = C.catalog_stars(sim)
    job = JobSpec(sector=1, camera=1, ccd=1)
    messages = [C.ffi_message(sim, i, sim.ffi_bytes(i), stars, job) for i in range(args.frames)]
    bodies = [m.encode(compression="zstd") for m in messages]
    print(f"  {len(bodies)} distinct FFIImage bodies of {len(bodies[0]) / 1e6:.1f} MB", flush=True)

    # What one FFI costs a photometer, measured here (CPU of this thread).
    measure_ffi(messages[0])
    dec, mea = [], []
    for body in bodies * 2:
        with C.Timer() as t:
            msg = decode_message(body)
        dec.append(t.cpu)
        with C.Timer() as t:
            measure_ffi(msg)
        mea.append(t.cpu)
    report.add("photometer CPU per FFI: decode_message (zstd, unshuffle)", C.median(dec) * 1e3,
               "ms")
    report.add("photometer CPU per FFI: measure_ffi", C.median(mea) * 1e3, "ms")

    tmp = Path(tempfile.mkdtemp(prefix="tess-ffi-bench-scaling-"))
    try:
        for prefetch in args.prefetch:
            rates = {}
            for n in (1, 2):
                r = await run_config(bodies, n, args.ffis, prefetch, tmp / "data", tmp / "logs")
                rates[n] = r["rate"]
                per_ffi = r["photometer_cpu"] / r["n"]
                report.add(f"prefetch {prefetch}: {n} photometer(s) throughput", r["rate"], "FFI/s",
                           note=f"photometer CPU {per_ffi * 1e3:.0f} ms/FFI "
                           f"({r['photometer_cpu'] / r['elapsed']:.2f} cores), publisher+consumer "
                           f"{r['bench_cpu'] / r['n'] * 1e3:.0f} ms/FFI "
                           f"({r['bench_cpu'] / r['elapsed']:.2f} cores), broker "
                           f"{r['broker_cpu'] / r['n'] * 1e3:.0f} ms/FFI "
                           f"({r['broker_cpu'] / r['elapsed']:.2f} cores, all its clients)")
            ratio = rates[2] / rates[1]
            report.add(f"prefetch {prefetch}: 2 photometers / 1", ratio, "x", ">= 1.7",
                       ratio >= 1.7)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report.note(f"{os.cpu_count()} cores are shared by the photometers, this publisher and "
                "result consumer, the RabbitMQ broker (copying ~19 MB in and out per FFI) and "
                "the other jobs on the machine; one photometer already keeps more than one "
                "core busy when its prefetch lets it decode one message while measuring another")
    report.finish()
    return report


def main(argv: list[str] | None = None) -> C.Report:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--stars", type=int, default=C.N_STARS)
    p.add_argument("--frames", type=int, default=4, help="distinct simulated FFIs")
    p.add_argument("--ffis", type=int, default=64, help="FFIs published per configuration")
    p.add_argument("--prefetch", type=int, nargs="+", default=[1, 2],
                   help="TESS_FFI_PREFETCH of the photometers (the service default is 2)")
    args = p.parse_args(argv)
    return asyncio.run(bench(args))


if __name__ == "__main__":
    main()
