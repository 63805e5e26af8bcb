"""Which queued files go to the backend now, grouped per link, under caps and priorities."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple


class Link(NamedTuple):
    """A transfer link. Deletions have no source: their "link" is the site alone."""

    source: str | None
    destination: str


@dataclass(frozen=True, slots=True)
class Candidate:
    task_id: int
    link: Link
    priority: int  # 1 (lowest) .. 5 (highest)
    created: float  # seconds since the epoch: older first within a priority
    size: int = 0


@dataclass(slots=True)
class Batch:
    link: Link
    task_ids: list[int] = field(default_factory=list)
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class Caps:
    per_link: int
    total: int
    batch_size: int

    def __post_init__(self) -> None:
        if self.per_link < 1 or self.total < 1 or self.batch_size < 1:
            raise ValueError("caps must be >= 1")


def plan_batches(
    candidates: Iterable[Candidate],
    active: Mapping[Link, int],
    caps: Caps,
) -> list[Batch]:
    """Take candidates in priority order (highest first, then oldest, then lowest id) while
    their link and the total have room; ``active`` counts files already submitted per link.

    Strict priority order means a high-priority file never waits behind a low-priority one
    for the total cap; the per-link cap keeps one busy link from taking every slot.
    Batches are cut at ``caps.batch_size`` files: one backend job each.
    """
    ordered = sorted(candidates, key=lambda c: (-c.priority, c.created, c.task_id))
    room_total = caps.total - sum(active.values())
    used: dict[Link, int] = {}
    open_batch: dict[Link, Batch] = {}
    batches: list[Batch] = []
    for cand in ordered:
        if room_total <= 0:
            break
        link = cand.link
        in_use = active.get(link, 0) + used.get(link, 0)
        if in_use >= caps.per_link:
            continue
        batch = open_batch.get(link)
        if batch is None or len(batch.task_ids) >= caps.batch_size:
            batch = Batch(link)
            open_batch[link] = batch
            batches.append(batch)
        batch.task_ids.append(cand.task_id)
        batch.bytes += cand.size
        used[link] = used.get(link, 0) + 1
        room_total -= 1
    return batches
