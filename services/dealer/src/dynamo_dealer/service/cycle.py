"""One dealer cycle as a pure function: every enabled plugin proposes, the engine decides.

Inputs from outside the read model (requests, subscriptions, access records, the last
detox cycle, earlier placements) are gathered before the call; nothing here awaits, so the
read model cannot change under a cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from dynamo_common.model.objects import Inventory
from dynamo_common.policy.enforcer import EnforcerPolicy
from dynamo_common.policy.partitions import site_usage
from dynamo_dealer.service.engine import CycleResult, EngineConfig, PlacedKey, decide
from dynamo_dealer.service.placement import PlacementRule
from dynamo_dealer.service.plugins import (
    balancer,
    enforcer,
    popularity,
    requests,
    subscriptions,
    undertaker,
)
from dynamo_dealer.service.proposals import Proposal

PLUGINS = (
    requests.PLUGIN,
    subscriptions.PLUGIN,
    popularity.PLUGIN,
    enforcer.PLUGIN,
    balancer.PLUGIN,
    undertaker.PLUGIN,
)


@dataclass(frozen=True, slots=True)
class DealerConfig:
    engine: EngineConfig
    plugins: dict[str, float]
    """Enabled plugins and their priorities (1..5: also the transfers' priority)."""
    popularity: popularity.PopularityRules
    balancer: balancer.BalancerRules = field(default_factory=balancer.BalancerRules)
    undertaker: undertaker.UndertakerRules = field(default_factory=undertaker.UndertakerRules)
    enforcers: tuple[EnforcerPolicy, ...] = ()
    vetoes: tuple[PlacementRule, ...] = ()


@dataclass(frozen=True, slots=True)
class CycleInputs:
    requests: Sequence[requests.RequestSpec] = ()
    subscriptions: Sequence[subscriptions.SubscriptionSpec] = ()
    accesses: Sequence[popularity.Access] = ()
    protected: dict[str, tuple[int, int]] = field(default_factory=dict)
    """site -> (protected bytes, quota) of the last detox cycle (empty: none known)."""
    placed: frozenset[PlacedKey] = frozenset()


@dataclass(slots=True)
class CycleOutput:
    result: CycleResult
    compliance: list[enforcer.Compliance]
    proposed: dict[str, int]
    """Proposals per plugin."""


def run_cycle(
    inventory: Inventory, inputs: CycleInputs, config: DealerConfig, now: float
) -> CycleOutput:
    usage = site_usage(inventory, now=now)
    enabled = config.plugins
    leaving = undertaker.leaving_sites(inventory, config.undertaker.evacuate)
    engine = replace(config.engine, evacuating=config.engine.evacuating | leaving)
    proposals: list[Proposal] = []
    compliance: list[enforcer.Compliance] = []
    if requests.PLUGIN in enabled:
        proposals += requests.proposals(inventory, inputs.requests, enabled[requests.PLUGIN])
    if subscriptions.PLUGIN in enabled:
        proposals += subscriptions.proposals(
            inventory, inputs.subscriptions, enabled[subscriptions.PLUGIN], inputs.placed
        )
    if popularity.PLUGIN in enabled:
        weights = popularity.decayed_weights(inputs.accesses, now, config.popularity.half_life_days)
        targets = {
            name
            for name, site in inventory.sites.items()
            if name not in leaving and site.storage_type.value == "disk"
        }
        proposals += popularity.proposals(
            inventory, weights, config.popularity, targets, enabled[popularity.PLUGIN]
        )
    if enforcer.PLUGIN in enabled and config.enforcers:
        evaluated = enforcer.evaluate(config.enforcers, inventory, usage, now)
        compliance = enforcer.compliance(evaluated)
        proposals += enforcer.proposals(evaluated, inventory, usage, now, enabled[enforcer.PLUGIN])
    if balancer.PLUGIN in enabled and inputs.protected:
        proposals += balancer.proposals(
            inventory, inputs.protected, config.balancer, enabled[balancer.PLUGIN]
        )
    if undertaker.PLUGIN in enabled:
        proposals += undertaker.proposals(inventory, config.undertaker, enabled[undertaker.PLUGIN])
    proposed: dict[str, int] = {}
    for proposal in proposals:
        proposed[proposal.plugin] = proposed.get(proposal.plugin, 0) + 1
    result = decide(inventory, proposals, engine, usage, placed=inputs.placed, vetoes=config.vetoes)
    return CycleOutput(result, compliance, proposed)
