"""kill -9 of the transfer service in the middle of copies, with every service a real process.

``dynamo serve inventory`` and ``dynamo serve transfer`` (direct backend) run as subprocesses
against one throw-away PostgreSQL database (each service owns its schema in it) and a private
RabbitMQ namespace. A block of 50 files, really written on a ``file://`` source site with the
sizes and adler32 the inventory records, is requested at a second site. A watcher thread
SIGKILLs the transfer process the moment it sees a destination file being written (shorter
than it will be) after at least ten are complete, so the kill lands in the middle of a copy,
not between two. What is on disk and in the database at that moment is recorded; a new
transfer process is then started on the same database and must finish the job:

* the block replica completes at the inventory, every destination file has the right bytes;
* no file is copied twice: files complete at the kill (recorded done, or finished but not yet
  recorded) keep their inode and mtime, and each file has exactly one successful attempt;
* the files cut off by the kill are replaced by whole copies;
* the transfer tables end with exactly one task per file, done, and nothing queued, held,
  submitted or unpublished.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from dynamo_common.bus.base import QueueSpec
from dynamo_common.bus.rabbitmq import RabbitBus
from dynamo_common.readmodel import EVENTS_PATTERN
from dynamo_common.settings import to_asyncpg_dsn
from tests.integration.conftest import RunningInventory
from tests.integration.test_transfer_support import (
    DS,
    Grid,
    adler32,
    content,
    eventually,
    inventory_block_replica,
    lfn,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

READY_TIMEOUT = 90.0
FINISH_TIMEOUT = 120.0
FILES = 50
MIN_COMPLETE_AT_KILL = 10
SOURCE, DESTINATION = "T1_SIGKILL_SRC", "T2_SIGKILL_DST"
TRANSFER_QUEUE = "transfer.inventory-events"

_DYNAMO_SCRIPT = Path(sys.executable).with_name("dynamo")


def _size(index: int) -> int:
    # Mostly 2 MB, every seventh file 16 MB: long enough writes that the watcher catches one
    # in flight, small enough to keep the test quick (about 200 MB per site).
    return (16 if index % 7 == 3 else 2) * 1_000_000 + index


# ----------------------------------------------------------------------------- processes


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """One ``dynamo serve <service>`` process; its output goes to a file (tail on failure)."""

    def __init__(self, service: str, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        serve = ["serve", service, "--host", "127.0.0.1", "--port", str(self.port)]
        if _DYNAMO_SCRIPT.exists():
            cmd = [str(_DYNAMO_SCRIPT), *serve]
        else:
            cmd = [sys.executable, "-c", "from dynamo_common.cli import main; main()", *serve]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                env={**env, "DYNAMO_HTTP_PORT": str(self.port)},
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    async def wait_ready(self) -> None:
        """Until /readyz answers 200 (database, bus and, for the transfer service, its copy of
        the inventory loaded)."""
        start = time.monotonic()
        last = "no answer yet"
        async with httpx.AsyncClient(base_url=self.url, timeout=5.0) as client:
            while time.monotonic() - start < READY_TIMEOUT:
                if not self.alive:
                    raise AssertionError(
                        f"{self.name} exited with {self.proc.returncode} before it was "
                        f"ready:\n{self.tail()}"
                    )
                try:
                    response = await client.get("/readyz")
                    if response.status_code == 200:
                        took = time.monotonic() - start
                        print(f"{self.name} (pid {self.pid}) ready in {took:.1f} s")
                        return
                    last = f"{response.status_code} {response.text[:300]}"
                except httpx.HTTPError as exc:
                    last = repr(exc)
                await asyncio.sleep(0.2)
        raise AssertionError(f"{self.name} not ready ({last}):\n{self.tail()}")

    def kill(self) -> None:
        if self.alive:
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=15)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


@dataclass
class Stack:
    env: dict[str, str]
    workdir: Path
    services: list[Service] = field(default_factory=list)

    def start(self, service: str, name: str, **env: str) -> Service:
        process = Service(service, name, {**self.env, **env}, self.workdir)
        self.services.append(process)
        return process


@pytest.fixture
async def stack(
    database_url: str, amqp_url: str, rabbit_bus: RabbitBus, tmp_path: Path
) -> AsyncIterator[Stack]:
    """Starts service processes; SIGKILLs every one still running afterwards (before the
    database and the namespace go) and prints the tail of their logs."""
    from dynamo_inventory.consumers.commands import COMMAND_QUEUE as INVENTORY_COMMANDS
    from dynamo_transfer.consumers.commands import COMMAND_QUEUE as TRANSFER_COMMANDS

    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMO_")}
    env.update(
        DYNAMO_DATABASE_URL=database_url,
        DYNAMO_AMQP_URL=amqp_url,
        DYNAMO_BUS_NAMESPACE=rabbit_bus.namespace,
        DYNAMO_LOG_FORMAT="console",
        DYNAMO_LOG_LEVEL="INFO",
        DYNAMO_RELAY_POLL_INTERVAL="0.2",
        PYTHONUNBUFFERED="1",
    )
    # The services declare these themselves; declared here too (same arguments), they are on
    # the list of queues the rabbit_bus fixture deletes afterwards.
    for spec in (
        INVENTORY_COMMANDS,
        TRANSFER_COMMANDS,
        QueueSpec(TRANSFER_QUEUE, (("events", EVENTS_PATTERN),)),
    ):
        await rabbit_bus.declare_queue(spec)
    the_stack = Stack(env=env, workdir=tmp_path)
    try:
        yield the_stack
    finally:
        for service in the_stack.services:
            with contextlib.suppress(Exception):
                service.kill()
        for service in the_stack.services:
            print(
                f"----- {service.name} (pid {service.pid}, exit {service.proc.returncode}) "
                f"log tail -----\n{service.tail(80)}"
            )


@pytest.fixture
def grid(tmp_path: Path) -> Iterator[Grid]:
    the_grid = Grid(tmp_path / "sites")
    try:
        yield the_grid
    finally:
        # About 400 MB: not left for pytest's retention of old temporary directories.
        shutil.rmtree(the_grid.root, ignore_errors=True)


def _transfer_env(inventory: Service) -> dict[str, str]:
    return {
        "DYNAMO_INVENTORY_URL": inventory.url,
        "DYNAMO_BACKEND": "direct",
        "DYNAMO_DIRECT_PARALLEL_PER_LINK": "2",
        "DYNAMO_DIRECT_PARALLEL_TOTAL": "2",
        "DYNAMO_MAX_ACTIVE_PER_LINK": "8",
        "DYNAMO_MAX_BATCH": "4",
        "DYNAMO_POLL_INTERVAL": "0.5",
        "DYNAMO_PROGRESS_INTERVAL": "0.5",
        "DYNAMO_RETRY_BASE_SECONDS": "0.5",
        "DYNAMO_RETRY_MAX_SECONDS": "2",
        "DYNAMO_READ_MODEL_QUEUE": TRANSFER_QUEUE,
    }


# ------------------------------------------------------------------------------ the grid


async def _register(inventory: RunningInventory, grid: Grid) -> dict[str, bytes]:
    """Two file:// sites, one closed block of FILES files written at the source with the
    registered size and adler32, and its complete replica at the source."""
    await inventory.ok(
        "POST", "/api/v1/sites", {"sites": [grid.site(SOURCE), grid.site(DESTINATION)]}
    )
    await inventory.ok(
        "POST", "/api/v1/datasets", {"datasets": [{"name": DS, "data_type": "data"}]}
    )
    await inventory.ok("POST", "/api/v1/blocks", {"blocks": [{"dataset": DS, "name": "b1"}]})
    files = {lfn("b1", i): content("b1", i, _size(i)) for i in range(FILES)}
    for name, data in files.items():
        grid.write(SOURCE, name, data)
    await inventory.ok(
        "POST",
        "/api/v1/files",
        {
            "files": [
                {"dataset": DS, "block": "b1", "lfn": n, "size": len(d), "adler32": adler32(d)}
                for n, d in files.items()
            ]
        },
    )
    await inventory.ok(
        "POST", "/api/v1/blocks", {"blocks": [{"dataset": DS, "name": "b1", "is_open": False}]}
    )
    await inventory.ok(
        "POST",
        "/api/v1/replicas",
        {"block_replicas": [{"dataset": DS, "block": "b1", "site": SOURCE}]},
    )
    return files


# ------------------------------------------------------------------------------ the kill


@dataclass
class KillWatch:
    """Scans the destination directory without pause and SIGKILLs ``pid`` as soon as a file
    is being written while at least ``min_complete`` others are whole."""

    directory: Path
    sizes: dict[str, int]  # file name -> final size
    pid: int
    min_complete: int
    stop: threading.Event = field(default_factory=threading.Event)
    killed_at: float | None = None
    in_flight: list[str] = field(default_factory=list)

    def run(self) -> None:
        while not self.stop.is_set():
            seen = self._scan()
            whole = [n for n, size in seen.items() if size == self.sizes.get(n)]
            writing = [n for n, size in seen.items() if size < self.sizes.get(n, 0)]
            if len(whole) >= self.min_complete and writing:
                os.kill(self.pid, signal.SIGKILL)
                self.killed_at = time.time()
                self.in_flight = sorted(writing)
                return
            if len(whole) == len(self.sizes):
                return  # every copy finished without one caught in flight

    def _scan(self) -> dict[str, int]:
        seen: dict[str, int] = {}
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return seen
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                seen[entry.name] = entry.stat().st_size
        return seen


@dataclass(frozen=True)
class OnDisk:
    identity: tuple[int, int] | None  # (inode, mtime_ns) when the file is whole and right
    present: bool


def _on_disk(path: Path, data: bytes) -> OnDisk:
    try:
        st = path.stat()
        body = path.read_bytes()
    except FileNotFoundError:
        return OnDisk(None, False)
    if len(body) == len(data) and adler32(body) == adler32(data):
        return OnDisk((st.st_ino, st.st_mtime_ns), True)
    return OnDisk(None, True)


async def _rows(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


# ------------------------------------------------------------------------------ the test


async def test_kill_9_in_the_middle_of_copies_loses_nothing_and_copies_nothing_twice(
    stack: Stack, grid: Grid, database_url: str, rabbit_bus: RabbitBus
) -> None:
    inventory_process = stack.start("inventory", "inventory", DYNAMO_CATCH_UP_INTERVAL="0.2")
    await inventory_process.wait_ready()
    async with httpx.AsyncClient(base_url=inventory_process.url, timeout=30.0) as http:
        inventory = RunningInventory(client=http, app=None, bus=rabbit_bus)
        files = await _register(inventory, grid)

        first = stack.start("transfer", "transfer-1", **_transfer_env(inventory_process))
        await first.wait_ready()
        destination_dir = grid.path(DESTINATION, lfn("b1", 0)).parent
        watch = KillWatch(
            directory=destination_dir,
            sizes={name.rsplit("/", 1)[1]: len(data) for name, data in files.items()},
            pid=first.pid,
            min_complete=MIN_COMPLETE_AT_KILL,
        )
        watcher = threading.Thread(target=watch.run, name="kill-watch", daemon=True)
        watcher.start()
        try:
            async with httpx.AsyncClient(base_url=first.url, timeout=60.0) as client:
                response = await client.post(
                    "/api/v1/transfers/requests",
                    json={"requests": [{"dataset": DS, "block": "b1", "site": DESTINATION}]},
                )
            assert response.status_code == 200, response.text
            assert response.json()["tasks"] == FILES, response.json()
            await eventually(lambda: not watcher.is_alive(), "the kill", within=FINISH_TIMEOUT)
        finally:
            watch.stop.set()
            watcher.join(timeout=10)
        assert watch.killed_at is not None, (
            "every copy finished before one could be caught in flight; the kill never happened"
        )
        first.proc.wait(timeout=15)
        assert first.proc.returncode == -signal.SIGKILL

        # The dead process's state, on disk and in the database.
        at_kill = {
            name: _on_disk(grid.path(DESTINATION, name), data) for name, data in files.items()
        }
        states = {
            r["lfn"]: r["state"]
            for r in await _rows(database_url, "SELECT lfn, state FROM transfer.tasks")
        }
        assert sorted(states) == sorted(files), "one task per file, before the kill too"
        whole = {name for name, disk in at_kill.items() if disk.identity is not None}
        cut_off = {name for name, disk in at_kill.items() if disk.present and not disk.identity}
        done_before = {name for name, state in states.items() if state == "done"}
        submitted = {name for name, state in states.items() if state == "submitted"}
        unrecorded = whole - done_before
        print(
            f"at the kill: {len(done_before)} done, {len(submitted)} submitted "
            f"({len(unrecorded)} of them whole on disk, {len(cut_off)} cut off), "
            f"{len(files) - len(done_before) - len(submitted)} waiting; writing: "
            f"{watch.in_flight}"
        )
        assert cut_off, "the kill was meant to cut a copy off"
        # Recorded done means whole on disk; a file being written was never recorded done.
        assert done_before <= whole, sorted(done_before - whole)
        assert cut_off <= submitted, {n: states[n] for n in cut_off}
        assert unrecorded <= submitted, {n: states[n] for n in unrecorded}

        # A new process on the same database takes over.
        second = stack.start("transfer", "transfer-2", **_transfer_env(inventory_process))
        await second.wait_ready()

        async def replica_done() -> dict[str, Any] | None:
            br = await inventory_block_replica(inventory, "b1", DESTINATION)
            return br if br and br["is_complete"] else None

        br = await eventually(replica_done, "b1 complete at the destination", FINISH_TIMEOUT)
        assert br["num_files"] == FILES
        assert br["size"] == sum(len(d) for d in files.values())

        for name, data in files.items():
            assert grid.read(DESTINATION, name) == data, f"{name} is wrong at the destination"
            identity = at_kill[name].identity
            if identity is not None:
                st = grid.path(DESTINATION, name).stat()
                assert (st.st_ino, st.st_mtime_ns) == identity, f"{name} was written again"
        leftovers = sorted(p.name for p in destination_dir.iterdir())
        assert leftovers == sorted(n.rsplit("/", 1)[1] for n in files), leftovers

        # The database: one task per file, done; one successful attempt per file; nothing
        # left behind anywhere.
        tasks = await _rows(
            database_url,
            "SELECT lfn, state, count(*) OVER (PARTITION BY lfn) AS n FROM transfer.tasks",
        )
        assert sorted(r["lfn"] for r in tasks) == sorted(files)
        assert {(r["state"], r["n"]) for r in tasks} == {("done", 1)}
        history = await _rows(
            database_url,
            "SELECT task_id, lfn, result, bytes, error, finished FROM transfer.history",
        )
        assert [h for h in history if h["result"] != "done"] == []
        done = {h["lfn"]: h for h in history}
        assert len(done) == len(history) == FILES, "a file done twice (or never)"
        for name in done_before:
            assert done[name]["finished"].timestamp() <= watch.killed_at
        for name in unrecorded:
            # Settled by looking at the destination, not copied again.
            assert done[name]["bytes"] == 0, done[name]
            assert "already at the destination" in (done[name]["error"] or ""), done[name]
        for name in cut_off:
            assert done[name]["bytes"] == len(files[name]), done[name]
        assert f"resuming {len(submitted)} interrupted copies" in second.log_text()

        replicas = await _rows(database_url, "SELECT state FROM transfer.replicas")
        assert [r["state"] for r in replicas] == ["complete"]

        async def nothing_unpublished() -> bool:
            rows = await _rows(
                database_url, "SELECT count(*) FROM transfer.outbox WHERE NOT published"
            )
            return rows[0][0] == 0

        await eventually(nothing_unpublished, "every event published", 30)
        async with httpx.AsyncClient(base_url=second.url, timeout=30.0) as client:
            for path in ("/api/v1/transfers/current", "/api/v1/transfers/held"):
                page = (await client.get(path)).json()
                assert page["total"] == 0, (path, page)
            replicas_page = (await client.get("/api/v1/transfers/replicas")).json()
            assert replicas_page["total"] == 0, replicas_page
        assert second.alive and inventory_process.alive
