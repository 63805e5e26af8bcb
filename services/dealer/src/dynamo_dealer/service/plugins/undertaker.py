"""Undertaker: data whose only copies sit on sites in morgue, or listed for evacuation, is
copied elsewhere, so that such a site can be emptied (once nothing there is a last copy,
detox may delete it all)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from dynamo_common.messages.types import NO_GROUP, SiteStatus
from dynamo_common.model.objects import Inventory
from dynamo_dealer.service.plugins.balancer import owner
from dynamo_dealer.service.proposals import Proposal

PLUGIN = "undertaker"


@dataclass(frozen=True, slots=True)
class UndertakerRules:
    evacuate: frozenset[str] = frozenset()
    """Sites to empty although not (yet) in morgue."""
    default_group: str = NO_GROUP


def leaving_sites(inventory: Inventory, evacuate: Collection[str]) -> frozenset[str]:
    return frozenset(
        name
        for name, site in inventory.sites.items()
        if site.status is SiteStatus.MORGUE or name in evacuate
    )


def proposals(inventory: Inventory, rules: UndertakerRules, priority: float) -> list[Proposal]:
    leaving = leaving_sites(inventory, rules.evacuate)
    out: list[Proposal] = []
    seen: set[str] = set()
    for name in sorted(leaving):
        for replica in inventory.sites[name].dataset_replicas.values():
            dataset = replica.dataset
            if dataset.name in seen:
                continue
            if any(site not in leaving for site in dataset.replicas):
                # Complete or in flight elsewhere: that copy will stay.
                continue
            seen.add(dataset.name)
            out.append(
                Proposal(
                    plugin=PLUGIN,
                    dataset=dataset.name,
                    group=owner(replica, rules.default_group),
                    priority=priority,
                    weight=float(dataset.size),
                    reference=name,
                    reason=f"only copies on sites being emptied ({name})",
                )
            )
    return out
