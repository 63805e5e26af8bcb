"""Crash recovery of the inventory writer, with the service running as real processes.

Every test starts ``dynamo serve inventory`` as a subprocess against a throw-away PostgreSQL
database and a private RabbitMQ namespace, talks to it over the bus like any other service
(its own ``RabbitBus``) and checks the outcome in PostgreSQL directly:

* kill -9 in the middle of a stream of commands loses no acknowledged command, applies none
  twice and publishes every event, in order, with gap-free sequence numbers;
* a standby instance takes over when the active writer dies;
* a redelivered command gets the recorded reply and changes nothing (also after a restart);
* a database outage (simulated by a TCP proxy in front of PostgreSQL, so the shared server
  other tests use is never touched) delays commands but loses none.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import orjson
import pytest

from dynamo_common.bus.base import Delivery, QueueSpec, RequestTimeout
from dynamo_common.bus.rabbitmq import RabbitBus
from dynamo_common.messages import inventory as inv
from dynamo_common.messages.envelope import Envelope
from dynamo_common.messages.registry import InventoryCommand as C
from dynamo_common.messages.types import NO_GROUP
from dynamo_common.model.apply import apply_sequenced
from dynamo_common.model.objects import Inventory
from dynamo_common.model.snapshot import iter_records
from dynamo_common.readmodel import ReadModelClient
from dynamo_inventory.consumers.commands import COMMAND_QUEUE
from tests.factories import grid

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SOURCE = "/tests/crash-recovery"
GROUP = "AnalysisOps"
READY_TIMEOUT = 90.0  # a cold start on a loaded 2-core machine can take a while
# One bus.request. A timed-out command is retried with the same id: short enough that commands
# sent while no writer runs are retried (and answered once, from the record, for the rest).
ATTEMPT_TIMEOUT = 3.0
COMMAND_DEADLINE = 120.0  # give up on a command (and fail) after this long

_DYNAMO_SCRIPT = Path(sys.executable).with_name("dynamo")


# ----------------------------------------------------------------------------- processes


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """One ``dynamo serve inventory`` process; output goes to a file (tail shown on failure)."""

    def __init__(
        self, name: str, env: dict[str, str], workdir: Path, port: int | None = None
    ) -> None:
        self.name = name
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        serve = ["serve", "inventory", "--host", "127.0.0.1", "--port", str(self.port)]
        if _DYNAMO_SCRIPT.exists():
            cmd = [str(_DYNAMO_SCRIPT), *serve]
        else:
            cmd = [sys.executable, "-c", "from dynamo_common.cli import main; main()", *serve]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                env=env,
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

    async def wait_ready(self, within: float = READY_TIMEOUT) -> float:
        """Poll /readyz until 200; returns the seconds it took."""
        start = time.monotonic()
        last = "no answer yet"
        async with httpx.AsyncClient(base_url=self.url, timeout=5.0) as client:
            while time.monotonic() - start < within:
                if not self.alive:
                    raise AssertionError(
                        f"{self.name} exited with {self.proc.returncode} "
                        f"before it was ready:\n{self.tail()}"
                    )
                try:
                    response = await client.get("/readyz")
                    if response.status_code == 200:
                        return time.monotonic() - start
                    last = f"{response.status_code} {response.text[:300]}"
                except httpx.HTTPError as exc:
                    last = repr(exc)
                await asyncio.sleep(0.2)
        raise AssertionError(f"{self.name} not ready after {within:.0f} s ({last}):\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, connections just drop."""
        if self.alive:
            os.kill(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=15)

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Launcher:
    env: dict[str, str]
    workdir: Path
    processes: list[ServiceProcess] = field(default_factory=list)
    # Async callables run at teardown, before the processes are killed.
    cleanups: list[Any] = field(default_factory=list)

    def start(self, name: str, port: int | None = None, **env: str) -> ServiceProcess:
        process = ServiceProcess(name, {**self.env, **env}, self.workdir, port)
        self.processes.append(process)
        return process

    async def start_ready(self, name: str, port: int | None = None, **env: str) -> ServiceProcess:
        process = self.start(name, port, **env)
        took = await process.wait_ready()
        print(f"{name} (pid {process.pid}) ready after {took:.1f} s")
        return process

    def kill_all(self) -> None:
        for process in self.processes:
            with contextlib.suppress(Exception):
                process.kill()


@pytest.fixture
async def launcher(
    database_url: str, amqp_url: str, rabbit_bus: RabbitBus, tmp_path: Path
) -> AsyncIterator[Launcher]:
    """Starts service processes; kills every one of them afterwards (before the database and
    the namespace are dropped) and prints the tail of their logs (shown when a test fails)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMO_")}
    env.update(
        DYNAMO_DATABASE_URL=database_url,
        DYNAMO_AMQP_URL=amqp_url,
        DYNAMO_BUS_NAMESPACE=rabbit_bus.namespace,
        DYNAMO_LOG_FORMAT="console",
        DYNAMO_LOG_LEVEL="INFO",
        DYNAMO_RELAY_POLL_INTERVAL="0.2",
        DYNAMO_CATCH_UP_INTERVAL="0.2",
        PYTHONUNBUFFERED="1",
    )
    # The service declares its command queue itself; declaring it here as well (same
    # arguments) puts it on the list of queues the rabbit_bus fixture deletes afterwards.
    await rabbit_bus.declare_queue(COMMAND_QUEUE)
    the_launcher = Launcher(env=env, workdir=tmp_path)
    try:
        yield the_launcher
    finally:
        for cleanup in reversed(the_launcher.cleanups):
            try:
                await asyncio.wait_for(cleanup(), 30)
            except Exception as exc:
                print(f"cleanup {cleanup!r} failed: {exc!r}")
        the_launcher.kill_all()
        for process in the_launcher.processes:
            print(
                f"----- {process.name} (pid {process.pid}, exit {process.proc.returncode}) "
                f"log tail -----\n{process.tail(80)}"
            )


# ---------------------------------------------------------------------------- the bus side


@dataclass
class EventLog:
    """Everything a follower's queue received, in order of arrival (duplicates included)."""

    received: list[Envelope] = field(default_factory=list)
    # Called on every arrival (before the handler returns): lets a test act at the moment an
    # event is confirmed to the relay, before the relay marks it published.
    on_event: Any = None

    async def handle(self, delivery: Delivery) -> None:
        # Appended before the first await: the order of this list is the order of arrival.
        self.received.append(delivery.envelope)
        if self.on_event is not None:
            self.on_event()

    def seqs(self) -> set[int]:
        return {e.seq for e in self.received if e.seq is not None}

    def first_arrivals(self) -> tuple[list[Envelope], int]:
        """Events with duplicates (same seq) removed, first arrival kept; and how many
        duplicates were removed. A duplicate must be the very same event."""
        seen: dict[int, Envelope] = {}
        ordered: list[Envelope] = []
        duplicates = 0
        for event in self.received:
            assert event.seq is not None, f"event without seq: {event}"
            first = seen.get(event.seq)
            if first is None:
                seen[event.seq] = event
                ordered.append(event)
            else:
                duplicates += 1
                assert (first.id, first.type, first.data) == (event.id, event.type, event.data), (
                    f"two different events share seq {event.seq}"
                )
        return ordered, duplicates

    async def wait_for(self, last_seq: int, within: float = 60.0) -> None:
        """Until every seq 1..last_seq has arrived."""
        deadline = time.monotonic() + within
        wanted = set(range(1, last_seq + 1))
        while time.monotonic() < deadline:
            missing = wanted - self.seqs()
            if not missing:
                return
            await asyncio.sleep(0.2)
        missing = sorted(wanted - self.seqs())
        raise AssertionError(
            f"{len(missing)} of {last_seq} events never arrived (first missing: {missing[:10]})"
        )


async def follow_events(bus: RabbitBus, name: str = "follower.events") -> EventLog:
    """A durable queue of the test's own bound to every inventory event, consumed at once."""
    events = EventLog()
    await bus.declare_queue(QueueSpec(name=name, bindings=(("events", "inventory.#"),)))
    await bus.consume(name, events.handle, prefetch=500)
    return events


def command(command_type: str, data: dict[str, Any], command_id: str) -> Envelope:
    return Envelope(id=command_id, type=command_type, source=SOURCE, data=data)


@dataclass
class Answer:
    reply: inv.CommandReply
    data: dict[str, Any]
    attempts: int


async def send(
    bus: RabbitBus,
    envelope: Envelope,
    *,
    attempt_timeout: float = ATTEMPT_TIMEOUT,
    deadline: float = COMMAND_DEADLINE,
) -> Answer:
    """``bus.request`` until answered, retrying a timed-out request with the SAME envelope (same
    id): whichever copy the writer sees first is applied, the others get its recorded reply."""
    start = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        try:
            reply = await bus.request(envelope, timeout=attempt_timeout)
        except RequestTimeout:
            if time.monotonic() - start > deadline:
                raise AssertionError(
                    f"no reply to {envelope.type} {envelope.id} after {attempts} attempts"
                ) from None
            continue
        return Answer(inv.CommandReply.model_validate(reply.data), dict(reply.data), attempts)


async def send_ok(
    bus: RabbitBus, command_type: str, data: dict[str, Any], command_id: str
) -> Answer:
    answer = await send(bus, command(command_type, data, command_id))
    assert answer.reply.status == "accepted", answer.reply
    return answer


async def register_grid(
    bus: RabbitBus, sites: list[str], datasets: list[str], blocks_per_dataset: int, prefix: str
) -> None:
    """Sites, a group, datasets and blocks of declared size (10 files, 10_000 bytes each)."""
    await send_ok(bus, C.UPSERT_SITES, {"sites": [grid.site(s) for s in sites]}, f"{prefix}-sites")
    await send_ok(bus, C.UPSERT_GROUPS, {"groups": [{"name": GROUP}]}, f"{prefix}-groups")
    await send_ok(
        bus,
        C.UPSERT_DATASETS,
        {"datasets": [grid.dataset(d) for d in datasets]},
        f"{prefix}-datasets",
    )
    blocks = [
        grid.block(d, block_name(i), size=10_000, num_files=10)
        for d in datasets
        for i in range(blocks_per_dataset)
    ]
    await send_ok(bus, C.UPSERT_BLOCKS, {"blocks": blocks}, f"{prefix}-blocks")


def block_name(index: int) -> str:
    return f"b{index:05d}"


# ------------------------------------------------------------------------------ database


async def db_seq(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT seq FROM inventory.writer_state WHERE id = 1"))
    finally:
        await conn.close()


async def db_fetch(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


ReplicaKey = tuple[str, str, str]  # dataset, block, site
ReplicaValue = tuple[str, int, int]  # group, size, num_files


async def db_block_replicas(database_url: str) -> dict[ReplicaKey, ReplicaValue]:
    rows = await db_fetch(
        database_url,
        """
        SELECT d.name, b.name, s.name, coalesce(g.name, $1), br.size, br.num_files
        FROM inventory.block_replicas br
        JOIN inventory.blocks b ON b.id = br.block_id
        JOIN inventory.datasets d ON d.id = b.dataset_id
        JOIN inventory.sites s ON s.id = br.site_id
        LEFT JOIN inventory.groups g ON g.id = br.group_id""",
        NO_GROUP,
    )
    return {(r[0], r[1], r[2]): (r[3], int(r[4]), int(r[5])) for r in rows}


async def assert_event_log_gap_free(database_url: str, within: float = 60.0) -> int:
    """The outbox holds 1..writer_state.seq and the relay marks every one published (it runs
    after the commit, so wait for it); returns that seq."""
    deadline = time.monotonic() + within
    while True:
        last = await db_seq(database_url)
        rows = await db_fetch(
            database_url, "SELECT seq, published FROM inventory.events ORDER BY seq"
        )
        assert [r[0] for r in rows] == list(range(1, last + 1))
        unpublished = [r[0] for r in rows if not r[1]]
        if not unpublished:
            return last
        assert time.monotonic() < deadline, (
            f"{len(unpublished)} events never marked published (first: {unpublished[:10]})"
        )
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------------------- snapshots


def _canonical(records: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], list[bytes]]:
    header: dict[str, Any] | None = None
    body: list[bytes] = []
    for record in records:
        if record["kind"] == "header":
            header = record
        else:
            body.append(orjson.dumps(record, option=orjson.OPT_SORT_KEYS))
    assert header is not None, "snapshot without a header"
    # Dict order differs between a model loaded from the database and one built from events.
    return header, sorted(body)


async def service_snapshot(url: str) -> tuple[dict[str, Any], list[bytes]]:
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        response = await client.get("/api/v1/snapshot")
    assert response.status_code == 200, response.text
    return _canonical(orjson.loads(line) for line in response.content.splitlines() if line)


def _diff(a: list[bytes], b: list[bytes]) -> str:
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    return (
        f"{len(only_a)} records only in the first, {len(only_b)} only in the second; e.g.\n"
        f"  {only_a[:3]}\n  {only_b[:3]}"
    )


# ----------------------------------------------------------------------- the command stream


@dataclass
class Stream:
    """A stream of CreateReplicas / UpdateReplicas commands of 10-50 block replicas each.

    Creates take (block, site) pairs never used before; updates change replicas whose create
    was already acknowledged. Several workers send concurrently, so the order the writer applies
    them in is its own: the replies' seq numbers tell it, and the expected final state is
    rebuilt from the acknowledged commands in that order."""

    datasets: list[str]
    sites: list[str]
    blocks_per_dataset: int
    total: int
    rng: random.Random = field(default_factory=lambda: random.Random(20240611))
    fresh: list[ReplicaKey] = field(default_factory=list)
    created: list[ReplicaKey] = field(default_factory=list)
    sent: dict[str, Envelope] = field(default_factory=dict)
    answers: dict[str, Answer] = field(default_factory=dict)
    next_index: int = 0
    answered: int = 0
    timeouts: int = 0

    def __post_init__(self) -> None:
        self.fresh = [
            (d, block_name(i), s)
            for d in self.datasets
            for i in range(self.blocks_per_dataset)
            for s in self.sites
        ]
        self.rng.shuffle(self.fresh)

    def next_command(self) -> Envelope | None:
        if self.next_index >= self.total:
            return None
        index = self.next_index
        self.next_index += 1
        count = self.rng.randint(10, 50)
        if index % 3 == 2 and len(self.created) >= 50:
            picked = self.rng.sample(self.created, count)
            data = {
                "block_replicas": [
                    {
                        "dataset": d,
                        "block": b,
                        "site": s,
                        "size": self.rng.randint(0, 10_000),
                        "num_files": self.rng.randint(0, 10),
                    }
                    for d, b, s in picked
                ]
            }
            envelope = command(C.UPDATE_REPLICAS, data, f"stream-{index:04d}-update")
        else:
            assert len(self.fresh) >= count, "the grid is too small for the stream"
            picked, self.fresh = self.fresh[:count], self.fresh[count:]
            replicas = []
            for d, b, s in picked:
                spec: dict[str, Any] = {
                    "dataset": d,
                    "block": b,
                    "site": s,
                    "size": self.rng.randint(0, 10_000),
                    "num_files": self.rng.randint(0, 10),
                }
                if self.rng.random() < 0.5:
                    spec["group"] = GROUP
                replicas.append(spec)
            envelope = command(
                C.CREATE_REPLICAS, {"block_replicas": replicas}, f"stream-{index:04d}-create"
            )
        self.sent[envelope.id] = envelope
        return envelope

    async def worker(self, bus: RabbitBus) -> None:
        while (envelope := self.next_command()) is not None:
            answer = await send(bus, envelope)
            self.timeouts += answer.attempts - 1
            self.answers[envelope.id] = answer
            self.answered += 1
            if answer.reply.status == "accepted" and envelope.type == C.CREATE_REPLICAS:
                self.created.extend(
                    (r["dataset"], r["block"], r["site"]) for r in envelope.data["block_replicas"]
                )

    def expected_replicas(self) -> dict[ReplicaKey, ReplicaValue]:
        """The final state the acknowledged commands, applied in seq order, must leave."""
        state: dict[ReplicaKey, ReplicaValue] = {}
        accepted = sorted(
            (a.reply.first_seq or 0, cid)
            for cid, a in self.answers.items()
            if a.reply.status == "accepted"
        )
        for _, cid in accepted:
            envelope = self.sent[cid]
            for r in envelope.data["block_replicas"]:
                key = (r["dataset"], r["block"], r["site"])
                if envelope.type == C.CREATE_REPLICAS:
                    state[key] = (r.get("group", NO_GROUP), r["size"], r["num_files"])
                else:
                    state[key] = (state[key][0], r["size"], r["num_files"])
        return state


# ----------------------------------------------------------------------------------- tests


async def test_kill_9_mid_stream_loses_no_acknowledged_command_and_publishes_every_event_in_order(
    launcher: Launcher,
    rabbit_bus: RabbitBus,
    database_url: str,
) -> None:
    started = time.monotonic()
    bus = rabbit_bus
    events = await follow_events(bus)  # bound before anything is written: sees every event
    first = await launcher.start_ready("inventory-1")

    datasets = ["/CrashA/Run2024A-v1/AOD", "/CrashB/Run2024B-v1/MINIAOD"]
    sites = ["T1_US_FNAL_Disk", "T2_CH_CERN", "T2_DE_DESY", "T2_IT_Pisa"]
    await register_grid(bus, sites, datasets, blocks_per_dataset=800, prefix="setup")

    # A real follower too: snapshot now, then it follows the events through the crash (the
    # restarted service listens on the same port, so its URL stays valid).
    follower = ReadModelClient(bus, first.url, "follower.readmodel", prefetch=500)
    launcher.cleanups.append(follower.stop)
    await asyncio.wait_for(follower.start(), 60)

    stream = Stream(datasets=datasets, sites=sites, blocks_per_dataset=800, total=300)
    workers = [asyncio.create_task(stream.worker(bus)) for _ in range(4)]
    try:
        # Kill the writer about a third of the way through, while commands are in flight, at
        # the moment an event reaches the follower: the relay has (or is about to have) its
        # confirm and has likely not marked the event published yet.
        deadline = time.monotonic() + 90
        while stream.answered < stream.total // 3:
            assert time.monotonic() < deadline, f"only {stream.answered} answered in 90 s"
            assert not any(w.done() for w in workers), [w.exception() for w in workers if w.done()]
            await asyncio.sleep(0.005)
        killed = asyncio.Event()

        def kill_now() -> None:
            if not killed.is_set():
                os.kill(first.pid, signal.SIGKILL)
                killed.set()

        events.on_event = kill_now
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(killed.wait(), 10)
        events.on_event = None
        kill_now()
        first.kill()  # reaps it
        answered_at_kill = stream.answered
        print(
            f"SIGKILL inventory-1 after {answered_at_kill} answered commands "
            f"(seq in the database: {await db_seq(database_url)})"
        )
        second = await launcher.start_ready("inventory-2", port=first.port)
        await asyncio.wait_for(asyncio.gather(*workers), timeout=150)
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    # Every command was answered, and accepted (a command applied twice would be rejected as
    # creating an existing replica, or show up twice in the event log below).
    assert len(stream.answers) == stream.total
    rejected = {cid: a.reply for cid, a in stream.answers.items() if a.reply.status != "accepted"}
    assert not rejected, rejected

    # Every acknowledged command is recorded with exactly the reply the client got.
    recorded = {
        r[0]: orjson.loads(r[1])
        for r in await db_fetch(
            database_url,
            "SELECT id, reply FROM inventory.commands WHERE id = ANY($1::text[])",
            list(stream.answers),
        )
    }
    assert set(recorded) == set(stream.answers)
    for cid, answer in stream.answers.items():
        assert recorded[cid] == answer.data, cid

    # The replies' seq ranges tile 1..writer_state.seq: no gap, no overlap.
    last = await assert_event_log_gap_free(database_url)
    ranges = sorted((a.reply.first_seq, a.reply.last_seq) for a in stream.answers.values())
    assert all(f is not None and lst is not None for f, lst in ranges)
    assert ranges[-1][1] == last

    # The replicas in PostgreSQL are exactly what the acknowledged commands say.
    assert await db_block_replicas(database_url) == stream.expected_replicas()

    # The follower's queue got every event: after removing duplicates, 1..seq in arrival order.
    await events.wait_for(last)
    ordered, duplicates = events.first_arrivals()
    assert [e.seq for e in ordered] == list(range(1, last + 1))
    print(
        f"events: {last} distinct, {len(events.received)} delivered, {duplicates} duplicate "
        f"deliveries after kill -9; request timeouts retried: {stream.timeouts}"
    )

    # No command was applied twice: each command's events are exactly its reply's range.
    by_command: dict[str, list[int]] = {}
    for event in ordered:
        assert event.correlation_id is not None
        by_command.setdefault(event.correlation_id, []).append(event.seq or 0)
    for cid, answer in stream.answers.items():
        reply = answer.reply
        assert by_command.get(cid) == list(
            range(reply.first_seq or 0, (reply.last_seq or 0) + 1)
        ), cid

    # Nothing was dead-lettered on the way.
    assert await bus.dead_letters(COMMAND_QUEUE.name) == []

    # A follower that applies the events it received (duplicates and all) ends up with the
    # inventory the restarted service holds, and which PostgreSQL holds.
    model = Inventory()
    applied = sum(apply_sequenced(model, e.seq or 0, e.type, e.data) for e in events.received)
    assert applied == last
    follower_header, follower_records = _canonical(iter_records(model))
    service_header, service_records = await service_snapshot(second.url)
    assert service_header["seq"] == follower_header["seq"] == last
    assert service_header["counts"] == follower_header["counts"]
    assert service_records == follower_records, _diff(service_records, follower_records)

    from dynamo_inventory.repository.reader import load_inventory

    conn = await asyncpg.connect(database_url)
    try:
        from_db = await load_inventory(conn)
    finally:
        await conn.close()
    db_header, db_records = _canonical(iter_records(from_db))
    assert db_header["seq"] == last
    assert db_records == follower_records, _diff(db_records, follower_records)

    # The ReadModelClient that followed through the crash holds the same inventory, and never
    # needed to fill a gap or take a new snapshot: the event stream had neither gaps nor
    # disorder.
    await follower.wait_for_seq(last, timeout=60)
    _, client_records = _canonical(iter_records(follower.model))
    assert client_records == db_records, _diff(client_records, db_records)
    print(
        f"ReadModelClient: applied {follower.applied}, duplicates {follower.duplicates}, "
        f"gaps filled {follower.gaps_filled}, resyncs {follower.resyncs}"
    )
    assert (follower.gaps_filled, follower.resyncs) == (0, 0)
    print(f"test took {time.monotonic() - started:.1f} s")


async def test_standby_instance_takes_over_when_the_writer_dies(
    launcher: Launcher,
    rabbit_bus: RabbitBus,
    database_url: str,
) -> None:
    bus = rabbit_bus
    events = await follow_events(bus)
    # With single-active-consumer the first consumer of the queue is the active one.
    active = await launcher.start_ready("inventory-active")
    standby = await launcher.start_ready("inventory-standby")

    dataset = "/Standby/Run2024C-v1/AOD"
    sites = ["T2_US_MIT", "T2_US_Nebraska"]
    await register_grid(bus, sites, [dataset], blocks_per_dataset=60, prefix="setup")

    def create(index: int) -> Envelope:
        site = sites[index % 2]
        return command(
            C.CREATE_REPLICAS,
            {
                "block_replicas": [
                    {"dataset": dataset, "block": block_name(b), "site": site, "group": GROUP}
                    for b in range(index // 2 * 5, index // 2 * 5 + 5)
                ]
            },
            f"standby-{index:03d}",
        )

    answers = [
        await send_ok(bus, C.CREATE_REPLICAS, create(i).data, create(i).id) for i in range(10)
    ]

    # Tell which instance consumes: a rejected command is logged by the one that handled it.
    marker = command(
        C.CREATE_REPLICAS,
        {
            "block_replicas": [
                {"dataset": dataset, "block": block_name(0), "site": "T0_NO_SUCH_SITE"}
            ]
        },
        "standby-marker-before-kill",
    )
    assert (await send(bus, marker)).reply.status == "rejected"
    await _wait_until(
        lambda: marker.id in active.log_text() or marker.id in standby.log_text(),
        10,
        "the rejected marker command to be logged",
    )
    assert marker.id in active.log_text(), "the first started instance is not the active one"
    assert marker.id not in standby.log_text()

    # The standby follows the writer through the shared event log while it waits.
    before_kill = await db_seq(database_url)
    await _wait_for_dataset(
        standby.url, dataset, replicas_at=sites, blocks_replicated=50, seq=before_kill
    )

    active.kill()
    for i in range(10, 20):
        envelope = create(i)
        answers.append(await send(bus, envelope))
        assert answers[-1].reply.status == "accepted", answers[-1].reply
    marker = command(
        C.CREATE_REPLICAS,
        {
            "block_replicas": [
                {"dataset": dataset, "block": block_name(0), "site": "T0_NO_SUCH_SITE"}
            ]
        },
        "standby-marker-after-kill",
    )
    assert (await send(bus, marker)).reply.status == "rejected"
    await _wait_until(
        lambda: marker.id in standby.log_text(),
        10,
        "the standby to log the rejected marker command",
    )

    # Sequence numbers continue without a gap across the takeover.
    last = await assert_event_log_gap_free(database_url)
    seqs = [(a.reply.first_seq, a.reply.last_seq) for a in answers]
    assert seqs[10][0] == before_kill + 1
    flat = [s for f, lst in seqs for s in range(f or 0, (lst or 0) + 1)]
    assert flat == list(range(flat[0], last + 1))

    # The new writer serves everything, including what the dead one wrote.
    detail = await _wait_for_dataset(
        standby.url, dataset, replicas_at=sites, blocks_replicated=100, seq=last
    )
    by_site = {r["site"]: {b["block"] for b in r["block_replicas"]} for r in detail["replicas"]}
    assert by_site == {
        sites[0]: {
            block_name(b) for i in range(0, 20, 2) for b in range(i // 2 * 5, i // 2 * 5 + 5)
        },
        sites[1]: {
            block_name(b) for i in range(1, 20, 2) for b in range(i // 2 * 5, i // 2 * 5 + 5)
        },
    }
    assert await db_block_replicas(database_url) == {
        (dataset, b["block"], r["site"]): (GROUP, 10_000, 10)
        for r in detail["replicas"]
        for b in r["block_replicas"]
    }

    await events.wait_for(last)
    ordered, duplicates = events.first_arrivals()
    assert [e.seq for e in ordered] == list(range(1, last + 1))
    print(f"standby takeover: {last} events, {duplicates} duplicate deliveries")


async def test_redelivered_command_gets_the_same_reply_and_changes_nothing(
    launcher: Launcher,
    rabbit_bus: RabbitBus,
    database_url: str,
) -> None:
    bus = rabbit_bus
    service = await launcher.start_ready("inventory-1")
    dataset = "/Redelivery/Run2024D-v1/AOD"
    await register_grid(bus, ["T2_FR_GRIF"], [dataset], blocks_per_dataset=10, prefix="setup")

    accepted = command(
        C.CREATE_REPLICAS,
        {
            "block_replicas": [
                {
                    "dataset": dataset,
                    "block": block_name(b),
                    "site": "T2_FR_GRIF",
                    "size": 5_000,
                    "num_files": 5,
                }
                for b in range(5)
            ]
        },
        "redelivered-accepted",
    )
    rejected = command(
        C.CREATE_REPLICAS,
        {
            "block_replicas": [
                {"dataset": dataset, "block": block_name(9), "site": "T0_NO_SUCH_SITE"}
            ]
        },
        "redelivered-rejected",
    )

    first = await send(bus, accepted)
    assert first.reply.status == "accepted"
    assert first.reply.first_seq == first.reply.last_seq == await db_seq(database_url)
    first_rejected = await send(bus, rejected)
    assert first_rejected.reply.status == "rejected"
    seq = await db_seq(database_url)
    replicas = await db_block_replicas(database_url)

    async def unchanged() -> None:
        assert await db_seq(database_url) == seq
        assert await db_block_replicas(database_url) == replicas
        rows = await db_fetch(
            database_url,
            "SELECT id FROM inventory.commands WHERE id LIKE 'redelivered-%' ORDER BY id",
        )
        assert [r[0] for r in rows] == ["redelivered-accepted", "redelivered-rejected"]

    # The same envelope again: the recorded reply, nothing written.
    assert (await send(bus, accepted)).data == first.data
    assert (await send(bus, rejected)).data == first_rejected.data
    # The command id decides, not the content: a changed body under a used id is not applied.
    changed = command(
        C.CREATE_REPLICAS,
        {"block_replicas": [{"dataset": dataset, "block": block_name(7), "site": "T2_FR_GRIF"}]},
        accepted.id,
    )
    assert (await send(bus, changed)).data == first.data
    # A copy without a reply address (a plain redelivery), then a barrier: still nothing.
    await bus.publish("commands", [accepted, rejected])
    assert (await send(bus, accepted)).data == first.data
    await unchanged()

    # After kill -9 and a restart (the in-memory reply cache is gone): the same replies.
    service.kill()
    await launcher.start_ready("inventory-2")
    assert (await send(bus, accepted)).data == first.data
    assert (await send(bus, rejected)).data == first_rejected.data
    await unchanged()

    # And the writer still works: a new command gets the next seq.
    follow_up = await send_ok(
        bus,
        C.UPDATE_REPLICAS,
        {
            "block_replicas": [
                {"dataset": dataset, "block": block_name(0), "site": "T2_FR_GRIF", "complete": True}
            ]
        },
        "redelivered-follow-up",
    )
    assert follow_up.reply.first_seq == seq + 1
    assert await bus.dead_letters(COMMAND_QUEUE.name) == []


# ------------------------------------------------------------------- database outage (proxy)


class TcpProxy:
    """A TCP proxy in front of PostgreSQL. ``outage()`` resets every proxied connection and
    refuses new ones for a while: from the service's side, the database restarted. The shared
    PostgreSQL server itself is never touched."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = _free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            self._tasks.difference_update(pumps)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()  # RST on both sides, like a server that went away

    async def outage(self, seconds: float) -> None:
        assert self._server is not None
        self._server.close()
        self._drop_all()
        await self._server.wait_closed()
        await asyncio.sleep(seconds)
        self._drop_all()
        await self.start()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._drop_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def test_database_restart_delays_but_loses_no_command(
    launcher: Launcher,
    rabbit_bus: RabbitBus,
    database_url: str,
) -> None:
    bus = rabbit_bus
    parts = urlsplit(database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    try:
        events = await follow_events(bus)
        service = await launcher.start_ready(
            "inventory-1", DYNAMO_DATABASE_URL=_through(database_url, proxy.port)
        )
        dataset = "/Outage/Run2024E-v1/AOD"
        sites = ["T2_UK_London", "T2_ES_CIEMAT"]
        await register_grid(bus, sites, [dataset], blocks_per_dataset=1000, prefix="setup")

        stream = Stream(datasets=[dataset], sites=sites, blocks_per_dataset=1000, total=60)
        workers = [asyncio.create_task(stream.worker(bus)) for _ in range(2)]
        try:
            deadline = time.monotonic() + 60
            while stream.answered < 20:
                assert time.monotonic() < deadline, f"only {stream.answered} answered"
                assert not any(w.done() for w in workers)
                await asyncio.sleep(0.005)
            # Twice: while commands are in flight, the database goes away for a few seconds.
            await proxy.outage(3.0)
            while stream.answered < 40:
                assert time.monotonic() < deadline + 60, f"only {stream.answered} answered"
                assert not any(w.done() for w in workers), [
                    w.exception() for w in workers if w.done()
                ]
                await asyncio.sleep(0.005)
            await proxy.outage(3.0)
            await asyncio.wait_for(asyncio.gather(*workers), timeout=150)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

        assert {a.reply.status for a in stream.answers.values()} == {"accepted"}
        assert service.alive
        last = await assert_event_log_gap_free(database_url)
        assert await db_block_replicas(database_url) == stream.expected_replicas()
        # The relay survived the outages: every event reached the follower, in order.
        await events.wait_for(last)
        ordered, duplicates = events.first_arrivals()
        assert [e.seq for e in ordered] == list(range(1, last + 1))
        assert await bus.dead_letters(COMMAND_QUEUE.name) == []
        # And the service's memory matches the database.
        _, service_records = await service_snapshot(service.url)
        from dynamo_inventory.repository.reader import load_inventory

        conn = await asyncpg.connect(database_url)
        try:
            _, db_records = _canonical(iter_records(await load_inventory(conn)))
        finally:
            await conn.close()
        assert service_records == db_records, _diff(service_records, db_records)
        print(
            f"outage: {last} events, {duplicates} duplicate deliveries, "
            f"{stream.timeouts} request timeouts retried"
        )
    finally:
        await proxy.close()


# ------------------------------------------------------------------------------- helpers


async def _wait_until(condition: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _wait_for_dataset(
    url: str,
    dataset: str,
    *,
    replicas_at: list[str],
    blocks_replicated: int,
    seq: int,
    within: float = 30.0,
) -> dict[str, Any]:
    """GET /api/v1/dataset until it shows ``blocks_replicated`` block replicas over the given
    sites (the instance caught up to ``seq``)."""
    deadline = time.monotonic() + within
    detail: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        while time.monotonic() < deadline:
            response = await client.get("/api/v1/dataset", params={"name": dataset})
            if response.status_code == 200:
                detail = response.json()
                count = sum(len(r["block_replicas"]) for r in detail["replicas"])
                sites = sorted(r["site"] for r in detail["replicas"])
                if count == blocks_replicated and sites == sorted(replicas_at):
                    stats = (await client.get("/api/v1/stats")).json()
                    if stats["seq"] == seq:
                        return detail
            await asyncio.sleep(0.2)
    raise AssertionError(
        f"{url} never showed {blocks_replicated} block replicas of {dataset} "
        f"at seq {seq}; last answer: {str(detail)[:500]}"
    )
