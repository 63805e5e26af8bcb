"""Detox in the decision simulator: the service's own cycle behind the simulator's ``Agent``.

The adapter does what ``DetoxRuntime._execute`` does around the decision, minus the I/O:
access summaries (from the simulator's log instead of the detox database), the attribute
providers, ``run_cycle``, and ``plan_items`` to turn decisions into deletions and hand-offs
exactly as the service turns them into commands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dynamo_common.model.objects import Inventory
from dynamo_common.policy.detox import DetoxPolicy, parse_detox_policy
from dynamo_common.policy.enforcer import EnforcerPolicy, parse_enforcer_rules
from dynamo_common.policy.errors import PolicyErrors
from dynamo_common.policy.variables import AttributeProvider
from dynamo_common.simulation.agent import (
    AgentDecisions,
    AgentError,
    AgentInputs,
    Deletion,
    OwnerChange,
)
from dynamo_detox.service.commands import plan_items
from dynamo_detox.service.engine import CycleConfig, CycleOutcome, run_cycle
from dynamo_detox.service.popularity import AccessSummary
from dynamo_detox.service.providers import (
    EnforcerProvider,
    LockProvider,
    PopularityProvider,
    ProtectedSitesProvider,
    fill_attributes,
)

DAY = 86400.0
_OPTIONS = frozenset(
    {
        "policy",
        "policy_text",
        "enforcers",
        "volume_step",
        "popularity_window_days",
        "protected_sites",
    }
)


class DetoxAgent:
    name = "detox"

    def __init__(
        self,
        policy: DetoxPolicy,
        enforcers: Sequence[EnforcerPolicy] = (),
        *,
        volume_step: float = 0.02,
        popularity_window_days: float = 30.0,
        protected_sites: Sequence[str] = (),
    ) -> None:
        self.policy = policy
        self.enforcers = tuple(enforcers)
        self.config = CycleConfig(volume_step=volume_step)
        self.window = popularity_window_days * DAY
        self.protected_sites = tuple(protected_sites)
        self.last: CycleOutcome | None = None

    def providers(self, summaries: Sequence[AccessSummary]) -> list[AttributeProvider]:
        # The runtime's order: enforcer rules may read the other providers' tables.
        providers: list[AttributeProvider] = [LockProvider(()), PopularityProvider(summaries)]
        if self.protected_sites:
            providers.append(ProtectedSitesProvider(self.protected_sites))
        if self.enforcers:
            providers.append(EnforcerProvider(self.enforcers))
        return providers

    def outcome(self, inventory: Inventory, inputs: AgentInputs, now: float) -> CycleOutcome:
        summaries = [
            AccessSummary(s.dataset, s.site, s.last_access, s.window_accesses)
            for s in inputs.accesses.summaries(now - self.window)
        ]
        attributes = fill_attributes(inventory, self.providers(summaries), now)
        return run_cycle(inventory, self.policy, attributes, now, self.config)

    def decide(self, inventory: Inventory, inputs: AgentInputs, now: float) -> AgentDecisions:
        outcome = self.outcome(inventory, inputs, now)
        self.last = outcome
        out = AgentDecisions(decisions=len(outcome.decisions))
        for item in plan_items(outcome.decisions, inventory):
            if item.handed_to is None:
                out.deletions.append(Deletion(item.dataset, item.block, item.site, "detox"))
            elif item.block is not None:
                out.owner_changes.append(
                    OwnerChange(item.dataset, item.block, item.site, item.handed_to)
                )
        out.protected = {s.site: (s.protected, s.quota) for s in outcome.sites}
        out.notes.extend(outcome.warnings)
        return out


def _read(base: Path, name: object, what: str) -> tuple[str, str]:
    if not isinstance(name, str):
        raise AgentError(f"detox: {what} must be a file name")
    path = Path(name) if Path(name).is_absolute() else base / name
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except OSError as exc:
        raise AgentError(f"detox: cannot read {what} {path}: {exc.strerror}") from None


def create_agent(options: Mapping[str, Any], base: Path) -> DetoxAgent:
    """The ``dynamo.agents`` entry point. Options: ``policy`` (a policy file) or
    ``policy_text``, ``enforcers`` (rule files), ``volume_step``, ``popularity_window_days``,
    ``protected_sites`` (the service's settings of the same names)."""
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise AgentError(f"detox: unknown options {', '.join(unknown)}")
    try:
        if "policy_text" in options:
            policy = parse_detox_policy(str(options["policy_text"]), file="<policy text>")
        elif "policy" in options:
            text, file = _read(base, options["policy"], "policy")
            policy = parse_detox_policy(text, file=file)
        else:
            raise AgentError("detox: a 'policy' file (or 'policy_text') is required")
        enforcers = []
        for name in options.get("enforcers", ()):
            text, file = _read(base, name, "enforcer rules")
            enforcers.append(parse_enforcer_rules(text, file=file))
    except PolicyErrors as exc:
        raise AgentError(f"detox: {exc}") from None
    try:
        return DetoxAgent(
            policy,
            enforcers,
            volume_step=float(options.get("volume_step", 0.02)),
            popularity_window_days=float(options.get("popularity_window_days", 30.0)),
            protected_sites=[str(p) for p in options.get("protected_sites", ())],
        )
    except (TypeError, ValueError) as exc:
        raise AgentError(f"detox: bad option: {exc}") from None
