"""(2) Sustained replica creations end to end, against a raw aio-pika publish-with-confirms loop.

The real inventory app runs in-process on RabbitMQ and a throw-away database. The generated
grid (sites, groups, datasets, blocks with declared sizes) is registered first. Each run then
sends every block replica of the grid as a creation (with its size and file count; the
inventory creates the dataset replica with its first block replica), 500 per CreateReplicas,
over the bus, a few commands in flight, from a client with its own connection; the clock
stops when a consumer of our own, bound to ``events``/``inventory.replica.#``, has received
the events covering every block replica. An event is only published after its transaction
committed, with publisher confirms, so the count covers command in, committed, event
confirmed and delivered.

Between runs the replicas are deleted (untimed), so every run does the same work on the same
inventory. Floor repetitions are interleaved with the runs.
"""

from __future__ import annotations

import asyncio
import cProfile
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from asgi_lifespan import LifespanManager
from pydantic import BaseModel

from dynamo_common import gridgen
from dynamo_common.bus.base import Delivery, QueueSpec
from dynamo_common.bus.rabbitmq import RabbitBus
from dynamo_common.messages import inventory as inv
from dynamo_common.messages.envelope import Envelope
from dynamo_common.messages.registry import InventoryCommand, InventoryEvent
from tests.bench import floors, infra
from tests.bench.report import Result, Target, log, profile_summary, result

SEED = 11
BATCH = 500
IN_FLIGHT = 4
REGISTER_BATCH = 5000
FLOOR_MESSAGES = 20_000
TARGET = Target(value=5000, ratio=0.30, direction="min")
CLIENT = "/dynamo/bench"


@dataclass
class EventCounter:
    """Counts what the replica events carry; ``done`` is set once ``target`` block replicas
    were created."""

    target: int = 0
    block_replicas: int = 0
    dataset_replicas: int = 0
    events: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def reset(self, target: int) -> None:
        self.target = target
        self.block_replicas = self.dataset_replicas = self.events = 0
        self.done = asyncio.Event()

    async def handle(self, delivery: Delivery) -> None:
        envelope = delivery.envelope
        if envelope.type != InventoryEvent.REPLICA_CREATED:
            return
        self.events += 1
        self.block_replicas += len(envelope.data.get("block_replicas", ()))
        self.dataset_replicas += len(envelope.data.get("dataset_replicas", ()))
        if self.target and self.block_replicas >= self.target:
            self.done.set()


@dataclass
class ThroughputOutcome:
    results: list[Result]
    event_log: list[tuple[int, str]]
    """Every event the inventory committed, (seq, envelope JSON), in order: a realistic
    stream for the follower benchmark."""


def _envelope(key: str, command: BaseModel) -> Envelope:
    return Envelope(type=key, source=CLIENT, data=command.model_dump(mode="json"))


async def _send(bus: RabbitBus, commands: list[tuple[str, BaseModel]], in_flight: int) -> None:
    """Every command through ``bus.request``, ``in_flight`` at a time; each must be accepted."""
    envelopes = [_envelope(key, command) for key, command in commands]
    window = asyncio.Semaphore(in_flight)

    async def one(envelope: Envelope) -> None:
        async with window:
            reply = await bus.request(envelope, timeout=300)
        if reply.data.get("status") != "accepted":
            raise RuntimeError(f"{envelope.type} was rejected: {reply.data}")

    await asyncio.gather(*(one(e) for e in envelopes))


def _deletions(grid: gridgen.Grid) -> list[tuple[str, BaseModel]]:
    keys = [
        inv.DatasetReplicaKey(dataset=grid.datasets[dr.dataset].name, site=grid.sites[dr.site].name)
        for dr in grid.dataset_replicas
    ]
    return [
        (InventoryCommand.DELETE_REPLICAS.value, inv.DeleteReplicas(dataset_replicas=chunk))
        for chunk in (keys[i : i + 2000] for i in range(0, len(keys), 2000))
    ]


async def _one_run(
    client: RabbitBus,
    counter: EventCounter,
    replica_commands: list[tuple[str, BaseModel]],
    block_replicas: int,
) -> dict[str, Any]:
    counter.reset(block_replicas)
    start = time.perf_counter()
    send = asyncio.create_task(_send(client, replica_commands, IN_FLIGHT))
    delivered = asyncio.create_task(counter.done.wait())
    done, _ = await asyncio.wait({send, delivered}, timeout=600, return_when="FIRST_COMPLETED")
    if send in done and send.exception() is not None:
        delivered.cancel()
        raise send.exception()  # type: ignore[misc]
    if delivered not in done:
        await asyncio.wait_for(delivered, timeout=120)  # the replies came: the events follow
    seconds = time.perf_counter() - start
    await send  # already done: every event was delivered, so every reply was sent
    return {
        "seconds": seconds,
        "block_replicas": counter.block_replicas,
        "dataset_replicas": counter.dataset_replicas,
        "events": counter.events,
    }


def _replica_commands(grid: gridgen.Grid, batch: int) -> list[tuple[str, BaseModel]]:
    """Every block replica of the grid as a creation with its size and file count, ``batch``
    per CreateReplicas, dataset replica by dataset replica (the inventory creates a dataset
    replica with its first block replica)."""
    brs, blocks, datasets, sites = grid.block_replicas, grid.blocks, grid.datasets, grid.sites
    specs = [
        inv.BlockReplicaSpec(
            dataset=datasets[blocks.dataset[brs.block[i]]].name,
            block=blocks.name[brs.block[i]],
            site=sites[brs.site[i]].name,
            group=grid.group_name(brs.group[i]),
            is_custodial=bool(brs.is_custodial[i]),
            size=brs.size[i],
            num_files=brs.num_files[i],
        )
        for i in range(len(brs))
    ]
    return [
        (InventoryCommand.CREATE_REPLICAS.value, inv.CreateReplicas(block_replicas=chunk))
        for chunk in (specs[i : i + batch] for i in range(0, len(specs), batch))
    ]


async def run(scale: str, repetitions: int = 3, profile: bool = False) -> ThroughputOutcome:
    from dynamo_inventory.app import create_app
    from dynamo_inventory.settings import InventorySettings

    log(f"replica throughput: generating the {scale} grid")
    grid = gridgen.generate(scale, seed=SEED)
    register = [
        (key, command)
        for key, command in gridgen.commands(grid, batch=REGISTER_BATCH, include_files=False)
        if key != InventoryCommand.CREATE_REPLICAS
    ]
    replica_commands = _replica_commands(grid, BATCH)
    block_replicas = len(grid.block_replicas)
    deletions = _deletions(grid)
    amqp = infra.amqp_url()

    async with infra.inventory_database() as url, infra.bus_namespace() as (namespace, queues):
        server_bus = RabbitBus(amqp, namespace)
        client = RabbitBus(amqp, namespace)
        await server_bus.connect()
        await client.connect()
        settings = InventorySettings(
            database_url=url,
            amqp_url=amqp,
            bus_namespace=namespace,
            log_format="console",
            log_level="WARNING",
        )
        app = create_app(settings, bus=server_bus)
        try:
            async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60):
                counter = EventCounter()
                spec = QueueSpec(
                    name="bench.replica-events", bindings=(("events", "inventory.replica.#"),)
                )
                await client.declare_queue(spec)
                subscription = await client.consume(spec.name, counter.handle, prefetch=200)
                log(f"replica throughput: registering the grid ({len(register)} commands)")
                started = time.perf_counter()
                await _send(client, register, 1)
                log(f"replica throughput: registered in {time.perf_counter() - started:.1f} s")
                runs: list[dict[str, Any]] = []
                floor_rates: list[float] = []
                for repetition in range(repetitions):
                    floor_rates += await floors.raw_publish_rate(
                        amqp, namespace, FLOOR_MESSAGES, 1, queues
                    )
                    outcome = await _one_run(client, counter, replica_commands, block_replicas)
                    runs.append(outcome)
                    log(
                        f"replica throughput: run {repetition + 1}: "
                        f"{outcome['block_replicas'] / outcome['seconds']:,.0f} block replicas/s "
                        f"(floor {floor_rates[-1]:,.0f} msg/s)"
                    )
                    if repetition < repetitions - 1 or profile:
                        await _send(client, deletions, IN_FLIGHT)
                profile_text: str | None = None
                profile_top: list[dict[str, Any]] = []
                if profile:
                    log("replica throughput: one more run under cProfile (client and server)")
                    profiler = cProfile.Profile()
                    profiler.enable()
                    await _one_run(client, counter, replica_commands, block_replicas)
                    profiler.disable()
                    profile_text, profile_top = profile_summary(profiler)
                await subscription.cancel()
        finally:
            queues += client.declared_names().queues
            queues += server_bus.declared_names().queues
            await client.close()
            await server_bus.close()
        async with infra.connection(url) as conn:
            event_log = await _event_log(conn)

    rates = [r["block_replicas"] / r["seconds"] for r in runs]
    commands_per_s = [len(replica_commands) / r["seconds"] for r in runs]
    throughput = result(
        "replicas.end_to_end",
        scale,
        rates,
        "replicas/s",
        floor_runs=floor_rates,
        floor_unit="msg/s",
        floor_label="raw aio-pika publish, confirms, 1000 in flight",
        target=TARGET,
        details={
            "unit": "block replicas created per second, end to end",
            "block_replicas_per_run": block_replicas,
            "dataset_replicas_per_run": len(grid.dataset_replicas),
            "commands_per_run": len(replica_commands),
            "items_per_command": BATCH,
            "commands_in_flight": IN_FLIGHT,
            "commands_per_s": [round(c, 1) for c in commands_per_s],
            "replica_changes_per_s_incl_dataset_replicas": [
                round((r["block_replicas"] + r["dataset_replicas"]) / r["seconds"]) for r in runs
            ],
            "run_seconds": [round(r["seconds"], 3) for r in runs],
            "events_per_run": [r["events"] for r in runs],
            "floor_messages": FLOOR_MESSAGES,
        },
    )
    if profile_text is not None:
        throughput.details["profile_top"] = profile_top
        throughput.details["profile_text"] = profile_text
    return ThroughputOutcome([throughput], event_log)


async def _event_log(conn: asyncpg.Connection) -> list[tuple[int, str]]:
    rows = await conn.fetch("SELECT seq, envelope FROM inventory.events ORDER BY seq")
    return [(int(r[0]), str(r[1])) for r in rows]
