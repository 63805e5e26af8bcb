"""The dealer in the decision simulator: the service's own cycle behind the simulator's
``Agent``.

The adapter gathers what ``DealerRuntime`` fetches before a cycle (access records, open copy
requests, the last detox cycle's protected volume, the dealer's copies in flight) from the
simulator instead of detox's API and the dealer's tables, calls ``run_cycle``, and returns
the placements, which the simulator carries out as the commands would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from dynamo_common.model.objects import Inventory
from dynamo_common.policy.enforcer import parse_enforcer_rules
from dynamo_common.policy.errors import PolicyErrors
from dynamo_common.simulation.agent import AgentDecisions, AgentError, AgentInputs, Copy
from dynamo_dealer.service.cycle import CycleInputs, CycleOutput, DealerConfig, run_cycle
from dynamo_dealer.service.engine import EngineConfig
from dynamo_dealer.service.placement import parse_vetoes
from dynamo_dealer.service.plugins.balancer import BalancerRules
from dynamo_dealer.service.plugins.popularity import Access, PopularityRules
from dynamo_dealer.service.plugins.requests import RequestSpec
from dynamo_dealer.service.plugins.undertaker import UndertakerRules
from dynamo_dealer.service.sites import SiteRules

DAY = 86400.0
DEFAULT_PLUGINS = {
    "requests": 5.0,
    "subscriptions": 4.0,
    "undertaker": 4.0,
    "enforcer": 3.0,
    "popularity": 2.0,
    "balancer": 1.0,
}
"""The service's defaults (``DealerSettings.plugins``)."""

_OPTIONS = frozenset(
    {
        "plugins",
        "partition",
        "target_sites",
        "excluded_sites",
        "target_occupancy",
        "request_occupancy",
        "max_pending_fraction",
        "max_cycle_volume",
        "max_site_volume",
        "placement_rules",
        "enforcers",
        "popularity_group",
        "popularity_half_life_days",
        "popularity_weight_per_copy",
        "popularity_max_copies",
        "popularity_max_dataset_size",
        "popularity_window_days",
        "balancer_threshold",
        "balancer_max_proposals",
        "default_group",
        "seed",
    }
)


class DealerAgent:
    name = "dealer"

    def __init__(self, config: DealerConfig, window_days: float = 60.0) -> None:
        self.config = config
        self.window = window_days * DAY
        self.cycles = 0
        self.last: CycleOutput | None = None
        """The last cycle's every decision (what the service records), for comparisons."""
        self.balanced: dict[str, tuple[int, int]] = {}
        """The detox outcome the balancer last worked from."""

    def decide(self, inventory: Inventory, inputs: AgentInputs, now: float) -> AgentDecisions:
        accesses = [
            Access(r.dataset, r.time, r.count) for r in inputs.accesses.records(now - self.window)
        ]
        requests = [
            RequestSpec(r.id, r.group, ((r.dataset, None),), (r.site,), 1) for r in inputs.requests
        ]
        # The service balances from each detox cycle once (it records which one): its
        # protected volumes describe the sites before the copies made from them. The simulator
        # hands the last outcome to every cycle until detox runs again, without its id, so an
        # outcome equal to the one balanced from counts as the same detox cycle.
        protected = dict(inputs.protected)
        if "balancer" in self.config.plugins and protected:
            if protected == self.balanced:
                protected = {}
            else:
                self.balanced = protected
        cycle_inputs = CycleInputs(
            requests=requests, accesses=accesses, protected=protected, placed=inputs.placed
        )
        # The service seeds the engine's draws of open destinations with the cycle's id (1, 2,
        # ... in a fresh database); one fixed seed would repeat the same draws every cycle.
        self.cycles += 1
        engine = replace(self.config.engine, seed=self.config.engine.seed + self.cycles)
        output = run_cycle(inventory, cycle_inputs, replace(self.config, engine=engine), now)
        self.last = output
        out = AgentDecisions(decisions=len(output.result.outcomes))
        for p in output.result.placements:
            out.copies.append(Copy(p.dataset, p.block, p.site, p.group, p.reference))
        return out


def create_agent(options: Mapping[str, Any], base: Path) -> DealerAgent:
    """The ``dynamo.agents`` entry point. Options carry the names of the service's settings
    (``DealerSettings``: ``plugins``, ``target_occupancy``, ``popularity_half_life_days``,
    ``enforcers`` for ``enforcer_files``, ...); unset ones take the service's defaults.
    ``seed``: the agent's cycle n draws as the service's cycle with id ``seed + n`` does (0:
    as a fresh service's cycles 1, 2, ...)."""
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise AgentError(f"dealer: unknown options {', '.join(unknown)}")
    o = dict(options)
    try:
        enforcers = []
        for name in o.get("enforcers", ()):
            path = Path(name) if Path(name).is_absolute() else base / name
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise AgentError(f"dealer: cannot read {path}: {exc.strerror}") from None
            enforcers.append(parse_enforcer_rules(text, file=str(path)))
        vetoes = parse_vetoes({str(k): str(v) for k, v in o.get("placement_rules", {}).items()})
    except PolicyErrors as exc:
        raise AgentError(f"dealer: {exc}") from None
    try:
        plugins = {str(k): float(v) for k, v in o.get("plugins", DEFAULT_PLUGINS).items()}
        unknown_plugins = sorted(set(plugins) - set(DEFAULT_PLUGINS))
        if unknown_plugins:
            raise AgentError(f"dealer: unknown plugins {', '.join(unknown_plugins)}")
        default_group = str(o.get("default_group", "AnalysisOps"))
        config = DealerConfig(
            engine=EngineConfig(
                sites=SiteRules(
                    partition=str(o.get("partition", "Physics")),
                    patterns=tuple(o.get("target_sites", ("*",))),
                    exclusions=tuple(o.get("excluded_sites", ())),
                    target_occupancy=float(o.get("target_occupancy", 0.93)),
                    request_occupancy=(
                        None
                        if o.get("request_occupancy") is None
                        else float(o["request_occupancy"])
                    ),
                    max_pending_fraction=float(o.get("max_pending_fraction", 0.1)),
                    max_site_volume=int(o.get("max_site_volume", 50 * 10**12)),
                ),
                max_cycle_volume=int(o.get("max_cycle_volume", 200 * 10**12)),
                seed=int(o.get("seed", 0)),
            ),
            plugins=plugins,
            popularity=PopularityRules(
                group=str(o.get("popularity_group", "AnalysisOps")),
                half_life_days=float(o.get("popularity_half_life_days", 7.0)),
                weight_per_copy=float(o.get("popularity_weight_per_copy", 100.0)),
                max_copies=int(o.get("popularity_max_copies", 3)),
                max_dataset_size=int(o.get("popularity_max_dataset_size", 10 * 10**12)),
            ),
            balancer=BalancerRules(
                threshold=float(o.get("balancer_threshold", 0.1)),
                max_proposals=int(o.get("balancer_max_proposals", 1000)),
                default_group=default_group,
            ),
            undertaker=UndertakerRules(default_group=default_group),
            enforcers=tuple(enforcers),
            vetoes=tuple(vetoes),
        )
        return DealerAgent(config, float(o.get("popularity_window_days", 60.0)))
    except (TypeError, ValueError, AttributeError) as exc:
        raise AgentError(f"dealer: bad option: {exc}") from None
