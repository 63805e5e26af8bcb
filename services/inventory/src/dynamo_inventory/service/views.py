"""Read-side queries over the in-memory inventory: filtering, sorting, paging, statistics.
Pure functions of the model, so they are unit-testable and cost no database round trip."""

from __future__ import annotations

import fnmatch
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TypeVar

from dynamo_common.model.objects import Dataset, DatasetReplica, Inventory

T = TypeVar("T")

STATS_KEYS = ("site", "group", "tier", "storage_type", "status")


def wildcard(pattern: str) -> re.Pattern[str]:
    """Shell-style wildcards over whole names (``*`` also crosses ``/``, as operators expect
    of ``/SingleMuon/*/AOD``)."""
    return re.compile(fnmatch.translate(pattern))


def page(items: Sequence[T], limit: int, offset: int) -> list[T]:
    return list(items[offset : offset + limit])


def find_datasets(model: Inventory, name: str | None, status: str | None) -> list[Dataset]:
    datasets: Iterable[Dataset] = model.datasets.values()
    if name:
        if any(ch in name for ch in "*?["):
            match = wildcard(name).match
            datasets = (d for d in datasets if match(d.name))
        else:
            exact = model.datasets.get(name)
            datasets = [exact] if exact else []
    if status:
        datasets = (d for d in datasets if d.status.value == status.lower())
    return sorted(datasets, key=lambda d: d.name)


def site_replicas(model: Inventory, site: str, dataset_pattern: str | None) -> list[DatasetReplica]:
    replicas: Iterable[DatasetReplica] = model.sites[site].dataset_replicas.values()
    if dataset_pattern:
        match = wildcard(dataset_pattern).match
        replicas = (r for r in replicas if match(r.dataset.name))
    return sorted(replicas, key=lambda r: r.dataset.name)


def site_used(model: Inventory) -> dict[str, int]:
    used: dict[str, int] = defaultdict(int)
    for site in model.sites.values():
        used[site.name] = sum(
            br.size for dr in site.dataset_replicas.values() for br in dr.block_replicas.values()
        )
    return used


def stats(model: Inventory, group_by: Sequence[str]) -> list[tuple[dict[str, str], int, int]]:
    """Replica count and bytes of block replicas grouped by any of ``STATS_KEYS``."""
    unknown = [k for k in group_by if k not in STATS_KEYS]
    if unknown:
        raise ValueError(f"cannot group by {unknown}; choose from {list(STATS_KEYS)}")
    sums: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0])
    for dataset in model.datasets.values():
        tier = dataset.tier
        for replica in dataset.replicas.values():
            site = replica.site
            for br in replica.block_replicas.values():
                values = {
                    "site": site.name,
                    "group": br.group.name,
                    "tier": tier,
                    "storage_type": site.storage_type.value,
                    "status": dataset.status.value,
                }
                key = tuple(values[k] for k in group_by)
                entry = sums[key]
                entry[0] += 1
                entry[1] += br.size
    return [
        (dict(zip(group_by, key, strict=True)), count, size)
        for key, (count, size) in sorted(sums.items())
    ]
