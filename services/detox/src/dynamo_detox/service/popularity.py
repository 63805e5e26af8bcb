"""Popularity: accesses per dataset and site turned into the policy variables
``dataset.last_access``, ``replica.num_access`` and ``dataset.usage_rank``.

Access records arrive through the API (dataset, site, time, count) or any other
``PopularitySource``; a cycle reads them summarised per dataset and site.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from dynamo_common.model.objects import Dataset, DatasetReplica, Inventory

DAY = 86400.0
GB = 1e9


@dataclass(frozen=True, slots=True)
class AccessSummary:
    """The accesses of one dataset at one site: the last one ever recorded (within the
    retention of the records), and how many fell in the popularity window."""

    dataset: str
    site: str
    last_access: float
    window_accesses: int


class PopularitySource(Protocol):
    """Where a cycle gets its access summaries from (the detox database by default; a site
    monitoring feed could be another). Called before the decision, never during it."""

    async def summaries(self, window_start: float) -> list[AccessSummary]: ...


def usage_rank(idle_days: float, accesses: int, size: int) -> float:
    """Low = in demand: days since the dataset was last used, minus its accesses in the
    window per GB (a dataset nobody uses ranks by its idle days; every access per GB moves
    it a day closer to the front)."""
    return idle_days - accesses / max(size / GB, 1.0)


@dataclass(slots=True)
class PopularityTables:
    last_access: dict[Dataset, float]
    num_access: dict[DatasetReplica, int]
    usage_rank: dict[Dataset, float]


def popularity_tables(
    inventory: Inventory, summaries: Iterable[AccessSummary], now: float
) -> PopularityTables:
    """The three tables for the datasets of the inventory. A dataset never accessed is idle
    since its last update."""
    last: dict[Dataset, float] = {}
    accesses: dict[Dataset, int] = {}
    per_replica: dict[DatasetReplica, int] = {}
    datasets = inventory.datasets
    for summary in summaries:
        dataset = datasets.get(summary.dataset)
        if dataset is None:
            continue
        if summary.last_access > last.get(dataset, 0.0):
            last[dataset] = summary.last_access
        accesses[dataset] = accesses.get(dataset, 0) + summary.window_accesses
        replica = dataset.replicas.get(summary.site)
        if replica is not None and summary.window_accesses:
            per_replica[replica] = per_replica.get(replica, 0) + summary.window_accesses
    ranks: dict[Dataset, float] = {}
    for dataset in datasets.values():
        used = last.get(dataset, dataset.last_update)
        ranks[dataset] = usage_rank((now - used) / DAY, accesses.get(dataset, 0), dataset.size)
    return PopularityTables(last, per_replica, ranks)
