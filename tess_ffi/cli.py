"""The ``tess-ffi`` command line."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser"]

EPILOG_PROCESS = """examples:
  tess-ffi process --sector 70 --camera 1 --ccd 1                 # from MAST, all services here
  tess-ffi process --sector 70 --camera 1 --ccd 1 --cadence-skip 18 --workers 8
  tess-ffi process --sector 1 --camera 1 --ccd 1 --source sim     # a simulated sector
  tess-ffi process --sector 70 --camera 1 --ccd 1 --broker amqp://guest:guest@localhost/
"""

EPILOG_SERVE = """examples:
  tess-ffi serve all --http-port 8080
  tess-ffi serve photometer --broker amqp://user:pass@rabbit:5672/ --http-port 0
"""

#: The demo: a small simulated sector that runs end to end in about a minute.
DEMO_SIM = {"n_stars": 600, "n_cadences": 180, "cadence_s": 1800.0, "seed": 1}


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None,
                   help="output folder (default ./data, or TESS_FFI_DATA_DIR)")
    p.add_argument("--broker", default=None,
                   help="RabbitMQ URL amqp://... (default: TESS_FFI_BROKER; none = in-process bus)")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default INFO)")


def _add_target(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--sector", type=int, required=required, help="TESS sector number")
    p.add_argument("--camera", type=int, default=1, help="camera 1-4 (default 1)")
    p.add_argument("--ccd", type=int, default=1, help="CCD 1-4 (default 1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tess-ffi",
        description="Stream TESS Full-Frame Images into light curves and variable-star candidates.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="quick start:\n  tess-ffi demo\n  tess-ffi process --sector 70 --camera 1 --ccd 1",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("process", help="fetch, measure and analyse one sector/camera/CCD",
                       epilog=EPILOG_PROCESS, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_target(p)
    p.add_argument("--cadence-skip", type=int, default=1, help="use every Kth FFI (default 1)")
    p.add_argument("--workers", type=int, default=4, help="parallel downloads (default 4)")
    p.add_argument("--source", default="mast", help="mast (default), sim, or a folder of FFIs")
    p.add_argument("--mast-url", default=None, help="archive base URL (a mirror, or a test server)")
    p.add_argument("--no-resume", action="store_true", help="start over instead of resuming")
    p.add_argument("--offline", action="store_true",
                   help="never query MAST/VizieR for the TIC and VSX; use --catalog files")
    p.add_argument("--catalog", type=Path, action="append", default=None, metavar="FILE",
                   help="local catalog (Parquet/CSV: id, ra, dec, Tmag) for offline enrichment")
    p.add_argument("--sim-stars", type=int, default=None, help="simulated stars (--source sim)")
    p.add_argument("--sim-cadences", type=int, default=None, help="simulated FFIs (--source sim)")
    p.add_argument("--sim-seed", type=int, default=None, help="simulation seed (--source sim)")
    _add_common(p)

    p = sub.add_parser("demo", help="a small simulated sector end to end, in-process",
                       epilog="example:\n  tess-ffi demo --data-dir /tmp/tess-demo",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=None, help="output folder (default ./data)")
    p.add_argument("--log-level", default=None)

    p = sub.add_parser(
        "download", help="download FFIs and keep them (the legacy path; resumable)",
        epilog="examples:\n  tess-ffi download --sector 70 --camera 1 --ccd 1 --cadence-skip 18\n"
               "  tess-ffi process --sector 70 --camera 1 --ccd 1 --source data/mast",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_target(p)
    p.add_argument("--cadence-skip", type=int, default=1, help="keep every Kth FFI (default 1)")
    p.add_argument("--workers", type=int, default=4, help="parallel downloads (default 4)")
    p.add_argument("--mast-url", default=None, help="archive base URL (a mirror, or a test server)")
    p.add_argument("--data-dir", type=Path, default=None, help="output folder (default ./data)")
    p.add_argument("--log-level", default=None)

    p = sub.add_parser("serve", help="run one service (or all) until SIGTERM",
                       epilog=EPILOG_SERVE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="fetcher, photometer, aggregator, analyzer, enricher or all")
    p.add_argument("--http-port", type=int, default=None,
                   help="status endpoints port (0 picks a free one; default TESS_FFI_HTTP_PORT)")
    p.add_argument("--http-host", default=None, help="bind address (default 127.0.0.1)")
    _add_common(p)
    return parser


def _settings(args: argparse.Namespace, **extra: Any) -> Any:
    from tess_ffi.shared.config import load_settings

    return load_settings(
        data_dir=getattr(args, "data_dir", None),
        broker_url=getattr(args, "broker", None),
        log_level=getattr(args, "log_level", None),
        **extra,
    )


class _Progress:
    """A one-line progress bar on a terminal; quiet line-oriented output otherwise."""

    def __init__(self, stream: Any = sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.last_line = 0.0

    def __call__(self, event: Any) -> None:
        d = event.detail
        if event.kind != "progress":
            return
        if d.get("stage") == "lightcurves":
            text = f"light curves of {d.get('n_stars')} stars sent for analysis"
        else:
            stored, expected = d.get("stored", 0), d.get("expected") or 0
            frac = stored / expected if expected else 0.0
            bar = "#" * int(30 * frac)
            rate = stored / max(time.monotonic() - self.started, 1e-6)
            eta = (expected - stored) / rate if rate and expected else float("nan")
            text = f"[{bar:<30}] {stored}/{expected} FFIs  {rate:.2f}/s  ETA {eta:.0f}s"
            if d.get("failed"):
                text += f"  failed {d['failed']}"
        if self.tty:
            self.stream.write("\r" + text[:120].ljust(120))
            self.stream.flush()
        elif time.monotonic() - self.last_line > 10 or d.get("stage"):
            self.last_line = time.monotonic()
            print(text, file=self.stream)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    print(f"stars:      {summary.get('stars')}")
    print(f"candidates: {summary.get('candidates')}")
    classes = summary.get("classes", {})
    if classes:
        print("classes:    " + ", ".join(f"{k} {v}" for k, v in sorted(classes.items())))
    print(f"outputs:    {out}/  (stars, photometry, variability, candidates .parquet)")


def _job_from_args(args: argparse.Namespace) -> Any:
    from tess_ffi.shared.contracts import JobSpec

    sim = {}
    for opt, key in (("sim_stars", "n_stars"), ("sim_cadences", "n_cadences"), ("sim_seed", "seed")):
        value = getattr(args, opt, None)
        if value is not None:
            sim[key] = value
    source = args.source
    if source not in ("mast", "sim"):
        path = Path(source)
        if not path.is_dir():
            raise CLIError(f"--source {source}: not 'mast', 'sim' or an existing folder")
        source = str(path.resolve())
    if args.cadence_skip < 1:
        raise CLIError("--cadence-skip must be at least 1")
    if args.workers < 1:
        raise CLIError("--workers must be at least 1")
    return JobSpec(
        sector=args.sector, camera=args.camera, ccd=args.ccd, source=source,
        cadence_skip=args.cadence_skip, workers=args.workers, mast_url=args.mast_url,
        no_resume=args.no_resume, offline=args.offline, sim=sim,
    )


def _run_job(job: Any, settings: Any) -> dict[str, Any]:
    from tess_ffi.pipeline import run_job

    progress = _Progress()
    try:
        return asyncio.run(run_job(job, settings, on_event=progress))
    finally:
        progress.close()


def cmd_process(args: argparse.Namespace) -> int:
    from tess_ffi.shared.config import output_dir, validate_target

    validate_target(args.sector, args.camera, args.ccd)
    job = _job_from_args(args)
    settings = _settings(args, **({"catalog_files": tuple(args.catalog)} if args.catalog else {}))
    summary = _run_job(job, settings)
    _print_summary(summary, output_dir(settings.data_dir, job.sector, job.camera, job.ccd))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tess_ffi.shared.config import output_dir
    from tess_ffi.shared.contracts import JobSpec

    # The demo is the laptop path: always the in-process bus, whatever the environment says.
    settings = dataclasses.replace(_settings(args), broker_url=None)
    job = JobSpec(sector=1, camera=1, ccd=1, source="sim", sim=dict(DEMO_SIM), no_resume=True)
    print(f"simulating sector 1 camera 1 CCD 1: {DEMO_SIM['n_stars']} stars, "
          f"{DEMO_SIM['n_cadences']} FFIs of (2078, 2136) pixels, in-process bus")
    started = time.monotonic()
    summary = _run_job(job, settings)
    print(f"done in {time.monotonic() - started:.0f} s")
    _print_summary(summary, output_dir(settings.data_dir, 1, 1, 1))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from tess_ffi.services.fetcher.download import download_sector
    from tess_ffi.shared.config import validate_target
    from tess_ffi.shared.contracts import JobSpec

    validate_target(args.sector, args.camera, args.ccd)
    if args.cadence_skip < 1 or args.workers < 1:
        raise CLIError("--cadence-skip and --workers must be at least 1")
    settings = _settings(args)
    job = JobSpec(sector=args.sector, camera=args.camera, ccd=args.ccd, source="mast",
                  cadence_skip=args.cadence_skip, workers=args.workers, mast_url=args.mast_url)
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if tty:
            sys.stderr.write(f"\r[{'#' * int(30 * done / max(total, 1)):<30}] {done}/{total} FFIs")
            sys.stderr.flush()

    summary = asyncio.run(download_sector(job, settings.data_dir, progress=progress))
    if tty:
        sys.stderr.write("\n")
    print(f"downloaded {len(summary.downloaded)}, resumed {len(summary.resumed)}, "
          f"already complete {len(summary.skipped)}, failed {len(summary.failed)} "
          f"({summary.bytes / 1e6:.1f} MB)")
    for name, reason in sorted(summary.failed.items()):
        print(f"failed: {name}: {reason}")
    print(f"files: {summary.folder}")
    print(f"next:  tess-ffi process --sector {args.sector} --camera {args.camera} "
          f"--ccd {args.ccd} --source {settings.data_dir / 'mast'}")
    return 0 if not summary.failed else 1


def cmd_serve(args: argparse.Namespace) -> int:
    from tess_ffi.pipeline import make_bus, make_services
    from tess_ffi.shared.runtime import run_until_signalled

    extra: dict[str, Any] = {}
    if args.http_port is not None:
        extra["http_port"] = args.http_port
    if args.http_host is not None:
        extra["http_host"] = args.http_host
    settings = _settings(args, **extra)
    if args.name != "all" and not settings.broker_url:
        raise CLIError(f"serve {args.name} needs --broker (alone on the in-process bus it would "
                       "have nobody to talk to); use 'serve all' to run every service here")
    bus = make_bus(settings)
    services = make_services([args.name], bus, settings)
    asyncio.run(run_until_signalled(services, bus, settings))
    return 0


COMMANDS = {
    "process": cmd_process,
    "demo": cmd_demo,
    "download": cmd_download,
    "serve": cmd_serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    from tess_ffi.shared.logging import configure_logging

    args = build_parser().parse_args(argv)
    configure_logging(args.log_level or os.environ.get("TESS_FFI_LOG_LEVEL") or "WARNING"
                      if args.command in ("process", "demo") else args.log_level or "INFO")
    from tess_ffi.pipeline import JobFailed
    from tess_ffi.shared.bus import BusError
    from tess_ffi.shared.storage import StoreError

    try:
        return COMMANDS[args.command](args)
    except (CLIError, JobFailed, BusError, StoreError, ValueError, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"tess-ffi: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tess-ffi: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
