"""The engine: from the plugins' proposals to placements, every proposal with its decision.

Proposals are taken in priority order (the plugin's priority, then the plugin's own weight).
Overlapping proposals are merged first: proposals for the same data and the same fixed
destination, or both with an open destination, are one copy per copy asked (n copies from
one plugin and m from another make max(n, m)); a block proposal whose dataset is proposed
as a whole for the same destination joins it. Each kept proposal is then checked: the
dataset exists, is valid or in production, has a complete source for every block, the group
exists, it is not already at the fixed destination (complete or in flight); then a
destination is validated (fixed) or drawn by free space among the target sites that do not
hold the dataset and that no placement rule vetoes; per-cycle caps hold in total and per
site.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from dynamo_common.messages.types import DatasetStatus
from dynamo_common.model.objects import Block, Dataset, Inventory
from dynamo_dealer.service.placement import PlacementRule
from dynamo_dealer.service.plugins.requests import PLUGIN as REQUESTS
from dynamo_dealer.service.proposals import Decision, Outcome, Placement, Proposal
from dynamo_dealer.service.sites import SiteBook, SiteRules, choose

PlacedKey = tuple[str, str | None, str]
"""(dataset, block or None, site) of a copy the dealer placed earlier and is in flight."""

_COPYABLE = frozenset({DatasetStatus.VALID, DatasetStatus.PRODUCTION})


@dataclass(frozen=True, slots=True)
class EngineConfig:
    sites: SiteRules
    max_cycle_volume: int = 2**62
    evacuating: frozenset[str] = frozenset()
    seed: int = 0


@dataclass(slots=True)
class CycleResult:
    outcomes: list[Outcome] = field(default_factory=list)
    placements: list[Placement] = field(default_factory=list)
    volume: int = 0

    def count(self, decision: Decision) -> int:
        return sum(1 for o in self.outcomes if o.decision is decision)


def _order(proposal: Proposal) -> tuple[float, float, str, str, str, str]:
    return (
        -proposal.priority,
        -proposal.weight,
        proposal.plugin,
        proposal.dataset,
        proposal.block or "",
        proposal.site or "",
    )


def merge(proposals: Iterable[Proposal]) -> list[tuple[Proposal, int | None]]:
    """The proposals in decision order, each with the index (in this list) of the proposal it
    is merged into, or None when it is kept."""
    ordered = sorted(proposals, key=_order)
    # Whole-dataset proposals first, so a block meets its dataset whatever their priorities.
    ordered.sort(key=lambda p: p.block is not None)
    kept: dict[tuple[str, str | None, str | None], list[int]] = {}
    origins: dict[tuple[object, ...], int] = {}
    result: list[tuple[Proposal, int | None]] = []
    for index, proposal in enumerate(ordered):
        key = (proposal.dataset, proposal.block, proposal.site)
        into: int | None = None
        if proposal.block is not None:
            whole = kept.get((proposal.dataset, None, proposal.site))
            if whole:
                into = whole[0]
        if into is None:
            origin = (*key, proposal.plugin, proposal.reference)
            nth = origins.get(origin, 0)
            origins[origin] = nth + 1
            same = kept.setdefault(key, [])
            if nth < len(same):
                into = same[nth]
            else:
                same.append(index)
        result.append((proposal, into))
    return result


@dataclass(slots=True)
class _Cycle:
    inventory: Inventory
    config: EngineConfig
    book: SiteBook
    placed: frozenset[PlacedKey] | set[PlacedKey]
    vetoes: Sequence[PlacementRule]
    rng: random.Random
    result: CycleResult = field(default_factory=CycleResult)
    planned: dict[str, set[str]] = field(default_factory=dict)
    """Sites each dataset (whole, or some of its blocks) went to in this cycle."""
    planned_whole: dict[str, set[str]] = field(default_factory=dict)
    """Sites each whole dataset went to in this cycle."""
    planned_blocks: set[PlacedKey] = field(default_factory=set)
    """Blocks placed one by one in this cycle: (dataset, block, site)."""

    def decide(self, proposal: Proposal) -> Outcome:
        dataset = self.inventory.datasets.get(proposal.dataset)
        if dataset is None:
            return _no(proposal, f"unknown dataset {proposal.dataset}")
        blocks: list[Block]
        if proposal.block is not None:
            block = dataset.blocks.get(proposal.block)
            if block is None:
                return _no(proposal, f"unknown block {proposal.block} of {dataset.name}")
            blocks = [block]
        else:
            blocks = list(dataset.blocks.values())
        if dataset.status not in _COPYABLE:
            return _no(proposal, f"dataset is {dataset.status.value}, not valid or production")
        if proposal.group not in self.inventory.groups:
            return _no(proposal, f"unknown group {proposal.group}")
        if not blocks:
            return _no(proposal, "the dataset has no blocks")
        sourceless = [b.name for b in blocks if not any(r.is_complete for r in b.replicas)]
        if sourceless:
            return _no(
                proposal,
                f"no complete source of {len(sourceless)} of {len(blocks)} blocks "
                f"(first: {sourceless[0]})",
            )
        volume = sum(b.size for b in blocks)
        if self.result.volume + volume > self.config.max_cycle_volume:
            return Outcome(proposal, Decision.DEFERRED, "volume cap of this cycle reached")
        if proposal.site is not None:
            return self._fixed(proposal, dataset, blocks, volume)
        return self._open(proposal, dataset, volume)

    def _holds(self, dataset: Dataset, block: Block | None, site: str) -> bool:
        """Whether ``site`` holds the data or will: complete, in flight, or placed now. One
        block placed at a site this cycle does not make its siblings held there: a
        subscription that fills a replica block by block places every missing block at once."""
        if site in self.planned_whole.get(dataset.name, ()):
            return True
        replica = dataset.replicas.get(site)
        if block is None:
            return replica is not None or site in self.planned.get(dataset.name, ())
        held = replica.block_replicas.get(block.name) if replica is not None else None
        if held is not None and held.is_complete:
            return True
        key = (dataset.name, block.name, site)
        return key in self.placed or key in self.planned_blocks

    def _fixed(
        self, proposal: Proposal, dataset: Dataset, blocks: list[Block], volume: int
    ) -> Outcome:
        site = proposal.site
        assert site is not None
        if self._holds(dataset, blocks[0] if proposal.block else None, site):
            return _no(proposal, f"already satisfied: at {site} (complete or in flight)")
        target = self.inventory.sites.get(site)
        if target is None:
            return _no(proposal, f"unknown site {site}")
        for rule in self.vetoes:
            why = rule.veto(dataset, target)
            if why is not None:
                return _no(proposal, why)
        ceiling = self.book.rules.request_occupancy if proposal.plugin == REQUESTS else None
        why, transient = self.book.check(site, volume, ceiling)
        if why is not None:
            return Outcome(proposal, Decision.DEFERRED if transient else Decision.REJECTED, why)
        return self._place(proposal, dataset, site, volume)

    def _open(self, proposal: Proposal, dataset: Dataset, volume: int) -> Outcome:
        holding = dataset.replicas.keys() | self.planned.get(dataset.name, set())
        book = self.book
        states = book.states
        rules = book.rules
        names: Iterable[str] = states if proposal.allowed is None else sorted(proposal.allowed)
        candidates: list[tuple[str, float]] = []
        reasons: list[str] = []
        transient = False
        # The same tests as SiteBook.check, inlined: this loop runs for every open proposal
        # over every target site; the reasons are only worked out for the record.
        for name in names:
            if name in holding:
                continue
            state = states.get(name)
            if state is None:
                if len(reasons) < 3:
                    reasons.append(book.refused.get(name, f"unknown site {name}"))
                continue
            planned = state.planned
            limit = rules.target_occupancy * state.quota
            projected = state.used + state.pending + planned + volume
            if (
                planned + volume > rules.max_site_volume
                or projected > limit
                or state.pending + planned + volume > rules.max_pending_fraction * state.quota
            ):
                transient = transient or planned > 0
                if len(reasons) < 3:
                    reasons.append(book.check(name, volume)[0] or "")
                continue
            why = None
            for rule in self.vetoes:
                why = rule.veto(dataset, state.site)
                if why is not None:
                    break
            if why is not None:
                if len(reasons) < 3:
                    reasons.append(why)
                continue
            candidates.append((name, limit - projected + volume))
        if not candidates:
            detail = "; ".join(reasons) if reasons else "every allowed site already holds it"
            return Outcome(
                proposal,
                Decision.DEFERRED if transient else Decision.REJECTED,
                f"no suitable destination ({detail})",
            )
        return self._place(proposal, dataset, choose(candidates, self.rng), volume)

    def _place(self, proposal: Proposal, dataset: Dataset, site: str, volume: int) -> Outcome:
        self.book.place(site, volume)
        self.result.volume += volume
        self.planned.setdefault(dataset.name, set()).add(site)
        if proposal.block is None:
            self.planned_whole.setdefault(dataset.name, set()).add(site)
        else:
            self.planned_blocks.add((dataset.name, proposal.block, site))
        self.result.placements.append(
            Placement(
                dataset=dataset.name,
                block=proposal.block,
                site=site,
                group=proposal.group,
                volume=volume,
                priority=min(5, max(1, round(proposal.priority))),
                reference=f"{proposal.plugin}:{proposal.reference}",
            )
        )
        return Outcome(proposal, Decision.ACCEPTED, "placed", site, volume)


def _no(proposal: Proposal, reason: str) -> Outcome:
    return Outcome(proposal, Decision.REJECTED, reason)


def decide(
    inventory: Inventory,
    proposals: Iterable[Proposal],
    config: EngineConfig,
    usage: Mapping[str, Mapping[str, tuple[int, int]]],
    *,
    placed: frozenset[PlacedKey] | set[PlacedKey] = frozenset(),
    vetoes: Sequence[PlacementRule] = (),
) -> CycleResult:
    """One cycle's decisions. ``usage`` is ``site_usage``'s result for the inventory;
    ``placed`` the copies the dealer placed earlier that are still in flight."""
    book = SiteBook.build(inventory, usage, config.sites, config.evacuating)
    cycle = _Cycle(inventory, config, book, placed, vetoes, random.Random(config.seed))
    merged = merge(proposals)
    outcomes: list[Outcome | None] = [None] * len(merged)
    for index, (proposal, into) in enumerate(merged):
        if into is None:
            outcomes[index] = cycle.decide(proposal)
    for index, (proposal, into) in enumerate(merged):
        if into is not None:
            target = outcomes[into]
            assert target is not None
            kept = target.proposal
            outcomes[index] = Outcome(
                proposal,
                Decision.MERGED,
                f"merged with {kept.plugin} {kept.reference} ({target.decision.value})",
                target.site,
                0,
                into,
            )
    cycle.result.outcomes = [o for o in outcomes if o is not None]
    return cycle.result
