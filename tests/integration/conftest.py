"""A running inventory service (real PostgreSQL; in-process or RabbitMQ bus) for each test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from dynamo_common.bus.base import Bus


@dataclass
class RunningInventory:
    client: httpx.AsyncClient
    app: Any
    bus: Bus

    @property
    def runtime(self) -> Any:
        return self.app.state.inventory

    async def ok(self, method: str, path: str, body: Any) -> dict[str, Any]:
        response = await self.client.request(method, path, json=body)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        assert data["status"] == "accepted", data
        return data


def _settings(database_url: str, amqp_url: str, namespace: str) -> Any:
    from dynamo_inventory.settings import InventorySettings

    return InventorySettings(
        database_url=database_url,
        amqp_url=amqp_url,
        bus_namespace=namespace,
        log_format="console",
        relay_poll_interval=0.2,
        catch_up_interval=0.2,
    )


@pytest.fixture
async def inventory(database_url: str, memory_bus: Bus) -> AsyncIterator[RunningInventory]:
    from dynamo_inventory.app import create_app

    app = create_app(_settings(database_url, "memory://", memory_bus.namespace), bus=memory_bus)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://inventory") as client:
            yield RunningInventory(client=client, app=app, bus=memory_bus)


@pytest.fixture
async def inventory_on_rabbitmq(
    database_url: str,
    rabbit_bus: Bus,
) -> AsyncIterator[RunningInventory]:
    from dynamo_inventory.app import create_app

    app = create_app(_settings(database_url, "", rabbit_bus.namespace), bus=rabbit_bus)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://inventory") as client:
            yield RunningInventory(client=client, app=app, bus=rabbit_bus)
