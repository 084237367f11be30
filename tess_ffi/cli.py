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
    p.add_argument("--exclude-window", type=_window, action="append", default=[],
                   metavar="START:STOP",
                   help="a known bad interval in BTJD (e.g. scattered light from the sector's "
                        "data release notes); its cadences are flagged BAD_EPOCH. Repeatable")
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
    _add_product_parsers(sub)
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
        exclude_windows=list(args.exclude_window),
    )


def _window(text: str) -> tuple[float, float]:
    """``START:STOP`` in BTJD, START < STOP."""
    try:
        start, stop = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected START:STOP in BTJD, "
                                         "e.g. 1338.5:1339.6") from None
    if not start < stop:
        raise argparse.ArgumentTypeError(f"{text!r}: START must be before STOP")
    return start, stop


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


# --- read-side commands on the Parquet outputs ---------------------------------------------

EPILOG_STATUS = """examples:
  tess-ffi status                                  # what is under ./data
  tess-ffi status --data-dir /tmp/tess-demo --json
  tess-ffi status --broker amqp://guest:guest@localhost/ --watch 10   # and live job progress
"""

EPILOG_LIGHTCURVES = """examples:
  tess-ffi lightcurves --sector 70 --camera 1 --ccd 1 --stats      # summary statistics
  tess-ffi lightcurves --sector 70 --camera 1 --ccd 1 --plot       # overview PNG
  tess-ffi lightcurves --sector 70 --camera 1 --ccd 1 --star 123   # one star as a table
  tess-ffi lightcurves --sector 70 --camera 1 --ccd 1 --star 123 --csv > star123.csv
  tess-ffi lightcurves --sector 70 --camera 1 --ccd 1 --star 123 --plot --fits star123.fits
"""

EPILOG_FIND = """examples:
  tess-ffi find-variables --sector 70                       # every camera/CCD of sector 70
  tess-ffi find-variables --sector 70 --camera 1 --ccd 1 --min-amplitude 0.02 --top 20
  tess-ffi find-variables --sector 70 --class EA,EW --json > eclipsing.jsonl
  tess-ffi find-variables --lightcurve tess*_lc.fits hlsp_tglc_*_llc.fits --json
"""

EPILOG_REPORT = """examples:
  tess-ffi report --star 123 --sector 70 --camera 1 --ccd 1
  tess-ffi report --tic 610495795 --sector 70 --camera 1 --ccd 1
  tess-ffi report --star 123 --sector 70 --period 4.2871 --epoch 3210.455 --out vsx/star123
"""

EPILOG_EXPORT = """examples:
  tess-ffi export --name my_dataset
  tess-ffi export --name clean_data --min-completeness 0.8 --min-snr 10
  tess-ffi export --name s70 --sector 70 71
"""

EPILOG_COMBINE = """examples:
  tess-ffi combine --star 123 --sectors 70,71        # star 123 of sector 70, found in 71
  tess-ffi combine --tic 610495795 --sectors 70,71,72 --camera 1 --ccd 1
  tess-ffi combine --sectors 70,71                   # every star seen in both sectors
"""


def _star_arg(text: str) -> int:
    """A star id: ``123`` or the original tool's ``STAR_000123``."""
    digits = text.strip().upper().removeprefix("STAR_").removeprefix("STAR")
    try:
        return int(digits)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a star id: {text!r} (123 or STAR_000123)") from None


def _add_read_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None,
                   help="output folder (default ./data, or TESS_FFI_DATA_DIR)")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default WARNING)")


def _add_read_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sector", type=int, default=None,
                   help="TESS sector (may be left out when only one is stored)")
    p.add_argument("--camera", type=int, default=None, help="camera 1-4 (default: the only one)")
    p.add_argument("--ccd", type=int, default=None, help="CCD 1-4 (default: the only one)")


def _add_product_parsers(sub: Any) -> None:
    raw = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("status", help="what data exists; with --broker, live job progress",
                       epilog=EPILOG_STATUS, formatter_class=raw)
    p.add_argument("--broker", default=None,
                   help="also listen to this RabbitMQ's job events (default TESS_FFI_BROKER)")
    p.add_argument("--watch", type=float, default=5.0, metavar="SECONDS",
                   help="how long to listen to the broker (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of tables")
    _add_read_common(p)

    p = sub.add_parser("lightcurves", help="light-curve statistics, one star's table, plots, FITS",
                       epilog=EPILOG_LIGHTCURVES, formatter_class=raw)
    _add_read_target(p)
    p.add_argument("--stats", action="store_true",
                   help="summary statistics (the default without --star)")
    p.add_argument("--star", type=_star_arg, default=None,
                   help="one star (star_id of stars.parquet; 123 or STAR_000123)")
    p.add_argument("--plot", action="store_true",
                   help="write a PNG: the star's light curve, or the target's overview")
    p.add_argument("--fits", type=Path, default=None, metavar="OUT.fits",
                   help="with --star: write its light curve as a TESS/lightkurve FITS file")
    p.add_argument("--csv", action="store_true", help="with --star: print CSV instead of a table")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for plots (default DIR/lightcurves)")
    _add_read_common(p)

    p = sub.add_parser("find-variables", help="ranked variable-star candidates, or analyse files",
                       epilog=EPILOG_FIND, formatter_class=raw)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--sector", type=int, default=None, help="the candidates of this sector")
    what.add_argument("--lightcurve", nargs="+", type=Path, default=None, metavar="FILE",
                      help="analyse light-curve files (SPOC, TESS-SPOC, TGLC, QLP, TESScut)")
    p.add_argument("--camera", type=int, default=None, help="only this camera")
    p.add_argument("--ccd", type=int, default=None, help="only this CCD")
    p.add_argument("--min-amplitude", type=float, default=0.0, metavar="A",
                   help="smallest amplitude, (max-min)/median flux (default 0)")
    p.add_argument("--min-score", type=float, default=0.0, help="smallest score (default 0)")
    p.add_argument("--class", dest="classes", default=None, metavar="EA,EW,...",
                   help="only these classes (EA, EW, ROT, DSCT, TRANSIT, FLARE)")
    p.add_argument("--top", type=int, default=None, metavar="N", help="at most N, best first")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    _add_read_common(p)

    p = sub.add_parser("report", help="a star's VSX report: plots, summary, FITS light curve",
                       epilog=EPILOG_REPORT, formatter_class=raw)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--star", type=_star_arg, default=None, help="star_id of stars.parquet")
    who.add_argument("--tic", type=int, default=None, help="TIC id (stars.tic_id or a TIC match)")
    _add_read_target(p)
    p.add_argument("--period", type=float, default=None, help="use this period (d)")
    p.add_argument("--epoch", type=float, default=None,
                   help="use this epoch of minimum (BTJD = BJD - 2457000)")
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default DIR/variable_stars/<TIC_n or STAR_id_sSSSS-C-D>)")
    _add_read_common(p)

    p = sub.add_parser("export", help="ML-ready features (Parquet, CSV), full time series (.npz)",
                       epilog=EPILOG_EXPORT, formatter_class=raw)
    p.add_argument("--name", required=True, help="export name: DIR/exports/NAME/")
    p.add_argument("--min-completeness", type=float, default=0.0, metavar="F",
                   help="smallest fraction of expected cadences with a good point (0-1)")
    p.add_argument("--min-snr", type=float, default=0.0, metavar="F", help="smallest S/N")
    p.add_argument("--sector", type=int, nargs="+", action="extend", default=None,
                   metavar="S", help="only these sectors (default all)")
    _add_read_common(p)

    p = sub.add_parser("combine", help="one star (or all) across sectors, matched by position",
                       epilog=EPILOG_COMBINE, formatter_class=raw)
    p.add_argument("--sectors", required=True, metavar="A,B,...",
                   help="sectors to stitch; the first is the reference")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--star", type=_star_arg, default=None, help="star_id in the first sector")
    who.add_argument("--tic", type=int, default=None, help="TIC id of a star in the first sector")
    p.add_argument("--camera", type=int, default=None, help="camera of the star (first sector)")
    p.add_argument("--ccd", type=int, default=None, help="CCD of the star (first sector)")
    p.add_argument("--radius", type=float, default=21.0, metavar="ARCSEC",
                   help="largest match separation (default 21, one pixel)")
    p.add_argument("--min-sectors", type=int, default=2,
                   help="without --star: keep stars seen in this many sectors (default 2)")
    p.add_argument("--out", type=Path, default=None, help="output Parquet file")
    _add_read_common(p)


PRODUCT_COMMANDS = ("status", "lightcurves", "find-variables", "report", "export", "combine")


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(_settings(args).data_dir)


def _fmt_frame(frame: Any, floats: dict[str, str] | None = None) -> str:
    """A table for the terminal: NaN as '-', chosen float formats."""
    import pandas as pd

    formats = floats or {}
    formatters = {}
    frame = frame.copy()
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.api.extensions.ExtensionDtype):
            frame[col] = frame[col].astype(object).where(frame[col].notna(), "-")
        spec = formats.get(col)
        if spec is None and pd.api.types.is_float_dtype(frame[col]):
            spec = ".4g"
        if spec is not None:
            formatters[col] = (lambda v, s=spec: "-" if pd.isna(v) else format(v, s))
    return str(frame.to_string(index=False, na_rep="-", formatters=formatters))


def _bar(label: str) -> Any:
    from tess_ffi.products.progress import ProgressBar

    return ProgressBar(label)


def _event_text(kind: str, detail: dict[str, Any]) -> str:
    if kind == "progress" and detail.get("stage") == "lightcurves":
        return f"light curves of {detail.get('n_stars')} stars sent for analysis"
    if kind == "progress":
        text = f"{detail.get('stored', '?')}/{detail.get('expected', '?')} FFIs stored"
        return text + (f", {detail['failed']} failed" if detail.get("failed") else "")
    if kind == "completed":
        return f"completed: {detail.get('stars')} stars, {detail.get('candidates')} candidates"
    if kind == "failed":
        return f"failed: {detail.get('error', '?')}"
    return kind


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from tess_ffi.products.inventory import data_inventory, derived_products, watch_broker
    from tess_ffi.products.variables import json_ready

    settings = _settings(args)
    root = Path(settings.data_dir)
    inv = data_inventory(root)
    prods = derived_products(root)
    broker_url = args.broker or settings.broker_url
    broker: dict[str, Any] | None = None
    if broker_url:
        from tess_ffi.shared.bus import redact_url

        tty = sys.stderr.isatty() and not args.json

        def live(event: Any) -> None:
            if tty:
                text = _event_text(event.kind, event.detail)
                print(f"  {event.job.job_id} {event.service}: {text}", file=sys.stderr)

        if tty:
            print(f"listening to {redact_url(broker_url)} for {args.watch:g} s ...",
                  file=sys.stderr)
        seen = asyncio.run(watch_broker(broker_url, seconds=args.watch,
                                        namespace=settings.namespace, on_event=live))
        broker = {"url": redact_url(broker_url), "namespace": settings.namespace,
                  "listened_s": args.watch, "events": seen.n_events,
                  "queue_depths": seen.queue_depths, "jobs": seen.jobs}
    if args.json:
        doc = {"data_dir": str(root),
               "targets": [json_ready(r) for r in inv.to_dict("records")],
               "products": prods, "broker": broker}
        print(json.dumps(doc, default=str))
        return 0
    if inv.empty:
        print(f"no outputs under {root / 'tess'}")
    else:
        sectors = sorted(inv["sector"].unique().tolist())
        print(f"data: {root}  sectors {', '.join(map(str, sectors))}, {len(inv)} camera/CCDs, "
              f"{int(inv['stars'].fillna(0).sum())} stars, "
              f"{int(inv['candidates'].fillna(0).sum())} candidates")
        shown = inv.drop(columns=["sector", "camera", "ccd"])
        print(_fmt_frame(shown, {"btjd_start": ".3f", "btjd_end": ".3f", "cadence_s": ".0f",
                                 "size_mb": ".1f"}))
    for kind in ("exports", "combined", "reports"):
        names = prods[kind]
        if names:
            more = f" ... (+{len(names) - 8})" if len(names) > 8 else ""
            print(f"{kind}: {len(names)}: {', '.join(names[:8])}{more}")
    if broker is not None:
        print(f"broker {broker['url']} (namespace {broker['namespace']}): "
              f"{broker['events']} events in {args.watch:g} s")
        if not broker["jobs"]:
            print("  no running job reported progress")
        for key, job in sorted(broker["jobs"].items()):
            print(f"  job {key}: {_event_text(job['kind'], job['detail'])} ({job['service']})")
        depths = ", ".join(f"{k} {v}" for k, v in broker["queue_depths"].items())
        print(f"  queues: {depths or '-'}")
    return 0


def _lightcurve_summary(target: Any, root: Path, plot: bool, out: Path | None) -> None:
    import pandas as pd

    from tess_ffi.products import tables
    from tess_ffi.products.inventory import precision_by_magnitude, quality_counts

    folder = tables.target_dir(target, root)
    state = tables.read_job_state(target, root)
    stored = tables.stored_cadences(target, root)
    expected = tables.expected_cadences(target, root)
    stars = tables.load_stars(target=target, data_dir=root)
    bar = _bar("reading photometry")
    bar(0, 1, target.label)
    phot = tables.load_photometry(target=target, data_dir=root,
                                  columns=["star_id", "cadence", "btjd", "flux", "flux_err",
                                           "bkg", "quality"])
    bar.close()
    stats = tables.lightcurve_stats(phot, max(expected, len(stored)))
    stats = stats.merge(stars[["star_id", "tmag"]], on="star_id", how="left")
    n_good = int(stats["n_good"].sum())
    times = phot["btjd"].to_numpy()
    cadence = pd.Series(phot["btjd"].unique()).sort_values().diff().median() * 86400.0
    print(f"target:        {target.label} (sector {target.sector}, camera {target.camera}, "
          f"CCD {target.ccd})  {folder}")
    print(f"stars:         {len(stars)} ({int((stats['n_good'] > 0).sum())} with good points)")
    print(f"cadences:      {len(stored)} stored of {expected} expected, "
          f"{len(state.get('failed') or {})} failed; BTJD {times.min():.3f} - {times.max():.3f}; "
          f"cadence {cadence:.0f} s")
    print(f"measurements:  {len(phot)}, {n_good} good ({100.0 * n_good / max(len(phot), 1):.1f} %)")
    flags = quality_counts(phot["quality"].to_numpy())
    if flags:
        print("quality flags: " + ", ".join(f"{k} {v}" for k, v in flags.items()))
    comp = stats["completeness"]
    print(f"completeness:  median {comp.median():.3f}; >= 0.9: {int((comp >= 0.9).sum())} stars, "
          f">= 0.5: {int((comp >= 0.5).sum())} stars")
    var_path = folder / "variability.parquet"
    variability = pd.read_parquet(var_path) if var_path.exists() else None
    if variability is not None:
        counts = variability["var_class"].value_counts().sort_index()
        print("classes:       " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    cand_path = folder / "candidates.parquet"
    if cand_path.exists():
        print(f"candidates:    {len(pd.read_parquet(cand_path, columns=['star_id']))} "
              f"(tess-ffi find-variables --sector {target.sector} --camera {target.camera} "
              f"--ccd {target.ccd})")
    print("precision by magnitude:")
    print(_fmt_frame(precision_by_magnitude(stats), {"median_rms_ppm": ".0f",
                                                     "median_p2p_ppm": ".0f",
                                                     "median_snr": ".0f"}))
    if plot:
        from tess_ffi.products.plots import plot_overview

        path = (out or root / "lightcurves") / f"{target.label}_overview.png"
        plot_overview(stats, variability, path, title=f"{target.label}: {len(stars)} stars")
        print(f"plot:          {path}")


def cmd_lightcurves(args: argparse.Namespace) -> int:
    from tess_ffi.products import tables

    root = _data_dir(args)
    target = tables.resolve_target(args.sector, args.camera, args.ccd, data_dir=root)
    if args.star is None:
        if args.fits is not None or args.csv:
            raise CLIError("--fits and --csv need --star ID")
        _lightcurve_summary(target, root, args.plot, args.out)
        return 0
    lc = tables.load_lightcurve(args.star, target=target, data_dir=root)
    if args.stats:
        stats = tables.lightcurve_stats(lc.assign(star_id=args.star),
                                        max(tables.expected_cadences(target, root), len(lc)))
        for key, value in stats.iloc[0].items():
            print(f"{key + ':':<22}{value:.6g}" if isinstance(value, float)
                  else f"{key + ':':<22}{value}")
    if args.fits is not None:
        from tess_ffi.products.lcfits import export_lightcurve_fits

        print(f"fits: {export_lightcurve_fits(args.star, args.fits, target=target, data_dir=root)}")
    if args.plot:
        from tess_ffi.products.plots import plot_lightcurve

        path = (args.out or root / "lightcurves") / f"{target.label}_STAR_{args.star:06d}.png"
        flux, flux_err = tables.best_flux(lc)
        label = tables.flux_label(lc)
        plot_lightcurve(lc["btjd"], flux, path, flux_err=flux_err, good=lc["good"],
                        title=f"star {args.star} of {target.label}: {label}", flux_label=label)
        print(f"plot: {path}")
    if not (args.stats or args.fits or args.plot):
        if args.csv:
            sys.stdout.write(lc.to_csv(index=False))
        else:
            print(f"# star {args.star} of {target.label}: {len(lc)} points, "
                  f"{int(lc['good'].sum())} good; btjd = the star's BJD - 2457000 (btjd_ccd: "
                  "the FFI header's, for the CCD centre); flux (raw) and flux_corrected in e-/s")
            print(_fmt_frame(lc, {"btjd": ".6f", "btjd_ccd": ".6f", "flux": ".3f",
                                  "flux_err": ".3f", "flux_corrected": ".3f", "bkg": ".2f",
                                  "x": ".3f", "y": ".3f"}))
    return 0


def _find_in_files(args: argparse.Namespace) -> int:
    import json

    import pandas as pd

    from tess_ffi.products.variables import analyze_files

    with _bar("analysing") as bar:
        results = analyze_files(args.lightcurve, progress=bar)
    good = [r.result for r in results if r.result is not None]
    for r in results:
        if r.error is not None:
            print(f"tess-ffi: error: {r.error}", file=sys.stderr)
    if args.json:
        for rec in good:
            print(json.dumps(rec))
    elif good:
        frame = pd.DataFrame(good)
        frame["file"] = [Path(s).name for s in frame["source"]]
        cols = ["file", "object", "sector", "format", "n_points", "var_class", "period", "epoch",
                "score", "amplitude"]
        print(_fmt_frame(frame[[c for c in cols if c in frame.columns]],
                         {"period": ".6f", "epoch": ".4f", "score": ".3f", "amplitude": ".4f"}))
    return 1 if any(r.error is not None for r in results) else 0


def cmd_find_variables(args: argparse.Namespace) -> int:
    import json

    from tess_ffi.products.variables import find_variables, json_ready

    if args.lightcurve is not None:
        return _find_in_files(args)
    classes = args.classes.split(",") if args.classes else None
    table = find_variables(args.sector, args.camera, args.ccd, data_dir=_data_dir(args),
                           min_amplitude=args.min_amplitude, min_score=args.min_score,
                           classes=classes, top=args.top)
    if args.json:
        for rec in table.to_dict("records"):
            print(json.dumps(json_ready(rec)))
        return 0
    targets = sorted(table["target"].unique()) if len(table) else []
    print(f"{len(table)} candidates in sector {args.sector}"
          + (f" ({', '.join(targets)})" if targets else ""))
    if len(table):
        cols = ["rank", "target", "star_id", "ra", "dec", "tmag", "var_class", "period", "score",
                "amplitude", "snr", "tic_id", "vsx_type", "catalog_status"]
        if len(targets) == 1:
            cols.remove("target")
        print(_fmt_frame(table[[c for c in cols if c in table.columns]],
                         {"ra": ".5f", "dec": ".5f", "tmag": ".2f", "period": ".6f",
                          "score": ".3f", "amplitude": ".4f", "snr": ".0f"}))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from tess_ffi.products.report import build_report

    with _bar("report") as bar:
        rep = build_report(args.star, args.sector, args.camera, args.ccd, tic_id=args.tic,
                           data_dir=_data_dir(args), out_dir=args.out, period=args.period,
                           epoch=args.epoch, progress=bar)
    s = rep.summary
    print(f"report: {rep.folder}")
    for path in rep.files:
        print(f"  {path.name}")

    def num(key: str, spec: str) -> str:
        value = s.get(key)
        return "-" if value is None else format(value, spec)

    print(f"{s['name']}: {s['vsx_type']} (class {s['var_class']}), "
          f"period {num('period_d', '.6f')} d, "
          f"epoch of minimum BJD {num('epoch_min_bjd', '.5f')}, "
          f"amplitude {num('amplitude_tmag', '.3f')} mag")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from tess_ffi.products.export import export_dataset

    with _bar("export") as bar:
        result = export_dataset(args.name, data_dir=_data_dir(args), sectors=args.sector,
                                min_completeness=args.min_completeness, min_snr=args.min_snr,
                                progress=bar)
    print(f"exported {len(result.features)} of {result.n_considered} stars from "
          f"{', '.join(result.targets)}")
    print(f"folder: {result.folder}")
    for path in result.files:
        print(f"  {path.relative_to(result.folder)}")
    return 0


def cmd_combine(args: argparse.Namespace) -> int:
    from tess_ffi.products.combine import combine_sectors

    with _bar("combine") as bar:
        result = combine_sectors(args.sectors, star_id=args.star, tic_id=args.tic,
                                 camera=args.camera, ccd=args.ccd, data_dir=_data_dir(args),
                                 radius_arcsec=args.radius, min_sectors=args.min_sectors,
                                 out=args.out, progress=bar)
    lc, matches = result.lightcurves, result.matches
    per_sector = lc.groupby("sector").size()
    print(f"{matches['group'].nunique()} star(s) matched within {args.radius:g} arcsec; "
          f"{len(lc)} points: " + ", ".join(f"sector {k} {v}" for k, v in per_sector.items()))
    if args.star is not None or args.tic is not None:
        print(_fmt_frame(matches[[c for c in ("name", "sector", "camera", "ccd", "star_id",
                                              "sep_arcsec") if c in matches.columns]],
                         {"sep_arcsec": ".2f"}))
    print(f"light curves: {result.path}")
    print(f"matches:      {result.matches_path}")
    return 0


COMMANDS = {
    "process": cmd_process,
    "demo": cmd_demo,
    "download": cmd_download,
    "serve": cmd_serve,
    "status": cmd_status,
    "lightcurves": cmd_lightcurves,
    "find-variables": cmd_find_variables,
    "report": cmd_report,
    "export": cmd_export,
    "combine": cmd_combine,
}


def main(argv: Sequence[str] | None = None) -> int:
    from tess_ffi.shared.logging import configure_logging

    args = build_parser().parse_args(argv)
    quiet = ("process", "demo", *PRODUCT_COMMANDS)
    configure_logging(args.log_level or os.environ.get("TESS_FFI_LOG_LEVEL") or "WARNING"
                      if args.command in quiet else args.log_level or "INFO")
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
