"""The enricher: collects every star's variability result, writes ``variability.parquet``,
cross-matches the candidates with a catalog and writes ``candidates.parquet``.

Results are persisted in small Parquet batches before they are acknowledged (at-least-once);
the final tables keep one row per star, so redelivered results never duplicate a row.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tess_ffi.shared.bus import Delivery, PermanentError
from tess_ffi.shared.config import Settings, output_dir
from tess_ffi.shared.contracts import Candidate, JobSpec, StarVariability, Topic
from tess_ffi.shared.runtime import Service
from tess_ffi.shared.storage import StoreError, atomic_write_table

from .catalog import crossmatch
from .tic import ENRICHMENT_COLUMNS, EnrichmentConfig, enrich_candidates

__all__ = [
    "EnricherService",
    "select_candidates",
    "VARIABILITY_COLUMNS",
    "MIN_CANDIDATE_SCORE",
    "reference_catalog",
    "match_candidates",
]

VARIABILITY_COLUMNS = [
    "star_id", "ra", "dec", "tmag", "n_points", "amplitude", "amplitude_robust", "reduced_chi2",
    "stetson_j", "mad", "snr", "period", "period_power", "var_class", "score",
]
MIN_CANDIDATE_SCORE = 0.3
FLUSH_ROWS = 512
FLUSH_DELAY_S = 0.25
NON_CANDIDATE_CLASSES = ("CONST", "UNKNOWN")


def select_candidates(variability: pd.DataFrame, *, min_score: float = MIN_CANDIDATE_SCORE) -> pd.DataFrame:
    """Variable stars worth a look, best first.

    >>> df = pd.DataFrame({"star_id": [1, 2, 3], "var_class": ["EA", "CONST", "ROT"],
    ...                    "score": [0.9, 0.95, 0.2]})
    >>> select_candidates(df)["star_id"].tolist()
    [1]
    """
    keep = ~variability["var_class"].isin(NON_CANDIDATE_CLASSES) & (variability["score"] >= min_score)
    ranked = variability[keep].sort_values(["score", "star_id"], ascending=[False, True])
    return ranked.reset_index(drop=True)


def reference_catalog(job: JobSpec) -> tuple[str, pd.DataFrame | None]:
    """The simulator's own star list for a simulated job (it stands in for the TIC)."""
    if job.source != "sim":
        return "none", None
    from tess_ffi.shared.simulation import SimulatedSector, simulation_config

    truth = SimulatedSector(simulation_config(job)).catalog
    return "sim", pd.DataFrame(
        {"id": truth["sim_id"], "ra": truth["ra"], "dec": truth["dec"], "tmag": truth["tmag"]}
    )


def match_candidates(job: JobSpec, candidates: pd.DataFrame, settings: Settings) -> tuple[pd.DataFrame, str]:
    """Cross-match candidates: the simulator's catalog for ``sim`` jobs, else the TIC and VSX
    (with local catalog files offline or when MAST is down). Returns (table, status)."""
    name, catalog = reference_catalog(job)
    if catalog is not None:
        out = crossmatch(candidates, catalog)
        out["catalog"] = name
        return out, name
    config = EnrichmentConfig(
        cache_dir=settings.data_dir / "catalog_cache",
        offline=job.offline or settings.offline,
        catalog_files=tuple(settings.catalog_files),
        mast_server=_server_root(job.mast_url),
        vizier_server=_server_root(job.mast_url),
    )
    out, status = enrich_candidates(candidates, config)
    out["catalog"] = status
    out["catalog_id"] = out["tic_id"]
    out["catalog_tmag"] = out["tic_tmag"]
    out["catalog_sep_arcsec"] = out["tic_sep_arcsec"]
    return out, status


def _server_root(url: str | None) -> str | None:
    """A mirror's base URL serves the catalogs too (tests point it at their own server)."""
    return url.rstrip("/") if url else None


@dataclass
class _Batch:
    run_id: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class EnricherService(Service):
    name = "enricher"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batches: dict[str, _Batch] = {}
        self._seen: dict[str, set[int]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def start(self) -> None:
        # A wide prefetch lets results be persisted in batches before they are acknowledged.
        await self.subscribe(Topic.VARIABILITY, self.on_variability, prefetch=FLUSH_ROWS)

    def _out(self, job: JobSpec) -> Path:
        return output_dir(self.settings.data_dir, job.sector, job.camera, job.ccd)

    def _parts(self, job: JobSpec) -> Path:
        return self._out(job) / ".variability-parts" / job.run_id

    async def on_variability(self, message: Any, delivery: Delivery) -> None:
        assert isinstance(message, StarVariability)
        job = message.job
        key = f"{job.job_id}:{job.run_id}"
        row = {**message.metrics, "star_id": message.star_id, "ra": message.ra,
               "dec": message.dec, "tmag": message.tmag}
        batch = self._batches.setdefault(key, _Batch(job.run_id))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch.rows.append(row)
        batch.waiters.append(future)
        if len(batch.rows) >= FLUSH_ROWS:
            await self._flush(job, message.n_stars)
        elif batch.timer is None:
            loop = asyncio.get_running_loop()
            batch.timer = loop.call_later(
                FLUSH_DELAY_S, lambda: self.spawn(self._flush(job, message.n_stars), name="flush")
            )
        await future  # acknowledged only once the row is on disk

    async def _flush(self, job: JobSpec, n_stars: int) -> None:
        key = f"{job.job_id}:{job.run_id}"
        async with self._locks.setdefault(key, asyncio.Lock()):
            batch = self._batches.pop(key, None)
            if batch is None or not batch.rows:
                return
            if batch.timer is not None:
                batch.timer.cancel()
            try:
                parts = self._parts(job)
                frame = pd.DataFrame(batch.rows)
                path = parts / f"part-{time.time_ns():020d}.parquet"
                await asyncio.to_thread(
                    atomic_write_table, pa.Table.from_pandas(frame, preserve_index=False), path
                )
                seen = self._seen.get(key)
                if seen is None:
                    seen = await asyncio.to_thread(_stars_in_parts, parts)
                    self._seen[key] = seen
                seen.update(int(s) for s in frame["star_id"])
                status = self.job_status(job)
                status.update(state="collecting", results=len(seen), n_stars=n_stars)
                if len(seen) >= n_stars:
                    await self._finalize(job)
                    self._seen.pop(key, None)
            except StoreError as exc:
                await self.emit(job, "failed", throttle=60.0, error=str(exc))
                for waiter in batch.waiters:
                    if not waiter.done():
                        waiter.set_exception(PermanentError(str(exc)))
                return
            except BaseException as exc:
                for waiter in batch.waiters:
                    if not waiter.done():
                        waiter.set_exception(exc if isinstance(exc, Exception) else RuntimeError("stopped"))
                raise
            for waiter in batch.waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _finalize(self, job: JobSpec) -> None:
        out = self._out(job)
        parts = self._parts(job)
        variability = await asyncio.to_thread(_read_parts, parts)
        candidates, enrichment = await asyncio.to_thread(
            match_candidates, job, select_candidates(variability), self.settings
        )
        cols = [c for c in VARIABILITY_COLUMNS if c in variability.columns]
        extra = [c for c in variability.columns if c not in cols]
        variability = variability[cols + extra]
        await asyncio.to_thread(
            atomic_write_table, pa.Table.from_pandas(variability, preserve_index=False),
            out / "variability.parquet",
        )
        cand_cols = ["star_id", "ra", "dec", "tmag", "period", "var_class", "score", "amplitude",
                     "snr", "catalog", "catalog_id", "catalog_tmag", "catalog_sep_arcsec",
                     *ENRICHMENT_COLUMNS]
        candidates = candidates[[c for c in cand_cols if c in candidates.columns]]
        await asyncio.to_thread(
            atomic_write_table, pa.Table.from_pandas(candidates, preserve_index=False),
            out / "candidates.parquet",
        )
        await asyncio.to_thread(shutil.rmtree, out / ".variability-parts", True)
        for row in candidates.head(100).itertuples(index=False):
            await self.bus.publish(
                Candidate(
                    job=job, star_id=int(row.star_id), ra=float(row.ra), dec=float(row.dec),
                    period=float(row.period), var_class=str(row.var_class), score=float(row.score),
                    catalog_id=None if pd.isna(row.catalog_id) else int(row.catalog_id),
                    catalog_tmag=None if pd.isna(row.catalog_tmag) else float(row.catalog_tmag),
                )
            )
        summary = {
            "stars": int(len(variability)),
            "candidates": int(len(candidates)),
            "classes": {str(k): int(v) for k, v in variability["var_class"].value_counts().items()},
            "enrichment": enrichment,
            "output": str(out),
        }
        self.job_status(job).update(state="completed", **summary)
        self.counters["jobs_completed"] += 1
        self.log.info("job completed", job=job.job_id, run=job.run_id, **summary)
        await self.emit(job, "completed", **summary)


def _stars_in_parts(parts: Path) -> set[int]:
    if not parts.is_dir():
        return set()
    found: set[int] = set()
    for part in parts.glob("part-*.parquet"):
        found.update(pq.read_table(part, columns=["star_id"]).column("star_id").to_pylist())
    return found


def _read_parts(parts: Path) -> pd.DataFrame:
    files = sorted(parts.glob("part-*.parquet"))
    frame = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    # One row per star: a redelivered result replaces the earlier copy (files are time-named).
    frame = frame.drop_duplicates("star_id", keep="last")
    return frame.sort_values("star_id").reset_index(drop=True)
