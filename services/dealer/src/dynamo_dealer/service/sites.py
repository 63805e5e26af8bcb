"""Target sites and the choice of destinations.

A site can receive copies when it is ready, on disk, allowed by the configuration (name
patterns with exclusions), and when, with what is in flight and what this cycle already
placed there, the copy keeps its occupancy under the target and its pending volume under a
fraction of the quota. Open destinations are drawn with probability proportional to the free
space left under the target, so full sites fill last and no site is chosen every time.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from dynamo_common.messages.types import SiteStatus, StorageType
from dynamo_common.model.objects import Inventory, Site


def matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


@dataclass(frozen=True, slots=True)
class SiteRules:
    partition: str
    patterns: tuple[str, ...] = ("*",)
    exclusions: tuple[str, ...] = ()
    target_occupancy: float = 0.93
    request_occupancy: float | None = None
    """How full a user's explicit request may make the site it names (None: the target, as
    for everything else). A request is data a person asked for at that site: above the
    target it can still land, and detox brings the site down by its policy afterwards,
    instead of the request waiting for room nobody makes."""
    max_pending_fraction: float = 0.1
    max_site_volume: int = 2**62
    """Bytes one cycle may place at one site."""


@dataclass(slots=True)
class SiteState:
    site: Site
    quota: int
    used: int
    pending: int
    """Bytes of replicas in flight still to arrive."""
    planned: int = 0
    """Bytes this cycle placed here so far."""

    @property
    def projected(self) -> int:
        return self.used + self.pending + self.planned

    def free(self, rules: SiteRules) -> float:
        return rules.target_occupancy * self.quota - self.projected


@dataclass(slots=True)
class SiteBook:
    """The per-site ledger of one cycle."""

    rules: SiteRules
    states: dict[str, SiteState] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    """Sites that are never destinations, with why (status, storage, configuration)."""

    @classmethod
    def build(
        cls,
        inventory: Inventory,
        usage: Mapping[str, Mapping[str, tuple[int, int]]],
        rules: SiteRules,
        evacuating: Iterable[str] = (),
    ) -> SiteBook:
        book = cls(rules)
        leaving = set(evacuating)
        for site in inventory.sites.values():
            why = _refusal(site, rules, leaving)
            if why is not None:
                book.refused[site.name] = why
                continue
            used, quota = usage.get(site.name, {}).get(
                rules.partition, (0, site.quotas.get(rules.partition, 0))
            )
            if quota <= 0:
                book.refused[site.name] = f"no quota in partition {rules.partition}"
                continue
            book.states[site.name] = SiteState(site, quota, used, pending_bytes(site))
        return book

    def check(
        self, name: str, volume: int, ceiling: float | None = None
    ) -> tuple[str | None, bool]:
        """(why ``volume`` cannot go to site ``name`` or None, whether that is only for this
        cycle: a per-cycle cap rather than a property of the site). ``ceiling``: the
        occupancy allowed instead of the target (explicit requests)."""
        if name in self.refused:
            return self.refused[name], False
        state = self.states.get(name)
        if state is None:
            return f"unknown site {name}", False
        rules = self.rules
        if state.planned + volume > rules.max_site_volume:
            return f"{name}: per-site volume cap of this cycle reached", True
        limit = rules.target_occupancy if ceiling is None else ceiling
        if state.projected + volume > limit * state.quota:
            projected = (state.projected + volume) / state.quota
            return (
                f"{name}: projected occupancy {projected:.3f} above the "
                + (f"target {limit}" if ceiling is None else f"request ceiling {limit}"),
                state.planned > 0,
            )
        if state.pending + state.planned + volume > rules.max_pending_fraction * state.quota:
            return (
                f"{name}: pending volume would exceed {rules.max_pending_fraction:.0%} "
                "of the quota",
                state.planned > 0,
            )
        return None, False

    def place(self, name: str, volume: int) -> None:
        self.states[name].planned += volume


def _refusal(site: Site, rules: SiteRules, leaving: set[str]) -> str | None:
    if site.status is not SiteStatus.READY:
        return f"{site.name} is in {site.status.value}"
    if site.storage_type is not StorageType.DISK:
        return f"{site.name} is not a disk site"
    if site.name in leaving:
        return f"{site.name} is being emptied"
    if not matches(site.name, rules.patterns) or matches(site.name, rules.exclusions):
        return f"{site.name} is not a target site of the dealer"
    return None


def pending_bytes(site: Site) -> int:
    """The bytes the site's incomplete block replicas still wait for (computed for target
    sites only: tape sites, the largest, never receive the dealer's copies)."""
    missing = 0
    for replica in site.dataset_replicas.values():
        for block_replica in replica.block_replicas.values():
            gap = block_replica.block.size - block_replica.size
            if gap > 0:
                missing += gap
    return missing


def choose(candidates: Sequence[tuple[str, float]], rng: random.Random) -> str:
    """One of ``candidates`` (name, free bytes), drawn with probability proportional to its
    free bytes (all equal when none has any, which the caller rules out)."""
    weights = [max(free, 0.0) for _, free in candidates]
    if sum(weights) <= 0:
        weights = [1.0] * len(candidates)
    return rng.choices([name for name, _ in candidates], weights=weights, k=1)[0]
