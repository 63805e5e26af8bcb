"""The read model client: a follower's copy of the inventory stays equal to the writer's.

The inventory's REST API is stood in for by a small FastAPI app over an in-memory writer (its
model and event log), served through ``httpx.ASGITransport`` (and once through a real uvicorn
server, to stream over a socket). Events travel over the real buses, in-process and RabbitMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel

from dynamo_common.bus import Bus, Delivery
from dynamo_common.messages import inventory as inv
from dynamo_common.messages.envelope import Envelope
from dynamo_common.messages.registry import InventoryEvent
from dynamo_common.messages.types import DatasetStatus, SiteStatus
from dynamo_common.model.apply import apply_sequenced
from dynamo_common.model.objects import Inventory
from dynamo_common.model.snapshot import dump_lines
from dynamo_common.readmodel import ReadModelClient, ReadModelNotReady

WAIT = 10.0  # upper bound for anything that should happen "soon"
QUIET = 0.3  # how long to watch for something that must NOT happen
URL = "http://inventory.test"
QUEUE = "follower.inventory"
T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


# --- the writer and its API ----------------------------------------------------------------------


class Writer:
    """The single writer, reduced to what a follower sees of it: numbered events, its model
    after each of them, and the event log it serves."""

    def __init__(self) -> None:
        self.model = Inventory()
        self.log: list[Envelope] = []
        self._ids = itertools.count(1)
        self._ticks = itertools.count(1)

    @property
    def seq(self) -> int:
        return self.model.seq

    def now(self) -> datetime:
        # Microseconds included: the snapshot's float timestamps must survive the round trip.
        return T0 + timedelta(microseconds=next(self._ticks) * 1_000_003)

    def record(self, type_: InventoryEvent, data: BaseModel) -> Envelope:
        seq = self.model.seq + 1
        envelope = Envelope(
            type=type_, source="/dynamo/inventory", seq=seq, data=data.model_dump(mode="json")
        )
        assert apply_sequenced(self.model, seq, envelope.type, envelope.data)
        self.log.append(envelope)
        return envelope

    # -- one method per kind of change, each returning its event --

    def add_site(self, name: str) -> Envelope:
        protocol = inv.Protocol(
            name="root",
            rules=[inv.PfnRule(match="/store/(.*)", result=f"root://{name}.test//store/$1")],
        )
        state = inv.SiteState(
            id=next(self._ids),
            name=name,
            host=f"{name}.test",
            protocols=[protocol],
            quotas={"AnalysisOps": 10**12},
        )
        return self.record(InventoryEvent.SITE_CREATED, inv.SitesChanged(sites=[state]))

    def set_site_status(self, name: str, status: SiteStatus) -> Envelope:
        site = self.model.sites[name]
        state = inv.SiteState(
            id=site.id,
            name=site.name,
            storage_type=site.storage_type,
            status=status,
            host=site.host,
            protocols=[
                inv.Protocol(
                    name=protocol,
                    rules=[inv.PfnRule(match=match, result=result) for match, result in rules],
                )
                for protocol, rules in site.protocols
            ],
            quotas=site.quotas,
        )
        return self.record(InventoryEvent.SITE_UPDATED, inv.SitesChanged(sites=[state]))

    def add_group(self, name: str) -> Envelope:
        state = inv.GroupState(id=next(self._ids), name=name)
        return self.record(InventoryEvent.GROUP_CREATED, inv.GroupsChanged(groups=[state]))

    def add_dataset(self, name: str) -> Envelope:
        state = inv.DatasetState(
            id=next(self._ids), name=name, data_type="data", last_update=self.now()
        )
        return self.record(InventoryEvent.DATASET_CREATED, inv.DatasetsChanged(datasets=[state]))

    def update_dataset(self, name: str, status: DatasetStatus, is_open: bool) -> Envelope:
        d = self.model.datasets[name]
        state = inv.DatasetState(
            id=d.id,
            name=name,
            status=status,
            data_type=d.data_type,
            software_version="CMSSW_14_0_1",
            is_open=is_open,
            last_update=self.now(),
        )
        return self.record(InventoryEvent.DATASET_UPDATED, inv.DatasetsChanged(datasets=[state]))

    def delete_dataset(self, name: str) -> Envelope:
        return self.record(InventoryEvent.DATASET_DELETED, inv.DatasetsDeleted(names=[name]))

    def add_block(self, dataset: str, name: str) -> Envelope:
        state = inv.BlockState(
            id=next(self._ids), dataset=dataset, name=name, last_update=self.now()
        )
        return self.record(InventoryEvent.BLOCK_CREATED, inv.BlocksChanged(blocks=[state]))

    def _block_state(self, dataset: str, block: str, size: int, num_files: int) -> inv.BlockState:
        b = self.model.datasets[dataset].blocks[block]
        return inv.BlockState(
            id=b.id,
            dataset=dataset,
            name=block,
            size=size,
            num_files=num_files,
            is_open=b.is_open,
            last_update=self.now(),
        )

    def _files(self, dataset: str, block: str, first: int, sizes: list[int]) -> list[inv.FileState]:
        stem = dataset.strip("/").replace("/", "_")
        return [
            inv.FileState(
                dataset=dataset,
                block=block,
                lfn=f"/store/data/{stem}/{block}/file_{first + i}.root",
                size=size,
            )
            for i, size in enumerate(sizes)
        ]

    def add_files(self, dataset: str, block: str, sizes: list[int]) -> Envelope:
        b = self.model.datasets[dataset].blocks[block]
        data = inv.FilesAdded(
            files=self._files(dataset, block, b.num_files, sizes),
            blocks=[
                self._block_state(dataset, block, b.size + sum(sizes), b.num_files + len(sizes))
            ],
        )
        return self.record(InventoryEvent.FILE_ADDED, data)

    def remove_files(self, dataset: str, block: str, sizes: list[int]) -> Envelope:
        b = self.model.datasets[dataset].blocks[block]
        data = inv.FilesRemoved(
            files=self._files(dataset, block, b.num_files - len(sizes), sizes),
            blocks=[
                self._block_state(dataset, block, b.size - sum(sizes), b.num_files - len(sizes))
            ],
        )
        return self.record(InventoryEvent.FILE_REMOVED, data)

    def _replicas(self, dataset: str, site: str, group: str) -> inv.ReplicasChanged:
        d = self.model.datasets[dataset]
        now = self.now()
        return inv.ReplicasChanged(
            dataset_replicas=[
                inv.DatasetReplicaState(
                    dataset=dataset, site=site, group=group, growing=True, last_update=now
                )
            ],
            block_replicas=[
                inv.BlockReplicaState(
                    dataset=dataset,
                    block=b.name,
                    site=site,
                    group=group,
                    size=b.size,
                    num_files=b.num_files,
                    last_update=now,
                )
                for b in d.blocks.values()
            ],
        )

    def create_replica(self, dataset: str, site: str, group: str) -> Envelope:
        return self.record(InventoryEvent.REPLICA_CREATED, self._replicas(dataset, site, group))

    def update_replica(self, dataset: str, site: str, group: str) -> Envelope:
        return self.record(InventoryEvent.REPLICA_UPDATED, self._replicas(dataset, site, group))

    def delete_replica(self, dataset: str, site: str) -> Envelope:
        data = inv.ReplicasDeleted(
            dataset_replicas=[inv.DatasetReplicaKey(dataset=dataset, site=site)]
        )
        return self.record(InventoryEvent.REPLICA_DELETED, data)

    def delete_block_replica(self, dataset: str, block: str, site: str) -> Envelope:
        data = inv.ReplicasDeleted(
            block_replicas=[inv.BlockReplicaKey(dataset=dataset, block=block, site=site)]
        )
        return self.record(InventoryEvent.REPLICA_DELETED, data)

    def set_container(self, name: str, datasets: list[str]) -> Envelope:
        data = inv.ContainersChanged(containers=[inv.ContainerState(name=name, datasets=datasets)])
        return self.record(InventoryEvent.CONTAINER_UPDATED, data)

    def delete_container(self, name: str) -> Envelope:
        return self.record(InventoryEvent.CONTAINER_DELETED, inv.ContainersDeleted(names=[name]))

    def set_partition(self, name: str, condition: str) -> Envelope:
        data = inv.PartitionsChanged(
            partitions=[inv.PartitionState(name=name, condition=condition, description=name)]
        )
        return self.record(InventoryEvent.PARTITION_UPDATED, data)

    def delete_partition(self, name: str) -> Envelope:
        return self.record(InventoryEvent.PARTITION_DELETED, inv.PartitionsDeleted(names=[name]))

    def populate(self, datasets: int = 3) -> None:
        """A small but complete inventory: every kind of record appears in its snapshot."""
        for name in ("T1_US_FNAL_Disk", "T2_CH_CERN"):
            self.add_site(name)
        self.add_group("AnalysisOps")
        for i in range(datasets):
            name = f"/Prim{i}/Run2024A-v1/AOD"
            self.add_dataset(name)
            for j in range(2):
                self.add_block(name, f"b{j}")
                self.add_files(name, f"b{j}", [1000 + i, 2000 + j])
            self.create_replica(name, "T2_CH_CERN", "AnalysisOps")
        self.set_partition("AnalysisOps", "replica.group == 'AnalysisOps'")
        self.set_container("/Cont/All", [f"/Prim{i}/Run2024A-v1/AOD" for i in range(datasets)])


class InventoryAPI:
    """``/api/v1/snapshot`` and ``/api/v1/events`` as the inventory serves them."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.purged_through = 0  # events with seq <= this are no longer in the log
        self.snapshot_requests = 0
        self.events_requests: list[int] = []
        self.snapshot_failures = 0  # the next N snapshot requests answer 503
        self.truncate_snapshots = 0  # the next N snapshots lose their last lines
        # Runs when a snapshot is requested, before it is taken.
        self.before_snapshot: Callable[[], Awaitable[None]] | None = None
        self.snapshot_taken = asyncio.Event()
        self.events_requested = asyncio.Event()
        # While set to an unset Event, snapshot bodies (or event pages) wait for it.
        self.hold_snapshot: asyncio.Event | None = None
        self.hold_events: asyncio.Event | None = None
        self.app = self._build()

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.get("/api/v1/snapshot")
        async def snapshot() -> Response:
            self.snapshot_requests += 1
            if self.snapshot_failures:
                self.snapshot_failures -= 1
                return _problem(503, "starting")
            if self.before_snapshot is not None:
                await self.before_snapshot()
            # Taken at once: the body must describe exactly one sequence number.
            lines = list(dump_lines(self.writer.model))
            if self.truncate_snapshots:
                self.truncate_snapshots -= 1
                lines = lines[:-2]
            self.snapshot_taken.set()
            hold = self.hold_snapshot

            async def body() -> AsyncIterator[bytes]:
                if hold is not None:
                    await hold.wait()
                for line in lines:
                    yield line

            return StreamingResponse(body(), media_type="application/x-ndjson")

        @app.get("/api/v1/events")
        async def events(after: int, limit: int = 1000) -> Response:
            self.events_requests.append(after)
            self.events_requested.set()
            if self.hold_events is not None:
                await self.hold_events.wait()
            if after < self.purged_through:
                return _problem(410, f"events after {after} are no longer retained")
            page = [e for e in self.writer.log if e.seq is not None and e.seq > after][:limit]
            oldest = next((e.seq for e in self.writer.log if e.seq), None)
            return JSONResponse(
                {
                    "events": [e.model_dump(mode="json", by_alias=True) for e in page],
                    "last_seq": self.writer.seq,
                    "oldest_seq": oldest,
                }
            )

        return app

    def purge_through(self, seq: int) -> None:
        self.purged_through = seq
        self.writer.log = [e for e in self.writer.log if e.seq is not None and e.seq > seq]


def _problem(status: int, detail: str) -> Response:
    return JSONResponse(
        {"type": "about:blank", "title": "error", "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


# --- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.integration)])
def bus(request: pytest.FixtureRequest) -> Bus:
    name = "memory_bus" if request.param == "memory" else "rabbit_bus"
    return cast(Bus, request.getfixturevalue(name))


@pytest.fixture
def writer() -> Writer:
    return Writer()


@pytest.fixture
def api(writer: Writer) -> InventoryAPI:
    return InventoryAPI(writer)


@contextlib.asynccontextmanager
async def follower(
    bus: Bus, api: InventoryAPI, *, queue: str = QUEUE, start: bool = True, **options: Any
) -> AsyncIterator[ReadModelClient]:
    transport = options.pop("transport", None) or httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport) as http:
        client = ReadModelClient(bus, URL, queue, http=http, **options)
        try:
            if start:
                await client.start()
            yield client
        finally:
            await client.stop()


async def publish(bus: Bus, *envelopes: Envelope) -> None:
    await bus.publish("events", list(envelopes))


async def eventually(condition: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    for _ in itertools.count():
        if condition():
            return
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def snapshot_of(model: Inventory) -> list[bytes]:
    return list(dump_lines(model))


def assert_same_inventory(follower_model: Inventory, writer_model: Inventory) -> None:
    assert follower_model.seq == writer_model.seq
    assert snapshot_of(follower_model) == snapshot_of(writer_model)


async def unacknowledged(bus: Bus, queue: str) -> list[int]:
    """Sequence numbers of the messages left in ``queue`` (read, then handed back)."""
    received: list[int] = []
    gate = asyncio.Event()

    async def holding(delivery: Delivery) -> None:
        received.append(delivery.envelope.seq or 0)
        await gate.wait()

    subscription = await bus.consume(queue, holding, prefetch=1000)
    await asyncio.sleep(QUIET)
    # Cancelling with the handlers still waiting returns every message to the queue.
    await subscription.cancel()
    return sorted(received)


# --- tests ---------------------------------------------------------------------------------------


async def test_follower_loads_the_snapshot_then_applies_live_events(
    bus: Bus, writer: Writer, api: InventoryAPI
) -> None:
    writer.populate()
    snapshot_seq = writer.seq
    applied: list[int] = []

    async with follower(bus, api, on_applied=lambda e: applied.append(e.seq or 0)) as client:
        assert client.ready.is_set()
        assert client.seq == snapshot_seq
        assert_same_inventory(client.model, writer.model)

        await publish(bus, writer.add_dataset("/New/Run2024B-v1/RAW"))
        await publish(bus, writer.add_block("/New/Run2024B-v1/RAW", "b0"))
        await publish(bus, writer.create_replica("/New/Run2024B-v1/RAW", "T2_CH_CERN", "None"))
        await client.wait_for_seq(writer.seq, timeout=WAIT)

        assert_same_inventory(client.model, writer.model)
        assert applied == [snapshot_seq + 1, snapshot_seq + 2, snapshot_seq + 3]
        assert (client.applied, client.duplicates, client.gaps_filled, client.resyncs) == (
            3,
            0,
            0,
            0,
        )
        assert api.snapshot_requests == 1
        assert api.events_requests == []


async def test_events_published_while_the_snapshot_is_fetched_are_applied_after_it(
    bus: Bus, writer: Writer, api: InventoryAPI
) -> None:
    writer.populate()
    snapshot_seq = writer.seq
    api.hold_snapshot = asyncio.Event()

    async with follower(bus, api, start=False) as client:
        starting = asyncio.create_task(client.start())
        await asyncio.wait_for(api.snapshot_taken.wait(), WAIT)
        # The snapshot is taken at snapshot_seq; these events follow while it is in flight.
        for i in range(5):
            await publish(bus, writer.add_dataset(f"/During/Snap{i}/AOD"))
        assert not client.ready.is_set()
        api.hold_snapshot.set()
        await asyncio.wait_for(starting, WAIT)

        await client.wait_for_seq(writer.seq, timeout=WAIT)
        assert_same_inventory(client.model, writer.model)
        assert client.seq == snapshot_seq + 5
        assert (client.applied, client.gaps_filled, client.resyncs) == (5, 0, 0)
    assert await unacknowledged(bus, QUEUE) == []


async def test_events_already_in_the_snapshot_are_acked_and_ignored(
    bus: Bus, writer: Writer, api: InventoryAPI
) -> None:
    """Between binding the queue and taking the snapshot, events reach both."""
    writer.populate()

    async def overlap() -> None:
        await publish(bus, writer.add_group("DataOps"), writer.add_group("FacOps"))

    api.before_snapshot = overlap
    async with follower(bus, api) as client:
        await publish(bus, writer.add_group("IB_RelVal"))
        await client.wait_for_seq(writer.seq, timeout=WAIT)
        assert_same_inventory(client.model, writer.model)
        assert (client.applied, client.duplicates) == (1, 2)
        assert "FacOps" in client.model.groups
    assert await unacknowledged(bus, QUEUE) == []


async def test_redelivered_and_republished_events_are_ignored(
    bus: Bus, writer: Writer, api: InventoryAPI
) -> None:
    writer.populate()
    async with follower(bus, api) as client:
        first = writer.add_site("T2_DE_DESY")
        second = writer.set_site_status("T2_DE_DESY", SiteStatus.WAITROOM)
        await publish(bus, first, second)
        await client.wait_for_seq(writer.seq, timeout=WAIT)
        # A relay that crashed before recording its confirms publishes the same rows again.
        await publish(bus, first, second, first)
        third = writer.add_group("DataOps")
        await publish(bus, third)
        await client.wait_for_seq(writer.seq, timeout=WAIT)
        # Nothing but ``third`` in the queue can be ahead of the duplicates: all are settled.
        await eventually(lambda: client.duplicates >= 3)

        assert (client.applied, client.duplicates) == (3, 3)
        assert client.model.sites["T2_DE_DESY"].status is SiteStatus.WAITROOM
        assert_same_inventory(client.model, writer.model)
        assert api.events_requests == []
    assert await unacknowledged(bus, QUEUE) == []


async def test_a_missing_event_is_fetched_from_the_event_log(
    bus: Bus, writer: Writer, api: InventoryAPI
) -> None:
    writer.populate()
    async with follower(bus, api) as client:
        before = client.seq
        writer.add_dataset("/Lost/OnTheWay/AOD")  # committed, but its message never arrives
        await publish(bus, writer.add_block("/Lost/OnTheWay/AOD", "b0"))
        await client.wait_for_seq(writer.seq, timeout=WAIT)
        await publish(bus, writer.add_block("/Lost/OnTheWay/AOD", "b1"))
        await client.wait_for_seq(writer.seq, timeout=WAIT)

        assert_same_inventory(client.model, writer.model)
        assert api.events_requests == [before]
        assert (client.gaps_filled, client.resyncs) == (1, 0)
        # The two logged events plus the live one; the delivered copy of the second is a
        # duplicate by the time it is looked at.
        assert (client.applied, client.duplicates) == (3, 1)
        assert api.snapshot_requests == 1
    assert await unacknowledged(bus, QUEUE) == []


async def test_events_no_longer_in_the_event_log_cause_a_full_resync(
    bus: Bus, writer: Writer, api: InventoryAPI
) -> None:
    writer.populate()
    async with follower(bus, api) as client:
        before = client.seq
        writer.add_dataset("/Lost/AndPurged/AOD")
        writer.add_block("/Lost/AndPurged/AOD", "b0")
        api.purge_through(writer.seq)
        await publish(bus, writer.add_files("/Lost/AndPurged/AOD", "b0", [10, 20, 30]))
        await client.wait_for_seq(writer.seq, timeout=WAIT)

        assert snapshot_of(client.model) == snapshot_of(writer.model)
        assert api.events_requests == [before]
        assert (client.resyncs, client.gaps_filled) == (1, 0)
        assert api.snapshot_requests == 2
        assert client.in_sync

        # And it follows on from the new snapshot as usual.
        await publish(bus, writer.add_block("/Lost/AndPurged/AOD", "b1"))
        await client.wait_for_seq(writer.seq, timeout=WAIT)
        assert_same_inventory(client.model, writer.model)
    assert await unacknowledged(bus, QUEUE) == []


async def test_a_gap_the_event_log_cannot_fill_either_causes_a_full_resync(
    bus: Bus, writer: Writer, api: InventoryAPI
) -> None:
    writer.populate()
    async with follower(bus, api) as client:
        missing = writer.add_group("DataOps")
        # The log answers, but without the event (a replica of the inventory lagging behind).
        writer.log.remove(missing)
        await publish(bus, writer.add_group("FacOps"))
        await client.wait_for_seq(writer.seq, timeout=WAIT)

        assert_same_inventory(client.model, writer.model)
        assert (client.resyncs, client.gaps_filled) == (1, 0)


async def test_an_event_that_cannot_be_applied_causes_a_full_resync(
    bus: Bus, writer: Writer, api: InventoryAPI
) -> None:
    writer.populate()
    async with follower(bus, api) as client:
        real = writer.add_dataset("/Real/Dataset/AOD")
        # Same seq, but about a dataset the follower cannot know: the model is out of step.
        bogus = Envelope(
            type=InventoryEvent.BLOCK_CREATED,
            source="/dynamo/inventory",
            seq=real.seq,
            data=inv.BlocksChanged(
                blocks=[
                    inv.BlockState(
                        id=999, dataset="/No/Such/AOD", name="b0", last_update=writer.now()
                    )
                ]
            ).model_dump(mode="json"),
        )
        await publish(bus, bogus)
        await client.wait_for_seq(writer.seq, timeout=WAIT)

        assert_same_inventory(client.model, writer.model)
        assert client.resyncs == 1
        assert client.applied == 0
        assert client.duplicates == 1  # the bogus event, once the snapshot covered its seq
    assert await unacknowledged(bus, QUEUE) == []


async def test_buffered_events_stay_unacknowledged_until_applied(
    bus: Bus, writer: Writer, api: InventoryAPI
) -> None:
    writer.populate()
    api.hold_events = asyncio.Event()
    async with follower(bus, api) as client:
        writer.add_group("DataOps")  # never delivered: the follower must ask the log
        waiting = [writer.add_group(f"Group{i}") for i in range(3)]
        await publish(bus, *waiting)
        await asyncio.wait_for(api.events_requested.wait(), WAIT)
        await asyncio.sleep(QUIET)
        assert client.buffered == 3
    # Stopped mid-catch-up: nothing it held was acked, so all of it is still in the queue.
    assert await unacknowledged(bus, QUEUE) == [e.seq for e in waiting]


async def test_follower_equals_the_writer_after_a_stream_of_mixed_events(
    bus: Bus, writer: Writer, api: InventoryAPI
) -> None:
    rng = random.Random(20240501)
    writer.populate(datasets=5)
    sites = list(writer.model.sites)
    groups = ["None", "AnalysisOps"]
    counter = itertools.count()

    def change() -> Envelope:
        datasets = list(writer.model.datasets)
        with_blocks = [d for d in datasets if writer.model.datasets[d].blocks]
        roll = rng.random()
        if roll < 0.08 or not with_blocks:
            return writer.add_dataset(f"/Mixed{next(counter)}/Run2024C-v1/MINIAOD")
        dataset = rng.choice(with_blocks)
        d = writer.model.datasets[dataset]
        block = rng.choice(list(d.blocks))
        if roll < 0.12:
            return writer.add_group(f"Group{next(counter)}")
        if roll < 0.25:
            return writer.add_block(dataset, f"blk{next(counter)}")
        if roll < 0.40:
            sizes = [rng.randrange(1, 10**9) for _ in range(rng.randrange(1, 5))]
            return writer.add_files(dataset, block, sizes)
        if roll < 0.45 and d.blocks[block].num_files:
            return writer.remove_files(dataset, block, [0])
        if roll < 0.60:
            site = rng.choice(sites)
            group = rng.choice(groups + [g for g in writer.model.groups if g.startswith("Group")])
            if site in d.replicas:
                return writer.update_replica(dataset, site, group)
            return writer.create_replica(dataset, site, group)
        if roll < 0.68 and d.replicas:
            return writer.delete_replica(dataset, rng.choice(list(d.replicas)))
        if roll < 0.72 and d.replicas:
            site = rng.choice(list(d.replicas))
            replica = d.replicas[site]
            if replica.block_replicas:
                return writer.delete_block_replica(
                    dataset, rng.choice(list(replica.block_replicas)), site
                )
        if roll < 0.76:
            return writer.update_dataset(
                dataset, rng.choice(list(DatasetStatus)), rng.random() < 0.5
            )
        if roll < 0.80:
            unreplicated = [n for n in datasets if not writer.model.datasets[n].replicas]
            if unreplicated:
                return writer.delete_dataset(rng.choice(unreplicated))
        if roll < 0.86:
            name = f"/Cont/{rng.randrange(4)}"
            if name in writer.model.containers and rng.random() < 0.3:
                return writer.delete_container(name)
            return writer.set_container(name, rng.sample(datasets, min(3, len(datasets))))
        if roll < 0.92:
            name = f"Part{rng.randrange(4)}"
            if name in writer.model.partitions and rng.random() < 0.3:
                return writer.delete_partition(name)
            return writer.set_partition(name, f"replica.size > {rng.randrange(10**6)}")
        return writer.set_site_status(rng.choice(sites), rng.choice(list(SiteStatus)))

    async with follower(bus, api) as client:
        published: list[Envelope] = []
        for _ in range(60):
            batch = [change() for _ in range(rng.randrange(1, 8))]
            if published and rng.random() < 0.2:
                # Republished older events mixed in: must change nothing.
                batch = rng.sample(published, min(3, len(published))) + batch
            await publish(bus, *batch)
            published.extend(batch)
        await client.wait_for_seq(writer.seq, timeout=WAIT * 3)

        assert_same_inventory(client.model, writer.model)
        assert client.resyncs == 0
        assert client.gaps_filled == 0
        assert client.model.counts() == writer.model.counts()
    assert await unacknowledged(bus, QUEUE) == []


async def test_the_follower_retries_until_the_inventory_serves_a_snapshot(
    memory_bus: Bus, writer: Writer, api: InventoryAPI
) -> None:
    writer.populate()
    attempts = 0

    class Unreachable(httpx.AsyncBaseTransport):
        """Connection refused twice (inventory not up), then the app answers."""

        def __init__(self) -> None:
            self.inner = httpx.ASGITransport(app=api.app)

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal attempts
            attempts += 1
            if attempts <= 2:
                raise httpx.ConnectError("connection refused", request=request)
            return await self.inner.handle_async_request(request)

    api.snapshot_failures = 2  # then up, but not ready yet
    async with follower(memory_bus, api, transport=Unreachable(), retry_wait_max=0.05) as client:
        assert client.ready.is_set()
        assert attempts == 5
        assert api.snapshot_requests == 3
        assert_same_inventory(client.model, writer.model)


async def test_the_follower_gives_up_after_a_bounded_number_of_attempts(
    memory_bus: Bus, writer: Writer, api: InventoryAPI
) -> None:
    api.snapshot_failures = 100
    client_cm = follower(memory_bus, api, snapshot_attempts=3, retry_wait_max=0.01)
    with pytest.raises(httpx.HTTPStatusError):
        async with client_cm:
            pass
    assert api.snapshot_requests == 3


async def test_a_truncated_snapshot_is_fetched_again(
    memory_bus: Bus, writer: Writer, api: InventoryAPI
) -> None:
    writer.populate()
    api.truncate_snapshots = 1
    async with follower(memory_bus, api, retry_wait_max=0.01) as client:
        assert api.snapshot_requests == 2
        assert_same_inventory(client.model, writer.model)


async def test_a_client_error_on_the_snapshot_is_not_retried(
    memory_bus: Bus, writer: Writer
) -> None:
    app = FastAPI()  # an inventory URL that points at something else: 404
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        client = ReadModelClient(memory_bus, URL, QUEUE, http=http)
        with pytest.raises(httpx.HTTPStatusError) as excinfo:
            await client.start()
    assert excinfo.value.response.status_code == 404


async def test_the_model_is_not_readable_before_the_first_snapshot(
    memory_bus: Bus, writer: Writer, api: InventoryAPI
) -> None:
    async with follower(memory_bus, api, start=False) as client:
        assert not client.ready.is_set()
        assert client.seq == 0
        with pytest.raises(ReadModelNotReady):
            _ = client.model


async def test_waiting_for_a_sequence_not_reached_times_out(
    memory_bus: Bus, writer: Writer, api: InventoryAPI
) -> None:
    writer.populate()
    async with follower(memory_bus, api) as client:
        await client.wait_for_seq(writer.seq, timeout=0.01)  # already there: returns at once
        with pytest.raises(TimeoutError):
            await client.wait_for_seq(writer.seq + 1, timeout=QUIET)


async def test_a_failing_on_applied_hook_does_not_stop_replication(
    memory_bus: Bus, writer: Writer, api: InventoryAPI
) -> None:
    writer.populate()
    calls: list[int] = []

    async def hook(envelope: Envelope) -> None:
        calls.append(envelope.seq or 0)
        raise RuntimeError("the service's own bug")

    async with follower(memory_bus, api, on_applied=hook) as client:
        await publish(memory_bus, writer.add_group("DataOps"), writer.add_group("FacOps"))
        await client.wait_for_seq(writer.seq, timeout=WAIT)
        assert calls == [writer.seq - 1, writer.seq]
        assert_same_inventory(client.model, writer.model)


async def test_a_follower_restarted_on_its_queue_catches_up_with_what_it_missed(
    bus: Bus, writer: Writer, api: InventoryAPI
) -> None:
    writer.populate()
    async with follower(bus, api) as client:
        await publish(bus, writer.add_group("DataOps"))
        await client.wait_for_seq(writer.seq, timeout=WAIT)
    # Down for a while: its durable queue keeps collecting.
    missed = [writer.add_group(f"Group{i}") for i in range(4)]
    await publish(bus, *missed)
    async with follower(bus, api) as client:
        await publish(bus, writer.add_group("AfterRestart"))
        await client.wait_for_seq(writer.seq, timeout=WAIT)
        assert_same_inventory(client.model, writer.model)
        # What the queue held is covered by the new snapshot.
        assert client.duplicates == len(missed)
        assert client.applied == 1
    assert await unacknowledged(bus, QUEUE) == []


# --- over a real socket --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_large_snapshot_streams_over_http_from_an_inventory_started_later(
    bus: Bus, writer: Writer, api: InventoryAPI
) -> None:
    writer.populate(datasets=400)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(
        uvicorn.Config(api.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    client = ReadModelClient(bus, url, QUEUE, retry_wait_max=0.2, snapshot_attempts=50)
    starting = asyncio.create_task(client.start())
    serving: asyncio.Task[None] | None = None
    try:
        await asyncio.sleep(0.5)  # the follower is retrying against a closed port
        assert not client.ready.is_set()
        serving = asyncio.create_task(server.serve())
        await asyncio.wait_for(starting, WAIT * 3)

        assert_same_inventory(client.model, writer.model)
        assert client.model.counts()["block_replicas"] == 800
        await publish(bus, writer.add_group("DataOps"))
        await client.wait_for_seq(writer.seq, timeout=WAIT)
        assert_same_inventory(client.model, writer.model)
    finally:
        starting.cancel()
        await client.stop()
        server.should_exit = True
        if serving is not None:
            await serving
