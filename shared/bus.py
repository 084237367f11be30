"""The message bus: one interface, two transports.

* :class:`EmbeddedBus`, in-process asyncio queues: the default, so that one command on a laptop
  runs the whole pipeline with no broker.
* :class:`RabbitBus`, RabbitMQ through aio-pika: how users scale out.

Both give the same guarantees to a handler, and the same contract tests run on both:

* at-least-once: a message is acknowledged only after its handler returned, and a handler
  returns only after its own output was published (and, on RabbitMQ, confirmed by the broker);
  handlers are idempotent, so a redelivery never duplicates a row;
* a handler that raises is retried up to ``max_attempts`` times, then the message goes to the
  dead-letter queue with the reason; a body that is not a valid contract, or a
  :class:`PermanentError`, goes there at once;
* queues with a ``max_length`` refuse publishes when full, and :meth:`Bus.publish` waits, so a
  fast producer never runs more than that many messages ahead (backpressure, bounded memory).

Examples
--------
>>> import asyncio
>>> from tess_ffi.shared.contracts import JobEvent, JobSpec, Topic
>>> async def demo():
...     bus = EmbeddedBus()
...     await bus.connect()
...     seen = []
...     async def on_event(msg, delivery):
...         seen.append((msg.kind, delivery.attempt))
...     sub = await bus.subscribe(Topic.EVENTS, None, on_event)
...     await bus.publish(JobEvent(job=JobSpec(sector=1, camera=1, ccd=1), kind="progress",
...                                service="doc"))
...     await bus.wait_idle()
...     await sub.cancel()
...     await bus.close()
...     return seen
>>> asyncio.run(demo())
[('progress', 1)]
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import structlog

from .contracts import ROUTES, ContractError, Message, Route, Topic, decode_message

__all__ = [
    "Bus",
    "BusError",
    "BrokerUnavailable",
    "PermanentError",
    "Delivery",
    "DeadLetter",
    "Handler",
    "Subscription",
    "EmbeddedBus",
    "RabbitBus",
    "create_bus",
    "redact_url",
]

log = structlog.get_logger("tess_ffi.bus")


#: Bodies above this size are encoded and decoded in a worker thread: compressing an FFI
#: takes tens of milliseconds, which must not stall the event loop (or the heartbeats).
OFF_LOOP_BYTES = 256 * 1024


def _blob_bytes(message: Message) -> int:
    return sum(
        getattr(v, "nbytes", 0) for v in vars(message).values() if not isinstance(v, str)
    )


async def _off_loop_if_large(size: int, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    if size > OFF_LOOP_BYTES:
        return await asyncio.to_thread(func, *args, **kwargs)
    return func(*args, **kwargs)


class BusError(RuntimeError):
    """The bus cannot do what was asked (unroutable message, message over the size limit)."""


class BrokerUnavailable(BusError):
    """The broker cannot be reached."""


class PermanentError(Exception):
    """Raised by a handler when retrying cannot help (bad input): dead-letter at once."""


@dataclass(frozen=True)
class Delivery:
    """What a handler knows about the delivery of the message it handles."""

    topic: Topic
    group: str | None
    attempt: int
    redelivered: bool


@dataclass(frozen=True)
class DeadLetter:
    """A message that could not be handled, with why."""

    topic: str
    group: str | None
    reason: str
    attempt: int
    body: bytes


Handler = Callable[[Message, Delivery], Awaitable[None]]


def redact_url(url: str) -> str:
    """Hide the password of a broker URL for logs and errors.

    >>> redact_url("amqp://guest:secret@127.0.0.1:5672/")
    'amqp://guest:***@127.0.0.1:5672/'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Subscription(ABC):
    """A running consumer; :meth:`cancel` stops taking messages and waits for the one in hand."""

    def __init__(self) -> None:
        self.in_flight: set[asyncio.Task[None]] = set()
        self.handled = 0

    @abstractmethod
    async def cancel(self) -> None: ...


class Bus(ABC):
    """Publish contracts by topic; consume them by (topic, group)."""

    transport: str = ""

    def __init__(self, *, max_attempts: int = 3, retry_delay: float = 0.5) -> None:
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.dead_lettered = 0
        self.retried = 0
        self._subscriptions: list[Subscription] = []

    @property
    @abstractmethod
    def connected(self) -> bool: ...

    @abstractmethod
    async def connect(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def publish(self, message: Message) -> None:
        """Route ``message`` by its type; returns once the transport has it safely."""

    @abstractmethod
    async def publish_raw(self, topic: Topic, body: bytes, *, schema: str = "unknown") -> None:
        """Send ``body`` as it is (for tools and tests; services publish contracts)."""

    @abstractmethod
    async def subscribe(
        self, topic: Topic, group: str | None, handler: Handler, *, prefetch: int = 1
    ) -> Subscription:
        """Consume ``topic`` as member of ``group`` (None: a private, temporary queue)."""

    @abstractmethod
    async def queue_depths(self) -> dict[str, int]:
        """Messages waiting per durable queue (for status pages and autoscalers)."""

    @abstractmethod
    async def dead_letters(self) -> list[DeadLetter]:
        """Take the messages in the dead-letter queue (they are removed)."""

    def queue_name(self, topic: Topic | str, group: str) -> str:
        return f"{topic.value if isinstance(topic, Topic) else topic}.{group}"

    async def _handle(
        self,
        body: bytes,
        delivery: Delivery,
        handler: Handler,
        *,
        retry: Callable[[int], Awaitable[None]],
        dead_letter: Callable[[str, int], Awaitable[None]],
    ) -> None:
        """Decode, run the handler, and retry or dead-letter it: the same on every transport."""
        try:
            message = await _off_loop_if_large(len(body), decode_message, body)
        except ContractError as exc:
            await dead_letter(f"invalid message: {exc}", delivery.attempt)
            self.dead_lettered += 1
            return
        try:
            await handler(message, delivery)
        except asyncio.CancelledError:
            raise
        except PermanentError as exc:
            await dead_letter(f"{type(exc).__name__}: {exc}", delivery.attempt)
            self.dead_lettered += 1
            log.warning("dead-lettered", topic=delivery.topic.value, reason=str(exc))
        except Exception as exc:  # noqa: BLE001 - any handler failure is retried, then parked
            reason = f"{type(exc).__name__}: {exc}"
            if delivery.attempt >= self.max_attempts:
                await dead_letter(reason, delivery.attempt)
                self.dead_lettered += 1
                log.warning(
                    "dead-lettered",
                    topic=delivery.topic.value,
                    attempt=delivery.attempt,
                    reason=reason,
                )
            else:
                self.retried += 1
                log.info("retrying", topic=delivery.topic.value, attempt=delivery.attempt,
                         reason=reason)
                await asyncio.sleep(self.retry_delay * delivery.attempt)
                await retry(delivery.attempt + 1)

    async def _queued(self) -> int:
        return sum((await self.queue_depths()).values())

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until no message is queued or being handled (for tests and the embedded run)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = any(sub.in_flight for sub in self._subscriptions)
            if not busy and not await self._queued():
                return
            await asyncio.sleep(0.02)
        raise TimeoutError("bus did not become idle")


# --- embedded -------------------------------------------------------------------------------


@dataclass
class _Envelope:
    body: bytes
    attempt: int = 1
    redelivered: bool = False


@dataclass
class _EmbeddedQueue:
    name: str
    queue: asyncio.Queue[_Envelope]
    consumers: int = 0


class _EmbeddedSubscription(Subscription):
    def __init__(self, bus: EmbeddedBus, q: _EmbeddedQueue, private: bool) -> None:
        super().__init__()
        self._bus = bus
        self._queue = q
        self._private = private
        self._workers: list[asyncio.Task[None]] = []

    async def cancel(self) -> None:
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._workers.clear()
        self._queue.consumers -= 1
        if self._private:
            self._bus._drop_private(self._queue)
        with contextlib.suppress(ValueError):
            self._bus._subscriptions.remove(self)


class EmbeddedBus(Bus):
    """In-process transport with the same semantics as :class:`RabbitBus`.

    Messages are encoded and decoded as on the wire (uncompressed), so a service never shares
    a mutable object with another and the contracts are exercised on every run.
    """

    transport = "embedded"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._queues: dict[str, _EmbeddedQueue] = {}
        self._private: dict[Topic, list[_EmbeddedQueue]] = {}
        self._dead: list[DeadLetter] = []
        self._connected = False
        self._ids = itertools.count()

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        for route in ROUTES.values():
            for group in route.groups:
                self._declare(route, group)
        self._connected = True

    async def close(self) -> None:
        for sub in list(self._subscriptions):
            await sub.cancel()
        self._connected = False

    def _declare(self, route: Route, group: str) -> _EmbeddedQueue:
        name = self.queue_name(route.topic, group)
        if name not in self._queues:
            self._queues[name] = _EmbeddedQueue(name, asyncio.Queue(route.max_length or 0))
        return self._queues[name]

    def _drop_private(self, q: _EmbeddedQueue) -> None:
        for queues in self._private.values():
            if q in queues:
                queues.remove(q)

    async def publish(self, message: Message) -> None:
        body = await _off_loop_if_large(_blob_bytes(message), message.encode)
        await self.publish_raw(message.TOPIC, body, schema=message.SCHEMA)

    async def publish_raw(self, topic: Topic, body: bytes, *, schema: str = "unknown") -> None:
        if not self._connected:
            raise BusError("embedded bus is closed")
        route = ROUTES[topic]
        targets = [self._queues[self.queue_name(route.topic, g)] for g in route.groups]
        targets += self._private.get(route.topic, [])
        if not targets and route.mandatory:
            raise BusError(f"no queue bound for topic {route.topic.value!r}")
        for q in targets:
            await q.queue.put(_Envelope(body))  # waits while a bounded queue is full

    async def subscribe(
        self, topic: Topic, group: str | None, handler: Handler, *, prefetch: int = 1
    ) -> Subscription:
        route = ROUTES[topic]
        if group is None:
            q = _EmbeddedQueue(f"{topic.value}.private-{next(self._ids)}", asyncio.Queue())
            self._private.setdefault(topic, []).append(q)
        else:
            q = self._declare(route, group)
        q.consumers += 1
        sub = _EmbeddedSubscription(self, q, private=group is None)
        for _ in range(max(1, prefetch)):
            sub._workers.append(asyncio.create_task(self._consume(sub, q, topic, group, handler)))
        self._subscriptions.append(sub)
        return sub

    async def _consume(
        self,
        sub: _EmbeddedSubscription,
        q: _EmbeddedQueue,
        topic: Topic,
        group: str | None,
        handler: Handler,
    ) -> None:
        while True:
            envelope = await q.queue.get()
            delivery = Delivery(topic, group, envelope.attempt, envelope.redelivered)

            async def retry(attempt: int, env: _Envelope = envelope) -> None:
                await q.queue.put(_Envelope(env.body, attempt))

            async def dead_letter(reason: str, attempt: int, env: _Envelope = envelope) -> None:
                self._dead.append(DeadLetter(topic.value, group, reason, attempt, env.body))

            task = asyncio.current_task()
            assert task is not None
            sub.in_flight.add(task)
            try:
                await self._handle(
                    envelope.body, delivery, handler, retry=retry, dead_letter=dead_letter
                )
                sub.handled += 1
            except asyncio.CancelledError:
                # Stopped mid-message: give it back, as a broker would on a lost consumer.
                q.queue.put_nowait(_Envelope(envelope.body, envelope.attempt + 1, True))
                raise
            finally:
                sub.in_flight.discard(task)
                q.queue.task_done()

    async def queue_depths(self) -> dict[str, int]:
        return {name: q.queue.qsize() for name, q in self._queues.items()}

    async def _queued(self) -> int:
        private = sum(q.queue.qsize() for qs in self._private.values() for q in qs)
        return sum((await self.queue_depths()).values()) + private

    async def dead_letters(self) -> list[DeadLetter]:
        taken, self._dead = self._dead, []
        return taken


# --- RabbitMQ -------------------------------------------------------------------------------


class _RabbitSubscription(Subscription):
    def __init__(self) -> None:
        super().__init__()
        self.queue: Any = None
        self.channel: Any = None
        self.consumer_tag: str | None = None
        self.closing = False

    async def cancel(self) -> None:
        self.closing = True
        if self.queue is not None and self.consumer_tag is not None:
            with contextlib.suppress(Exception):
                await self.queue.cancel(self.consumer_tag)
        if self.in_flight:
            await asyncio.gather(*self.in_flight, return_exceptions=True)
        if self.channel is not None:
            with contextlib.suppress(Exception):
                await self.channel.close()  # unacked prefetched messages go back to the queue


class RabbitBus(Bus):
    """RabbitMQ transport (aio-pika), with every safety aio-pika leaves off by default:

    durable exchange and queues; persistent messages for everything but images; publisher
    confirms with ``mandatory`` publishing (an unroutable message is an error, not a silent
    drop); bounded prefetch; bounded image queue with ``reject-publish`` overflow (a refused
    publish waits and retries: backpressure); a dead-letter queue fed both by this class
    (with the reason in the headers) and by the broker; a robust connection that reconnects
    after a broker restart, re-declares the topology and resumes consuming, and publishes
    that were not confirmed are sent again.
    """

    transport = "rabbitmq"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "tess-ffi",
        max_message_bytes: int = 64 * 2**20,
        compression: str | None = "zstd",
        publish_timeout: float = 300.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.url = url
        self.namespace = namespace
        self.max_message_bytes = max_message_bytes
        self.compression = compression
        self.publish_timeout = publish_timeout
        self.backpressure_waits = 0
        self.republished = 0
        self._connection: Any = None
        self._channel: Any = None
        self._exchange: Any = None
        self._publish_lock = asyncio.Lock()

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.namespace}.dead-letter"

    def queue_name(self, topic: Topic | str, group: str) -> str:
        return f"{self.namespace}.{super().queue_name(topic, group)}"

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    def _queue_arguments(self, route: Route) -> dict[str, Any]:
        args: dict[str, Any] = {
            "x-queue-type": "classic",
            "x-dead-letter-exchange": self.namespace,
            "x-dead-letter-routing-key": "dead-letter",
        }
        if route.max_length is not None:
            args["x-max-length"] = route.max_length
            args["x-overflow"] = "reject-publish"
        return args

    async def connect(self) -> None:
        import aio_pika

        try:
            self._connection = await aio_pika.connect_robust(
                self.url,
                timeout=10,
                client_properties={"connection_name": f"tess-ffi:{self.namespace}"},
            )
        except Exception as exc:  # noqa: BLE001 - surface any connection failure as one line
            raise BrokerUnavailable(
                f"cannot reach RabbitMQ at {redact_url(self.url)}: {exc or type(exc).__name__}"
            ) from None
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        self._exchange = await self._channel.declare_exchange(
            self.namespace, aio_pika.ExchangeType.DIRECT, durable=True
        )
        dlq = await self._channel.declare_queue(
            self.dead_letter_queue, durable=True, arguments={"x-queue-type": "classic"}
        )
        await dlq.bind(self._exchange, routing_key="dead-letter")
        for route in ROUTES.values():
            for group in route.groups:
                queue = await self._channel.declare_queue(
                    self.queue_name(route.topic, group),
                    durable=True,
                    arguments=self._queue_arguments(route),
                )
                await queue.bind(self._exchange, routing_key=route.topic.value)
        log.info("broker connected", url=redact_url(self.url), namespace=self.namespace)

    async def close(self) -> None:
        for sub in list(self._subscriptions):
            await sub.cancel()
        self._subscriptions.clear()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def delete_topology(self) -> None:
        """Delete this namespace's queues and exchange (tests clean up with it)."""
        names = [self.queue_name(r.topic, g) for r in ROUTES.values() for g in r.groups]
        for name in [*names, self.dead_letter_queue]:
            with contextlib.suppress(Exception):
                await self._channel.queue_delete(name)
        with contextlib.suppress(Exception):
            await self._channel.exchange_delete(self.namespace)

    def _amqp_message(self, body: bytes, *, schema: str, persistent: bool, **headers: Any) -> Any:
        import aio_pika

        return aio_pika.Message(
            body,
            delivery_mode=(
                aio_pika.DeliveryMode.PERSISTENT if persistent else aio_pika.DeliveryMode.NOT_PERSISTENT
            ),
            content_type="application/x-tess-ffi",
            type=schema,
            headers={"schema": schema, **headers},
        )

    async def _publish_raw(
        self, amqp_message: Any, routing_key: str, *, mandatory: bool, exchange: Any = None
    ) -> None:
        """Publish with confirms; wait while the queue refuses (full) or the broker is away."""
        import aio_pika.exceptions as exc_types
        import aiormq.exceptions

        deadline = time.monotonic() + self.publish_timeout
        delay = 0.02
        while True:
            try:
                target = exchange if exchange is not None else self._exchange
                await target.publish(amqp_message, routing_key=routing_key, mandatory=mandatory)
                return
            except exc_types.PublishError:
                raise BusError(f"unroutable message to {routing_key!r}: no queue bound") from None
            except aiormq.exceptions.DeliveryError:
                # Nack: a bounded queue is full. Wait for consumers: this is the backpressure.
                self.backpressure_waits += 1
            except (
                ConnectionError,
                aiormq.exceptions.AMQPError,
                aiormq.exceptions.ChannelInvalidStateError,
                asyncio.TimeoutError,
            ) as exc:
                # Connection lost before the confirm: the robust connection is reconnecting;
                # send again once it is back (at-least-once, consumers are idempotent).
                self.republished += 1
                log.warning("publish interrupted, will resend", error=str(exc) or type(exc).__name__)
            if time.monotonic() > deadline:
                raise BrokerUnavailable(
                    f"could not publish to {routing_key!r} within {self.publish_timeout:.0f} s"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def publish(self, message: Message) -> None:
        if self._exchange is None:
            raise BusError("RabbitMQ bus is not connected")
        body = await _off_loop_if_large(
            _blob_bytes(message), message.encode, compression=self.compression
        )
        await self.publish_raw(message.TOPIC, body, schema=message.SCHEMA)

    async def publish_raw(self, topic: Topic, body: bytes, *, schema: str = "unknown") -> None:
        if self._exchange is None:
            raise BusError("RabbitMQ bus is not connected")
        route = ROUTES[topic]
        if len(body) > self.max_message_bytes:
            raise BusError(
                f"{schema} message is {len(body)} bytes, over the configured limit of "
                f"{self.max_message_bytes} (TESS_FFI_MAX_MESSAGE_BYTES; RabbitMQ's "
                "max_message_size must allow it too)"
            )
        amqp_message = self._amqp_message(body, schema=schema, persistent=route.persistent, attempt=1)
        await self._publish_raw(amqp_message, route.topic.value, mandatory=route.mandatory)

    async def subscribe(
        self, topic: Topic, group: str | None, handler: Handler, *, prefetch: int = 1
    ) -> Subscription:
        route = ROUTES[topic]
        sub = _RabbitSubscription()
        sub.channel = await self._connection.channel(publisher_confirms=True)
        await sub.channel.set_qos(prefetch_count=max(1, prefetch))
        if group is None:
            # Named, not server-named: a robust channel re-declares it after a reconnect,
            # and the broker refuses to declare its own "amq.gen-" names.
            queue = await sub.channel.declare_queue(
                f"{self.namespace}.listener.{uuid.uuid4().hex}", exclusive=True, auto_delete=True
            )
            exchange = await sub.channel.get_exchange(self.namespace)
            await queue.bind(exchange, routing_key=topic.value)
        else:
            queue = await sub.channel.declare_queue(
                self.queue_name(topic, group), durable=True, arguments=self._queue_arguments(route)
            )
        sub.queue = queue

        async def on_message(incoming: Any) -> None:
            if sub.closing:
                await incoming.nack(requeue=True)
                return
            task = asyncio.current_task()
            assert task is not None
            sub.in_flight.add(task)
            try:
                await self._on_message(incoming, topic, group, queue.name, route, handler)
                sub.handled += 1
            finally:
                sub.in_flight.discard(task)

        sub.consumer_tag = await queue.consume(on_message, no_ack=False)
        self._subscriptions.append(sub)
        return sub

    async def _on_message(
        self, incoming: Any, topic: Topic, group: str | None, queue_name: str, route: Route,
        handler: Handler,
    ) -> None:
        headers = dict(incoming.headers or {})
        attempt = int(headers.get("attempt", 1)) + (1 if incoming.redelivered else 0)
        delivery = Delivery(topic, group, attempt, bool(incoming.redelivered))
        schema = str(headers.get("schema", incoming.type or "unknown"))

        async def retry(next_attempt: int) -> None:
            # Re-publish with the attempt count (classic queues do not count deliveries).
            copy = self._amqp_message(
                incoming.body, schema=schema, persistent=route.persistent, attempt=next_attempt
            )
            await self._publish_raw(copy, queue_name, mandatory=True, exchange=self._default)

        async def dead_letter(reason: str, at_attempt: int) -> None:
            copy = self._amqp_message(
                incoming.body, schema=schema, persistent=True, attempt=at_attempt,
                reason=reason[:1000], original_queue=queue_name, topic=topic.value,
            )
            await self._publish_raw(copy, "dead-letter", mandatory=True)

        try:
            await self._handle(incoming.body, delivery, handler, retry=retry,
                               dead_letter=dead_letter)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await incoming.nack(requeue=True)
            raise
        await incoming.ack()

    @property
    def _default(self) -> Any:
        return self._channel.default_exchange

    async def queue_depths(self) -> dict[str, int]:
        depths: dict[str, int] = {}
        if not self.connected:
            return depths
        for route in ROUTES.values():
            for group in route.groups:
                name = self.queue_name(route.topic, group)
                q = await self._channel.declare_queue(name, passive=True)
                depths[name] = int(q.declaration_result.message_count or 0)
        return depths

    async def dead_letters(self) -> list[DeadLetter]:
        queue = await self._channel.declare_queue(self.dead_letter_queue, passive=True)
        taken: list[DeadLetter] = []
        while True:
            incoming = await queue.get(no_ack=False, fail=False)
            if incoming is None:
                return taken
            headers = dict(incoming.headers or {})
            taken.append(
                DeadLetter(
                    topic=str(headers.get("topic", "")),
                    group=str(headers.get("original_queue", "")) or None,
                    reason=str(headers.get("reason", "rejected by the broker")),
                    attempt=int(headers.get("attempt", 1)),
                    body=incoming.body,
                )
            )
            await incoming.ack()


def create_bus(broker_url: str | None, **kwargs: Any) -> Bus:
    """The embedded bus when no broker URL is given, else RabbitMQ at that URL."""
    if not broker_url:
        return EmbeddedBus(**{k: v for k, v in kwargs.items() if k in {"max_attempts", "retry_delay"}})
    if not broker_url.startswith(("amqp://", "amqps://")):
        raise BusError(f"broker URL must start with amqp:// or amqps://, got {redact_url(broker_url)!r}")
    return RabbitBus(broker_url, **kwargs)
