"""The fetcher: streams a sector's FFIs into memory and hands them to the photometers.

For each :class:`JobPlan` (the store's answer to a job request) it lists the FFIs, builds a
reference stack from a few good frames when the job has no star list yet, waits for the star
list, then fetches every cadence not stored yet with bounded concurrency and publishes it.
The image queue is bounded, so publishing waits whenever the photometers fall behind: the
fetcher never holds more than ``workers`` images plus the queue's length in memory.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from tess_ffi.shared.bus import Delivery
from tess_ffi.shared.contracts import (
    FetchManifest,
    FFIImage,
    JobPlan,
    JobSpec,
    ReferenceImage,
    StarCatalog,
    Topic,
)
from tess_ffi.shared.fits_io import FITSError, read_calibrated_ffi
from tess_ffi.shared.runtime import Service

from .sources import FFIEntry, FFISource, SourceError, open_source

__all__ = ["FetcherService", "reference_cadences"]

#: Frames median-stacked into the reference image stars are detected on.
REFERENCE_FRAMES = 5
CATALOG_TIMEOUT_S = 600.0


def reference_cadences(cadences: list[int], n: int = REFERENCE_FRAMES) -> list[int]:
    """Candidates for the reference stack: ``n`` evenly spread cadences first, then backups
    beside them (used when a candidate is flagged or unreadable).

    >>> reference_cadences(list(range(100)), 3)
    [20, 50, 79, 10, 40, 69, 30, 59, 89]
    """
    if not cadences:
        return []
    idx = np.linspace(0, len(cadences) - 1, 3 * n + 2)[1:-1].round().astype(int)
    order = [*idx[1::3], *idx[0::3], *idx[2::3]]
    return list(dict.fromkeys(cadences[i] for i in order))


class FetcherService(Service):
    name = "fetcher"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._catalogs: dict[str, asyncio.Future[StarCatalog]] = {}
        self._running: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        await self.subscribe(Topic.PLANS, self.on_plan, prefetch=1)
        await self.subscribe(Topic.CATALOGS, self.on_catalog, prefetch=4, private=True)

    async def on_catalog(self, message: Any, delivery: Delivery) -> None:
        assert isinstance(message, StarCatalog)
        future = self._catalogs.get(message.job.run_id)
        if future is not None and not future.done():
            future.set_result(message)

    async def on_plan(self, message: Any, delivery: Delivery) -> None:
        assert isinstance(message, JobPlan)
        job = message.job
        running = self._running.get(job.job_id)
        if running is not None and not running.done():
            self.log.info("job already being fetched", job=job.job_id)
            return
        # A sector takes hours: the job runs as background work, so the plan message is not
        # held unacknowledged past the broker's consumer timeout. A rerun resumes it.
        self._running[job.job_id] = self.spawn(self.run_job(message), name=f"fetch-{job.job_id}")

    async def run_job(self, plan: JobPlan) -> None:
        job = plan.job
        log = self.log.bind(job=job.job_id, run=job.run_id)
        status = self.job_status(job)
        status.update(state="listing", fetched=0, failed={}, bytes=0)
        source: FFISource | None = None
        try:
            source = open_source(job)
            status["source"] = getattr(source, "stats", {})
            entries = await source.list_ffis()
            selected = entries[:: max(1, job.cadence_skip)]
            expected = [e.cadence for e in selected]
            stored = set(plan.stored_cadences)
            todo = [e for e in selected if e.cadence not in stored]
            status.update(expected=len(expected), already_stored=len(stored & set(expected)),
                          to_fetch=len(todo), state="reference")
            await self.bus.publish(FetchManifest(job=job, expected_cadences=expected))
            stars = plan.stars
            if stars is None:
                stars = await self._reference_catalog(job, source, selected, status)
            status["stars"] = stars.num_rows
            status["state"] = "fetching"
            log.info("fetching", expected=len(expected), to_fetch=len(todo), stars=stars.num_rows)
            failed = await self._fetch_all(job, source, todo, stars, status)
            status["state"] = "done"
            await self.bus.publish(
                FetchManifest(job=job, expected_cadences=expected, failed=failed, final=True)
            )
            log.info("fetch finished", fetched=status["fetched"], failed=len(failed))
        except asyncio.CancelledError:
            status["state"] = "stopped"
            raise
        except Exception as exc:  # noqa: BLE001 - any failure ends the job with one clear line
            status.update(state="failed", error=str(exc))
            log.error("job failed", error=str(exc))
            await self.emit(job, "failed", error=_one_line(exc))
        finally:
            if source is not None:
                await source.close()

    async def _fetch_decoded(self, source: FFISource, entry: FFIEntry) -> Any:
        data = await source.fetch(entry)
        return data, await asyncio.to_thread(read_calibrated_ffi, data, name=entry.name)

    async def _reference_catalog(
        self, job: JobSpec, source: FFISource, selected: list[FFIEntry], status: dict[str, Any]
    ) -> Any:
        by_cadence = {e.cadence: e for e in selected}
        frames: list[np.ndarray] = []
        flagged: list[np.ndarray] = []
        header = ""
        candidates = reference_cadences(list(by_cadence))
        # Fetched in parallel batches (as many as still needed, at most --workers at once):
        # the star list is on the critical path of the whole job.
        while candidates and len(frames) < REFERENCE_FRAMES:
            batch_size = min(max(1, job.workers), REFERENCE_FRAMES - len(frames))
            batch, candidates = candidates[:batch_size], candidates[batch_size:]
            results = await asyncio.gather(
                *(self._fetch_decoded(source, by_cadence[c]) for c in batch),
                return_exceptions=True,
            )
            for cadence, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    if not isinstance(result, (FITSError, SourceError, OSError)):
                        raise result
                    self.log.warning("reference frame skipped", cadence=cadence,
                                     error=str(result))
                    continue
                _, ffi = result
                header = header or ffi.header.tostring()
                (frames if ffi.dquality == 0 else flagged).append(ffi.image)
        frames = frames or flagged[:REFERENCE_FRAMES]
        if not frames:
            raise SourceError(f"{job.job_id}: no readable frame to build the star list from")
        n_frames = len(frames)
        stack = await asyncio.to_thread(_median_stack, frames)
        del frames, flagged
        future: asyncio.Future[StarCatalog] = asyncio.get_running_loop().create_future()
        self._catalogs[job.run_id] = future
        try:
            await self.bus.publish(
                ReferenceImage(job=job, image=stack, header=header, n_frames=n_frames)
            )
            catalog = await asyncio.wait_for(future, CATALOG_TIMEOUT_S)
        finally:
            self._catalogs.pop(job.run_id, None)
        return catalog.stars

    async def _fetch_all(
        self, job: JobSpec, source: FFISource, todo: list[FFIEntry], stars: Any,
        status: dict[str, Any],
    ) -> dict[str, str]:
        failed: dict[str, str] = {}
        queue: asyncio.Queue[FFIEntry | None] = asyncio.Queue()
        for entry in todo:
            queue.put_nowait(entry)
        workers = max(1, job.workers)
        for _ in range(workers):
            queue.put_nowait(None)
        started = time.monotonic()

        async def worker() -> None:
            while (entry := await queue.get()) is not None:
                try:
                    data, ffi = await self._fetch_decoded(source, entry)
                except (FITSError, SourceError, OSError, asyncio.TimeoutError) as exc:
                    failed[str(entry.cadence)] = _one_line(exc)
                    status["failed"] = failed
                    self.counters["ffi_failed"] += 1
                    self.log.warning("cadence failed", cadence=entry.cadence, error=str(exc))
                    continue
                status["bytes"] += len(data)
                del data
                await self.bus.publish(
                    FFIImage(
                        job=job,
                        cadence=entry.cadence,
                        filename=entry.name,
                        header=ffi.header.tostring(),
                        image=ffi.image,
                        uncertainty=ffi.uncertainty,
                        stars=stars,
                    )
                )
                self.counters["ffi_published"] += 1
                status["fetched"] += 1
                elapsed = time.monotonic() - started
                status["rate_per_s"] = round(status["fetched"] / max(elapsed, 1e-6), 3)

        await asyncio.gather(*(worker() for _ in range(workers)))
        return failed


def _median_stack(frames: list[np.ndarray]) -> np.ndarray:
    if len(frames) == 1:
        return frames[0]
    return np.median(np.stack(frames), axis=0).astype(np.float32)


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:500]
