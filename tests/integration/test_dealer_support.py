"""Shared fixtures and helpers of the dealer's integration tests (no tests here).

The inventory runs in-process on real PostgreSQL and the in-process bus (the ``inventory``
fixture); the dealer runs beside it on the same bus and database (its own schema) and reaches
the inventory's REST API through the same in-process client. Access records and the last
detox cycle come from sources the test fills (what detox's API would answer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from dynamo_common.bus.base import Bus, Delivery, QueueSpec
from dynamo_common.messages.envelope import Envelope
from dynamo_dealer.service.plugins.popularity import Access
from dynamo_dealer.sources import Protected
from tests.integration.conftest import RunningInventory
from tests.integration.test_detox_support import eventually

WAIT = 30.0
__all__ = ["eventually"]


@dataclass
class Accesses:
    records: list[Access] = field(default_factory=list)

    async def accesses(self, since: float) -> list[Access]:
        return [r for r in self.records if r.time >= since]


@dataclass
class Protection:
    """What detox's last cycle would say: its id and protected bytes per site."""

    cycle_id: int | None = None
    sites: dict[str, tuple[int, int]] = field(default_factory=dict)

    async def protected(self) -> Protected:
        return Protected(self.cycle_id, dict(self.sites))


@dataclass
class RunningDealer:
    client: httpx.AsyncClient
    app: Any
    bus: Bus
    accesses: Accesses
    protection: Protection

    @property
    def runtime(self) -> Any:
        return self.app.state.dealer

    async def get(self, path: str, expect: int = 200, **params: Any) -> Any:
        response = await self.client.get(path, params=params)
        assert response.status_code == expect, response.text
        return response.json()

    async def send(
        self, method: str, path: str, body: Any, status: int, user: str | None = "alice"
    ) -> Any:
        headers = {"X-Dynamo-User": user} if user else {}
        response = await self.client.request(method, path, json=body, headers=headers)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    async def cycle(self, **body: Any) -> dict[str, Any]:
        """Run a cycle; the record once decided, recorded and its commands sent."""
        submitted = await self.send("POST", "/api/v1/dealer/cycles", body, 202, user="operator")
        await asyncio.wait_for(self.runtime.wait_idle(), WAIT)
        cycle: dict[str, Any] = await self.get(f"/api/v1/dealer/cycles/{submitted['id']}")
        assert cycle["status"] == "done", cycle
        return cycle

    async def decisions(self, cycle_id: int, **params: Any) -> list[dict[str, Any]]:
        page = await self.get(f"/api/v1/dealer/cycles/{cycle_id}/decisions", limit=10_000, **params)
        items: list[dict[str, Any]] = page["items"]
        return items


def dealer_settings(database_url: str, namespace: str, **over: Any) -> Any:
    from dynamo_dealer.settings import DealerSettings

    values: dict[str, Any] = {
        "database_url": database_url,
        "amqp_url": "memory://",
        "bus_namespace": namespace,
        "inventory_url": "http://inventory",
        "log_format": "console",
        "cycle_interval": 0,
        "command_reply_timeout": 10,
        "progress_interval": 0.3,
        "admins": ["admin"],
        "partition": "Physics",
    }
    values.update(over)
    return DealerSettings(**values)


@contextlib.asynccontextmanager
async def run_dealer(
    inventory: RunningInventory,
    database_url: str,
    clock: Callable[[], float] | None = None,
    **over: Any,
) -> AsyncIterator[RunningDealer]:
    from dynamo_dealer.app import create_app

    bus = inventory.bus
    accesses, protection = Accesses(), Protection()
    settings = dealer_settings(database_url, bus.namespace, **over)
    app = create_app(
        settings,
        bus=bus,
        inventory_http=inventory.client,
        clock=clock,
        access_source=accesses,
        protection_source=protection,
    )
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dealer") as client:
            running = RunningDealer(client, app, bus, accesses, protection)
            await eventually(lambda: running.runtime.readmodel.ready.is_set(), "read model")
            yield running


@dataclass
class CommandLog:
    """Stands in for the transfer service where a test looks only at what the dealer asks
    of it: takes ``transfer.replica.transfer.v1`` commands, records and accepts them."""

    commands: list[dict[str, Any]] = field(default_factory=list)

    async def start(self, bus: Bus) -> Any:
        await bus.declare_queue(
            QueueSpec("test.dealer-transfers", (("commands", "transfer.replica.transfer.v1"),))
        )

        async def handle(delivery: Delivery) -> None:
            self.commands.append(delivery.envelope.data)
            reply = Envelope(
                type="transfer.command.reply.v1",
                source="/tests/dealer-transfers",
                correlation_id=delivery.envelope.id,
                data={
                    "command_id": delivery.envelope.id,
                    "status": "accepted",
                    "tasks": len(delivery.envelope.data["requests"]),
                },
            )
            await bus.reply(delivery, reply)

        return await bus.consume("test.dealer-transfers", handle)

    def requests(self) -> list[tuple[str, str | None, str]]:
        return [
            (r["dataset"], r.get("block"), r["site"]) for c in self.commands for r in c["requests"]
        ]


@dataclass
class DeletionLog:
    """Takes ``transfer.replica.delete.v1`` commands, records and accepts them."""

    requests: list[tuple[str, str]] = field(default_factory=list)

    async def start(self, bus: Bus) -> Any:
        await bus.declare_queue(
            QueueSpec("test.dealer-deletions", (("commands", "transfer.replica.delete.v1"),))
        )

        async def handle(delivery: Delivery) -> None:
            data = delivery.envelope.data
            self.requests += [(r["dataset"], r["site"]) for r in data["requests"]]
            reply = Envelope(
                type="transfer.command.reply.v1",
                source="/tests/dealer-deletions",
                correlation_id=delivery.envelope.id,
                data={"command_id": delivery.envelope.id, "status": "accepted", "tasks": 1},
            )
            await bus.reply(delivery, reply)

        return await bus.consume("test.dealer-deletions", handle)


async def collect(bus: Bus, sink: list[Envelope], name: str = "test.dealer-events") -> Any:
    await bus.declare_queue(QueueSpec(name, (("events", "dealer.#"),)))

    async def handle(delivery: Delivery) -> None:
        sink.append(delivery.envelope)

    return await bus.consume(name, handle)
