"""Shared fixtures and helpers of detox's integration tests (no tests here).

The inventory runs in-process on real PostgreSQL and the in-process bus (the ``inventory``
fixture); detox runs beside it on the same bus and database (its own schema) and reaches the
inventory's REST API through the same in-process client.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from asgi_lifespan import LifespanManager

from dynamo_common.bus.base import Bus, Delivery, QueueSpec
from dynamo_common.messages import transfer as tr
from dynamo_common.messages.envelope import Envelope
from tests.integration.conftest import RunningInventory

GB = 10**9
WAIT = 30.0
T = TypeVar("T")
PARTITION = "blockreplica.owner == AnalysisOps and site.storage_type == DISK"


@dataclass
class RunningDetox:
    client: httpx.AsyncClient
    app: Any
    bus: Bus

    @property
    def runtime(self) -> Any:
        return self.app.state.detox

    async def get(self, path: str, expect: int = 200, **params: Any) -> Any:
        response = await self.client.get(path, params=params)
        assert response.status_code == expect, response.text
        return response.json() if "json" in response.headers["content-type"] else response.text

    async def send(
        self, method: str, path: str, body: Any, status: int, user: str | None = "alice"
    ) -> Any:
        headers = {"X-Dynamo-User": user} if user else {}
        response = await self.client.request(method, path, json=body, headers=headers)
        assert response.status_code == status, response.text
        return response.json()

    async def finished(self, cycle_id: int) -> dict[str, Any]:
        """The cycle once decided, recorded and its commands sent."""
        await asyncio.wait_for(self.runtime.wait_idle(), WAIT)
        cycle: dict[str, Any] = await self.get(f"/api/v1/cycles/{cycle_id}")
        assert cycle["status"] == "done", cycle
        return cycle

    async def cycle(self, partition: str = "Physics") -> dict[str, Any]:
        submitted = await self.send("POST", "/api/v1/cycles", {"partition": partition}, 202)
        return await self.finished(submitted["id"])

    async def test_run(self, policy: str) -> dict[str, Any]:
        submitted = await self.send("POST", "/api/v1/test-runs", {"policy": policy}, 202)
        return await self.finished(submitted["id"])


def detox_settings(database_url: str, namespace: str, policy_files: list[Path], **over: Any) -> Any:
    from dynamo_detox.settings import DetoxSettings

    values: dict[str, Any] = {
        "database_url": database_url,
        "amqp_url": "memory://",
        "bus_namespace": namespace,
        "inventory_url": "http://inventory",
        "log_format": "console",
        "policy_files": policy_files,
        "cycle_interval": 0,
        "command_reply_timeout": 10,
        "admins": ["admin"],
        "volume_step": 0.02,
    }
    values.update(over)
    return DetoxSettings(**values)


@contextlib.asynccontextmanager
async def run_detox(
    inventory: RunningInventory,
    database_url: str,
    policy_files: list[Path],
    clock: Callable[[], float] | None = None,
    popularity_source: Any = None,
    **over: Any,
) -> AsyncIterator[RunningDetox]:
    from dynamo_detox.app import create_app

    bus = inventory.bus
    settings = detox_settings(database_url, bus.namespace, policy_files, **over)
    app = create_app(
        settings,
        bus=bus,
        inventory_http=inventory.client,
        clock=clock,
        popularity_source=popularity_source,
    )
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://detox") as client:
            running = RunningDetox(client=client, app=app, bus=bus)
            await eventually(lambda: running.runtime.readmodel.ready.is_set(), "read model")
            yield running


async def eventually(check: Callable[[], Awaitable[T] | T], what: str, within: float = WAIT) -> T:
    deadline = asyncio.get_running_loop().time() + within
    last: Any = None
    while True:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last  # type: ignore[no-any-return]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
        await asyncio.sleep(0.05)


@dataclass
class FakeTransfer:
    """Stands in for the transfer service where a test looks only at what detox asks of it:
    takes ``transfer.replica.delete.v1`` commands, records them and accepts them."""

    commands: list[tr.DeleteReplicaFiles] = field(default_factory=list)
    refuse: set[tuple[str, str]] = field(default_factory=set)
    """(dataset, site) pairs whose deletion it refuses."""

    async def start(self, bus: Bus) -> Any:
        await bus.declare_queue(
            QueueSpec("test.fake-transfer", (("commands", "transfer.replica.delete.v1"),))
        )

        async def handle(delivery: Delivery) -> None:
            command = tr.DeleteReplicaFiles.model_validate(delivery.envelope.data)
            refused = [r for r in command.requests if (r.dataset, r.site) in self.refuse]
            status = "rejected" if refused else "accepted"
            if not refused:
                self.commands.append(command)
            reply = tr.TransferCommandReply(
                command_id=delivery.envelope.id,
                status=status,
                tasks=len(command.requests),
                reason=f"refused {refused[0].dataset}" if refused else None,
            )
            await bus.reply(
                delivery,
                Envelope(
                    type="transfer.command.reply.v1",
                    source="/tests/fake-transfer",
                    correlation_id=delivery.envelope.id,
                    data=reply.model_dump(mode="json"),
                ),
            )

        return await bus.consume("test.fake-transfer", handle)

    @property
    def requests(self) -> list[tuple[str, str | None, str]]:
        return sorted(
            (r.dataset, r.block, r.site) for command in self.commands for r in command.requests
        )


async def collect_events(bus: Bus, sink: list[Envelope]) -> Any:
    await bus.declare_queue(QueueSpec("test.detox-events", (("events", "detox.#"),)))

    async def handle(delivery: Delivery) -> None:
        sink.append(delivery.envelope)

    return await bus.consume("test.detox-events", handle)


async def seed(
    inventory: RunningInventory,
    sites: dict[str, int],
    replicas: dict[str, list[tuple[str, int]]],
) -> None:
    """Disk sites with a Physics quota (bytes), the Physics partition of AnalysisOps, and per
    site its datasets (name, bytes: one closed block each) as complete AnalysisOps replicas.
    A dataset named at several sites has a replica at each."""
    await inventory.ok(
        "POST",
        "/api/v1/sites",
        {
            "sites": [
                {"name": name, "storage_type": "disk", "quotas": {"Physics": quota}}
                for name, quota in sites.items()
            ]
        },
    )
    await inventory.ok("POST", "/api/v1/groups", {"groups": [{"name": "AnalysisOps"}]})
    await inventory.ok(
        "POST",
        "/api/v1/partitions",
        {"partitions": [{"name": "Physics", "condition": PARTITION}]},
    )
    datasets: dict[str, int] = {}
    for held in replicas.values():
        for name, size in held:
            datasets[name] = size
    await inventory.ok(
        "POST",
        "/api/v1/datasets",
        {"datasets": [{"name": name} for name in datasets]},
    )
    await inventory.ok(
        "POST",
        "/api/v1/blocks",
        {
            "blocks": [
                {"dataset": name, "name": "b1", "size": size, "num_files": 1, "is_open": False}
                for name, size in datasets.items()
            ]
        },
    )
    await inventory.ok(
        "POST",
        "/api/v1/replicas",
        {
            "dataset_replicas": [
                {
                    "dataset": name,
                    "site": site,
                    "group": "AnalysisOps",
                    "complete": True,
                    "growing": False,
                }
                for site, held in replicas.items()
                for name, _ in held
            ]
        },
    )


async def replica_group(inventory: RunningInventory, dataset: str, site: str) -> str | None:
    response = await inventory.client.get(
        f"/api/v1/sites/{site}/replicas", params={"dataset": dataset}
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    return items[0]["group"] if items else None


async def site_usage(inventory: RunningInventory, site: str) -> dict[str, Any]:
    response = await inventory.client.get(f"/api/v1/sites/{site}")
    assert response.status_code == 200, response.text
    (usage,) = [u for u in response.json()["usage"] if u["partition"] == "Physics"]
    return dict(usage)
