"""Detox policy files (POLICY_LANGUAGE.md, "Detox policy files").

One statement per line; ``#`` starts a comment; blank lines are ignored::

    Partition Physics
    On site.name in [T1_*_Disk T2_*]
    When site.occupancy > 0.9
    Until site.occupancy < 0.85
    ProtectBlock blockreplica.is_locked
    Delete dataset.status == INVALID and dataset.last_update older_than 2 weeks ago
    Dismiss dataset.usage_rank > 150
    Protect
    Order decreasing dataset.usage_rank increasing replica.size

Conditions go through the shared condition parser (``parse_predicates``, with the line and the
column where each condition starts), so a detox file, a partition file and an enforcer file
report the same errors in the same words. A file with any error is refused as a whole, with
every error found.

Conditions are parsed here but compiled only when a cycle binds the policy (to its reference
time and attribute tables, which it must do anyway): a 10,000-line campaign file would
otherwise be compiled twice, and compiling costs as much as parsing.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from dynamo_common.policy.compiler import AttributeTables, Condition
from dynamo_common.policy.errors import PolicyError, PolicyErrors
from dynamo_common.policy.parser import Predicate, parse_predicates
from dynamo_common.policy.partitions import PARTITION_NAME_RE
from dynamo_common.policy.variables import (
    REGISTRY,
    Context,
    Level,
    Variable,
    VariableRegistry,
    VarType,
)

__all__ = [
    "ACTIONS",
    "Action",
    "DetoxPolicy",
    "OrderKey",
    "Rule",
    "SiteStatement",
    "parse_detox_policy",
]

# A '#' opens a comment at the start of a line or after whitespace; inside a word it is text
# (the same rule as partition files).
_COMMENT_RE = re.compile(r"(?:^|(?<=\s))#")
_WORD_RE = re.compile(r"\S+")


class Action(StrEnum):
    PROTECT = "Protect"
    """Keep, and count as protected."""
    DELETE = "Delete"
    """Delete at every target site, triggered or not."""
    DISMISS = "Dismiss"
    """A deletion candidate: deleted only at triggered sites, while they need space."""
    IGNORE = "Ignore"
    """Drop from consideration (kept, not counted as protected)."""
    PROTECT_BLOCK = "ProtectBlock"
    DELETE_BLOCK = "DeleteBlock"
    DISMISS_BLOCK = "DismissBlock"

    @property
    def block_level(self) -> bool:
        return self in _BLOCK_ACTIONS

    @property
    def dataset_level(self) -> Action:
        """The dataset-level action of the same meaning (a block rule that matches every block
        of a replica decides the whole replica)."""
        return _DATASET_LEVEL.get(self, self)


_BLOCK_ACTIONS = frozenset({Action.PROTECT_BLOCK, Action.DELETE_BLOCK, Action.DISMISS_BLOCK})
_DATASET_LEVEL = {
    Action.PROTECT_BLOCK: Action.PROTECT,
    Action.DELETE_BLOCK: Action.DELETE,
    Action.DISMISS_BLOCK: Action.DISMISS,
}
ACTIONS: dict[str, Action] = {a.value: a for a in Action}
_SITE_KEYWORDS = ("On", "When", "Until")
_KEYWORDS = ("Partition", *_SITE_KEYWORDS, "Order", "Algo", *ACTIONS)
_DIRECTIONS = ("increasing", "decreasing")
_ALGORITHMS = ("Static",)
_ORDER_LEVELS = frozenset({Level.DATASET, Level.REPLICA, Level.SITE})
_ORDER_TYPES = frozenset({VarType.NUMBER, VarType.TIME, VarType.TEXT, VarType.BOOL})


@dataclass(frozen=True, slots=True)
class _Conditional:
    predicates: tuple[Predicate, ...]
    text: str
    """The condition as written (after the keyword, comment removed)."""
    line: int
    column: int
    """Where the condition starts in its line (1-based)."""
    file: str

    def variables(self) -> frozenset[str]:
        return frozenset(p.variable.name for p in self.predicates)

    def _condition(
        self, context: Context, now: float | None, attributes: AttributeTables | None
    ) -> Condition:
        return Condition(
            self.text,
            self.predicates,
            context=context,
            file=self.file,
            line=self.line,
            column=self.column,
            now=now,
            attributes=attributes,
        )


@dataclass(frozen=True, slots=True)
class SiteStatement(_Conditional):
    """An ``On``, ``When`` or ``Until`` line: a condition over a ``SiteContext``."""

    def condition(
        self, *, now: float | None = None, attributes: AttributeTables | None = None
    ) -> Condition:
        return self._condition(Context.SITE, now, attributes)


@dataclass(frozen=True, slots=True)
class Rule(_Conditional):
    """``<Action> <condition>``. Dataset-level rules are conditions over a dataset replica;
    block-level rules over each of its block replicas."""

    action: Action = Action.DISMISS

    @property
    def block_level(self) -> bool:
        return self.action.block_level

    @property
    def context(self) -> Context:
        return Context.BLOCKREPLICA if self.action.block_level else Context.REPLICA

    def condition(
        self,
        *,
        now: float | None = None,
        attributes: AttributeTables | None = None,
        context: Context | None = None,
    ) -> Condition:
        """The compiled condition. A block-level rule compiled for the replica ``context`` is
        "some block replica satisfies each predicate": a necessary condition for a block to
        match, cheap to test before looking at the blocks one by one (every variable of a
        block-replica condition is also valid in a replica condition)."""
        return self._condition(context or self.context, now, attributes)


@dataclass(frozen=True, slots=True)
class OrderKey:
    variable: Variable
    descending: bool
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class DetoxPolicy:
    """A parsed, validated detox policy. ``text`` is kept verbatim: cycle records store it
    (by ``digest``) and error messages and decisions refer to its line numbers."""

    text: str
    file: str
    partition: str
    partition_line: int
    on: tuple[SiteStatement, ...]
    """Target sites (OR). Empty: every site of the partition."""
    when: tuple[SiteStatement, ...]
    until: tuple[SiteStatement, ...]
    rules: tuple[Rule, ...]
    default: Action
    default_line: int
    order: tuple[OrderKey, ...] = ()
    """Empty: no ``Order`` line, or ``Order none``."""
    order_line: int = 0
    static: bool = False
    """``Algo Static``: every candidate at once instead of a volume step per iteration."""
    digest: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.digest:
            object.__setattr__(self, "digest", policy_digest(self.text))

    @property
    def num_lines(self) -> int:
        return self.text.count("\n") + (0 if self.text.endswith("\n") else 1)

    def statements(self) -> Iterator[_Conditional]:
        yield from self.on
        yield from self.when
        yield from self.until
        yield from self.rules

    def variables(self) -> frozenset[str]:
        """Every variable the policy names (conditions and ``Order``)."""
        names: set[str] = {key.variable.name for key in self.order}
        for statement in self.statements():
            names |= statement.variables()
        return frozenset(names)

    def line_text(self, line: int) -> str:
        """The source line ``line`` (1-based), for records and messages."""
        lines = self.text.splitlines()
        return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def policy_digest(text: str) -> str:
    """The identity of a policy text in cycle records (sha256, hex)."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(slots=True)
class _Draft:
    file: str
    registry: VariableRegistry
    errors: list[PolicyError] = field(default_factory=list)
    partition: str | None = None
    partition_line: int = 0
    on: list[SiteStatement] = field(default_factory=list)
    when: list[SiteStatement] = field(default_factory=list)
    until: list[SiteStatement] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    default: Action | None = None
    default_line: int = 0
    order: tuple[OrderKey, ...] = ()
    order_line: int = 0
    static: bool = False
    algo_line: int = 0
    seen: set[str] = field(default_factory=set)
    """Keywords met, erroneous lines included (a 'When' with an error is not missing)."""

    def error(self, line: int, column: int, message: str) -> None:
        self.errors.append(PolicyError(message, file=self.file, line=line, column=column))


def _conditional(
    draft: _Draft,
    keyword: str,
    rest: str,
    lineno: int,
    column: int,
    context: Context,
    after: int,
) -> tuple[tuple[Predicate, ...], str] | None:
    if not rest:
        kind = "site" if context is Context.SITE else "replica"
        if context is Context.BLOCKREPLICA:
            kind = "block-replica"
        draft.error(lineno, after, f"expected a {kind} condition after '{keyword}'")
        return None
    try:
        predicates = parse_predicates(
            rest,
            context=context,
            registry=draft.registry,
            file=draft.file,
            line=lineno,
            column=column,
        )
    except PolicyErrors as exc:
        draft.errors.extend(exc.errors)
        return None
    return predicates, rest


def _order(draft: _Draft, rest: str, lineno: int, column: int, after: int) -> None:
    if draft.order_line:
        draft.error(
            lineno,
            after - len("Order"),
            f"a second 'Order' line (first on line {draft.order_line})",
        )
        return
    draft.order_line = lineno
    words = [(m.group(), column + m.start()) for m in _WORD_RE.finditer(rest)]
    if not words:
        draft.error(
            lineno,
            after,
            "expected 'none' or 'increasing'/'decreasing' and a variable after 'Order'",
        )
        return
    if words[0][0] == "none":
        if len(words) > 1:
            draft.error(lineno, words[1][1], f"unexpected '{words[1][0]}' after 'Order none'")
        return
    keys: list[OrderKey] = []
    ok = True
    index = 0
    while index < len(words):
        direction, dir_column = words[index]
        if direction not in _DIRECTIONS:
            hint = difflib.get_close_matches(direction, _DIRECTIONS, n=1)
            draft.error(
                lineno,
                dir_column,
                f"expected 'increasing' or 'decreasing', found '{direction}'"
                + (f"; did you mean '{hint[0]}'?" if hint else ""),
            )
            return
        if index + 1 == len(words):
            draft.error(
                lineno, dir_column + len(direction), f"expected a variable after '{direction}'"
            )
            return
        name, var_column = words[index + 1]
        variable = _order_variable(draft, name, lineno, var_column)
        if variable is None:
            ok = False
        else:
            keys.append(OrderKey(variable, direction == "decreasing", lineno, var_column))
        index += 2
    if ok:
        draft.order = tuple(keys)


def _order_variable(draft: _Draft, name: str, lineno: int, column: int) -> Variable | None:
    variable = draft.registry.get(name)
    if variable is None:
        candidates = [
            v.name for v in draft.registry if v.level in _ORDER_LEVELS and v.type in _ORDER_TYPES
        ]
        hint = difflib.get_close_matches(name, candidates, n=1)
        draft.error(
            lineno,
            column,
            f"unknown variable '{name}'" + (f"; did you mean '{hint[0]}'?" if hint else ""),
        )
        return None
    if variable.level not in _ORDER_LEVELS:
        draft.error(
            lineno,
            column,
            f"cannot order by '{name}': Order takes dataset, replica and site variables "
            "(a value per dataset replica)",
        )
        return None
    if variable.type not in _ORDER_TYPES:
        draft.error(
            lineno,
            column,
            f"cannot order by enumerated variable '{name}': Order takes numbers, times, "
            "texts and booleans",
        )
        return None
    return variable


def _statement(draft: _Draft, raw: str, lineno: int) -> None:
    comment = _COMMENT_RE.search(raw)
    content = raw[: comment.start()] if comment else raw
    stripped = content.strip()
    if not stripped:
        return
    indent = len(content) - len(content.lstrip())
    keyword = stripped.split(None, 1)[0]
    key_column = indent + 1
    after = key_column + len(keyword)
    draft.seen.add(keyword)
    tail = content[indent + len(keyword) :]
    rest = tail.strip()
    column = after + len(tail) - len(tail.lstrip())

    if keyword == "Partition":
        if not rest:
            draft.error(lineno, after, "expected a partition name after 'Partition'")
        elif draft.partition_line:
            draft.error(
                lineno,
                key_column,
                f"a second 'Partition' line (first on line {draft.partition_line}); a policy "
                "manages one partition",
            )
        elif not PARTITION_NAME_RE.fullmatch(rest):
            draft.error(
                lineno,
                column,
                f"invalid partition name '{rest}' (letters, digits, '_', '-', '.', spaces)",
            )
        else:
            draft.partition = rest
            draft.partition_line = lineno
        return
    if keyword in _SITE_KEYWORDS:
        parsed = _conditional(draft, keyword, rest, lineno, column, Context.SITE, after)
        if parsed is not None:
            statement = SiteStatement(parsed[0], parsed[1], lineno, column, draft.file)
            {"On": draft.on, "When": draft.when, "Until": draft.until}[keyword].append(statement)
        return
    if keyword == "Order":
        _order(draft, rest, lineno, column, after)
        return
    if keyword == "Algo":
        if rest not in _ALGORITHMS:
            found = f", found '{rest}'" if rest else ""
            draft.error(lineno, column if rest else after, f"expected 'Static' after 'Algo'{found}")
        elif draft.algo_line:
            draft.error(
                lineno, key_column, f"a second 'Algo' line (first on line {draft.algo_line})"
            )
        else:
            draft.static = True
            draft.algo_line = lineno
        return
    action = ACTIONS.get(keyword)
    if action is None:
        hint = difflib.get_close_matches(keyword, _KEYWORDS, n=1, cutoff=0.7)
        if not hint:
            hint = [k for k in _KEYWORDS if k.lower() == keyword.lower()]
        message = f"unknown statement '{keyword}'" + (
            f"; did you mean '{hint[0]}'?"
            if hint
            else "; expected Partition, On, When, Until, Order, Algo or an action "
            "(Protect, Delete, Dismiss, Ignore, ProtectBlock, DeleteBlock, DismissBlock)"
        )
        draft.error(lineno, key_column, message)
        return
    if not rest:
        if action.block_level:
            draft.error(
                lineno,
                key_column,
                f"'{keyword}' needs a condition; the default decision is one of Protect, "
                "Delete, Dismiss or Ignore",
            )
        elif draft.default is not None:
            draft.error(
                lineno,
                key_column,
                f"a second default decision (the first is '{draft.default.value}' on line "
                f"{draft.default_line})",
            )
        else:
            draft.default = action
            draft.default_line = lineno
        return
    context = Context.BLOCKREPLICA if action.block_level else Context.REPLICA
    parsed = _conditional(draft, keyword, rest, lineno, column, context, after)
    if parsed is not None:
        draft.rules.append(Rule(parsed[0], parsed[1], lineno, column, draft.file, action))


def parse_detox_policy(
    text: str, *, file: str = "<policy>", registry: VariableRegistry | None = None
) -> DetoxPolicy:
    """Parse a detox policy file; raise ``PolicyErrors`` with every error found."""
    draft = _Draft(file, REGISTRY if registry is None else registry)
    for lineno, raw in enumerate(text.splitlines(), 1):
        _statement(draft, raw, lineno)
    missing = []
    if "Partition" not in draft.seen:
        missing.append("a 'Partition' line (the partition this policy manages)")
    if "When" not in draft.seen:
        missing.append("a 'When' line (the deletion trigger)")
    if "Until" not in draft.seen:
        missing.append("an 'Until' line (the stop condition)")
    if draft.default is None:
        missing.append("a default decision (an action alone on its line, e.g. 'Dismiss')")
    for what in missing:
        draft.error(1, 1, f"the policy needs {what}")
    if draft.errors:
        raise PolicyErrors(draft.errors)
    assert draft.partition is not None and draft.default is not None
    return DetoxPolicy(
        text=text,
        file=file,
        partition=draft.partition,
        partition_line=draft.partition_line,
        on=tuple(draft.on),
        when=tuple(draft.when),
        until=tuple(draft.until),
        rules=tuple(draft.rules),
        default=draft.default,
        default_line=draft.default_line,
        order=draft.order,
        order_line=draft.order_line,
        static=draft.static,
    )
