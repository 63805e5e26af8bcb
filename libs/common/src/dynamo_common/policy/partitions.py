"""Partitions: named slices of the storage, defined by a block-replica condition or as a union.

File format, one partition a line::

    # comment
    AnalysisOps:  blockreplica.owner == AnalysisOps and site.storage_type == DISK
    Tape:         site.storage_type == MSS
    Physics:      [AnalysisOps, Tape]

Quotas are per site and partition, and so is the occupancy detox and the dealer see:
``site_usage`` sums, in one pass over the block replicas, the bytes each partition holds at
each site.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from dynamo_common.model.objects import BlockReplica, Inventory, Partition
from dynamo_common.policy.compiler import AttributeTables, Condition, Pred, parse_condition
from dynamo_common.policy.errors import PolicyError, PolicyErrors
from dynamo_common.policy.variables import Context, Level, VariableRegistry

# Production partition files name a partition 'IB RelVal', so inner spaces are allowed.
PARTITION_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-. ]*")
_COMMENT_RE = re.compile(r"(?:^|(?<=\s))#")


@dataclass(frozen=True, slots=True)
class PartitionDefinition:
    """A partition: a condition over block replicas, or a union of ``members``."""

    name: str
    condition: Condition | None
    members: tuple[str, ...] = ()
    line: int = 0
    bases: frozenset[str] = field(default=frozenset())
    """The condition partitions this one covers (itself, or its union members, flattened)."""

    @property
    def is_union(self) -> bool:
        return self.condition is None

    def to_model(self) -> Partition:
        return Partition(
            self.name,
            None if self.condition is None else self.condition.text,
            self.members,
        )


class PartitionSet(Mapping[str, PartitionDefinition]):
    """Validated partitions (no unknown member, no cycle), in definition order."""

    def __init__(self, definitions: Iterable[PartitionDefinition]) -> None:
        self._definitions = {d.name: d for d in definitions}

    def __getitem__(self, name: str) -> PartitionDefinition:
        return self._definitions[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._definitions)

    def __len__(self) -> int:
        return len(self._definitions)

    def membership(self, name: str) -> Pred:
        """Predicate over a ``BlockReplica``: does it belong to partition ``name``?"""
        tests = [
            condition.predicate
            for base in sorted(self[name].bases)
            if (condition := self[base].condition) is not None
        ]
        if len(tests) == 1:
            return tests[0]
        return lambda replica: any(test(replica) for test in tests)

    def bind(
        self, *, now: float | None = None, attributes: AttributeTables | None = None
    ) -> PartitionSet:
        return PartitionSet(
            PartitionDefinition(
                d.name,
                None if d.condition is None else d.condition.bind(now=now, attributes=attributes),
                d.members,
                d.line,
                d.bases,
            )
            for d in self._definitions.values()
        )

    def to_model(self) -> list[Partition]:
        return [d.to_model() for d in self._definitions.values()]

    def missing_providers(self) -> frozenset[str]:
        missing: set[str] = set()
        for definition in self._definitions.values():
            if definition.condition is not None:
                missing |= definition.condition.missing_providers()
        return frozenset(missing)


@dataclass(slots=True)
class _Draft:
    name: str
    file: str
    line: int
    name_column: int
    condition: Condition | None = None
    members: list[tuple[str, int]] = field(default_factory=list)
    """(member name, its column)."""


def _parse_union(
    body: str, offset: int, draft: _Draft, file: str, errors: list[PolicyError]
) -> None:
    def error(at: int, message: str) -> None:
        errors.append(PolicyError(message, file=file, line=draft.line, column=offset + at + 1))

    start = body.index("[")
    close = body.find("]", start)
    if close < 0:
        error(start, "unbalanced list: '[' is not closed by ']'")
        return
    trailing = body[close + 1 :]
    if trailing.strip():
        extra = trailing.lstrip()
        error(close + 1 + len(trailing) - len(extra), f"unexpected '{extra.split()[0]}' after ']'")
        return
    inner = body[start + 1 : close]
    if not inner.strip():
        error(start, "empty union: expected partition names between '[' and ']'")
        return
    position = start + 1
    for part in inner.split(","):
        name = part.strip()
        column = position + len(part) - len(part.lstrip())
        if not name:
            error(column, "expected a partition name between commas")
        elif "[" in name:
            error(column + name.index("["), "unbalanced list: '[' inside a union")
        else:
            draft.members.append((name, offset + column + 1))
        position += len(part) + 1


def _parse_line(
    raw: str,
    lineno: int,
    file: str,
    registry: VariableRegistry | None,
    now: float | None,
    attributes: AttributeTables | None,
    errors: list[PolicyError],
) -> _Draft | None:
    comment = _COMMENT_RE.search(raw)
    content = raw[: comment.start()] if comment else raw
    if not content.strip():
        return None
    indent = len(content) - len(content.lstrip())
    colon = content.find(":")
    if colon < 0:
        errors.append(
            PolicyError(
                "expected '<Name>: <condition>' or '<Name>: [A, B, ...]'",
                file=file,
                line=lineno,
                column=indent + 1,
            )
        )
        return None
    name = content[:colon].strip()
    if not name:
        errors.append(
            PolicyError(
                "expected a partition name before ':'", file=file, line=lineno, column=colon + 1
            )
        )
        return None
    if not PARTITION_NAME_RE.fullmatch(name):
        errors.append(
            PolicyError(
                f"invalid partition name '{name}' (letters, digits, '_', '-', '.', spaces)",
                file=file,
                line=lineno,
                column=indent + 1,
            )
        )
        return None
    draft = _Draft(name, file, lineno, indent + 1)
    body = content[colon + 1 :]
    if body.lstrip().startswith("["):
        _parse_union(body, colon + 1, draft, file, errors)
        return draft
    try:
        draft.condition = parse_condition(
            body,
            context=Context.BLOCKREPLICA,
            line=lineno,
            column=colon + 2,
            file=file,
            registry=registry,
            now=now,
            attributes=attributes,
        )
    except PolicyErrors as exc:
        errors.extend(exc.errors)
    return draft


def _resolve(drafts: list[_Draft], errors: list[PolicyError]) -> PartitionSet:
    """Check union members and cycles; flatten every union to the condition partitions it
    covers."""
    by_name = {d.name: d for d in drafts}
    for draft in drafts:
        for member, column in draft.members:
            if member not in by_name:
                message = f"unknown partition '{member}' in the union '{draft.name}'"
                close = difflib.get_close_matches(member, list(by_name), n=1)
                if close:
                    message += f"; did you mean '{close[0]}'?"
                errors.append(PolicyError(message, file=draft.file, line=draft.line, column=column))

    bases: dict[str, frozenset[str]] = {}
    reported: set[frozenset[str]] = set()

    def visit(draft: _Draft, path: list[str]) -> frozenset[str]:
        if draft.name in bases:
            return bases[draft.name]
        if draft.name in path:
            cycle = [*path[path.index(draft.name) :], draft.name]
            key = frozenset(cycle)
            if key not in reported:
                reported.add(key)
                first = by_name[cycle[0]]
                errors.append(
                    PolicyError(
                        "partition union cycle: " + " -> ".join(cycle),
                        file=first.file,
                        line=first.line,
                        column=first.name_column,
                    )
                )
            return frozenset()
        if not draft.members:
            result = frozenset({draft.name})
        else:
            covered: set[str] = set()
            for member, _ in draft.members:
                if member in by_name:
                    covered |= visit(by_name[member], [*path, draft.name])
            result = frozenset(covered)
        bases[draft.name] = result
        return result

    for draft in drafts:
        visit(draft, [])
    return PartitionSet(
        PartitionDefinition(
            d.name,
            d.condition,
            tuple(m for m, _ in d.members),
            d.line,
            bases.get(d.name, frozenset()),
        )
        for d in drafts
    )


def parse_partitions(
    text: str,
    *,
    file: str = "<partitions>",
    registry: VariableRegistry | None = None,
    now: float | None = None,
    attributes: AttributeTables | None = None,
) -> PartitionSet:
    """Parse a partition definition file; raise ``PolicyErrors`` with every error found."""
    errors: list[PolicyError] = []
    drafts: list[_Draft] = []
    seen: dict[str, _Draft] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        draft = _parse_line(raw, lineno, file, registry, now, attributes, errors)
        if draft is None:
            continue
        first = seen.get(draft.name)
        if first is not None:
            errors.append(
                PolicyError(
                    f"duplicate partition '{draft.name}' (first defined on line {first.line})",
                    file=file,
                    line=lineno,
                    column=draft.name_column,
                )
            )
            continue
        seen[draft.name] = draft
        drafts.append(draft)
    result = _resolve(drafts, errors)
    if errors:
        raise PolicyErrors(errors)
    return result


def compile_partitions(
    partitions: Iterable[Partition] | Mapping[str, Partition],
    *,
    registry: VariableRegistry | None = None,
    now: float | None = None,
    attributes: AttributeTables | None = None,
) -> PartitionSet:
    """Compile the inventory's ``Partition`` objects (errors name the partition as the file)."""
    items = list(partitions.values() if isinstance(partitions, Mapping) else partitions)
    errors: list[PolicyError] = []
    drafts: list[_Draft] = []
    for partition in items:
        file = f"<partition {partition.name}>"
        draft = _Draft(partition.name, file, 1, 1)
        if partition.subpartitions or partition.condition is None:
            draft.members = [(member, 1) for member in partition.subpartitions]
            if not draft.members:
                errors.append(PolicyError("a partition needs a condition or members", file=file))
        else:
            try:
                draft.condition = parse_condition(
                    partition.condition,
                    context=Context.BLOCKREPLICA,
                    file=file,
                    registry=registry,
                    now=now,
                    attributes=attributes,
                )
            except PolicyErrors as exc:
                errors.extend(exc.errors)
        drafts.append(draft)
    result = _resolve(drafts, errors)
    if errors:
        raise PolicyErrors(errors)
    return result


Usage = dict[str, dict[str, tuple[int, int]]]


def site_usage(
    inventory: Inventory,
    partitions: PartitionSet | Iterable[Partition] | Mapping[str, Partition] | None = None,
    *,
    now: float | None = None,
    attributes: AttributeTables | None = None,
) -> Usage:
    """Bytes of block replicas per site and partition, with the site's quota for it:
    ``{site: {partition: (used, quota)}}`` for every site and every partition.

    One pass over the block replicas. Per site, each condition partition is first specialised
    to the site (``site.storage_type == DISK`` is decided once per site, not per replica); each
    block replica then gets a bit mask of the condition partitions it belongs to, and bytes are
    summed per distinct mask. A union's usage is the bytes of every mask that meets its
    members, so a replica in two members counts once.
    """
    if partitions is None:
        partitions = inventory.partitions
    if isinstance(partitions, PartitionSet):
        pset = partitions
        if now is not None or attributes is not None:
            pset = pset.bind(now=now, attributes=attributes)
    else:
        pset = compile_partitions(partitions, now=now, attributes=attributes)

    conditions: list[tuple[int, Condition]] = []
    bits: dict[str, int] = {}
    for name, definition in pset.items():
        if definition.condition is not None:
            bits[name] = 1 << len(conditions)
            conditions.append((bits[name], definition.condition))
    masks = {name: _mask(definition.bases, bits) for name, definition in pset.items()}

    by_group = {bit: _decided_by_owner(condition) for bit, condition in conditions}
    usage: Usage = {}
    for site in inventory.sites.values():
        fixed = 0
        group_tests: list[tuple[int, Pred]] = []
        replica_tests: list[tuple[int, Pred]] = []
        for bit, condition in conditions:
            specialised = condition.specialize(site)
            if specialised is True:
                fixed |= bit
            elif specialised is not False:
                (group_tests if by_group[bit] else replica_tests).append((bit, specialised))
        by_mask = _bytes_by_mask(site.dataset_replicas.values(), fixed, group_tests, replica_tests)
        quotas = site.quotas
        usage[site.name] = {
            name: (
                sum(size for mask, size in by_mask.items() if mask & pmask),
                quotas.get(name, 0),
            )
            for name, pmask in masks.items()
        }
    return usage


def _decided_by_owner(condition: Condition) -> bool:
    """Whether, at one site, the condition depends on nothing but the block replica's owner:
    the usual partition ('blockreplica.owner == X and site.storage_type == DISK') is then
    evaluated once per group and site instead of once per block replica."""
    return all(
        p.variable.level is Level.SITE
        or (p.variable.level is Level.BLOCKREPLICA and p.variable.depends_on == "group")
        for p in condition.predicates
    )


def _mask(bases: frozenset[str], bits: Mapping[str, int]) -> int:
    mask = 0
    for base in bases:
        mask |= bits.get(base, 0)
    return mask


def _bytes_by_mask(
    dataset_replicas: Iterable[Any],
    fixed: int,
    group_tests: list[tuple[int, Pred]],
    replica_tests: list[tuple[int, Pred]],
) -> dict[int, int]:
    if not group_tests and not replica_tests:
        total = 0
        for dataset_replica in dataset_replicas:
            for block_replica in dataset_replica.block_replicas.values():
                total += block_replica.size
        return {fixed: total}
    by_mask: dict[int, int] = {}
    get = by_mask.get
    group_masks: dict[Any, int] = {}
    group_mask = group_masks.get
    for dataset_replica in dataset_replicas:
        for block_replica in dataset_replica.block_replicas.values():
            mask = group_mask(block_replica.group)
            if mask is None:
                mask = fixed
                for bit, test in group_tests:
                    if test(block_replica):
                        mask |= bit
                group_masks[block_replica.group] = mask
            for bit, test in replica_tests:
                if test(block_replica):
                    mask |= bit
            by_mask[mask] = get(mask, 0) + block_replica.size
    return by_mask


def membership_predicates(
    partitions: PartitionSet | Iterable[Partition] | Mapping[str, Partition],
    *,
    registry: VariableRegistry | None = None,
    now: float | None = None,
    attributes: AttributeTables | None = None,
) -> dict[str, Callable[[BlockReplica], bool]]:
    """Partition name -> predicate over a ``BlockReplica`` (a union: any of its members)."""
    if isinstance(partitions, PartitionSet):
        pset = partitions
    else:
        pset = compile_partitions(partitions, registry=registry, now=now, attributes=attributes)
    return {name: pset.membership(name) for name in pset}
