"""A detox policy bound for one cycle: its conditions compiled against the cycle's reference
time and attribute tables, ready to be applied to hundreds of thousands of replicas.

Binding is where the per-replica cost is decided, so it does three things once:

* every rule becomes one closure (``compile_predicates``: constants folded, cheap predicates
  first); a rule that can never match is dropped, one that always matches has no test;
* a block-level rule also gets its condition compiled over the dataset replica ("some block
  replica satisfies each predicate"): a necessary condition, cheap to test before the blocks
  are looked at one by one;
* runs of rules that each name datasets literally (``Delete dataset.name == /A/B/C``, the shape
  of deletion campaigns) become one dictionary lookup: a 10,000-line campaign file costs a
  replica one lookup instead of 10,000 tests. Within a run the rules for one name keep their
  order, so the first matching rule still decides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dynamo_common.model.objects import DatasetReplica
from dynamo_common.policy.compiler import AttributeTables, Binding, Pred, compile_predicates
from dynamo_common.policy.detox import Action, DetoxPolicy, OrderKey, Rule, SiteStatement
from dynamo_common.policy.parser import ListValue, Op, Predicate, TextValue
from dynamo_common.policy.variables import Context, Level

MIN_INDEXED_RUN = 8
"""Shorter runs of literal-name rules are tested one by one (a lookup is not worth it)."""
_NAME = "dataset.name"


@dataclass(frozen=True, slots=True)
class BoundRule:
    action: Action
    line: int
    test: Pred | None
    """Over the dataset replica (for a block rule: "some block replica may match"); None:
    always true."""
    block_test: Pred | None
    """Block rules only: over one block replica; None: every block replica matches."""
    block_level: bool


@dataclass(frozen=True, slots=True)
class RuleIndex:
    """Consecutive rules that each require ``dataset.name`` to be one of a few literal names,
    keyed by those names (each rule compiled without its name predicate)."""

    by_name: dict[str, tuple[BoundRule, ...]]
    lines: tuple[int, int]


Step = BoundRule | RuleIndex
FlatStep = tuple[dict[str, tuple[BoundRule, ...]] | None, tuple[BoundRule, ...]]
"""What the evaluation loop walks: (an index by dataset name, or None; the rules)."""
SortKey = Callable[[DatasetReplica], Any]


def _literal_names(predicate: Predicate) -> tuple[str, ...] | None:
    if predicate.variable.name != _NAME:
        return None
    value = predicate.value
    if predicate.op is Op.EQ and isinstance(value, TextValue) and value.pattern is None:
        return (value.text,)
    if predicate.op is Op.IN and isinstance(value, ListValue):
        names = []
        for item in value.items:
            if not isinstance(item, TextValue) or item.pattern is not None:
                return None
            names.append(item.text)
        return tuple(names)
    return None


def _name_key(rule: Rule) -> tuple[tuple[str, ...], tuple[Predicate, ...]] | None:
    """(the literal names, the other predicates) of a rule an index can hold."""
    for index, predicate in enumerate(rule.predicates):
        names = _literal_names(predicate)
        if names is not None:
            return names, rule.predicates[:index] + rule.predicates[index + 1 :]
    return None


def _compile(predicates: Sequence[Predicate], context: Context, binding: Binding) -> Pred | bool:
    return compile_predicates(predicates, context, binding)


def _bind_rule(rule: Rule, predicates: Sequence[Predicate], binding: Binding) -> BoundRule | None:
    test = _compile(predicates, Context.REPLICA, binding)
    if test is False:
        return None
    block_test: Pred | None = None
    if rule.block_level:
        compiled = _compile(predicates, Context.BLOCKREPLICA, binding)
        if compiled is False:
            return None
        if compiled is not True:
            block_test = compiled
    return BoundRule(
        rule.action,
        rule.line,
        None if test is True else test,
        block_test,
        rule.block_level,
    )


def _bind_steps(rules: Sequence[Rule], binding: Binding) -> tuple[Step, ...]:
    steps: list[Step] = []
    run: list[tuple[Rule, tuple[str, ...], tuple[Predicate, ...]]] = []

    def flush() -> None:
        if len(run) >= MIN_INDEXED_RUN:
            by_name: dict[str, list[BoundRule]] = {}
            for rule, names, rest in run:
                bound = _bind_rule(rule, rest, binding)
                if bound is not None:
                    for name in names:
                        by_name.setdefault(name, []).append(bound)
            steps.append(
                RuleIndex(
                    {name: tuple(found) for name, found in by_name.items()},
                    (run[0][0].line, run[-1][0].line),
                )
            )
        else:
            for rule, _, _ in run:
                bound = _bind_rule(rule, rule.predicates, binding)
                if bound is not None:
                    steps.append(bound)
        run.clear()

    for rule in rules:
        key = _name_key(rule)
        if key is not None:
            run.append((rule, *key))
            continue
        flush()
        bound = _bind_rule(rule, rule.predicates, binding)
        if bound is not None:
            steps.append(bound)
    flush()
    return tuple(steps)


def _any_site(statements: Sequence[SiteStatement], binding: Binding) -> Pred | bool:
    """The OR of site conditions (several lines of one kind are OR'ed)."""
    tests: list[Pred] = []
    for statement in statements:
        compiled = _compile(statement.predicates, Context.SITE, binding)
        if compiled is True:
            return True
        if compiled is not False:
            tests.append(compiled)
    if not tests:
        return False
    if len(tests) == 1:
        return tests[0]
    return lambda context: any(test(context) for test in tests)


def _sort_key(key: OrderKey, attributes: AttributeTables) -> SortKey:
    variable = key.variable
    navigate: Callable[[DatasetReplica], Any]
    if variable.level is Level.DATASET:
        navigate = _dataset
    elif variable.level is Level.SITE:
        navigate = _site
    else:
        navigate = _identity
    if variable.provider:
        table = attributes.get(variable.attribute)
        default = variable.default
        if table is None:
            return lambda replica: default
        get = table.get
        return lambda replica: get(navigate(replica), default)
    getter = variable.make_getter()
    return lambda replica: getter(navigate(replica))


def _dataset(replica: DatasetReplica) -> Any:
    return replica.dataset


def _site(replica: DatasetReplica) -> Any:
    return replica.site


def _identity(replica: DatasetReplica) -> Any:
    return replica


def _uses_partition_usage(statements: Sequence[SiteStatement]) -> bool:
    return any(p.variable.level is Level.SITE_PARTITION for s in statements for p in s.predicates)


@dataclass(frozen=True, slots=True)
class BoundPolicy:
    policy: DetoxPolicy
    steps: tuple[Step, ...]
    on: Pred | bool | None
    """None: no ``On`` line (every site of the partition is a target)."""
    on_needs_usage: bool
    when: Pred | bool
    until: Pred | bool
    order: tuple[tuple[SortKey, bool], ...]
    """(key over a dataset replica, descending) in the policy's order."""
    missing_providers: frozenset[str]
    """Provider variables the policy uses that no table fills: they take their defaults."""

    @property
    def flat_steps(self) -> tuple[FlatStep, ...]:
        return tuple(
            (step.by_name, ()) if isinstance(step, RuleIndex) else (None, (step,))
            for step in self.steps
        )

    @property
    def default(self) -> Action:
        return self.policy.default

    @property
    def default_line(self) -> int:
        return self.policy.default_line

    @property
    def static(self) -> bool:
        return self.policy.static


def bind_policy(policy: DetoxPolicy, *, now: float, attributes: AttributeTables) -> BoundPolicy:
    binding = Binding(now, attributes)
    missing: set[str] = set()
    for statement in policy.statements():
        for predicate in statement.predicates:
            variable = predicate.variable
            if variable.provider and variable.attribute not in attributes:
                missing.add(variable.name)
    for key in policy.order:
        if key.variable.provider and key.variable.attribute not in attributes:
            missing.add(key.variable.name)
    return BoundPolicy(
        policy=policy,
        steps=_bind_steps(policy.rules, binding),
        on=_any_site(policy.on, binding) if policy.on else None,
        on_needs_usage=_uses_partition_usage(policy.on),
        when=_any_site(policy.when, binding),
        until=_any_site(policy.until, binding),
        order=tuple((_sort_key(key, attributes), key.descending) for key in policy.order),
        missing_providers=frozenset(missing),
    )
