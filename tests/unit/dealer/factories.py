"""Small in-memory grids for the dealer's unit tests (on top of the policy factories)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dynamo_common.messages.types import SiteStatus, StorageType
from dynamo_common.model.objects import Inventory
from dynamo_common.policy.partitions import site_usage
from dynamo_dealer.service.engine import CycleResult, EngineConfig, PlacedKey, decide
from dynamo_dealer.service.placement import PlacementRule
from dynamo_dealer.service.proposals import Proposal
from dynamo_dealer.service.sites import SiteRules
from tests.unit.policy.factories import (
    GB,
    NOW,
    TB,
    add_dataset,
    add_partition,
    add_replica,
    add_site,
    make_inventory,
)

__all__ = ["GB", "NOW", "TB", "add_dataset", "add_replica", "add_site", "grid", "run"]


def grid(
    sites: dict[str, int],
    *,
    datasets: Sequence[tuple[str, int]] = (),
    source: str = "T1_SOURCE",
    statuses: dict[str, SiteStatus] | None = None,
) -> Inventory:
    """Ready disk sites with a Physics quota each (bytes), a large source site holding one
    complete single-block replica of each dataset."""
    inventory = make_inventory()
    add_partition(inventory, "Physics", "site.storage_type == DISK")
    add_site(inventory, source, StorageType.DISK, quotas={"Physics": 10**18})
    for name, quota in sites.items():
        status = (statuses or {}).get(name, SiteStatus.READY)
        add_site(inventory, name, StorageType.DISK, status, quotas={"Physics": quota})
    for name, size in datasets:
        add_replica(
            inventory, add_dataset(inventory, name, block_sizes=(size,)), inventory.sites[source]
        )
    return inventory


def run(
    inventory: Inventory,
    proposals: Iterable[Proposal],
    *,
    patterns: tuple[str, ...] = ("T2_*",),
    max_cycle_volume: int = 2**62,
    max_site_volume: int = 2**62,
    target: float = 0.9,
    request_ceiling: float | None = None,
    pending: float = 1.0,
    placed: frozenset[PlacedKey] = frozenset(),
    vetoes: Sequence[PlacementRule] = (),
    seed: int = 1,
) -> CycleResult:
    config = EngineConfig(
        sites=SiteRules(
            partition="Physics",
            patterns=patterns,
            target_occupancy=target,
            request_occupancy=request_ceiling,
            max_pending_fraction=pending,
            max_site_volume=max_site_volume,
        ),
        max_cycle_volume=max_cycle_volume,
        seed=seed,
    )
    return decide(
        inventory,
        proposals,
        config,
        site_usage(inventory, now=NOW),
        placed=placed,
        vetoes=vetoes,
    )
