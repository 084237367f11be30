"""What data exists under an output folder, and what a broker's running jobs are doing.

:func:`data_inventory` lists every sector/camera/CCD with its cadences (stored, expected, failed),
stars, analysed stars, candidates and time span, reading only file names, Parquet footers and
``job.json``; :func:`derived_products` lists what the read-side tools wrote (exports, combined light
curves, star reports). :func:`watch_broker` listens to a broker's ``events`` topic for a few
seconds and reads its queue depths.

Examples
--------
>>> import tempfile
>>> data_inventory(tempfile.mkdtemp()).empty
True
>>> job_state({"final": True, "expected": [0, 1], "failed": {}}, stored=2,
...           has_variability=True, has_candidates=True)
'complete'
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from .tables import (
    default_data_dir,
    list_targets,
    read_job_state,
    stored_cadences,
)

__all__ = [
    "INVENTORY_COLUMNS",
    "data_inventory",
    "derived_products",
    "job_state",
    "BrokerStatus",
    "watch_broker",
    "quality_counts",
    "precision_by_magnitude",
]

INVENTORY_COLUMNS = [
    "target", "sector", "camera", "ccd", "state", "cadences", "expected", "failed", "stars",
    "analysed", "candidates", "btjd_start", "btjd_end", "cadence_s", "size_mb",
]


def _rows(path: Path) -> int | None:
    if not path.exists():
        return None
    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception:  # noqa: BLE001 - a half-written or foreign file: unknown
        return None


def _btjd_span(folder: Path) -> tuple[float | None, float | None]:
    """First and last BTJD stored, from the Parquet footers' statistics (no data is read)."""
    lows: list[float] = []
    highs: list[float] = []
    for path in folder.glob("*.parquet"):
        try:
            meta = pq.ParquetFile(path).metadata
            index = meta.schema.names.index("btjd")
            for g in range(meta.num_row_groups):
                stats = meta.row_group(g).column(index).statistics
                if stats is not None and stats.has_min_max:
                    lows.append(float(stats.min))
                    highs.append(float(stats.max))
        except (OSError, ValueError):
            continue
    return (min(lows), max(highs)) if lows else (None, None)


def _size_mb(folder: Path) -> float:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(dirpath, name)).st_size
    return round(total / 1e6, 2)


def job_state(
    state: dict[str, Any], *, stored: int, has_variability: bool, has_candidates: bool
) -> str:
    """One word for a target's progress: ``complete``, ``analysing`` (all photometry stored,
    results not written yet), ``measuring`` (photometry arriving) or ``empty``."""
    if has_variability and has_candidates:
        return "complete"
    expected = len(state.get("expected") or [])
    failed = len(state.get("failed") or {})
    if state.get("final") and expected and stored + failed >= expected:
        return "analysing"
    return "measuring" if stored or state else "empty"


def data_inventory(
    data_dir: Path | str | None = None, *, sectors: list[int] | None = None
) -> pd.DataFrame:
    """One row per stored target (columns :data:`INVENTORY_COLUMNS`), sorted.

    ``cadences`` are stored cadences; ``expected`` and ``failed`` come from ``job.json``;
    ``stars``, ``analysed`` and ``candidates`` are the rows of ``stars.parquet``,
    ``variability.parquet`` and ``candidates.parquet`` (NA when the file is missing);
    ``cadence_s`` is the median spacing of the stored cadences' times.
    """
    root = default_data_dir(data_dir)
    rows = []
    for t in list_targets(root, sectors=sectors):
        folder = t.path(root)
        state = read_job_state(t, root)
        cadences = stored_cadences(t, root)
        variability = _rows(folder / "variability.parquet")
        candidates = _rows(folder / "candidates.parquet")
        start = end = cadence_s = None
        if cadences:
            start, end = _btjd_span(folder / "photometry.parquet")
            if start is not None and end is not None and cadences[-1] > cadences[0]:
                cadence_s = round((end - start) / (cadences[-1] - cadences[0]) * 86400.0, 1)
        rows.append({
            "target": t.label, "sector": t.sector, "camera": t.camera, "ccd": t.ccd,
            "state": job_state(state, stored=len(cadences), has_variability=variability is not None,
                               has_candidates=candidates is not None),
            "cadences": len(cadences),
            "expected": len(state.get("expected") or []) or None,
            "failed": len(state.get("failed") or {}),
            "stars": _rows(folder / "stars.parquet"),
            "analysed": variability, "candidates": candidates,
            "btjd_start": start, "btjd_end": end, "cadence_s": cadence_s,
            "size_mb": _size_mb(folder),
        })
    frame = pd.DataFrame(rows, columns=INVENTORY_COLUMNS)
    for col in ("expected", "stars", "analysed", "candidates"):
        frame[col] = frame[col].astype("Int64")
    return frame


def derived_products(data_dir: Path | str | None = None) -> dict[str, list[str]]:
    """What the read-side tools wrote: ``exports`` (names), ``combined`` (Parquet files) and
    ``reports`` (star folders), each sorted."""
    root = default_data_dir(data_dir)

    def names(folder: Path, pattern: str, dirs: bool) -> list[str]:
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.glob(pattern) if p.is_dir() == dirs)

    return {
        "exports": names(root / "exports", "*", True),
        "combined": names(root / "combined", "*.parquet", False),
        "reports": names(root / "variable_stars", "*", True),
    }


@dataclass
class BrokerStatus:
    """What :func:`watch_broker` saw: queue depths and, per job, its latest event."""

    queue_depths: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_events: int = 0


async def watch_broker(
    broker_url: str,
    *,
    seconds: float = 5.0,
    namespace: str = "tess-ffi",
    on_event: Any = None,
) -> BrokerStatus:
    """Listen to the broker's ``events`` topic for ``seconds`` and read its queue depths.

    ``jobs`` maps ``sSSSS-C-D/run_id`` to the job's latest progress (``kind``, ``service``,
    ``detail``, ``age_s``). ``on_event(event)`` is called for each event as it arrives.
    Raises :class:`tess_ffi.shared.bus.BusError` when the broker cannot be reached.
    """
    from tess_ffi.shared.bus import Delivery, create_bus
    from tess_ffi.shared.contracts import JobEvent, Topic

    status = BrokerStatus()
    bus = create_bus(broker_url, namespace=namespace)
    await bus.connect()
    started = time.monotonic()
    try:
        async def handler(message: Any, delivery: Delivery) -> None:
            if not isinstance(message, JobEvent):
                return
            status.n_events += 1
            key = f"{message.job.job_id}/{message.job.run_id}"
            entry = status.jobs.setdefault(key, {"detail": {}})
            entry.update(kind=message.kind, service=message.service,
                         at=time.monotonic() - started)
            entry["detail"] = {**entry["detail"], **dict(message.detail)}
            if on_event is not None:
                on_event(message)

        sub = await bus.subscribe(Topic.EVENTS, None, handler, prefetch=64)
        try:
            await asyncio.sleep(max(seconds, 0.0))
        finally:
            with contextlib.suppress(Exception):
                await sub.cancel()
        status.queue_depths = dict(sorted((await bus.queue_depths()).items()))
    finally:
        with contextlib.suppress(Exception):
            await bus.close()
    return status


def quality_counts(quality: Any) -> dict[str, int]:
    """How many points carry each quality flag (flags that occur, by name).

    >>> quality_counts([0, 32, 32 | 4096, 1 << 21])
    {'MOMENTUM_DUMP': 2, 'SCATTERED_LIGHT': 1, 'SATURATED': 1}
    """
    import numpy as np

    from tess_ffi.shared.quality import QualityFlags

    q = np.asarray(quality, dtype=np.int64)
    out: dict[str, int] = {}
    for flag in QualityFlags:
        n = int(np.count_nonzero(q & int(flag)))
        if n:
            out[str(flag.name)] = n
    return out


def precision_by_magnitude(stats: pd.DataFrame, *, width: float = 1.0) -> pd.DataFrame:
    """Median robust scatter, point-to-point scatter and S/N per Tmag bin.

    ``stats`` is :func:`tess_ffi.products.tables.lightcurve_stats` with a ``tmag`` column.

    >>> s = pd.DataFrame({"tmag": [9.2, 9.8, 12.5], "rms_ppm": [100.0, 300.0, 2000.0],
    ...                   "p2p_ppm": [90.0, 310.0, 1900.0], "snr": [900.0, 700.0, 80.0]})
    >>> precision_by_magnitude(s)["tmag_bin"].tolist()
    ['9-10', '12-13']
    """
    import numpy as np

    s = stats[np.isfinite(stats["tmag"].to_numpy(dtype=float))]
    lo = np.floor(s["tmag"].to_numpy(dtype=float) / width) * width
    grouped = s.assign(lo=lo).groupby("lo", sort=True)
    out = grouped.agg(stars=("tmag", "size"), median_rms_ppm=("rms_ppm", "median"),
                      median_p2p_ppm=("p2p_ppm", "median"), median_snr=("snr", "median"))
    out.insert(0, "tmag_bin", [f"{a:g}-{a + width:g}" for a in out.index])
    return out.reset_index(drop=True)
