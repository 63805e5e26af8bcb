"""Subscriptions: a site follows a dataset (its new blocks) or a container (its new
datasets). Every cycle proposes what the site lacks: the whole dataset when it has no
replica there, else each block neither complete there nor placed by the dealer."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace

from dynamo_common.model.objects import Inventory
from dynamo_dealer.service.proposals import Proposal

PLUGIN = "subscriptions"


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    id: int
    item: str
    """A dataset name or a container name."""
    site: str
    group: str


def datasets_of(inventory: Inventory, item: str) -> list[str]:
    if item in inventory.datasets:
        return [item]
    container = inventory.containers.get(item)
    if container is None:
        return []
    return [d for d in container.datasets if d in inventory.datasets]


def proposals(
    inventory: Inventory,
    subscriptions: Iterable[SubscriptionSpec],
    priority: float,
    placed: Collection[tuple[str, str | None, str]],
) -> list[Proposal]:
    out: list[Proposal] = []
    for sub in subscriptions:
        for name in datasets_of(inventory, sub.item):
            dataset = inventory.datasets[name]
            replica = dataset.replicas.get(sub.site)
            whole = Proposal(
                plugin=PLUGIN,
                dataset=name,
                group=sub.group,
                priority=priority,
                site=sub.site,
                reference=str(sub.id),
                reason=f"subscription {sub.id} of {sub.site} to {sub.item}",
            )
            if replica is None:
                if dataset.blocks:
                    out.append(whole)
                continue
            for block_name in sorted(dataset.blocks):
                held = replica.block_replicas.get(block_name)
                if held is not None and held.is_complete:
                    continue
                if (name, block_name, sub.site) in placed:
                    continue
                out.append(replace(whole, block=block_name))
    return out
