"""Fixtures shared by every test: real PostgreSQL and RabbitMQ, found or started, never skipped.

Integration tests never skip for a missing service: if PostgreSQL or RabbitMQ cannot be found
or started, the fixture fails with the reason (CI must go red, not quietly green).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("DYNAMO_LOG_FORMAT", "console")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """Admin URL of a real PostgreSQL server (DYNAMO_TEST_DATABASE_URL or a local one)."""
    from dynamo_common.testing.postgres import ensure_postgres

    return ensure_postgres()


@pytest.fixture
def database_url(postgres_url: str) -> Iterator[str]:
    """A throw-away database for one test, dropped afterwards."""
    from dynamo_common.testing.postgres import temporary_database

    with temporary_database(postgres_url) as url:
        yield url


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """URL of a real RabbitMQ broker (DYNAMO_TEST_AMQP_URL or a local one)."""
    from dynamo_common.testing.rabbitmq import ensure_rabbitmq

    return ensure_rabbitmq()


@pytest.fixture
def bus_namespace() -> str:
    """Unique exchange/queue prefix so tests never see each other's messages."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def rabbit_bus(amqp_url: str, bus_namespace: str) -> AsyncIterator[object]:
    from dynamo_common.bus.rabbitmq import RabbitBus

    bus = RabbitBus(amqp_url, namespace=bus_namespace)
    await bus.connect()
    try:
        yield bus
    finally:
        await bus.close()
        from dynamo_common.testing.rabbitmq import delete_namespace

        await delete_namespace(amqp_url, bus_namespace, bus.declared_names().queues)


@pytest.fixture
async def memory_bus(bus_namespace: str) -> AsyncIterator[object]:
    from dynamo_common.bus.memory import MemoryBus

    bus = MemoryBus(namespace=bus_namespace)
    await bus.connect()
    try:
        yield bus
    finally:
        await bus.close()


@pytest.fixture
def xrootd_site() -> Iterator[object]:
    """A real XRootD site on loopback (``XrootdServer``), removed afterwards; fails, never skips,
    when xrootd is not installed."""
    from dynamo_common.testing.xrootd import XrootdServer

    with XrootdServer(name="site1") as server:
        yield server


@pytest.fixture
def xrootd_pair() -> Iterator[tuple[object, object]]:
    """Two real XRootD sites (for third-party copies between them)."""
    from dynamo_common.testing.xrootd import XrootdServer

    with XrootdServer(name="site1") as first, XrootdServer(name="site2") as second:
        yield first, second


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that drives real servers and fails is run once more before it counts as failed.

    Everything outside ``tests/unit`` drives real servers (PostgreSQL, RabbitMQ, XRootD,
    nginx, Chromium) on a shared 2-core machine, where a rare scheduling stall can outlast a
    deadline. A rerun is reported in the summary ("rerun"), so a test that needs one is seen,
    not hidden; unit tests are never rerun.
    """
    unit = Path(__file__).parent / "unit"
    for item in items:
        if item.path.is_relative_to(unit) or item.get_closest_marker("flaky"):
            continue
        item.add_marker(pytest.mark.flaky(reruns=1, reruns_delay=2))
