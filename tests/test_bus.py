"""Contract tests of the bus: every test runs on the embedded bus and on the real RabbitMQ."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from tess_ffi.shared.bus import (
    BrokerUnavailable,
    Bus,
    Delivery,
    PermanentError,
    RabbitBus,
    create_bus,
)
from tess_ffi.shared.contracts import (
    ROUTES,
    FFIImage,
    JobSpec,
    StarCatalog,
    Topic,
    decode_message,
    star_catalog_table,
)

JOB = JobSpec(sector=1, camera=1, ccd=1, source="sim")


def catalog(n: int = 3) -> StarCatalog:
    ids = np.arange(1, n + 1)
    return StarCatalog(job=JOB, stars=star_catalog_table(ids, ids * 1.0, -ids * 1.0, ids, ids, ids))


def image(cadence: int) -> FFIImage:
    rng = np.random.default_rng(cadence)
    return FFIImage(
        job=JOB, cadence=cadence, filename=f"f{cadence}.fits", header="",
        image=rng.normal(100, 5, (64, 64)).astype(np.float32), uncertainty=None,
        stars=catalog().stars,
    )


async def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_roundtrip_keeps_the_message(bus: Bus) -> None:
    got: list[Any] = []

    async def handler(msg: Any, delivery: Delivery) -> None:
        got.append((msg, delivery))

    await bus.subscribe(Topic.FFI, "photometer", handler)
    sent = image(7)
    await bus.publish(sent)
    await wait_for(lambda: got)
    msg, delivery = got[0]
    assert isinstance(msg, FFIImage) and msg.cadence == 7 and msg.job == JOB
    np.testing.assert_array_equal(msg.image, sent.image)
    assert msg.stars.equals(sent.stars)
    assert delivery.attempt == 1 and not delivery.redelivered


async def test_the_group_and_every_private_listener_get_a_copy(bus: Bus) -> None:
    seen: dict[str, int] = {"aggregator": 0, "listener-1": 0, "listener-2": 0}

    def counter(name: str) -> Any:
        async def handler(msg: Any, delivery: Delivery) -> None:
            seen[name] += 1
        return handler

    await bus.subscribe(Topic.CATALOGS, "aggregator", counter("aggregator"))
    await bus.subscribe(Topic.CATALOGS, None, counter("listener-1"))
    await bus.subscribe(Topic.CATALOGS, None, counter("listener-2"))
    for _ in range(3):
        await bus.publish(catalog())
    await wait_for(lambda: seen == {"aggregator": 3, "listener-1": 3, "listener-2": 3})


async def test_consumers_in_a_group_share_the_work(bus: Bus) -> None:
    handled: list[tuple[int, int]] = []

    def worker(idx: int) -> Any:
        async def handler(msg: Any, delivery: Delivery) -> None:
            await asyncio.sleep(0.01)
            handled.append((idx, msg.cadence))
        return handler

    await bus.subscribe(Topic.FFI, "photometer", worker(0), prefetch=1)
    await bus.subscribe(Topic.FFI, "photometer", worker(1), prefetch=1)
    for cadence in range(20):
        await bus.publish(image(cadence))
    await wait_for(lambda: len(handled) == 20)
    await asyncio.sleep(0.2)
    assert sorted(c for _, c in handled) == list(range(20))  # each exactly once
    assert {w for w, _ in handled} == {0, 1}


async def test_a_failing_handler_is_retried(bus: Bus) -> None:
    attempts: list[int] = []

    async def flaky(msg: Any, delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        if delivery.attempt < 2:
            raise RuntimeError("transient")

    await bus.subscribe(Topic.CATALOGS, "aggregator", flaky)
    await bus.publish(catalog())
    await wait_for(lambda: attempts == [1, 2])
    await asyncio.sleep(0.2)
    assert attempts == [1, 2]
    assert await bus.dead_letters() == []


async def test_poison_message_is_dead_lettered_with_its_reason(bus: Bus) -> None:
    good: list[int] = []

    async def handler(msg: Any, delivery: Delivery) -> None:
        if msg.stars.num_rows == 13:
            raise RuntimeError("cannot handle 13 stars")
        good.append(msg.stars.num_rows)

    await bus.subscribe(Topic.CATALOGS, "aggregator", handler)
    await bus.publish_raw(Topic.CATALOGS, b"this is not a message")
    await bus.publish(catalog(13))
    await bus.publish(catalog(2))
    await wait_for(lambda: good == [2])
    letters: list[Any] = []

    async def collect() -> bool:
        letters.extend(await bus.dead_letters())
        return len(letters) >= 2

    for _ in range(200):
        if await collect():
            break
        await asyncio.sleep(0.05)
    reasons = sorted(dl.reason for dl in letters)
    assert len(reasons) == 2, reasons
    assert "invalid message" in reasons[1] and "bad magic" in reasons[1]
    assert reasons[0] == "RuntimeError: cannot handle 13 stars"
    poison = next(dl for dl in letters if "13 stars" in dl.reason)
    assert poison.attempt == bus.max_attempts
    assert decode_message(poison.body).stars.num_rows == 13  # the original body is kept


async def test_permanent_errors_are_not_retried(bus: Bus) -> None:
    attempts: list[int] = []

    async def handler(msg: Any, delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        raise PermanentError("corrupt FITS")

    await bus.subscribe(Topic.CATALOGS, "aggregator", handler)
    await bus.publish(catalog())
    letters: list[Any] = []
    for _ in range(200):
        letters += await bus.dead_letters()
        if letters:
            break
        await asyncio.sleep(0.05)
    assert attempts == [1]
    assert letters[0].reason == "PermanentError: corrupt FITS"


async def test_image_queue_is_bounded_and_publishers_wait(bus: Bus) -> None:
    limit = ROUTES[Topic.FFI].max_length
    assert limit is not None
    published: list[int] = []

    async def producer() -> None:
        for cadence in range(limit + 4):
            await bus.publish(image(cadence))
            published.append(cadence)

    task = asyncio.create_task(producer())
    await wait_for(lambda: len(published) >= limit)
    await asyncio.sleep(0.5)
    assert len(published) == limit  # the rest wait: backpressure, not unbounded memory
    assert not task.done()
    got: list[int] = []

    async def consumer(msg: Any, delivery: Delivery) -> None:
        got.append(msg.cadence)

    await bus.subscribe(Topic.FFI, "photometer", consumer)
    await asyncio.wait_for(task, 20)
    await wait_for(lambda: len(got) == limit + 4)
    assert sorted(got) == list(range(limit + 4))


async def test_message_in_hand_comes_back_when_its_consumer_stops(bus: Bus) -> None:
    started = asyncio.Event()
    finished: list[tuple[int, bool, int]] = []

    async def slow(msg: Any, delivery: Delivery) -> None:
        started.set()
        await asyncio.sleep(30)

    sub = await bus.subscribe(Topic.FFI, "photometer", slow)
    await bus.publish(image(3))
    await asyncio.wait_for(started.wait(), 10)
    # The consumer goes away mid-message without acknowledging it (as a killed worker would).
    for task in list(sub.in_flight):
        task.cancel()
    await sub.cancel()

    async def fast(msg: Any, delivery: Delivery) -> None:
        finished.append((msg.cadence, delivery.redelivered, delivery.attempt))

    await bus.subscribe(Topic.FFI, "photometer", fast)
    await wait_for(lambda: finished)
    assert finished == [(3, True, 2)]


@pytest.mark.parametrize("url", ["amqp://guest:secret@127.0.0.1:1/"])
async def test_unreachable_broker_is_one_clear_line(url: str) -> None:
    bus = create_bus(url)
    with pytest.raises(BrokerUnavailable) as info:
        await bus.connect()
    text = str(info.value)
    assert "cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:1/" in text
    assert "secret" not in text and "\n" not in text


async def test_rabbit_durability_settings(rabbit_bus: RabbitBus) -> None:
    """Queues are durable, results persistent, images transient (aio-pika's defaults are not)."""
    await rabbit_bus.publish(catalog())
    await rabbit_bus.publish(image(1))
    channel = rabbit_bus._channel
    q_cat = await channel.declare_queue(rabbit_bus.queue_name(Topic.CATALOGS, "aggregator"),
                                        passive=True)
    q_img = await channel.declare_queue(rabbit_bus.queue_name(Topic.FFI, "photometer"),
                                        passive=True)
    m_cat = await q_cat.get(timeout=5)
    m_img = await q_img.get(timeout=5)
    assert m_cat.delivery_mode == 2 and m_img.delivery_mode == 1
    assert m_cat.headers["schema"] == StarCatalog.SCHEMA
    await m_cat.nack(requeue=True)
    await m_img.nack(requeue=True)
    # Durable queue: a passive declare from a new connection still finds it.
    other = RabbitBus(rabbit_bus.url, namespace=rabbit_bus.namespace)
    await other.connect()
    depths = await other.queue_depths()
    await other.close()
    assert depths[rabbit_bus.queue_name(Topic.CATALOGS, "aggregator")] == 1
