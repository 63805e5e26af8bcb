"""Balancer: from the last detox cycle, the protected volume of each site (what detox may
not delete). Sites whose protected fraction of the quota stands far above the others hold
last copies that no deletion can free; the balancer copies such last copies (the largest
first) off the most protected site, one at a time, counting each as no longer protected
there, until the spread between the most and the least protected site is under the
threshold."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dynamo_common.messages.types import NO_GROUP, StorageType
from dynamo_common.model.objects import Dataset, DatasetReplica, Inventory
from dynamo_dealer.service.proposals import Proposal

PLUGIN = "balancer"


@dataclass(frozen=True, slots=True)
class BalancerRules:
    threshold: float = 0.1
    """Largest accepted difference of protected fractions between two sites."""
    max_proposals: int = 1000
    default_group: str = NO_GROUP


def _is_last_copy(dataset: Dataset, replica: DatasetReplica) -> bool:
    if not replica.is_complete:
        return False
    for other in dataset.replicas.values():
        if other is not replica and other.site.storage_type is StorageType.DISK:
            return False
    return True


def owner(replica: DatasetReplica, default: str) -> str:
    if replica.group.name != NO_GROUP:
        return replica.group.name
    for block_replica in replica.block_replicas.values():
        if block_replica.group.name != NO_GROUP:
            return block_replica.group.name
    return default


def proposals(
    inventory: Inventory,
    protected: Mapping[str, tuple[int, int]],
    rules: BalancerRules,
    priority: float,
) -> list[Proposal]:
    """``protected``: site -> (protected bytes, quota) from the last detox cycle."""
    level = {
        site: used / quota
        for site, (used, quota) in protected.items()
        if quota > 0 and site in inventory.sites
    }
    if len(level) < 2:
        return []
    quotas = {site: protected[site][1] for site in level}
    queues: dict[str, list[DatasetReplica]] = {}
    out: list[Proposal] = []
    while len(out) < rules.max_proposals:
        top = max(level, key=lambda s: (level[s], s))
        bottom = min(level.values())
        if level[top] - bottom <= rules.threshold:
            break
        if top not in queues:
            site = inventory.sites[top]
            queues[top] = sorted(
                (r for r in site.dataset_replicas.values() if _is_last_copy(r.dataset, r)),
                key=lambda r: (r.size, r.dataset.name),
            )
        queue = queues[top]
        if not queue:
            del level[top]
            if len(level) < 2:
                break
            continue
        replica = queue.pop()
        level[top] -= replica.size / quotas[top]
        out.append(
            Proposal(
                plugin=PLUGIN,
                dataset=replica.dataset.name,
                group=owner(replica, rules.default_group),
                priority=priority,
                weight=float(replica.size),
                reference=top,
                reason=f"last copy on {top}, the most protected site",
            )
        )
    return out
