"""Shared fixtures and helpers of the transfer service's integration tests (no tests here).

A test runs the inventory and the transfer service in-process on one in-process bus, against
a throw-away PostgreSQL database, with sites whose storage is a real local directory reached
through ``file://`` PFNs (rule ``/store/(.*)`` -> ``file://<tmp>/<site>/store/$1``). Files are
real: written with the size and adler32 registered in the inventory.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from asgi_lifespan import LifespanManager

from dynamo_common.bus.base import Bus, Delivery, QueueSpec
from dynamo_common.messages.envelope import Envelope
from tests.integration.conftest import RunningInventory

DS = "/TransferTest/Run2024A-v1/AOD"
WAIT = 30.0
T = TypeVar("T")


def adler32(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


@dataclass
class Grid:
    """Sites as directories, and the files written into them."""

    root: Path

    def site(self, name: str, **over: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "storage_type": "disk",
            "status": "ready",
            "protocols": [
                {
                    "name": "file",
                    "rules": [
                        {"match": "/store/(.*)", "result": f"file://{self.root}/{name}/store/$1"}
                    ],
                }
            ],
        }
        body.update(over)
        return body

    def path(self, site: str, lfn: str) -> Path:
        return self.root / site / lfn.lstrip("/")

    def write(self, site: str, lfn: str, data: bytes) -> None:
        path = self.path(site, lfn)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def read(self, site: str, lfn: str) -> bytes:
        return self.path(site, lfn).read_bytes()


def lfn(block: str, index: int) -> str:
    return f"/store/data/TransferTest/AOD/{block}/f{index:03d}.root"


def content(block: str, index: int, size: int = 20_000) -> bytes:
    seed = f"{block}:{index}:".encode()
    return (seed * (size // len(seed) + 1))[:size]


@dataclass
class RunningTransfer:
    client: httpx.AsyncClient
    app: Any
    bus: Bus
    events: list[Envelope] = field(default_factory=list)

    @property
    def runtime(self) -> Any:
        return self.app.state.transfer

    async def command(self, type_: str, data: dict[str, Any], cid: str | None = None) -> Any:
        from dynamo_common.messages import transfer as tr

        envelope = Envelope(id=cid or str(uuid.uuid4()), type=type_, source="/tests", data=data)
        reply = await self.bus.request(envelope, timeout=WAIT)
        return tr.TransferCommandReply.model_validate(reply.data)

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.client.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    async def post(self, path: str, body: Any, status: int = 200) -> Any:
        response = await self.client.post(path, json=body)
        assert response.status_code == status, response.text
        return response.json()


def transfer_settings(database_url: str, namespace: str, **over: Any) -> Any:
    from dynamo_transfer.settings import TransferSettings

    values: dict[str, Any] = {
        "database_url": database_url,
        "amqp_url": "memory://",
        "bus_namespace": namespace,
        "inventory_url": "http://inventory",
        "log_format": "console",
        "poll_interval": 0.2,
        "progress_interval": 0.3,
        "relay_poll_interval": 0.2,
        "retry_base_seconds": 0.2,
        "retry_max_seconds": 1.0,
        "max_attempts": 3,
        "read_model_queue": "transfer.inventory-events",
    }
    values.update(over)
    return TransferSettings(**values)


@contextlib.asynccontextmanager
async def run_transfer(
    inventory: RunningInventory, database_url: str, **over: Any
) -> AsyncIterator[RunningTransfer]:
    from dynamo_transfer.app import create_app

    bus = inventory.bus
    settings = transfer_settings(database_url, bus.namespace, **over)
    app = create_app(settings, bus=bus, inventory_http=inventory.client)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://transfer") as client:
            running = RunningTransfer(client=client, app=app, bus=bus)
            await eventually(lambda: _taking_commands(running), "transfer service ready")
            yield running


async def _taking_commands(running: RunningTransfer) -> bool:
    rt = running.runtime
    return bool(rt.readmodel.ready.is_set() and rt.leader)


async def eventually(check: Callable[[], Awaitable[T] | T], what: str, within: float = WAIT) -> T:
    """Poll ``check`` (sync or async) until it returns something truthy; fail with ``what``
    after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    last: Any = None
    while True:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
        await asyncio.sleep(0.1)


async def collect_events(bus: Bus, sink: list[Envelope], name: str = "test.transfer-events") -> Any:
    await bus.declare_queue(QueueSpec(name, (("events", "transfer.#"),)))

    async def handle(delivery: Delivery) -> None:
        sink.append(delivery.envelope)

    return await bus.consume(name, handle)


async def seed_grid(
    inventory: RunningInventory,
    grid: Grid,
    *,
    sites: list[dict[str, Any]],
    blocks: dict[str, int],
    holders: list[str],
    size: int = 20_000,
    write: bool = True,
) -> dict[str, list[tuple[str, bytes]]]:
    """Sites, one dataset with ``blocks`` (name -> number of files), closed, with complete
    replicas at ``holders`` whose files are really written there."""
    await inventory.ok("POST", "/api/v1/sites", {"sites": sites})
    await inventory.ok(
        "POST", "/api/v1/datasets", {"datasets": [{"name": DS, "data_type": "data"}]}
    )
    await inventory.ok(
        "POST", "/api/v1/blocks", {"blocks": [{"dataset": DS, "name": b} for b in blocks]}
    )
    files: dict[str, list[tuple[str, bytes]]] = {}
    specs = []
    for block, count in blocks.items():
        files[block] = []
        for i in range(count):
            name, data = lfn(block, i), content(block, i, size + i)
            files[block].append((name, data))
            specs.append(
                {
                    "dataset": DS,
                    "block": block,
                    "lfn": name,
                    "size": len(data),
                    "adler32": adler32(data),
                }
            )
            if write:
                for site in holders:
                    grid.write(site, name, data)
    await inventory.ok("POST", "/api/v1/files", {"files": specs})
    await inventory.ok(
        "POST",
        "/api/v1/blocks",
        {"blocks": [{"dataset": DS, "name": b, "is_open": False} for b in blocks]},
    )
    if holders:
        await inventory.ok(
            "POST",
            "/api/v1/replicas",
            {
                "block_replicas": [
                    {"dataset": DS, "block": b, "site": s} for b in blocks for s in holders
                ]
            },
        )
    return files


async def inventory_block_replica(
    inventory: RunningInventory, block: str, site: str
) -> dict[str, Any] | None:
    response = await inventory.client.get("/api/v1/dataset", params={"name": DS})
    assert response.status_code == 200, response.text
    for replica in response.json()["replicas"]:
        if replica["site"] != site:
            continue
        for br in replica["block_replicas"] or []:
            if br["block"] == block:
                return dict(br)
    return None


async def replica_complete(inventory: RunningInventory, block: str, site: str) -> bool:
    br = await inventory_block_replica(inventory, block, site)
    return bool(br and br["is_complete"])
