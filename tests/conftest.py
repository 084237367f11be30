"""Shared fixtures: real RabbitMQ access, one bus per transport, data paths."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tess_ffi.shared.bus import Bus, EmbeddedBus, RabbitBus

REPO = Path(__file__).resolve().parents[1]
#: Real TESS data beside the repository (never copied into it).
TESS_DATA = REPO.parent / "shared" / "data" / "tess"
BROKER_URL = os.environ.get("TESS_FFI_TEST_BROKER", "amqp://guest:guest@127.0.0.1:5672/")


def broker_reachable(url: str = BROKER_URL) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def broker_url() -> str:
    """The test broker's URL. Under CI a missing broker fails the test instead of skipping it."""
    if not broker_reachable():
        if os.environ.get("CI"):
            pytest.fail(f"RabbitMQ is not reachable at {BROKER_URL} (CI requires it)")
        pytest.skip(f"RabbitMQ is not reachable at {BROKER_URL}")
    return BROKER_URL


@pytest.fixture
def namespace() -> str:
    """A unique exchange/queue prefix per test, so tests never see each other's messages."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def rabbit_bus(broker_url: str, namespace: str) -> AsyncIterator[RabbitBus]:
    bus = RabbitBus(broker_url, namespace=namespace, retry_delay=0.05)
    await bus.connect()
    try:
        yield bus
    finally:
        await bus.delete_topology()
        await bus.close()


@pytest.fixture(params=["embedded", "rabbitmq"])
async def bus(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Bus]:
    """The same contract tests run on both transports."""
    if request.param == "embedded":
        embedded = EmbeddedBus(retry_delay=0.05)
        await embedded.connect()
        try:
            yield embedded
        finally:
            await embedded.close()
    else:
        url = request.getfixturevalue("broker_url")
        rabbit = RabbitBus(url, namespace=namespace, retry_delay=0.05)
        await rabbit.connect()
        try:
            yield rabbit
        finally:
            await rabbit.delete_topology()
            await rabbit.close()


@pytest.fixture
def tess_data() -> Path:
    if not TESS_DATA.is_dir():
        pytest.fail(f"real TESS test data not found at {TESS_DATA}")
    return TESS_DATA
