"""The detox cycle (POLICY_LANGUAGE.md, "Detox policy files"), as a pure function of the
read model, a parsed policy, the attribute tables and the clock.

1. The partition's usage per site; target sites (``On``, default: every site of the partition);
   triggered sites (``When``).
2. Every dataset replica at a target site goes down the rules, with only its block replicas
   that belong to the partition. A dataset-level rule that matches decides the rest of the
   replica; a block-level rule decides the block replicas it matches and evaluation continues
   with the others; what reaches the end takes the default decision.
3. ``Delete`` decisions are carried out at every target site.
4. Then, repeatedly: the triggered site with the most protected volume deletes its ``Dismiss``
   candidates in the policy's order up to a volume step (a fraction of its quota), and the
   replicas of every dataset that lost a replica are evaluated again (copy counts changed).
   A site stops when its ``Until`` holds or it has no candidates left. ``Algo Static`` deletes
   every candidate of every triggered site in one pass instead (a site still stops at its
   ``Until``; a candidate whose dataset lost a replica earlier in the pass is evaluated again
   before it goes, so two sites cannot take the last two copies of a dataset together).

Deleting block replicas owned by a block-level group inside a replica that a dataset-level
group owns hands them to that group instead (Dynamo's rule: the dataset-level owner still
wants them); the hand-off frees partition volume only when the new owner takes them out of
the partition.

Nothing here touches the read model. Deletions within the cycle happen on a private copy of
each dataset they concern (its blocks and replicas at every site, so that copy counts see
them); the attribute tables are copied too and extended with the copies, so every variable,
inventory or provider, reads the state the cycle has reached.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from operator import attrgetter
from typing import Any, NamedTuple

from dynamo_common.messages.types import NO_GROUP, OwnershipLevel
from dynamo_common.model.objects import (
    Block,
    BlockReplica,
    Dataset,
    DatasetReplica,
    Group,
    Inventory,
    Site,
)
from dynamo_common.policy.compiler import AttributeTables, Condition, Pred
from dynamo_common.policy.detox import Action, DetoxPolicy
from dynamo_common.policy.errors import PolicyErrors
from dynamo_common.policy.partitions import PartitionSet, compile_partitions, site_usage
from dynamo_common.policy.variables import Level, SiteContext
from dynamo_detox.service.bound import BoundPolicy, BoundRule, bind_policy


class CycleError(Exception):
    """The cycle cannot run (e.g. its partition is not defined in the inventory)."""


class Decision(StrEnum):
    DELETE = "delete"
    KEEP = "keep"
    PROTECT = "protect"


_DECISIONS = {
    Action.PROTECT: Decision.PROTECT,
    Action.DELETE: Decision.DELETE,
    Action.DISMISS: Decision.KEEP,
    Action.IGNORE: Decision.KEEP,
}


@dataclass(frozen=True, slots=True)
class CycleConfig:
    volume_step: float = 0.02
    """Bytes deleted at a site per iteration, as a fraction of its quota."""
    max_iterations: int = 100_000
    """A guard: a policy that keeps handing blocks back and forth stops here."""


# ----------------------------------------------------------------------------- replica views


class ReplicaView:
    """A dataset replica seen with only some of its block replicas: the ones in the partition,
    or the ones no block-level rule has decided yet. Attribute tables are keyed by the replica
    itself, so a view hashes and compares as its replica."""

    __slots__ = ("_replica", "block_replicas", "dataset", "group", "growing", "last_update", "site")

    def __init__(self, replica: DatasetReplica, block_replicas: Iterable[BlockReplica]) -> None:
        self._replica = replica
        self.dataset = replica.dataset
        self.site = replica.site
        self.group = replica.group
        self.growing = replica.growing
        self.last_update = replica.last_update
        self.block_replicas = {br.block.name: br for br in block_replicas}

    @property
    def size(self) -> int:
        return sum(br.size for br in self.block_replicas.values())

    @property
    def is_complete(self) -> bool:
        if len(self.block_replicas) != len(self.dataset.blocks):
            return False
        return all(br.is_complete for br in self.block_replicas.values())

    def __hash__(self) -> int:
        return hash(self._replica)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ReplicaView):
            return other._replica is self._replica
        return other is self._replica


# ------------------------------------------------------------------------------ the outcome


_SIZE = attrgetter("size")
_GROUP = attrgetter("group")
_MEANING = {action: action.dataset_level for action in Action}


class Part:
    """Some block replicas of one dataset replica and the rule that decided them."""

    __slots__ = ("action", "block_replicas", "line", "meaning", "size")

    def __init__(self, block_replicas: tuple[BlockReplica, ...], action: Action, line: int):
        self.block_replicas = block_replicas
        self.action = action
        self.meaning = _MEANING[action]
        """The dataset-level action: what the part's blocks get."""
        self.line = line
        self.size: int = sum(map(_SIZE, block_replicas))

    def names(self) -> frozenset[str]:
        return frozenset(br.block.name for br in self.block_replicas)


class ReplicaDecision(NamedTuple):
    """One line of a cycle's record (a tuple: a cycle makes one per replica and more)."""

    dataset: str
    site: str
    blocks: tuple[str, ...] | None
    """None: every block replica of the dataset replica at the site."""
    decision: Decision
    action: Action
    line: int
    size: int
    handed_to: str | None = None
    """The group block replicas passed to instead of being deleted."""
    iteration: int = 0
    """When a deletion happened: 0 for ``Delete`` decisions, else the iteration."""


@dataclass(slots=True)
class SiteOutcome:
    site: str
    quota: int
    used_before: int
    used_after: int
    triggered: bool
    stopped: bool
    """The site's ``Until`` held when the cycle ended."""
    deleted: int = 0
    handed_over: int = 0
    """Bytes that left the partition by changing owner."""
    protected: int = 0
    candidates_left: int = 0

    @property
    def occupancy_before(self) -> float:
        return _occupancy(self.used_before, self.quota)

    @property
    def occupancy_after(self) -> float:
        return _occupancy(self.used_after, self.quota)


def _occupancy(used: int, quota: int) -> float:
    if quota > 0:
        return used / quota
    return math.inf if used > 0 else 0.0


@dataclass(slots=True)
class CycleOutcome:
    partition: str
    now: float
    sites: list[SiteOutcome]
    decisions: list[ReplicaDecision]
    iterations: int
    missing_providers: list[str]
    warnings: list[str] = field(default_factory=list)

    @property
    def deletions(self) -> list[ReplicaDecision]:
        return [d for d in self.decisions if d.decision is Decision.DELETE]

    @property
    def hand_offs(self) -> list[ReplicaDecision]:
        return [d for d in self.decisions if d.handed_to is not None]

    @property
    def deleted_bytes(self) -> int:
        return sum(d.size for d in self.decisions if d.decision is Decision.DELETE)


# ---------------------------------------------------------------------------- cycle state


class _State:
    """One dataset replica at a target site through the cycle."""

    __slots__ = ("candidate", "deleted", "handed", "key", "original", "parts", "protected", "site")

    def __init__(self, original: DatasetReplica) -> None:
        self.original = original
        self.site = original.site
        self.parts: list[Part] = []
        self.deleted: list[tuple[Part, int]] = []
        self.handed: list[tuple[Part, str]] = []
        self.protected = 0
        self.candidate = False
        self.key: tuple[Any, ...] | None = None


def _dataset_owner(replica: DatasetReplica) -> Group | None:
    """The dataset-level group that owns the replica, if any (the replica's own group first,
    else that of its first block replica with one)."""
    if replica.group.olevel is OwnershipLevel.DATASET and replica.group.name != NO_GROUP:
        return replica.group
    for name in sorted(replica.block_replicas):
        group = replica.block_replicas[name].group
        if group.olevel is OwnershipLevel.DATASET and group.name != NO_GROUP:
            return group
    return None


def _clone_dataset(dataset: Dataset) -> tuple[Dataset, list[tuple[object, object]]]:
    """A private copy of the dataset with its blocks and replicas (sites and groups shared),
    and the (original, copy) pairs made."""
    clone = Dataset(
        dataset.id,
        dataset.name,
        dataset.status,
        dataset.data_type,
        dataset.software_version,
        dataset.is_open,
        dataset.last_update,
    )
    clone.size = dataset.size
    clone.num_files = dataset.num_files
    pairs: list[tuple[object, object]] = [(dataset, clone)]
    blocks: dict[Block, Block] = {}
    for name, block in dataset.blocks.items():
        copy = Block(
            block.id,
            clone,
            block.name,
            block.size,
            block.num_files,
            block.is_open,
            block.last_update,
        )
        clone.blocks[name] = copy
        blocks[block] = copy
    for site_name, replica in dataset.replicas.items():
        replica_copy = DatasetReplica(
            clone, replica.site, replica.group, replica.growing, replica.last_update
        )
        clone.replicas[site_name] = replica_copy
        pairs.append((replica, replica_copy))
        for block_name, br in replica.block_replicas.items():
            block_copy = blocks[br.block]
            br_copy = BlockReplica(
                block_copy,
                br.site,
                br.group,
                br.is_custodial,
                br.size,
                br.num_files,
                br.last_update,
            )
            replica_copy.block_replicas[block_name] = br_copy
            block_copy.replicas.append(br_copy)
            pairs.append((br, br_copy))
    return clone, pairs


def _by_owner(condition: Condition) -> bool:
    return all(
        p.variable.level is Level.SITE
        or (p.variable.level is Level.BLOCKREPLICA and p.variable.depends_on == "group")
        for p in condition.predicates
    )


class _OwnerProbe:
    """Stands for a block replica of a given owner at a given site: all a membership
    condition decided by the owner reads."""

    __slots__ = ("group", "site")

    def __init__(self, group: Group, site: Site) -> None:
        self.group = group
        self.site = site


def _site_membership(
    pset: PartitionSet, name: str, site: Site, groups: Iterable[Group]
) -> Pred | frozenset[Group] | bool:
    """Membership of a block replica at ``site`` in partition ``name``, with what the site
    alone decides folded away: True or False when the site decides, the set of owners in the
    partition when the owner is all that is left (the usual partition), else a predicate."""
    tests: list[Pred] = []
    owner_only = True
    for base in sorted(pset[name].bases):
        condition = pset[base].condition
        if condition is None:
            continue
        specialised = condition.specialize(site)
        if specialised is True:
            return True
        if specialised is not False:
            tests.append(specialised)
            owner_only = owner_only and _by_owner(condition)
    if not tests:
        return False
    if owner_only:
        return frozenset(
            group for group in groups if any(test(_OwnerProbe(group, site)) for test in tests)
        )
    if len(tests) == 1:
        return tests[0]
    return lambda br: any(test(br) for test in tests)


class _Cycle:
    def __init__(
        self,
        inventory: Inventory,
        policy: DetoxPolicy,
        attributes: AttributeTables,
        now: float,
        config: CycleConfig,
    ) -> None:
        self.inventory = inventory
        self.policy = policy
        self.config = config
        self.now = now
        name = policy.partition
        if name not in inventory.partitions:
            raise CycleError(f"partition {name!r} is not defined in the inventory")
        # Private tables: copies of datasets are added to them as the cycle deletes.
        self.attributes: dict[str, dict[Any, Any]] = {k: dict(v) for k, v in attributes.items()}
        try:
            self.pset = compile_partitions(
                inventory.partitions, now=now, attributes=self.attributes
            )
        except PolicyErrors as exc:
            raise CycleError(f"the inventory's partitions do not compile: {exc}") from None
        self.membership = self.pset.membership(name)
        self.bound: BoundPolicy = bind_policy(policy, now=now, attributes=self.attributes)
        self.steps = self.bound.flat_steps
        self.screens: list[Pred] = []
        self.direct: list[BoundRule | None] = []
        for index, rules in self.steps:
            if index is not None:
                self.screens.append(partial(_named, frozenset(index)))
                self.direct.append(None)
            else:
                (rule,) = rules
                self.screens.append(rule.test or _always)
                self.direct.append(None if rule.block_level else rule)
        self.clones: dict[Dataset, Dataset] = {}
        self.states: dict[DatasetReplica, _State] = {}
        """By the read model's replica."""
        self.contexts: dict[Site, SiteContext] = {}
        self.targets: list[Site] = []
        self.triggered: set[Site] = set()
        self.done: set[Site] = set()
        self.protected: dict[Site, int] = {}
        self.candidates: dict[Site, dict[_State, None]] = {}
        self.deleted: dict[Site, int] = {}
        self.handed_over: dict[Site, int] = {}
        self.pending_deletes: dict[_State, None] = {}
        self.iteration = 0
        self.warnings: list[str] = []

    # -- evaluation --

    def _evaluate(
        self, replica: DatasetReplica, blocks: tuple[BlockReplica, ...], full: bool
    ) -> list[Part]:
        target: DatasetReplica | ReplicaView = replica if full else ReplicaView(replica, blocks)
        # Most replicas are decided by the first dataset-level rule that matches: find it
        # with one test per step, the loop a plain policy evaluation would be.
        for position, screen in enumerate(self.screens):
            if screen(target):
                rule = self.direct[position]
                if rule is not None:
                    return [Part(blocks, rule.action, rule.line)]
                return self._evaluate_from(position, replica, target, blocks)
        return [Part(blocks, self.bound.default, self.bound.default_line)]

    def _evaluate_from(
        self,
        position: int,
        replica: DatasetReplica,
        target: DatasetReplica | ReplicaView,
        blocks: tuple[BlockReplica, ...],
    ) -> list[Part]:
        """The general evaluation from step ``position`` on: block rules decide the block
        replicas they match and the others go on; a literal-name index offers its rules."""
        remaining = blocks
        parts: list[Part] = []
        name = replica.dataset.name
        for index, rules in self.steps[position:]:
            if index is not None:
                found = index.get(name)
                if found is None:
                    continue
                rules = found
            for rule in rules:
                test = rule.test
                if test is not None and not test(target):
                    continue
                if not rule.block_level:
                    parts.append(Part(remaining, rule.action, rule.line))
                    return parts
                block_test = rule.block_test
                if block_test is None:
                    matched = remaining
                else:
                    matched = tuple(br for br in remaining if block_test(br))
                if not matched:
                    continue
                parts.append(Part(matched, rule.action, rule.line))
                if len(matched) == len(remaining):
                    return parts
                taken = {id(br) for br in matched}
                remaining = tuple(br for br in remaining if id(br) not in taken)
                target = ReplicaView(replica, remaining)
        parts.append(Part(remaining, self.bound.default, self.bound.default_line))
        return parts

    def _record(self, state: _State, parts: list[Part]) -> None:
        """Install a replica's (new) evaluation: protected volume, candidates, deletions."""
        site = state.site
        self.protected[site] -= state.protected
        state.parts = parts
        state.protected = 0
        state.key = None
        candidate = False
        delete = False
        for part in parts:
            meaning = part.meaning
            if meaning is Action.PROTECT:
                state.protected += part.size
            elif meaning is Action.DISMISS:
                candidate = True
            elif meaning is Action.DELETE:
                delete = True
        self.protected[site] += state.protected
        state.candidate = candidate
        if candidate and site in self.triggered and site not in self.done:
            self.candidates[site][state] = None
        else:
            self.candidates.get(site, {}).pop(state, None)
        if delete:
            self.pending_deletes[state] = None

    def _evaluate_site(self, site: Site, member: Pred | frozenset[Group] | bool) -> int:
        """Evaluate every replica of the partition at ``site`` (the hot loop of a cycle:
        ``_evaluate`` and ``_record`` inlined); the partition's bytes at the site."""
        states = self.states
        pending = self.pending_deletes
        screens = self.screens
        direct = self.direct
        default = self.bound.default
        default_line = self.bound.default_line
        owners = member if isinstance(member, frozenset) else None
        test = None if isinstance(member, bool | frozenset) else member
        used = 0
        protected = 0
        for replica in site.dataset_replicas.values():
            brs = replica.block_replicas
            if owners is not None:
                # Usually every block replica is in: check that without a frame per block.
                if all(map(owners.__contains__, map(_GROUP, brs.values()))):
                    blocks = tuple(brs.values())
                else:
                    blocks = tuple([br for br in brs.values() if br.group in owners])
                    if not blocks:
                        continue
            elif test is not None:
                blocks = tuple([br for br in brs.values() if test(br)])
                if not blocks:
                    continue
            else:
                blocks = tuple(brs.values())
            full = len(blocks) == len(brs)
            target = replica if full else ReplicaView(replica, blocks)
            for position, screen in enumerate(screens):
                if screen(target):
                    rule = direct[position]
                    if rule is None:
                        parts = self._evaluate_from(position, replica, target, blocks)
                    else:
                        parts = [Part(blocks, rule.action, rule.line)]
                    break
            else:
                parts = [Part(blocks, default, default_line)]
            state = _State(replica)
            states[replica] = state
            state.parts = parts
            for part in parts:
                size = part.size
                used += size
                meaning = part.meaning
                if meaning is Action.PROTECT:
                    state.protected += size
                elif meaning is Action.DISMISS:
                    state.candidate = True
                elif meaning is Action.DELETE:
                    pending[state] = None
            protected += state.protected
        self.protected[site] += protected
        return used

    def _first_pass(self) -> None:
        inventory = self.inventory
        name = self.policy.partition
        bound = self.bound
        usage = None
        if bound.on_needs_usage:
            usage = site_usage(inventory, self.pset)
        for site in sorted(inventory.sites.values(), key=lambda s: s.name):
            quota = site.quotas.get(name, 0)
            context = SiteContext(site, name, 0, quota)
            if usage is not None:
                context.used = usage[site.name][name][0]
            on = bound.on
            if on is False or (on is not None and on is not True and not on(context)):
                continue
            self.contexts[site] = context
            self.protected[site] = 0
            self.deleted[site] = 0
            self.handed_over[site] = 0
            member = _site_membership(self.pset, name, site, inventory.groups.values())
            if member is False:
                if on is not None or name in site.quotas:
                    self.targets.append(site)
                continue
            used = self._evaluate_site(site, member)
            context.used = used
            if on is not None or name in site.quotas or used > 0:
                self.targets.append(site)
        # Sites that turned out not to be targets (no On line, no quota, nothing held) keep
        # no state.
        targets = set(self.targets)
        for site in list(self.contexts):
            if site not in targets:
                del self.contexts[site]
        when = bound.when
        for site in self.targets:
            context = self.contexts[site]
            if when is True or (when is not False and when(context)):
                self.triggered.add(site)
                self.candidates[site] = {}
        for state in self.states.values():
            if state.candidate and state.site in self.triggered:
                self.candidates[state.site][state] = None

    # -- deletions --

    def _current(self, state: _State) -> DatasetReplica | None:
        dataset = self.clones.get(state.original.dataset)
        if dataset is None:
            return state.original
        return dataset.replicas.get(state.site.name)

    def _touch(self, dataset: Dataset) -> Dataset:
        clone = self.clones.get(dataset)
        if clone is None:
            clone, pairs = _clone_dataset(dataset)
            self.clones[dataset] = clone
            for table in self.attributes.values():
                get = table.get
                for original, copy in pairs:
                    value = get(original, _MISSING)
                    if value is not _MISSING:
                        table[copy] = value
        return clone

    def _remove(self, state: _State, part: Part, iteration: int) -> int:
        """Delete (or hand over) a part of a replica in the cycle's copy; the bytes freed in
        the partition."""
        dataset = self._touch(state.original.dataset)
        replica = dataset.replicas.get(state.site.name)
        if replica is None:
            return 0
        names = part.names()
        in_image = [br for br in replica.block_replicas.values() if self.membership(br)]
        owner: Group | None = None
        if len(names) < len(in_image):
            owner = _dataset_owner(replica)
        deleted: list[BlockReplica] = []
        handed: list[BlockReplica] = []
        for name in sorted(names):
            br = replica.block_replicas.get(name)
            if br is None:
                continue
            if owner is not None and br.group.olevel is OwnershipLevel.BLOCK:
                handed.append(br)
            else:
                deleted.append(br)
        site = state.site
        freed = 0
        for br in deleted:
            del replica.block_replicas[br.block.name]
            br.block.replicas.remove(br)
            freed += br.size
        self.deleted[site] += freed
        if deleted:
            state.deleted.append((Part(tuple(deleted), part.action, part.line), iteration))
        if handed:
            assert owner is not None
            left = 0
            for br in handed:
                br.group = owner
                if not self.membership(br):
                    left += br.size
            freed += left
            self.handed_over[site] += left
            state.handed.append((Part(tuple(handed), part.action, part.line), owner.name))
        if not replica.block_replicas:
            del dataset.replicas[site.name]
        self.contexts[site].used -= freed
        return freed

    def _reevaluate(self, datasets: Iterable[Dataset]) -> None:
        for original in datasets:
            clone = self._touch(original)
            for site_name, original_replica in original.replicas.items():
                state = self.states.get(original_replica)
                if state is None:
                    continue
                replica = clone.replicas.get(site_name)
                if replica is None:
                    self._record(state, [])
                    continue
                blocks = tuple(br for br in replica.block_replicas.values() if self.membership(br))
                if not blocks:
                    self._record(state, [])
                    continue
                full = len(blocks) == len(replica.block_replicas)
                self._record(state, self._evaluate(replica, blocks, full))

    def _apply_deletes(self) -> None:
        """Carry out ``Delete`` decisions until re-evaluation brings no new one."""
        rounds = 0
        while self.pending_deletes:
            rounds += 1
            if rounds > self.config.max_iterations:
                self.warnings.append("Delete decisions kept appearing; stopped")
                return
            pending, self.pending_deletes = self.pending_deletes, {}
            touched: dict[Dataset, None] = {}
            for state in pending:
                dataset = state.original.dataset
                if dataset not in self.clones and self._all_deleted(dataset):
                    # Nothing of the dataset stays to be evaluated again: no copy needed.
                    self._drop(state)
                    continue
                for part in list(state.parts):
                    if part.meaning is Action.DELETE:
                        self._remove(state, part, 0)
                        touched[dataset] = None
            self._reevaluate(touched)

    def _all_deleted(self, dataset: Dataset) -> bool:
        """Every replica of the dataset at a target site goes whole (``Delete``)."""
        states = self.states
        for replica in dataset.replicas.values():
            state = states.get(replica)
            if state is not None:
                for part in state.parts:
                    if part.meaning is not Action.DELETE:
                        return False
        return True

    def _drop(self, state: _State) -> None:
        site = state.site
        freed = 0
        for part in state.parts:
            state.deleted.append((part, 0))
            freed += part.size
        self.deleted[site] += freed
        self.contexts[site].used -= freed
        self._record(state, [])

    def _until(self, site: Site) -> bool:
        until = self.bound.until
        if isinstance(until, bool):
            return until
        return bool(until(self.contexts[site]))

    def _stop_satisfied(self) -> None:
        for site in sorted(self.triggered, key=lambda s: s.name):
            if site not in self.done and self._until(site):
                self._finish(site)

    def _finish(self, site: Site) -> None:
        self.done.add(site)
        self.candidates[site].clear()

    def _sort_key(self, state: _State) -> tuple[Any, ...]:
        if state.key is None:
            replica = self._current(state) or state.original
            state.key = tuple(key(replica) for key, _ in self.bound.order)
        return state.key

    def _ordered(self, items: list[tuple[_State, Part]]) -> list[tuple[_State, Part]]:
        """Candidates in the policy's order; ties (and ``Order none``) by site, dataset and
        block names, so the order is always the same for the same inventory."""
        items.sort(
            key=lambda item: (
                item[0].site.name,
                item[0].original.dataset.name,
                min(item[1].names(), default=""),
            )
        )
        for index in range(len(self.bound.order) - 1, -1, -1):
            descending = self.bound.order[index][1]
            items.sort(key=lambda item: self._sort_key(item[0])[index], reverse=descending)
        return items

    def _candidate_parts(self, sites: Iterable[Site]) -> list[tuple[_State, Part]]:
        return [
            (state, part)
            for site in sites
            for state in self.candidates[site]
            for part in state.parts
            if part.meaning is Action.DISMISS
        ]

    def _iterate(self) -> None:
        step = self.config.volume_step
        while True:
            active = [s for s in self.triggered if s not in self.done and self.candidates[s]]
            if not active:
                return
            self.iteration += 1
            if self.iteration > self.config.max_iterations:
                self.warnings.append(
                    f"stopped after {self.config.max_iterations} iterations with candidates left"
                )
                return
            if self.bound.static:
                chosen = sorted(active, key=lambda s: s.name)
            else:
                chosen = [min(active, key=lambda s: (-self.protected[s], s.name))]
            touched: dict[Dataset, None] = {}
            freed_here = dict.fromkeys(chosen, 0)
            for state, part in self._ordered(self._candidate_parts(chosen)):
                site = state.site
                if site in self.done:
                    continue
                if self._until(site):
                    self._finish(site)
                    continue
                quota = self.contexts[site].quota
                if not self.bound.static and quota > 0 and freed_here[site] >= step * quota:
                    break
                if state.original.dataset in touched:
                    # An earlier deletion in this pass changed the copies of this dataset.
                    self._reevaluate([state.original.dataset])
                    again = next(
                        (
                            p
                            for p in state.parts
                            if p.meaning is Action.DISMISS and p.names() == part.names()
                        ),
                        None,
                    )
                    if again is None or state not in self.candidates[site]:
                        continue
                    part = again
                freed_here[site] += self._remove(state, part, self.iteration)
                touched[state.original.dataset] = None
            for site in chosen:
                if site not in self.done and self._until(site):
                    self._finish(site)
            self._reevaluate(touched)
            self._apply_deletes()
            if not touched and not self.done.intersection(chosen):
                # Cannot happen with a positive volume step; a guard against spinning.
                self.warnings.append("an iteration deleted nothing; stopped")
                return

    # -- the record --

    def _decisions(self) -> list[ReplicaDecision]:
        out: list[ReplicaDecision] = []
        append = out.append
        make = ReplicaDecision
        for replica, state in self.states.items():
            dataset = replica.dataset.name
            site_name = replica.site.name
            total = len(replica.block_replicas)
            for part, iteration in state.deleted:
                append(
                    make(
                        dataset,
                        site_name,
                        _block_names(part, total),
                        Decision.DELETE,
                        part.action,
                        part.line,
                        part.size,
                        None,
                        iteration,
                    )
                )
            for part, owner in state.handed:
                append(
                    make(
                        dataset,
                        site_name,
                        _block_names(part, total),
                        Decision.KEEP,
                        part.action,
                        part.line,
                        part.size,
                        owner,
                    )
                )
            for part in state.parts:
                append(
                    make(
                        dataset,
                        site_name,
                        None if len(part.block_replicas) == total else _block_names(part, total),
                        _DECISIONS[part.meaning],
                        part.action,
                        part.line,
                        part.size,
                    )
                )
        return out

    def run(self) -> CycleOutcome:
        self._first_pass()
        before = {site: context.used for site, context in self.contexts.items()}
        self._apply_deletes()
        self._stop_satisfied()
        self._iterate()
        sites = []
        for site in self.targets:
            context = self.contexts[site]
            sites.append(
                SiteOutcome(
                    site=site.name,
                    quota=context.quota,
                    used_before=before[site],
                    used_after=context.used,
                    triggered=site in self.triggered,
                    stopped=self._until(site),
                    deleted=self.deleted[site],
                    handed_over=self.handed_over[site],
                    protected=self.protected[site],
                    candidates_left=len(self.candidates.get(site, ())),
                )
            )
        return CycleOutcome(
            partition=self.policy.partition,
            now=self.now,
            sites=sites,
            decisions=self._decisions(),
            iterations=self.iteration,
            missing_providers=sorted(self.bound.missing_providers),
            warnings=self.warnings,
        )


_MISSING = object()


def _block_names(part: Part, total: int) -> tuple[str, ...] | None:
    """None when the part is every block replica of its replica (``total`` of them)."""
    if len(part.block_replicas) == total:
        return None
    return tuple(sorted(br.block.name for br in part.block_replicas))


def _always(replica: object) -> bool:
    return True


def _named(names: frozenset[str], replica: DatasetReplica) -> bool:
    return replica.dataset.name in names


def run_cycle(
    inventory: Inventory,
    policy: DetoxPolicy,
    attributes: AttributeTables,
    now: float,
    config: CycleConfig | None = None,
) -> CycleOutcome:
    """Decide a detox cycle. Pure: the inventory and the attribute tables are not modified,
    and the same arguments give the same outcome."""
    return _Cycle(inventory, policy, attributes, now, config or CycleConfig()).run()
