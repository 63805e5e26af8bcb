"""Popularity: accesses weighted by their age (exponential decay with a configurable
half-life) decide how many copies a dataset should have, up to a cap, for datasets under a
size limit; the most wanted go first.

A dataset with weight w wants ``1 + floor(w / weight_per_copy)`` copies (capped) at the
dealer's target sites; the copies it lacks are proposed with w as their weight.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from dynamo_common.messages.types import DatasetStatus
from dynamo_common.model.objects import Inventory
from dynamo_dealer.service.proposals import Proposal

PLUGIN = "popularity"
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Access:
    dataset: str
    time: float
    count: int


@dataclass(frozen=True, slots=True)
class PopularityRules:
    group: str
    half_life_days: float = 7.0
    weight_per_copy: float = 100.0
    max_copies: int = 3
    max_dataset_size: int = 10**13


def decayed_weights(
    accesses: Iterable[Access], now: float, half_life_days: float
) -> dict[str, float]:
    """Per dataset, the sum of its accesses each weighted by 2^(-age / half-life) (an access
    in the future counts fully)."""
    rate = math.log(2) / (half_life_days * DAY)
    weights: dict[str, float] = {}
    for access in accesses:
        age = max(now - access.time, 0.0)
        weights[access.dataset] = weights.get(access.dataset, 0.0) + access.count * math.exp(
            -rate * age
        )
    return weights


def wanted_copies(weight: float, rules: PopularityRules) -> int:
    return min(rules.max_copies, 1 + int(weight // rules.weight_per_copy))


def proposals(
    inventory: Inventory,
    weights: Mapping[str, float],
    rules: PopularityRules,
    targets: Collection[str],
    priority: float,
) -> list[Proposal]:
    out: list[Proposal] = []
    for name, weight in sorted(weights.items(), key=lambda kv: (-kv[1], kv[0])):
        dataset = inventory.datasets.get(name)
        if dataset is None or dataset.status is not DatasetStatus.VALID:
            continue
        if dataset.size > rules.max_dataset_size or not dataset.blocks:
            continue
        wanted = wanted_copies(weight, rules)
        there = sum(1 for site in dataset.replicas if site in targets)
        for _ in range(wanted - there):
            out.append(
                Proposal(
                    plugin=PLUGIN,
                    dataset=name,
                    group=rules.group,
                    priority=priority,
                    weight=weight,
                    reference=f"weight {weight:.1f}",
                    reason=f"{there} copies, popularity wants {wanted}",
                )
            )
    return out
