"""The aggregator: the store of record of a job.

It answers job requests with what is stored already (so the fetcher resumes), stores the star
list and each FFI's photometry as Parquet (idempotently), tracks completeness against the
fetcher's manifest, and once every expected cadence is stored or has failed, cleans the light
curves (:mod:`.cleaner`: common-mode correction, bad epochs, outliers; the raw flux is kept)
and sends each star's on to the analyzers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pyarrow as pa

from tess_ffi.shared.bus import Delivery, PermanentError
from tess_ffi.shared.config import output_dir
from tess_ffi.shared.contracts import (
    FetchManifest,
    FFIPhotometry,
    JobPlan,
    JobRequest,
    JobSpec,
    StarCatalog,
    StarLightCurve,
    Topic,
)
from tess_ffi.shared.runtime import Service
from tess_ffi.shared.storage import StoreError
from tess_ffi.shared.timing import BarycentricCorrection

from .cleaner import LightCurveCleaner, reference_sample
from .store import Compaction, JobStore

__all__ = ["AggregatorService"]

#: Rows of photometry held in memory at once while light curves are sent.
LIGHTCURVE_ROWS_IN_MEMORY = 4_000_000
PUBLISH_WINDOW = 64
#: Times a stalled job is planned again before it is declared failed.
MAX_REPLANS = 20


class AggregatorService(Service):
    name = "aggregator"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._locks: dict[str, asyncio.Lock] = {}
        self._stored: dict[str, set[int]] = {}
        self._last_progress: dict[str, float] = {}
        self._compacted: dict[str, set[int]] = {}
        self._watchdogs: dict[str, asyncio.Task[None]] = {}

    def store(self, job: JobSpec) -> JobStore:
        return JobStore(output_dir(self.settings.data_dir, job.sector, job.camera, job.ccd))

    def _lock(self, job: JobSpec) -> asyncio.Lock:
        return self._locks.setdefault(job.job_id, asyncio.Lock())

    async def start(self) -> None:
        await self.subscribe(Topic.JOBS, self.on_job, prefetch=1)
        await self.subscribe(Topic.CATALOGS, self.on_catalog, prefetch=1)
        await self.subscribe(Topic.MANIFESTS, self.on_manifest, prefetch=1)
        await self.subscribe(Topic.PHOTOMETRY, self.on_photometry, prefetch=8)

    async def on_job(self, message: Any, delivery: Delivery) -> None:
        assert isinstance(message, JobRequest)
        job = message.job
        store = self.store(job)
        async with self._lock(job):
            try:
                if job.no_resume:
                    await asyncio.to_thread(store.clear)
                await asyncio.to_thread(store.recover)
                state = store.read_state()
                state.update(job=job.to_json(), run_id=job.run_id, final=False,
                             requested_at=time.time())
                state.pop("lightcurves_run", None)
                await asyncio.to_thread(store.write_state, state)
            except (StoreError, OSError) as exc:
                await self.emit(job, "failed", error=f"cannot use {store.root}: {exc}")
                raise PermanentError(str(exc)) from exc
            stored = await asyncio.to_thread(store.stored_cadences)
            self._stored[job.job_id] = set(stored)
            self._compacted[job.job_id] = set(state.get("compacted_cadences", []))
            stars = await asyncio.to_thread(store.read_stars)
        status = self.job_status(job)
        status.update(state="accepted", stored=len(stored), output=str(store.root))
        self.log.info("job accepted", job=job.job_id, run=job.run_id, already_stored=len(stored))
        self.counters["jobs"] += 1
        await self.bus.publish(JobPlan(job=job, stored_cadences=sorted(stored), stars=stars))
        self._touch(job)
        watchdog = self._watchdogs.get(job.job_id)
        if watchdog is not None:
            watchdog.cancel()
        self._watchdogs[job.job_id] = self.spawn(self._watch(job), name=f"watch-{job.job_id}")

    def _touch(self, job: JobSpec) -> None:
        self._last_progress[job.job_id] = time.monotonic()

    async def _watch(self, job: JobSpec) -> None:
        """Plan a job again when it makes no progress: transient images lost in a broker
        restart are fetched again, and a restarted fetcher picks the job up. Anything sent
        twice is stored idempotently."""
        timeout = self.settings.stall_timeout_s
        store = self.store(job)
        replans = 0
        while True:
            await asyncio.sleep(max(0.2, timeout / 4))
            state = await asyncio.to_thread(store.read_state)
            if state.get("lightcurves_run") == job.run_id or state.get("run_id") != job.run_id:
                return
            if time.monotonic() - self._last_progress.get(job.job_id, 0.0) < timeout:
                continue
            if replans >= MAX_REPLANS:
                await self.emit(job, "failed", error=f"{job.job_id}: no progress after "
                                f"{replans} attempts of {timeout:.0f} s")
                return
            replans += 1
            self.counters["replans"] += 1
            stored = sorted(self._stored_set(job, store))
            self.log.warning("job stalled, planning it again", job=job.job_id, stored=len(stored))
            stars = await asyncio.to_thread(store.read_stars)
            await self.bus.publish(JobPlan(job=job, stored_cadences=stored, stars=stars))
            self._touch(job)

    async def on_catalog(self, message: Any, delivery: Delivery) -> None:
        assert isinstance(message, StarCatalog)
        written = await asyncio.to_thread(self.store(message.job).write_stars, message.stars)
        if written:
            self.log.info("star list stored", job=message.job.job_id, stars=message.stars.num_rows)

    async def on_photometry(self, message: Any, delivery: Delivery) -> None:
        assert isinstance(message, FFIPhotometry)
        job = message.job
        store = self.store(job)
        if message.cadence in self._compacted.get(job.job_id, ()):
            return  # a late duplicate of a cadence already compacted: nothing to add
        try:
            await asyncio.to_thread(store.write_cadence, message.cadence, message.btjd,
                                    message.table)
        except StoreError as exc:
            # A full or read-only disk: say so once, clearly; the image can be fetched again
            # by a rerun, so parking the message loses nothing stored.
            await self.emit(job, "failed", throttle=60.0, error=str(exc))
            raise PermanentError(str(exc)) from exc
        self._touch(job)
        stored = self._stored_set(job, store)
        stored.add(message.cadence)
        self.counters["cadences_stored"] += 1
        self.counters["measurements_stored"] += message.table.num_rows
        status = self.job_status(job)
        status.update(state="storing", stored=len(stored))
        await self.emit(job, "progress", throttle=1.0, stored=len(stored),
                        expected=status.get("expected"), failed=len(status.get("failed", {})))
        await self._maybe_complete(job)

    async def on_manifest(self, message: Any, delivery: Delivery) -> None:
        assert isinstance(message, FetchManifest)
        job = message.job
        store = self.store(job)
        async with self._lock(job):
            state = store.read_state()
            state.update(expected=message.expected_cadences, failed=message.failed,
                         final=message.final, run_id=job.run_id)
            await asyncio.to_thread(store.write_state, state)
        self._touch(job)
        status = self.job_status(job)
        status.update(expected=len(message.expected_cadences), failed=message.failed)
        await self._maybe_complete(job)

    def _stored_set(self, job: JobSpec, store: JobStore) -> set[int]:
        if job.job_id not in self._stored:
            self._stored[job.job_id] = store.stored_cadences()
        return self._stored[job.job_id]

    async def _maybe_complete(self, job: JobSpec) -> None:
        store = self.store(job)
        async with self._lock(job):
            state = store.read_state()
            if not state.get("final") or state.get("lightcurves_run") == job.run_id:
                return
            stored = self._stored_set(job, store)
            missing = set(state.get("expected", [])) - stored - {int(c) for c in state.get("failed", {})}
            if missing:
                return
            n = await self._send_lightcurves(job, store)
            state = await asyncio.to_thread(store.read_state)  # compaction updated it
            state["lightcurves_run"] = job.run_id
            state["n_stars"] = n
            await asyncio.to_thread(store.write_state, state)
        status = self.job_status(job)
        status.update(state="lightcurves sent", n_stars=n)
        await self.emit(job, "progress", stage="lightcurves", n_stars=n, stored=len(stored))

    async def _send_lightcurves(self, job: JobSpec, store: JobStore) -> int:
        stars = await asyncio.to_thread(store.read_stars)
        if stars is None or not store.stored_cadences():
            return 0
        stars = stars.sort_by("star_id")
        ids = stars.column("star_id").to_numpy()
        n_cadences = max(1, len(store.stored_cadences()))
        cleaner = await asyncio.to_thread(self._select_reference, store, stars, n_cadences,
                                          job.exclude_windows)
        self.job_status(job).update(reference_stars=len(cleaner.reference),
                                    bad_epochs=int(cleaner.bad_epochs.sum()))
        self.log.info("reference ensemble selected", job=job.job_id,
                      reference_stars=len(cleaner.reference),
                      basis_vectors=int(cleaner.reference.basis.shape[0]),
                      bad_epochs=int(cleaner.bad_epochs.sum()))
        times = await asyncio.to_thread(_star_times, stars, cleaner.grid.btjd)
        chunk = max(16, LIGHTCURVE_ROWS_IN_MEMORY // n_cadences)
        chunks = store.iter_lightcurves(ids, chunk=chunk)
        # One pass over the photometry both sends the light curves and compacts the store
        # star-major; the compacted files replace the per-cadence ones only if all went well.
        # Nothing new since the last compaction (a rerun of a finished job): only read.
        compaction = Compaction(store) if store.has_uncompacted() else None
        try:
            await self._send_chunks(job, chunks, cleaner, times, compaction, stars)
        except BaseException:
            if compaction is not None:
                await asyncio.to_thread(compaction.abort)
            raise
        if compaction is not None:
            await asyncio.to_thread(compaction.commit)
        self._compacted[job.job_id] = await asyncio.to_thread(store.compacted_cadences)
        return len(ids)

    @staticmethod
    def _select_reference(store: JobStore, stars: pa.Table, n_cadences: int,
                          windows: list[tuple[float, float]]) -> LightCurveCleaner:
        sample_ids = reference_sample(stars.column("star_id").to_numpy(), n_cadences)
        sample = next(store.iter_lightcurves(sample_ids, chunk=max(1, len(sample_ids))))
        return LightCurveCleaner.select(sample, stars, windows=[(float(a), float(b)) for a, b in windows])

    async def _send_chunks(
        self, job: JobSpec, chunks: Any, cleaner: LightCurveCleaner,
        times: BarycentricCorrection | None, compaction: Compaction | None, stars: pa.Table,
    ) -> None:
        ids = stars.column("star_id").to_numpy()
        ra, dec, tmag = (stars.column(c).to_numpy().astype(np.float64) for c in ("ra", "dec", "tmag"))
        while True:
            chunk: pa.Table | None = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                break
            chunk = await asyncio.to_thread(cleaner.clean, chunk)
            # Light curves are sent as stored (quantized), so a rerun sends the same values.
            table: pa.Table = (
                chunk if compaction is None else await asyncio.to_thread(compaction.write, chunk)
            )
            star_col = table.column("star_id").to_numpy()
            starts = np.flatnonzero(np.r_[True, star_col[1:] != star_col[:-1]])
            bounds = np.r_[starts, len(star_col)]
            cols = {c: table.column(c).to_numpy()
                    for c in ("btjd", "flux", "flux_err", "quality", "flux_corrected")}
            rows = np.searchsorted(ids, star_col[starts])
            if times is not None:  # each star's own barycentric time (the store keeps the FFI's)
                offsets = times.offsets_days(ra[rows], dec[rows])
                col = np.searchsorted(cleaner.grid.cadence, table.column("cadence").to_numpy())
                col = np.clip(col, 0, offsets.shape[1] - 1)
                star_row = np.repeat(np.arange(len(starts)), np.diff(bounds))
                cols["btjd"] = cols["btjd"] + offsets[star_row, col]
            pending = []
            for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
                r = rows[i]
                pending.append(
                    self.bus.publish(
                        StarLightCurve(
                            job=job, star_id=int(star_col[a]), n_stars=len(ids),
                            ra=float(ra[r]), dec=float(dec[r]), tmag=float(tmag[r]),
                            btjd=cols["btjd"][a:b],
                            flux=cols["flux"][a:b], flux_err=cols["flux_err"][a:b],
                            quality=cols["quality"][a:b],
                            flux_corrected=cols["flux_corrected"][a:b],
                        )
                    )
                )
                if len(pending) >= PUBLISH_WINDOW:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
            self.counters["lightcurves_sent"] += len(starts)


def _star_times(stars: pa.Table, btjd: np.ndarray) -> BarycentricCorrection | None:
    """Per-star barycentric corrections of the FFI times (which are for the CCD's centre);
    None with too few stars to locate the centre."""
    if btjd.size == 0:
        return None
    return BarycentricCorrection.for_star_list(
        btjd, *(stars.column(c).to_numpy() for c in ("x", "y", "ra", "dec")))
