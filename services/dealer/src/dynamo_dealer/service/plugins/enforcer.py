"""Enforcer: the JSON rules of the policy language (``dynamo_common.policy.enforcer``).
Every missing copy of a rule is proposed at one of the rule's destination sites; compliance
per rule (already there, in flight, missing) is what ``compliance`` reports."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dynamo_common.model.objects import Inventory
from dynamo_common.policy.enforcer import EnforcerPolicy, RuleStatus, evaluate_enforcer
from dynamo_common.policy.variables import SiteContext
from dynamo_dealer.service.proposals import Proposal

PLUGIN = "enforcer"
Usage = Mapping[str, Mapping[str, tuple[int, int]]]


@dataclass(frozen=True, slots=True)
class Compliance:
    file: str
    rule: str
    protect: bool
    num_copies: int
    datasets: int
    there: int
    in_flight: int
    missing: int


def destinations(
    policy: EnforcerPolicy, status: RuleStatus, inventory: Inventory, usage: Usage, now: float
) -> frozenset[str]:
    names: set[str] = set()
    conditions = status.rule.destinations.compile(now, None)
    for site in inventory.sites.values():
        used, quota = usage.get(site.name, {}).get(
            policy.partition, (0, site.quotas.get(policy.partition, 0))
        )
        context = SiteContext(site, policy.partition, used, quota)
        if any(condition(context) for condition in conditions):
            names.add(site.name)
    return frozenset(names)


def evaluate(
    policies: Iterable[EnforcerPolicy], inventory: Inventory, usage: Usage, now: float
) -> list[tuple[EnforcerPolicy, RuleStatus]]:
    return [
        (policy, status)
        for policy in policies
        for status in evaluate_enforcer(policy, inventory, now=now, usage=usage)
    ]


def compliance(evaluated: Iterable[tuple[EnforcerPolicy, RuleStatus]]) -> list[Compliance]:
    return [
        Compliance(
            file=policy.file,
            rule=status.rule.name,
            protect=status.rule.protect,
            num_copies=status.rule.num_copies,
            datasets=status.datasets,
            there=status.there,
            in_flight=status.in_flight,
            missing=status.missing_copies,
        )
        for policy, status in evaluated
    ]


def proposals(
    evaluated: Iterable[tuple[EnforcerPolicy, RuleStatus]],
    inventory: Inventory,
    usage: Usage,
    now: float,
    priority: float,
) -> list[Proposal]:
    out: list[Proposal] = []
    for policy, status in evaluated:
        if not status.missing:
            continue
        allowed = destinations(policy, status, inventory, usage, now)
        for dataset, missing in status.missing.items():
            for _ in range(missing):
                out.append(
                    Proposal(
                        plugin=PLUGIN,
                        dataset=dataset.name,
                        group=policy.default_destination_group,
                        priority=priority,
                        allowed=allowed,
                        reference=status.rule.name,
                        reason=f"enforcer rule {status.rule.name} wants "
                        f"{status.rule.num_copies} copies",
                    )
                )
    return out
