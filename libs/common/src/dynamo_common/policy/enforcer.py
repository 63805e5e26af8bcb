"""Enforcer rules (POLICY_LANGUAGE.md, "Enforcer rules"): a JSON file of replication rules.

    {"partition": "Physics", "default_destination_group": "AnalysisOps",
     "rules": {"us_miniaod": {
        "replicas": ["dataset.name == /*/*/MINIAOD*"],
        "num_copies": 1,
        "destinations": ["site.name in [T1_US_*_Disk T2_US_*]"],
        "sources": ["site.storage_type == DISK and site.name notin [T1_US_*_Disk T2_US_*]"],
        "protect": true}}}

The structure is validated with pydantic; every condition goes through the shared condition
parser. Errors carry the line and column in the JSON text (of the offending value, and inside a
condition string of the offending word) and name the rule and list index, so an operator finds
``rules.us_miniaod.replicas[0]`` at once. The dealer requests the missing copies; detox reads
``replica.enforcer_protected`` from ``evaluate_enforcer``.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dynamo_common.model.objects import Dataset, DatasetReplica, Inventory, Site
from dynamo_common.policy.compiler import AttributeTables, Condition, Pred
from dynamo_common.policy.errors import PolicyError, PolicyErrors
from dynamo_common.policy.parser import Predicate, parse_predicates
from dynamo_common.policy.partitions import site_usage
from dynamo_common.policy.variables import (
    REGISTRY,
    Context,
    SiteContext,
    VariableRegistry,
)

__all__ = [
    "EnforcerFile",
    "EnforcerPolicy",
    "EnforcerRule",
    "EnforcerRuleFile",
    "RuleStatus",
    "evaluate_enforcer",
    "parse_enforcer_rules",
    "protected_replicas",
]

Path = tuple[str | int, ...]


# ------------------------------------------------------------------------------------ schema


class EnforcerRuleFile(BaseModel):
    """One rule as written in the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    replicas: list[str] = Field(
        min_length=1, description="replica conditions (OR): the datasets the rule is about"
    )
    num_copies: int = Field(ge=1, le=1000, description="complete replicas wanted at destinations")
    destinations: list[str] = Field(min_length=1, description="site conditions (OR)")
    sources: list[str] = Field(
        default_factory=list,
        description="site conditions (OR) where a matching replica makes a dataset subject to "
        "the rule; empty: any site",
    )
    protect: bool = Field(
        default=False, description="counted replicas are replica.enforcer_protected for detox"
    )


class EnforcerFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    partition: str = Field(min_length=1, description="site conditions see this partition")
    default_destination_group: str = Field(
        min_length=1, description="owner of the copies the dealer makes"
    )
    rules: dict[str, EnforcerRuleFile]


# ---------------------------------------------------------------------- positions in the JSON


class _Locator:
    """Where each value of a (valid) JSON text starts: path -> offset. ``json`` gives no
    positions, so this walks the text once more; it also finds duplicate object keys, which
    ``json.loads`` silently resolves to the last one."""

    _SPACE = re.compile(r"[ \t\n\r]*")

    def __init__(self, text: str) -> None:
        self.text = text
        self.offsets: dict[Path, int] = {}
        self.duplicates: list[tuple[Path, int]] = []
        self._decoder = json.JSONDecoder()
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self._value(self._skip(0), ())

    def position(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def locate(self, path: Path) -> tuple[int, int]:
        """Line and column of the value at ``path`` or, when absent, of its nearest parent."""
        while path not in self.offsets and path:
            path = path[:-1]
        return self.position(self.offsets.get(path, 0))

    def _skip(self, pos: int) -> int:
        match = self._SPACE.match(self.text, pos)
        return match.end() if match else pos

    def _value(self, pos: int, path: Path) -> int:
        self.offsets[path] = pos
        ch = self.text[pos]
        if ch == "{":
            return self._object(pos + 1, path)
        if ch == "[":
            return self._array(pos + 1, path)
        end: int = self._decoder.raw_decode(self.text, pos)[1]
        return end

    def _object(self, pos: int, path: Path) -> int:
        seen: set[str] = set()
        pos = self._skip(pos)
        if self.text[pos] == "}":
            return pos + 1
        while True:
            key_pos = pos
            key, pos = self._decoder.raw_decode(self.text, pos)
            if key in seen:
                self.duplicates.append(((*path, key), key_pos))
            seen.add(key)
            pos = self._skip(self._skip(pos) + 1)  # past ':'
            pos = self._skip(self._value(pos, (*path, key)))
            if self.text[pos] == "}":
                return pos + 1
            pos = self._skip(pos + 1)  # past ','

    def _array(self, pos: int, path: Path) -> int:
        pos = self._skip(pos)
        if self.text[pos] == "]":
            return pos + 1
        index = 0
        while True:
            pos = self._skip(self._value(pos, (*path, index)))
            index += 1
            if self.text[pos] == "]":
                return pos + 1
            pos = self._skip(pos + 1)


def _dotted(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# ----------------------------------------------------------------------------- parsed rules


@dataclass(frozen=True, slots=True)
class _Conditions:
    items: tuple[tuple[tuple[Predicate, ...], str, int, int], ...]
    """(predicates, text, line, column) of each condition of the list."""
    context: Context
    file: str

    def compile(
        self, now: float | None, attributes: AttributeTables | None
    ) -> tuple[Condition, ...]:
        return tuple(
            Condition(
                text,
                predicates,
                context=self.context,
                file=self.file,
                line=line,
                column=column,
                now=now,
                attributes=attributes,
            )
            for predicates, text, line, column in self.items
        )

    def variables(self) -> frozenset[str]:
        return frozenset(p.variable.name for preds, _, _, _ in self.items for p in preds)


@dataclass(frozen=True, slots=True)
class EnforcerRule:
    name: str
    replicas: _Conditions
    num_copies: int
    destinations: _Conditions
    sources: _Conditions
    protect: bool
    line: int


@dataclass(frozen=True, slots=True)
class EnforcerPolicy:
    text: str
    file: str
    partition: str
    default_destination_group: str
    rules: tuple[EnforcerRule, ...]

    def variables(self) -> frozenset[str]:
        names: set[str] = set()
        for rule in self.rules:
            names |= rule.replicas.variables()
            names |= rule.destinations.variables()
            names |= rule.sources.variables()
        return frozenset(names)


def parse_enforcer_rules(
    text: str, *, file: str = "<enforcer>", registry: VariableRegistry | None = None
) -> EnforcerPolicy:
    """Parse and validate an enforcer rule file; raise ``PolicyErrors`` with every error."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyErrors(
            [PolicyError(f"invalid JSON: {exc.msg}", file=file, line=exc.lineno, column=exc.colno)]
        ) from None
    locator = _Locator(text)
    errors: list[PolicyError] = []

    def error(path: Path, message: str, position: tuple[int, int] | None = None) -> None:
        line, column = position or locator.locate(path)
        where = _dotted(path)
        errors.append(
            PolicyError(
                f"{where}: {message}" if where else message, file=file, line=line, column=column
            )
        )

    for path, offset in locator.duplicates:
        what = "rule" if len(path) == 2 and path[0] == "rules" else "key"
        error(path, f"duplicate {what} '{path[-1]}'", locator.position(offset))
    # The header and each rule are validated apart, so one bad rule does not hide the
    # errors of the others.
    raw_rules = data.get("rules") if isinstance(data, dict) else None
    header_data = {**data, "rules": {}} if isinstance(raw_rules, dict) else data
    header: EnforcerFile | None = None
    try:
        header = EnforcerFile.model_validate(header_data)
    except ValidationError as exc:
        for item in exc.errors():
            error(tuple(item["loc"]), item["msg"])
    valid: dict[str, EnforcerRuleFile] = {}
    for name, value in (raw_rules or {}).items():
        try:
            valid[name] = EnforcerRuleFile.model_validate(value)
        except ValidationError as exc:
            for item in exc.errors():
                error(("rules", name, *item["loc"]), item["msg"])

    reg = REGISTRY if registry is None else registry

    def conditions(name: str, key: str, values: object, context: Context) -> _Conditions:
        """The conditions of one list (checked even when the rule has other errors, so
        that every error is reported at once)."""
        items = []
        for index, condition in enumerate(values if isinstance(values, list) else []):
            if not isinstance(condition, str):
                continue
            path = ("rules", name, key, index)
            line, column = locator.locate(path)
            raw = text[locator.offsets.get(path, 0) :]
            # Columns inside the string are exact unless escapes shift them; then errors
            # point at the string itself.
            exact = raw.startswith('"') and "\\" not in raw[1 : len(condition) + 1]
            try:
                predicates = parse_predicates(
                    condition,
                    context=context,
                    registry=reg,
                    file=file,
                    line=line,
                    column=column + 1,
                )
            except PolicyErrors as exc:
                for err in exc.errors:
                    error(path, err.message, (err.line, err.column) if exact else (line, column))
                continue
            items.append((predicates, condition.strip(), line, column + 1))
        return _Conditions(tuple(items), context, file)

    rules: list[EnforcerRule] = []
    for name, value in (raw_rules or {}).items():
        fields = value if isinstance(value, dict) else {}
        replicas = conditions(name, "replicas", fields.get("replicas"), Context.REPLICA)
        destinations = conditions(name, "destinations", fields.get("destinations"), Context.SITE)
        sources = conditions(name, "sources", fields.get("sources"), Context.SITE)
        rule = valid.get(name)
        if rule is not None:
            rules.append(
                EnforcerRule(
                    name=name,
                    replicas=replicas,
                    num_copies=rule.num_copies,
                    destinations=destinations,
                    sources=sources,
                    protect=rule.protect,
                    line=locator.locate(("rules", name))[0],
                )
            )
    if errors:
        raise PolicyErrors(errors)
    assert header is not None
    return EnforcerPolicy(
        text=text,
        file=file,
        partition=header.partition,
        default_destination_group=header.default_destination_group,
        rules=tuple(rules),
    )


# ------------------------------------------------------------------------------- evaluation


@dataclass(slots=True)
class RuleStatus:
    """Compliance of one rule: for every dataset it applies to, the replicas at destination
    sites that count toward ``num_copies`` (complete ones first, then copies in flight) and
    how many are still missing."""

    rule: EnforcerRule
    counted: dict[Dataset, list[DatasetReplica]] = field(default_factory=dict)
    missing: dict[Dataset, int] = field(default_factory=dict)

    @property
    def datasets(self) -> int:
        return len(self.counted)

    @property
    def there(self) -> int:
        return sum(1 for rs in self.counted.values() for r in rs if r.is_complete)

    @property
    def in_flight(self) -> int:
        return sum(1 for rs in self.counted.values() for r in rs if not r.is_complete)

    @property
    def missing_copies(self) -> int:
        return sum(self.missing.values())


def _any(conditions: tuple[Condition, ...]) -> Pred | bool:
    predicates = [c.predicate for c in conditions if c.constant is None]
    if any(c.constant is True for c in conditions):
        return True
    if not predicates:
        return False
    if len(predicates) == 1:
        return predicates[0]
    return lambda obj: any(p(obj) for p in predicates)


def _sites(
    conditions: tuple[Condition, ...], contexts: Iterable[SiteContext], empty_means_all: bool
) -> list[Site]:
    if not conditions:
        return [c.site for c in contexts] if empty_means_all else []
    test = _any(conditions)
    if isinstance(test, bool):
        return [c.site for c in contexts] if test else []
    return [c.site for c in contexts if test(c)]


def evaluate_enforcer(
    policy: EnforcerPolicy,
    inventory: Inventory,
    *,
    now: float | None = None,
    attributes: AttributeTables | None = None,
    usage: Mapping[str, Mapping[str, tuple[int, int]]] | None = None,
) -> list[RuleStatus]:
    """Apply every rule to the inventory. ``usage`` (``site_usage``'s result) is computed
    when not given; site conditions see the policy's partition."""
    if usage is None:
        usage = site_usage(inventory, now=now, attributes=attributes)
    contexts = []
    for site in sorted(inventory.sites.values(), key=lambda s: s.name):
        used, quota = usage.get(site.name, {}).get(
            policy.partition, (0, site.quotas.get(policy.partition, 0))
        )
        contexts.append(SiteContext(site, policy.partition, used, quota))
    statuses = []
    for rule in policy.rules:
        status = RuleStatus(rule)
        statuses.append(status)
        wanted = _any(rule.replicas.compile(now, attributes))
        if wanted is False:
            continue
        sources = _sites(rule.sources.compile(now, attributes), contexts, empty_means_all=True)
        destinations = set(_sites(rule.destinations.compile(now, attributes), contexts, False))
        subject: dict[Dataset, None] = {}
        for site in sources:
            for replica in site.dataset_replicas.values():
                if replica.dataset not in subject and (wanted is True or wanted(replica)):
                    subject[replica.dataset] = None
        for dataset in sorted(subject, key=lambda d: d.name):
            at_destinations = [r for r in dataset.replicas.values() if r.site in destinations]
            at_destinations.sort(key=lambda r: (not r.is_complete, r.site.name))
            counted = at_destinations[: rule.num_copies]
            status.counted[dataset] = counted
            if len(counted) < rule.num_copies:
                status.missing[dataset] = rule.num_copies - len(counted)
    return statuses


def protected_replicas(statuses: Iterable[RuleStatus]) -> set[DatasetReplica]:
    """The replicas counted by rules with ``protect``: ``replica.enforcer_protected``."""
    protected: set[DatasetReplica] = set()
    for status in statuses:
        if status.rule.protect:
            for replicas in status.counted.values():
                protected.update(replicas)
    return protected
