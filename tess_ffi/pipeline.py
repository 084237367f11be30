"""Running jobs: all five services in-process on the embedded bus, or a job submitted to
services already running on RabbitMQ.

Examples
--------
>>> sorted(SERVICE_CLASSES)
['aggregator', 'analyzer', 'enricher', 'fetcher', 'photometer']
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from tess_ffi.services.aggregator.service import AggregatorService
from tess_ffi.services.analyzer.service import AnalyzerService
from tess_ffi.services.enricher.service import EnricherService
from tess_ffi.services.fetcher.service import FetcherService
from tess_ffi.services.photometer.service import PhotometerService
from tess_ffi.shared.bus import Bus, Delivery, create_bus
from tess_ffi.shared.config import Settings, validate_target
from tess_ffi.shared.contracts import JobEvent, JobRequest, JobSpec, Topic
from tess_ffi.shared.runtime import Service, running_services

__all__ = ["SERVICE_CLASSES", "JobFailed", "make_bus", "make_services", "run_job"]

SERVICE_CLASSES: dict[str, type[Service]] = {
    cls.name: cls
    for cls in (
        FetcherService, PhotometerService, AggregatorService, AnalyzerService, EnricherService
    )
}


class JobFailed(RuntimeError):
    """The job ended in failure; the message is the one-line reason."""


def make_bus(settings: Settings) -> Bus:
    return create_bus(
        settings.broker_url,
        namespace=settings.namespace,
        max_message_bytes=settings.max_message_bytes,
    )


def make_services(names: list[str], bus: Bus, settings: Settings) -> list[Service]:
    """Instances of the named services (``all`` for the five) sharing one bus."""
    if names == ["all"]:
        names = list(SERVICE_CLASSES)
    unknown = [n for n in names if n not in SERVICE_CLASSES]
    if unknown:
        raise ValueError(f"unknown service {unknown[0]!r}; choose from {', '.join(SERVICE_CLASSES)} or all")
    return [SERVICE_CLASSES[n](bus, settings) for n in names]


ProgressCallback = Callable[[JobEvent], None]


async def _follow(bus: Bus, job: JobSpec, on_event: ProgressCallback | None) -> dict[str, Any]:
    """Submit ``job`` and wait for its completion event."""
    done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def on_job_event(message: Any, delivery: Delivery) -> None:
        if not isinstance(message, JobEvent) or message.job.run_id != job.run_id:
            return
        if on_event is not None:
            on_event(message)
        if done.done():
            return
        if message.kind == "completed":
            done.set_result(dict(message.detail))
        elif message.kind == "failed":
            done.set_exception(JobFailed(str(message.detail.get("error", "job failed"))))

    sub = await bus.subscribe(Topic.EVENTS, None, on_job_event, prefetch=16)
    try:
        await bus.publish(JobRequest(job=job))
        return await done
    finally:
        with contextlib.suppress(Exception):
            await sub.cancel()


async def run_job(
    job: JobSpec,
    settings: Settings,
    *,
    on_event: ProgressCallback | None = None,
    services: list[str] | None = None,
) -> dict[str, Any]:
    """Run ``job`` to completion and return its summary.

    Without a broker URL in ``settings`` the five services run here on the embedded bus;
    with one, the job goes to the services running on that broker (``services`` may name
    some to run here as well).
    """
    validate_target(job.sector, job.camera, job.ccd)
    bus = make_bus(settings)
    if settings.broker_url and not services:
        await bus.connect()
        try:
            return await _follow(bus, job, on_event)
        finally:
            await bus.close()
    instances = make_services(services or ["all"], bus, settings)
    async with running_services(instances, bus, settings):
        return await _follow(bus, job, on_event)
