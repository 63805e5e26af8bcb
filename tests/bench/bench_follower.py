"""(3) A follower applying inventory events, against a plain Python loop over the same bytes.

The follower does what every service holding the inventory does for each event received:
``Envelope.from_json`` on the raw bytes, then ``apply_sequenced`` on its ``Inventory``.
The floor parses the same bytes with ``orjson.loads`` and sets the attributes of one plain
object per item the event carries.

Two streams:

* ``follower.events``: pessimistic, built with the contract models: one block replica per
  event, every block replica of the grid created (empty) and later completed (an update),
  on top of the grid's sites, groups, datasets and blocks (applied first, untimed).
* ``follower.replica_changes``: the real inventory's own committed events from the
  throughput benchmark (grid registration, then batched replica creations and deletions),
  replayed from sequence 1; counted in object changes (items in the events' lists).
"""

from __future__ import annotations

import cProfile
import gc
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel

from dynamo_common import gridgen
from dynamo_common.messages import inventory as inv
from dynamo_common.messages.envelope import Envelope
from dynamo_common.messages.registry import InventoryEvent
from dynamo_common.model.apply import apply_sequenced
from dynamo_common.model.objects import Inventory
from tests.bench.report import Result, Target, log, profile_summary, result

SEED = 11
SOURCE = "/dynamo/inventory"
EVENTS_TARGET = Target(value=50_000, direction="min")
MAX_REPLICAS = 300_000
"""At most this many block replicas (twice as many events) in the one-per-event stream, so
that the ``cms`` scale does not hold millions of envelopes in memory."""


class Plain:
    """The floor's object: a plain instance whose attributes are set from a JSON object."""


def _envelope(seq: int, event: InventoryEvent, data: BaseModel, when: datetime) -> bytes:
    return Envelope(
        type=event.value,
        source=SOURCE,
        seq=seq,
        time=when,
        correlation_id=str(uuid.uuid4()),
        data=data.model_dump(mode="json"),
    ).to_json()


def grid_stream(grid: gridgen.Grid) -> tuple[list[bytes], list[bytes]]:
    """(setup events: the grid without replicas, a few large events; then the measured
    events: one block replica per event, each created empty and later completed)."""
    now = datetime.now(UTC)
    setup: list[tuple[InventoryEvent, BaseModel]] = [
        (
            InventoryEvent.GROUP_CREATED,
            inv.GroupsChanged(
                groups=[
                    inv.GroupState(id=i, name=g.name, olevel=g.olevel)
                    for i, g in enumerate(grid.groups, 1)
                ]
            ),
        ),
        (
            InventoryEvent.SITE_CREATED,
            inv.SitesChanged(
                sites=[
                    inv.SiteState(
                        id=i,
                        name=s.name,
                        storage_type=s.storage_type,
                        status=s.status,
                        host=s.host,
                        protocols=[
                            inv.Protocol(
                                name=p,
                                rules=[inv.PfnRule(match=m, result=r) for m, r in rules],
                            )
                            for p, rules in s.protocols
                        ],
                        quotas=dict(s.quotas),
                    )
                    for i, s in enumerate(grid.sites, 1)
                ]
            ),
        ),
        (
            InventoryEvent.DATASET_CREATED,
            inv.DatasetsChanged(
                datasets=[
                    inv.DatasetState(
                        id=i,
                        name=d.name,
                        status=d.status,
                        data_type=d.data_type,
                        software_version=d.software_version,
                        is_open=d.is_open,
                        last_update=now,
                    )
                    for i, d in enumerate(grid.datasets, 1)
                ]
            ),
        ),
    ]
    blocks = grid.blocks
    block_states = [
        inv.BlockState(
            id=b + 1,
            dataset=grid.datasets[blocks.dataset[b]].name,
            name=blocks.name[b],
            size=blocks.size[b],
            num_files=blocks.num_files[b],
            is_open=bool(blocks.is_open[b]),
            last_update=now,
        )
        for b in range(len(blocks))
    ]
    for start in range(0, len(block_states), 5000):
        setup.append(
            (
                InventoryEvent.BLOCK_CREATED,
                inv.BlocksChanged(blocks=block_states[start : start + 5000]),
            )
        )
    setup_raw = [_envelope(i, e, d, now) for i, (e, d) in enumerate(setup, 1)]

    brs = grid.block_replicas
    count = min(len(brs), MAX_REPLICAS)
    created: list[bytes] = []
    completed: list[bytes] = []
    seq = len(setup_raw)
    for i in range(count):
        b = brs.block[i]
        fields: dict[str, Any] = {
            "dataset": grid.datasets[blocks.dataset[b]].name,
            "block": blocks.name[b],
            "site": grid.sites[brs.site[i]].name,
            "group": grid.group_name(brs.group[i]),
            "is_custodial": bool(brs.is_custodial[i]),
            "last_update": now,
        }
        seq += 1
        created.append(
            _envelope(
                seq,
                InventoryEvent.REPLICA_CREATED,
                inv.ReplicasChanged(
                    block_replicas=[inv.BlockReplicaState(size=0, num_files=0, **fields)]
                ),
                now,
            )
        )
    for i in range(count):
        b = brs.block[i]
        seq += 1
        completed.append(
            _envelope(
                seq,
                InventoryEvent.REPLICA_UPDATED,
                inv.ReplicasChanged(
                    block_replicas=[
                        inv.BlockReplicaState(
                            dataset=grid.datasets[blocks.dataset[b]].name,
                            block=blocks.name[b],
                            site=grid.sites[brs.site[i]].name,
                            group=grid.group_name(brs.group[i]),
                            is_custodial=bool(brs.is_custodial[i]),
                            size=brs.size[i],
                            num_files=brs.num_files[i],
                            last_update=now,
                        )
                    ]
                ),
                now,
            )
        )
    return setup_raw, created + completed


# ------------------------------------------------------------------------ the two loops


def follow(model: Inventory, stream: Sequence[bytes | str]) -> int:
    """The follower: parse each envelope and apply it in sequence. Returns events applied."""
    applied = 0
    for raw in stream:
        envelope = Envelope.from_json(raw)
        assert envelope.seq is not None
        if apply_sequenced(model, envelope.seq, envelope.type, envelope.data):
            applied += 1
    return applied


def plain_loop(stream: Sequence[bytes | str], after: int = 0) -> int:
    """The floor: the same bytes through orjson, one plain object per item, attributes set
    from the item's fields; the sequence number checked like the follower's (the stream
    starts after ``after``)."""
    last = after
    objects: list[Plain] = []
    keep = objects.append
    for raw in stream:
        envelope = orjson.loads(raw)
        seq = envelope["seq"]
        if seq != last + 1:
            raise RuntimeError(f"gap at {seq}")
        last = seq
        for items in envelope["data"].values():
            for item in items:
                obj = Plain()
                if isinstance(item, dict):
                    obj.__dict__.update(item)
                else:
                    obj.__dict__["name"] = item
                keep(obj)
    return len(objects)


def changes_in(stream: Sequence[bytes | str]) -> int:
    """Items (object states or keys) the events carry: the object changes they announce."""
    return sum(len(items) for raw in stream for items in orjson.loads(raw)["data"].values())


def _timed(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _measure(
    setup: Sequence[bytes | str], stream: Sequence[bytes | str], repetitions: int
) -> tuple[list[float], list[float]]:
    """Seconds per repetition of (follower, floor) over ``stream``, interleaved; the follower
    starts each repetition from a model that has applied ``setup`` (untimed)."""
    follower: list[float] = []
    floor: list[float] = []
    for _ in range(repetitions):
        floor.append(_timed(lambda: plain_loop(stream, after=len(setup))))
        model = Inventory()
        follow(model, setup)
        follower.append(_timed(lambda m=model: _check(follow(m, stream), len(stream))))  # type: ignore[misc]
    return follower, floor


def _check(applied: int, expected: int) -> None:
    if applied != expected:
        raise RuntimeError(f"the follower applied {applied} of {expected} events")


def run(
    scale: str,
    repetitions: int = 3,
    event_log: Sequence[tuple[int, str]] | None = None,
    profile: bool = False,
) -> list[Result]:
    log(f"follower: building the one-replica-per-event stream ({scale} grid)")
    grid = gridgen.generate(scale, seed=SEED)
    setup, stream = grid_stream(grid)
    follower, floor = _measure(setup, stream, repetitions)
    events = len(stream)
    results = [
        result(
            "follower.events",
            scale,
            [events / s for s in follower],
            "events/s",
            floor_runs=[events / s for s in floor],
            floor_unit="events/s",
            floor_label="orjson + plain objects, same bytes",
            target=EVENTS_TARGET,
            details={
                "events": events,
                "block_replicas_per_event": 1,
                "stream": "every block replica created empty, then completed",
                "bytes_per_event": round(sum(map(len, stream)) / events),
                "setup_events_untimed": len(setup),
            },
        )
    ]
    if profile:
        model = Inventory()
        follow(model, setup)
        profiler = cProfile.Profile()
        profiler.enable()
        follow(model, stream)
        profiler.disable()
        text, top = profile_summary(profiler)
        results[0].details["profile_top"] = top
        results[0].details["profile_text"] = text
    if event_log:
        log(f"follower: replaying the inventory's own {len(event_log)} events")
        raw = [envelope for _, envelope in event_log]
        changes = changes_in(raw)
        follower, floor = _measure([], raw, repetitions)
        results.append(
            result(
                "follower.replica_changes",
                scale,
                [changes / s for s in follower],
                "changes/s",
                floor_runs=[changes / s for s in floor],
                floor_unit="changes/s",
                floor_label="orjson + plain objects, same bytes",
                details={
                    "events": len(raw),
                    "changes": changes,
                    "events_per_s": [round(len(raw) / s) for s in follower],
                    "median_events_per_s": round(len(raw) / statistics.median(follower)),
                    "stream": "the inventory's committed events of the throughput benchmark",
                },
            )
        )
    return results
