"""Attribute providers: the policy variables that come from outside the inventory.

Each provider is given its outside data when it is made (the runtime fetches it before a
cycle) and fills its tables from the read model in ``fill``: decisions stay pure functions of
(read model, attributes, clock).

Provided here: locks (``blockreplica.is_locked``), popularity (``dataset.last_access``,
``replica.num_access``, ``dataset.usage_rank``), enforcer protection
(``replica.enforcer_protected``) and protected sites (``dataset.on_protected_site``). Every
other provider variable (``blockreplica.is_last_transfer_source``: the transfer service does
not publish its in-flight sources yet; ``dataset.tape_copy_requested``,
``dataset.demand_rank``, ...) keeps the default POLICY_LANGUAGE.md gives it (false, 0 or the
epoch), and a cycle that uses one lists it in its record.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from dynamo_common.model.objects import Inventory
from dynamo_common.policy.enforcer import EnforcerPolicy, evaluate_enforcer, protected_replicas
from dynamo_common.policy.parser import wildcard_pattern
from dynamo_common.policy.variables import REGISTRY, AttributeProvider, Attributes
from dynamo_detox.service.locks import Lock, locked_block_replicas
from dynamo_detox.service.popularity import AccessSummary, popularity_tables


class LockProvider:
    name = "locks"
    provides = frozenset({"blockreplica.is_locked"})

    def __init__(self, locks: Sequence[Lock]) -> None:
        self.locks = locks

    def fill(self, inventory: Inventory, attributes: Attributes, now: float) -> None:
        at = datetime.fromtimestamp(now, UTC)
        attributes.provide("blockreplica.is_locked").update(
            locked_block_replicas(inventory, self.locks, at)
        )


class PopularityProvider:
    name = "popularity"
    provides = frozenset({"dataset.last_access", "replica.num_access", "dataset.usage_rank"})

    def __init__(self, summaries: Sequence[AccessSummary]) -> None:
        self.summaries = summaries

    def fill(self, inventory: Inventory, attributes: Attributes, now: float) -> None:
        tables = popularity_tables(inventory, self.summaries, now)
        attributes.provide("dataset.last_access").update(tables.last_access)
        attributes.provide("replica.num_access").update(tables.num_access)
        attributes.provide("dataset.usage_rank").update(tables.usage_rank)


class EnforcerProvider:
    """``replica.enforcer_protected``: the replicas that rules with ``protect`` count."""

    name = "enforcer"
    provides = frozenset({"replica.enforcer_protected"})

    def __init__(self, policies: Sequence[EnforcerPolicy]) -> None:
        self.policies = policies

    def fill(self, inventory: Inventory, attributes: Attributes, now: float) -> None:
        table = attributes.provide("replica.enforcer_protected")
        for policy in self.policies:
            statuses = evaluate_enforcer(policy, inventory, now=now, attributes=attributes)
            for replica in protected_replicas(statuses):
                table[replica] = True


class ProtectedSitesProvider:
    """``dataset.on_protected_site``: some replica of the dataset is at a site that matches
    one of the operators' patterns."""

    name = "protected-sites"
    provides = frozenset({"dataset.on_protected_site"})

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)

    def fill(self, inventory: Inventory, attributes: Attributes, now: float) -> None:
        table = attributes.provide("dataset.on_protected_site")
        for site in inventory.sites.values():
            if any(_matches(pattern, site.name) for pattern in self.patterns):
                for replica in site.dataset_replicas.values():
                    table[replica.dataset] = True


def _matches(pattern: str, name: str) -> bool:
    regex = wildcard_pattern(pattern)
    return name == pattern if regex is None else regex.fullmatch(name) is not None


def fill_attributes(
    inventory: Inventory, providers: Sequence[AttributeProvider], now: float
) -> Attributes:
    """Run the providers into fresh tables through a registry, which checks that each one
    fills only tables that provider variables read."""
    registry = REGISTRY.copy()
    for provider in providers:
        registry.register_provider(provider)
    return registry.fill_attributes(inventory, now)
