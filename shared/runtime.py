"""Service runtime: the base class of the five services and their HTTP status endpoints.

Every service serves, over aiohttp:

* ``GET /healthz``: the process is alive (the event loop answers);
* ``GET /readyz``: connected to the bus and consuming (503 otherwise);
* ``GET /metrics``: Prometheus text format (counters per service, queue depths);
* ``GET /status``: JSON with counters, the current job and its progress.

CPU-heavy work runs in threads (:func:`asyncio.to_thread`), so these answer while a worker is
busy, and so do the broker's heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import structlog
from aiohttp import web

from .bus import Bus, Subscription
from .config import Settings
from .contracts import JobEvent, JobSpec, Topic
from .status_page import add_status_page

__all__ = [
    "Service",
    "SERVICES_KEY",
    "BUS_KEY",
    "build_http_app",
    "start_http",
    "run_until_signalled",
    "running_services",
]


class Service(ABC):
    """One pipeline stage: subscribes to its topics, publishes its results, reports status."""

    name: ClassVar[str]

    def __init__(self, bus: Bus, settings: Settings) -> None:
        self.bus = bus
        self.settings = settings
        self.counters: Counter[str] = Counter()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.started_at = time.time()
        self.log = structlog.get_logger(f"tess_ffi.{self.name}").bind(service=self.name)
        self._subscriptions: list[Subscription] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_event: dict[str, float] = {}

    @abstractmethod
    async def start(self) -> None:
        """Subscribe to this service's topics."""

    async def subscribe(
        self, topic: Topic, handler: Any, *, prefetch: int | None = None, private: bool = False
    ) -> None:
        """Consume ``topic`` in this service's group, or on a private queue of this instance."""
        sub = await self.bus.subscribe(
            topic, None if private else self.name, handler,
            prefetch=prefetch or self.settings.prefetch,
        )
        self._subscriptions.append(sub)

    def spawn(self, coro: Any, *, name: str) -> asyncio.Task[Any]:
        """Run background work owned by this service (cancelled on stop)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self) -> None:
        """Stop taking messages; the messages in hand finish (or go back to the queue)."""
        for sub in self._subscriptions:
            await sub.cancel()
        self._subscriptions.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @property
    def ready(self) -> bool:
        return self.bus.connected and bool(self._subscriptions)

    @property
    def busy(self) -> int:
        return sum(len(sub.in_flight) for sub in self._subscriptions)

    def job_status(self, job: JobSpec) -> dict[str, Any]:
        """The mutable status record of a job (shown in ``/status``)."""
        record = self.jobs.get(job.job_id)
        if record is None or record.get("run_id") != job.run_id:
            record = {"job_id": job.job_id, "run_id": job.run_id, "started_at": time.time()}
            self.jobs[job.job_id] = record
        return record

    def status(self) -> dict[str, Any]:
        return {
            "service": self.name,
            "ready": self.ready,
            "busy": self.busy,
            "uptime_s": round(time.time() - self.started_at, 1),
            "counters": dict(self.counters),
            "jobs": self.jobs,
        }

    async def emit(self, job: JobSpec, kind: str, *, throttle: float = 0.0, **detail: Any) -> None:
        """Publish a :class:`JobEvent`; progress events may be throttled per job."""
        if throttle:
            key = f"{job.job_id}:{kind}"
            now = time.monotonic()
            if now - self._last_event.get(key, 0.0) < throttle:
                return
            self._last_event[key] = now
        await self.bus.publish(JobEvent(job=job, kind=kind, service=self.name, detail=detail))


SERVICES_KEY = web.AppKey("services", list[Service])
BUS_KEY = web.AppKey("bus", Bus)


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    ready = all(s.ready for s in services)
    body = {"ready": ready, "services": {s.name: s.ready for s in services}}
    return web.json_response(body, status=200 if ready else 503)


async def _status(request: web.Request) -> web.Response:
    bus = request.app[BUS_KEY]
    depths: dict[str, int] = {}
    with contextlib.suppress(Exception):
        depths = await bus.queue_depths()
    body = {
        "transport": bus.transport,
        "connected": bus.connected,
        "queues": depths,
        "retried": bus.retried,
        "dead_lettered": bus.dead_lettered,
        "services": {s.name: s.status() for s in request.app[SERVICES_KEY]},
    }
    return web.json_response(body, dumps=_dumps)


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, default=str)


async def _metrics(request: web.Request) -> web.Response:
    bus = request.app[BUS_KEY]
    lines = [
        "# HELP tess_ffi_events_total Things a service did, by kind.",
        "# TYPE tess_ffi_events_total counter",
    ]
    for service in request.app[SERVICES_KEY]:
        for key, value in sorted(service.counters.items()):
            lines.append(f'tess_ffi_events_total{{service="{service.name}",kind="{key}"}} {value}')
    lines += [
        "# HELP tess_ffi_up 1 when the service is connected and consuming.",
        "# TYPE tess_ffi_up gauge",
    ]
    for service in request.app[SERVICES_KEY]:
        lines.append(f'tess_ffi_up{{service="{service.name}"}} {int(service.ready)}')
    lines += [
        "# HELP tess_ffi_busy Messages being handled right now.",
        "# TYPE tess_ffi_busy gauge",
    ]
    for service in request.app[SERVICES_KEY]:
        lines.append(f'tess_ffi_busy{{service="{service.name}"}} {service.busy}')
    lines += [
        "# HELP tess_ffi_queue_messages Messages waiting in a queue.",
        "# TYPE tess_ffi_queue_messages gauge",
    ]
    with contextlib.suppress(Exception):
        for queue, depth in sorted((await bus.queue_depths()).items()):
            lines.append(f'tess_ffi_queue_messages{{queue="{queue}"}} {depth}')
    lines += [
        "# TYPE tess_ffi_bus_retried_total counter",
        f"tess_ffi_bus_retried_total {bus.retried}",
        "# TYPE tess_ffi_bus_dead_lettered_total counter",
        f"tess_ffi_bus_dead_lettered_total {bus.dead_lettered}",
    ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8")


def build_http_app(services: list[Service], bus: Bus) -> web.Application:
    """The read-only status application for one process (one or several services)."""
    app = web.Application()
    app[SERVICES_KEY] = services
    app[BUS_KEY] = bus
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/status", _status)
    add_status_page(app, SERVICES_KEY)  # the web page: GET / and /ui (polls /status)
    return app


async def start_http(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``app``; port 0 picks a free port. Returns the runner and the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    for address in runner.addresses:  # the real port when 0 asked for a free one
        bound = int(address[1])
        break
    return runner, bound


@contextlib.asynccontextmanager
async def running_services(
    services: list[Service], bus: Bus, settings: Settings
) -> AsyncIterator[int | None]:
    """Connect, start the services and (if a port is set) their HTTP endpoints; undo on exit.

    Yields the bound HTTP port (None when HTTP is off).
    """
    log = structlog.get_logger("tess_ffi.runtime")
    runner: web.AppRunner | None = None
    await bus.connect()
    try:
        for service in services:
            await service.start()
        port: int | None = None
        if settings.http_port is not None:
            runner, port = await start_http(
                build_http_app(services, bus), settings.http_host, settings.http_port
            )
            log.info("http listening", host=settings.http_host, port=port,
                     services=[s.name for s in services])
        yield port
    finally:
        for service in services:
            await service.stop()
        if runner is not None:
            await runner.cleanup()
        await bus.close()


async def run_until_signalled(services: list[Service], bus: Bus, settings: Settings) -> None:
    """Run services until SIGTERM or SIGINT, then stop cleanly (messages in hand finish)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with running_services(services, bus, settings):
        structlog.get_logger("tess_ffi.runtime").info(
            "services running", services=[s.name for s in services], transport=bus.transport
        )
        await stop.wait()
        structlog.get_logger("tess_ffi.runtime").info("stopping")
