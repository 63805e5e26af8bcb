"""Shared helpers of the consistency service's integration tests (no tests here).

A test runs the inventory, the transfer service and the consistency service in-process on one
in-process bus, against a throw-away PostgreSQL database, with sites whose storage is real:
local directories reached through ``file://`` PFNs, or XRootD servers on loopback reached
through ``root://`` PFNs. Files are written with the size and adler32 the inventory holds,
and dated a day back, so the checks (with a grace period of a few seconds) judge them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from asgi_lifespan import LifespanManager

from dynamo_common.bus.base import Bus, Delivery, QueueSpec, Subscription
from dynamo_common.messages.envelope import Envelope
from tests.integration.conftest import RunningInventory

DS = "/Consistency/Run2024A-v1/AOD"
GROUP = "AnalysisOps"
WAIT = 60.0
DAY = 86400.0
GRACE = 2.0
T = TypeVar("T")


def adler32(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def lfn(block: str, index: int) -> str:
    return f"/store/data/Consistency/AOD/{block}/f{index:03d}.root"


def content(block: str, index: int, size: int = 4000) -> bytes:
    seed = f"{block}:{index}:".encode()
    return (seed * (size // len(seed) + 1))[:size]


@dataclass
class SiteStorage:
    """One site's storage: ``root`` is the local directory that holds its ``/store``."""

    name: str
    root: Path
    template: str  # the PFN of /store/$1
    chown: Callable[[Path], None] | None = None

    def spec(self, **over: Any) -> dict[str, Any]:
        protocol = self.template.split(":", 1)[0]
        body: dict[str, Any] = {
            "name": self.name,
            "storage_type": "disk",
            "status": "ready",
            "protocols": [
                {"name": protocol, "rules": [{"match": "/store/(.*)", "result": self.template}]}
            ],
        }
        body.update(over)
        return body

    def path(self, name: str) -> Path:
        return self.root / name.lstrip("/")

    def write(self, name: str, data: bytes, age: float | None = DAY) -> Path:
        """Write a file behind everyone's back, dated ``age`` seconds ago (None: now)."""
        target = self.path(name)
        created = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        for made in [target, *created]:
            self._own(made)
        if age is not None:
            when = time.time() - age
            os.utime(target, (when, when))
        return target

    def mkdirs(self, name: str) -> Path:
        target = self.path(name)
        created = [p for p in [target, *target.parents] if not p.exists()]
        target.mkdir(parents=True, exist_ok=True)
        for made in created:
            self._own(made)
        return target

    def backdate(self, age: float = DAY) -> None:
        """Date every file and directory of the site ``age`` seconds back."""
        when = time.time() - age
        for directory, dirs, files in os.walk(self.root):
            for name in [*dirs, *files]:
                os.utime(os.path.join(directory, name), (when, when))

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def has(self, name: str, data: bytes) -> bool:
        """Whether the file is there with exactly ``data`` (a copy may be half written)."""
        try:
            return self.path(name).read_bytes() == data
        except FileNotFoundError:
            return False

    def _own(self, path: Path) -> None:
        if self.chown is not None:
            self.chown(path)


def file_site(base: Path, name: str) -> SiteStorage:
    root = base / name
    root.mkdir(parents=True, exist_ok=True)
    return SiteStorage(name, root, f"file://{root}/store/$1")


def xrootd_site(server: Any, name: str) -> SiteStorage:
    return SiteStorage(name, server.data_dir, f"{server.url}/store/$1", server.give_to_server)


async def seed(
    inventory: RunningInventory,
    sites: list[SiteStorage],
    holders: dict[str, list[str]],
    files_per_block: int = 3,
) -> dict[str, bytes]:
    """Sites, one dataset whose blocks (``holders``: block -> sites) are closed, with complete
    replicas owned by AnalysisOps whose files are really on the sites' storage."""
    await inventory.ok("POST", "/api/v1/sites", {"sites": [s.spec() for s in sites]})
    await inventory.ok("POST", "/api/v1/groups", {"groups": [{"name": GROUP}]})
    await inventory.ok(
        "POST", "/api/v1/datasets", {"datasets": [{"name": DS, "data_type": "data"}]}
    )
    await inventory.ok(
        "POST", "/api/v1/blocks", {"blocks": [{"dataset": DS, "name": b} for b in holders]}
    )
    by_name = {s.name: s for s in sites}
    written: dict[str, bytes] = {}
    specs = []
    for block, at in holders.items():
        for i in range(files_per_block):
            name, data = lfn(block, i), content(block, i, 4000 + i)
            written[name] = data
            specs.append(
                {
                    "dataset": DS,
                    "block": block,
                    "lfn": name,
                    "size": len(data),
                    "adler32": adler32(data),
                }
            )
            for site in at:
                by_name[site].write(name, data)
    await inventory.ok("POST", "/api/v1/files", {"files": specs})
    await inventory.ok(
        "POST",
        "/api/v1/blocks",
        {"blocks": [{"dataset": DS, "name": b, "is_open": False} for b in holders]},
    )
    await inventory.ok(
        "POST",
        "/api/v1/replicas",
        {
            "block_replicas": [
                {"dataset": DS, "block": b, "site": s, "group": GROUP}
                for b, at in holders.items()
                for s in at
            ]
        },
    )
    for site in sites:
        site.backdate()
    # The replicas were just created: they are in flight until the grace period has passed.
    await asyncio.sleep(GRACE + 0.2)
    return written


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
        await asyncio.sleep(0.1)


@dataclass
class Recorder:
    """Copies of the messages sent on the bus to some routing keys."""

    messages: list[Envelope] = field(default_factory=list)
    subscription: Subscription | None = None

    def of_type(self, type_: str) -> list[Envelope]:
        return [m for m in self.messages if m.type == type_]

    def lfns(self, type_: str) -> list[str]:
        return sorted(f["lfn"] for m in self.of_type(type_) for f in m.data["files"])


async def record(bus: Bus, exchange: str, pattern: str) -> Recorder:
    recorder = Recorder()
    name = f"test.record.{uuid.uuid4().hex[:8]}"
    await bus.declare_queue(QueueSpec(name, ((exchange, pattern),)))  # type: ignore[arg-type]

    async def handle(delivery: Delivery) -> None:
        recorder.messages.append(delivery.envelope)

    recorder.subscription = await bus.consume(name, handle)
    return recorder


@dataclass
class RunningConsistency:
    client: httpx.AsyncClient
    app: Any

    @property
    def runtime(self) -> Any:
        return self.app.state.consistency

    async def get(self, path: str, status: int = 200, **params: Any) -> Any:
        response = await self.client.get(f"/api/v1/consistency{path}", params=params)
        assert response.status_code == status, response.text
        return response.json()

    async def send(self, method: str, path: str, body: Any = None, status: int = 202) -> Any:
        response = await self.client.request(method, f"/api/v1/consistency{path}", json=body)
        assert response.status_code == status, response.text
        return response.json()

    async def latest_run(self, site: str) -> dict[str, Any] | None:
        page = await self.get(f"/sites/{site}/runs", limit=1)
        return page["items"][0] if page["items"] else None

    async def check(self, site: str, dry_run: bool = False) -> dict[str, Any]:
        """Ask for a check of ``site`` and return its run once it has finished."""
        before = await self.latest_run(site)
        await self.send("POST", f"/sites/{site}/check", {"dry_run": dry_run})

        async def finished() -> dict[str, Any] | None:
            run = await self.latest_run(site)
            if run is None or (before is not None and run["id"] == before["id"]):
                return None
            return run if run["status"] != "running" else None

        return await eventually(finished, f"a check of {site}")

    async def approve(self, site: str, run_id: int, first_strike: bool = False) -> dict[str, Any]:
        await self.send(
            "POST",
            f"/sites/{site}/approve",
            {"run_id": run_id, "include_first_strike": first_strike},
        )

        async def approved() -> dict[str, Any] | None:
            run = await self.get(f"/runs/{run_id}")
            return run if run["action"] == "approved" else None

        return await eventually(approved, f"approval of run {run_id}")

    async def files(self, run_id: int, kind: str) -> list[dict[str, Any]]:
        page = await self.get(f"/runs/{run_id}/{kind}", limit=10_000)
        return list(page["items"])

    async def text(self, run_id: int, kind: str) -> list[str]:
        response = await self.client.get(
            f"/api/v1/consistency/runs/{run_id}/{kind}", params={"format": "text"}
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        return response.text.splitlines()


def consistency_settings(database_url: str, namespace: str, **over: Any) -> Any:
    from dynamo_consistency.settings import ConsistencySettings

    values: dict[str, Any] = {
        "database_url": database_url,
        "amqp_url": "memory://",
        "bus_namespace": namespace,
        "inventory_url": "http://inventory",
        "log_format": "console",
        "grace_period": GRACE,
        "scheduled_checks": False,
        "schedule_interval": 0.2,
        "relay_poll_interval": 0.2,
        "listing_timeout": 20.0,
        "listing_retries": 1,
        "command_timeout": 30.0,
        "worker_id": "worker-1",
        "read_model_queue": "consistency.inventory-events",
    }
    values.update(over)
    return ConsistencySettings(**values)


@contextlib.asynccontextmanager
async def run_consistency(
    inventory: RunningInventory, database_url: str, **over: Any
) -> AsyncIterator[RunningConsistency]:
    from dynamo_consistency.app import create_app

    settings = consistency_settings(database_url, inventory.bus.namespace, **over)
    app = create_app(settings, bus=inventory.bus, inventory_http=inventory.client)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://consistency") as client:
            running = RunningConsistency(client=client, app=app)
            await eventually(lambda: running.runtime.readmodel.ready.is_set(), "read model")
            yield running


@contextlib.asynccontextmanager
async def run_transfer(inventory: RunningInventory, database_url: str) -> AsyncIterator[Any]:
    """The transfer service, copying with gfal2 directly (no FTS3 here)."""
    from dynamo_transfer.app import create_app
    from dynamo_transfer.settings import TransferSettings

    settings = TransferSettings(
        database_url=database_url,
        amqp_url="memory://",
        bus_namespace=inventory.bus.namespace,
        inventory_url="http://inventory",
        log_format="console",
        poll_interval=0.2,
        progress_interval=0.3,
        relay_poll_interval=0.2,
        retry_base_seconds=0.2,
        retry_max_seconds=1.0,
        max_attempts=3,
        read_model_queue="transfer.inventory-events",
    )
    app = create_app(settings, bus=inventory.bus, inventory_http=inventory.client)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60):
        rt = app.state.transfer
        await eventually(lambda: rt.readmodel.ready.is_set() and rt.leader, "transfer ready")
        yield app


async def block_replica(inventory: RunningInventory, block: str, site: str) -> dict[str, Any]:
    response = await inventory.client.get("/api/v1/dataset", params={"name": DS})
    assert response.status_code == 200, response.text
    for replica in response.json()["replicas"]:
        if replica["site"] == site:
            for br in replica["block_replicas"] or []:
                if br["block"] == block:
                    return dict(br)
    raise AssertionError(f"no replica of {block} at {site}")


def names(items: Iterable[dict[str, Any]]) -> list[str]:
    return sorted(i["path"] for i in items)
