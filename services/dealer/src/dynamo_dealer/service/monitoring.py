"""The replicas the dealer placed that are still in flight, their progress, and which are
stuck: less than 1% of their volume arrived over the window (5 days by default).

A placement is recorded with its cycle, and its replica is created by a command sent
afterwards (resent while unanswered). Until the inventory has answered that command and the
read model shows the state the answer left behind, a missing replica says nothing: it may not
be created yet. So a placement is over only on evidence: its command was refused, its replica
is complete, or the read model has reached the sequence number of the answer and the replica
is not there (deleted since, or never created).

Progress over a window needs a reference: each placement keeps a mark (bytes copied and
when); the mark moves forward whenever at least 1% more has arrived, so a replica is stuck
when its mark is older than the window.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dynamo_common.model.objects import Inventory

STEP = 0.01


@dataclass(frozen=True, slots=True)
class Tracked:
    """A placement as recorded: what, where, its progress mark, and the answer to the
    command that creates its replica."""

    id: int
    dataset: str
    block: str | None
    site: str
    placed: float
    mark_bytes: int
    mark_time: float
    answered: int | None = None
    """The inventory sequence number from which the read model shows the outcome of the
    creation command (None: not answered yet)."""
    refusal: str | None = None
    """Why the command was refused (None: not refused)."""


@dataclass(frozen=True, slots=True)
class InFlight:
    tracked: Tracked
    copied: int
    total: int
    mark_bytes: int
    mark_time: float
    stuck: bool

    @property
    def progress(self) -> float:
        return self.copied / self.total if self.total else 1.0


@dataclass(frozen=True, slots=True)
class Volume:
    copied: int = 0
    total: int = 0
    replicas: int = 0
    stuck: int = 0


def state(inventory: Inventory, tracked: Tracked) -> tuple[int, int, bool] | None:
    """(bytes copied, bytes in total, complete) of a placement, or None when its replica is
    gone from the inventory (deleted, or never created)."""
    dataset = inventory.datasets.get(tracked.dataset)
    replica = dataset.replicas.get(tracked.site) if dataset is not None else None
    if dataset is None or replica is None:
        return None
    if tracked.block is None:
        return replica.size, dataset.size, replica.is_complete
    block_replica = replica.block_replicas.get(tracked.block)
    if block_replica is None:
        return None
    return block_replica.size, block_replica.block.size, block_replica.is_complete


def settled(inventory: Inventory, tracked: Tracked) -> bool:
    """Whether the read model shows what the answer to the placement's command left behind."""
    return tracked.answered is not None and inventory.seq >= tracked.answered


def in_flight(
    inventory: Inventory, placements: Iterable[Tracked], now: float, stuck_after: float
) -> tuple[list[InFlight], list[Tracked]]:
    """(the placements in flight with their progress and moved marks, the placements that
    are over: refused, complete, or gone once the read model shows the answer)."""
    flying: list[InFlight] = []
    over: list[Tracked] = []
    for tracked in placements:
        if tracked.refusal is not None:
            over.append(tracked)
            continue
        found = state(inventory, tracked)
        if found is None:
            if settled(inventory, tracked):
                over.append(tracked)
                continue
            # Not created yet as far as the read model knows, however long it takes: a
            # placement waiting that long shows as stuck, which is what it is.
            found = (0, _size(inventory, tracked), False)
        if found[2]:
            over.append(tracked)
            continue
        copied, total, _ = found
        mark_bytes, mark_time = tracked.mark_bytes, tracked.mark_time
        if copied - mark_bytes >= STEP * total:
            mark_bytes, mark_time = copied, now
        stuck = now - mark_time > stuck_after
        flying.append(InFlight(tracked, copied, total, mark_bytes, mark_time, stuck))
    return flying, over


def _size(inventory: Inventory, tracked: Tracked) -> int:
    dataset = inventory.datasets.get(tracked.dataset)
    if dataset is None:
        return 0
    if tracked.block is None:
        return dataset.size
    block = dataset.blocks.get(tracked.block)
    return block.size if block is not None else 0


def summarise(flying: Iterable[InFlight]) -> tuple[Volume, dict[str, Volume]]:
    """(in total, per site)."""
    per_site: dict[str, Volume] = {}
    total = Volume()
    for item in flying:
        site = per_site.get(item.tracked.site, Volume())
        per_site[item.tracked.site] = _add(site, item)
        total = _add(total, item)
    return total, dict(sorted(per_site.items()))


def _add(volume: Volume, item: InFlight) -> Volume:
    return Volume(
        volume.copied + item.copied,
        volume.total + item.total,
        volume.replicas + 1,
        volume.stuck + item.stuck,
    )
