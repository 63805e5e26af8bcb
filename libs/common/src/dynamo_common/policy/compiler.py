"""Compiling parsed conditions into plain Python closures.

A detox cycle evaluates every condition over some 300,000 replicas, so the work is done once,
when a condition is bound: values are parsed, wildcards and regexes compiled, navigation fused
into ``operator.attrgetter`` paths, relative dates resolved against the binding's "now",
constants and absent attribute tables folded away, and predicates ordered cheapest first
(they have no side effects, so the order of an ``and`` does not change its result). What
remains per object is one small closure per predicate.
"""

from __future__ import annotations

import operator
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from operator import attrgetter
from typing import Any, Literal, cast

from dynamo_common.model.objects import BlockReplica, Site
from dynamo_common.policy.parser import (
    DateValue,
    EnumValue,
    ListValue,
    NumberValue,
    Op,
    Predicate,
    RegexValue,
    TextValue,
    Value,
    parse_predicates,
)
from dynamo_common.policy.variables import (
    REGISTRY,
    Context,
    Getter,
    Level,
    Variable,
    VariableRegistry,
)

Pred = Callable[[Any], bool]
AttributeTables = Mapping[str, Mapping[Any, Any]]
ContextName = Literal["replica", "blockreplica", "site"]

_NO_ATTRIBUTES: AttributeTables = {}


def _always(obj: Any) -> bool:
    return True


def _never(obj: Any) -> bool:
    return False


def _identity(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class Binding:
    """What a compiled condition depends on besides the object: the reference time of
    relative dates and the attribute tables of provider variables."""

    now: float
    attributes: AttributeTables


@dataclass(frozen=True, slots=True)
class _Const:
    value: Any


# Attribute path from the context object to the level object ("" = the object itself).
_NAV_PATHS: dict[tuple[Context, Level], str] = {
    (Context.REPLICA, Level.DATASET): "dataset",
    (Context.REPLICA, Level.REPLICA): "",
    (Context.REPLICA, Level.SITE): "site",
    (Context.BLOCKREPLICA, Level.DATASET): "block.dataset",
    (Context.BLOCKREPLICA, Level.BLOCKREPLICA): "",
    (Context.BLOCKREPLICA, Level.SITE): "site",
    (Context.SITE, Level.SITE): "site",
    (Context.SITE, Level.SITE_PARTITION): "",
}


def _level_getter(variable: Variable, binding: Binding) -> Getter | _Const:
    if variable.level is Level.CONSTANT:
        return _Const(variable.default)
    if variable.provider:
        table = binding.attributes.get(variable.attribute)
        if table is None:
            return _Const(variable.default)
        get = table.get
        default = variable.default
        return lambda obj: get(obj, default)
    return variable.make_getter()


def _context_getter(
    variable: Variable, context: Context, binding: Binding, site: Site | None
) -> Getter | _Const:
    getter = _level_getter(variable, binding)
    if isinstance(getter, _Const):
        return getter
    level = variable.level
    if site is not None and level is Level.SITE:
        return _Const(getter(site))
    if context is Context.BLOCKREPLICA and level is Level.REPLICA:
        default = variable.default

        def via_dataset_replica(replica: BlockReplica) -> Any:
            dataset_replica = replica.block.dataset.replicas.get(replica.site.name)
            return default if dataset_replica is None else getter(dataset_replica)

        return via_dataset_replica
    path = _NAV_PATHS[(context, level)]
    if not path:
        return getter
    if variable.attr is not None:
        return attrgetter(f"{path}.{variable.attr}")
    navigate = attrgetter(path)
    level_getter = getter
    return lambda obj: level_getter(navigate(obj))


def _scalar(value: Value | None) -> Any:
    if isinstance(value, TextValue):
        return value.text
    if isinstance(value, EnumValue):
        return value.value
    if isinstance(value, NumberValue):
        return value.value
    raise TypeError(f"not a scalar value: {value!r}")


def _threshold(value: Value | None, binding: Binding) -> float:
    if isinstance(value, DateValue):
        return value.spec.resolve(binding.now)
    if isinstance(value, NumberValue):
        return value.value
    raise TypeError(f"not a comparable value: {value!r}")


def _membership(items: ListValue) -> tuple[frozenset[Any], Callable[[Any], Any] | None]:
    literals: set[Any] = set()
    patterns: list[str] = []
    for item in items.items:
        if isinstance(item, TextValue) and item.pattern is not None:
            patterns.append(f"(?:{item.pattern.pattern})")
        else:
            literals.add(_scalar(item))
    # One alternation instead of a loop over patterns: the regex engine does the loop in C.
    matcher = re.compile("|".join(patterns), re.DOTALL).fullmatch if patterns else None
    return frozenset(literals), matcher


def _build_test(
    get: Getter, predicate: Predicate, binding: Binding, then: Pred | None = None
) -> Pred:
    """A closure ``obj -> bool`` applying the predicate's operator to ``get(obj)`` and, when it
    holds, the rest of the ``and`` (``then``).

    Chaining the rest into each closure instead of calling the predicates from a loop saves a
    Python frame per object, and every operator gets its own lambda so none of them branches
    on the operator per object. Hence the two near-identical lambdas per case.
    """
    op = predicate.op
    value = predicate.value
    if op is Op.IS:
        if then is None:
            return cast(Pred, get)
        return lambda obj: get(obj) and then(obj)
    if op is Op.NOT:
        if then is None:
            return lambda obj: not get(obj)
        return lambda obj: not get(obj) and then(obj)
    if op in (Op.MATCH, Op.NOT_MATCH) or (
        op in (Op.EQ, Op.NE) and isinstance(value, TextValue) and value.pattern is not None
    ):
        assert isinstance(value, TextValue | RegexValue) and value.pattern is not None
        match = value.pattern.fullmatch
        if op in (Op.EQ, Op.MATCH):
            if then is None:
                return lambda obj: match(get(obj)) is not None
            return lambda obj: match(get(obj)) is not None and then(obj)
        if then is None:
            return lambda obj: match(get(obj)) is None
        return lambda obj: match(get(obj)) is None and then(obj)
    if op is Op.EQ:
        target = _scalar(value)
        if then is None:
            return lambda obj: get(obj) == target
        return lambda obj: get(obj) == target and then(obj)
    if op is Op.NE:
        target = _scalar(value)
        if then is None:
            return lambda obj: get(obj) != target
        return lambda obj: get(obj) != target and then(obj)
    if op in (Op.LT, Op.OLDER):
        limit = _threshold(value, binding)
        if then is None:
            return lambda obj: get(obj) < limit
        return lambda obj: get(obj) < limit and then(obj)
    if op in (Op.GT, Op.NEWER):
        limit = _threshold(value, binding)
        if then is None:
            return lambda obj: get(obj) > limit
        return lambda obj: get(obj) > limit and then(obj)
    assert isinstance(value, ListValue)
    literals, matcher = _membership(value)
    test: Pred
    if op is Op.IN:
        if matcher is None:
            if then is None:
                return lambda obj: get(obj) in literals
            return lambda obj: get(obj) in literals and then(obj)
        if not literals:
            if then is None:
                return lambda obj: matcher(get(obj)) is not None
            return lambda obj: matcher(get(obj)) is not None and then(obj)
        test = lambda obj: (v := get(obj)) in literals or matcher(v) is not None  # noqa: E731
    elif matcher is None:
        if then is None:
            return lambda obj: get(obj) not in literals
        return lambda obj: get(obj) not in literals and then(obj)
    elif not literals:
        if then is None:
            return lambda obj: matcher(get(obj)) is None
        return lambda obj: matcher(get(obj)) is None and then(obj)
    else:
        test = lambda obj: (v := get(obj)) not in literals and matcher(v) is None  # noqa: E731
    if then is None:
        return test
    return lambda obj: test(obj) and then(obj)


def _value_test(predicate: Predicate, binding: Binding) -> tuple[Callable[[Any], Any], bool]:
    """The predicate as a test of a value (C-level where one exists: no frame per call) and
    whether to negate it."""
    op = predicate.op
    value = predicate.value
    if op in (Op.IS, Op.NOT):
        return bool, op is Op.NOT
    if isinstance(value, RegexValue | TextValue) and value.pattern is not None:
        return value.pattern.fullmatch, op in (Op.NE, Op.NOT_MATCH)
    if op in (Op.EQ, Op.NE):
        return partial(operator.eq, _scalar(value)), op is Op.NE
    if op in (Op.LT, Op.OLDER):
        return partial(operator.gt, _threshold(value, binding)), False
    if op in (Op.GT, Op.NEWER):
        return partial(operator.lt, _threshold(value, binding)), False
    assert isinstance(value, ListValue)
    literals, matcher = _membership(value)
    test: Callable[[Any], Any]
    if matcher is None:
        test = literals.__contains__
    elif not literals:
        test = matcher
    else:
        test = lambda v: v in literals or matcher(v) is not None  # noqa: E731
    return test, op is Op.NOTIN


def _any_block_replica(get: Getter, predicate: Predicate, binding: Binding) -> Pred:
    """'Any block replica of the dataset replica satisfies the predicate'. Explicit loops with
    the test inlined: dataset replicas have a few block replicas each, too few for ``any(map(
    ...))`` to pay for its two iterator objects, and a closure per block replica costs a frame.
    """
    op = predicate.op
    value = predicate.value
    literal = not (isinstance(value, TextValue) and value.pattern is not None)
    if op is Op.EQ and literal:
        target = _scalar(value)

        def any_equal(replica: Any) -> bool:
            for block_replica in replica.block_replicas.values():
                if get(block_replica) == target:
                    return True
            return False

        return any_equal
    if op is Op.IS:

        def any_true(replica: Any) -> bool:
            for block_replica in replica.block_replicas.values():  # noqa: SIM110
                if get(block_replica):
                    return True
            return False

        return any_true
    if op is Op.NOT:

        def any_false(replica: Any) -> bool:
            for block_replica in replica.block_replicas.values():  # noqa: SIM110
                if not get(block_replica):
                    return True
            return False

        return any_false
    test, negate = _value_test(predicate, binding)
    if negate:

        def any_fails(replica: Any) -> bool:
            for block_replica in replica.block_replicas.values():
                if not test(get(block_replica)):
                    return True
            return False

        return any_fails

    def any_passes(replica: Any) -> bool:
        for block_replica in replica.block_replicas.values():  # noqa: SIM110
            if test(get(block_replica)):
                return True
        return False

    return any_passes


def _cost(predicate: Predicate, context: Context) -> int:
    variable = predicate.variable
    cost = variable.cost
    if context is Context.REPLICA and variable.level is Level.BLOCKREPLICA:
        cost += 8
    elif context is Context.BLOCKREPLICA and variable.level is Level.REPLICA:
        cost += 1
    return cost


def compile_predicate(
    predicate: Predicate,
    context: Context,
    binding: Binding,
    site: Site | None = None,
    then: Pred | None = None,
) -> Pred | bool:
    """The predicate (and then ``then``) as a closure over the context object, or a constant
    when the binding (or the given site) decides the predicate."""
    variable = predicate.variable
    if context is Context.REPLICA and variable.level is Level.BLOCKREPLICA:
        # The page: a block-replica predicate on a dataset replica holds when any of its
        # block replicas satisfies it.
        getter = _level_getter(variable, binding)
        if isinstance(getter, _Const):
            if not _build_test(_identity, predicate, binding)(getter.value):
                return False
            if then is None:
                return lambda replica: len(replica.block_replicas) > 0
            return lambda replica: len(replica.block_replicas) > 0 and then(replica)
        any_block_replica = _any_block_replica(getter, predicate, binding)
        if then is None:
            return any_block_replica
        return lambda replica: any_block_replica(replica) and then(replica)
    getter = _context_getter(variable, context, binding, site)
    if isinstance(getter, _Const):
        return bool(_build_test(_identity, predicate, binding)(getter.value))
    return _build_test(getter, predicate, binding, then)


def compile_predicates(
    predicates: Iterable[Predicate],
    context: Context,
    binding: Binding,
    site: Site | None = None,
) -> Pred | bool:
    """The ``and`` of the predicates, or a constant when it is decided without an object."""
    ordered = sorted(enumerate(predicates), key=lambda item: (_cost(item[1], context), item[0]))
    remaining: list[Predicate] = []
    for _, predicate in ordered:
        decided = compile_predicate(predicate, context, binding, site)
        if decided is False:
            return False
        if decided is not True:
            remaining.append(predicate)
    if not remaining:
        return True
    chain: Pred | None = None
    for predicate in reversed(remaining):
        compiled = compile_predicate(predicate, context, binding, site, chain)
        assert not isinstance(compiled, bool)
        chain = compiled
    assert chain is not None
    return chain


class Condition:
    """A parsed, compiled condition: call it on a context object.

    ``predicate`` is the bare closure: hot loops over hundreds of thousands of replicas should
    call it (or ``select``) rather than the condition, which adds a method call per object;
    ``constant`` is ``True``/``False`` when the condition does not depend on the object
    (``always``, ``never``, or folded provider defaults), else ``None``.
    """

    __slots__ = (
        "attributes",
        "column",
        "constant",
        "context",
        "file",
        "line",
        "now",
        "predicate",
        "predicates",
        "provider_variables",
        "text",
        "variables",
    )

    def __init__(
        self,
        text: str,
        predicates: tuple[Predicate, ...],
        *,
        context: Context,
        file: str = "<string>",
        line: int = 1,
        column: int = 1,
        now: float | None = None,
        attributes: AttributeTables | None = None,
    ) -> None:
        self.text = text
        self.predicates = predicates
        self.context = context
        self.file = file
        self.line = line
        self.column = column
        self.now = time.time() if now is None else now
        self.attributes = _NO_ATTRIBUTES if attributes is None else attributes
        self.variables = frozenset(p.variable.name for p in predicates)
        self.provider_variables = frozenset(
            p.variable.name for p in predicates if p.variable.provider
        )
        compiled = compile_predicates(predicates, context, Binding(self.now, self.attributes))
        if isinstance(compiled, bool):
            self.constant: bool | None = compiled
            self.predicate: Pred = _always if compiled else _never
        else:
            self.constant = None
            self.predicate = compiled

    def __call__(self, obj: Any) -> bool:
        return self.predicate(obj)

    def select(self, objects: Iterable[Any]) -> list[Any]:
        """The objects the condition holds for, in order (the loop calls ``predicate``
        directly: a method call per object would cost as much as a simple predicate)."""
        predicate = self.predicate
        return [obj for obj in objects if predicate(obj)]

    def bind(
        self, *, now: float | None = None, attributes: AttributeTables | None = None
    ) -> Condition:
        """The same condition compiled for another reference time and/or attribute tables
        (each cycle binds its policy once; nothing is parsed again)."""
        return Condition(
            self.text,
            self.predicates,
            context=self.context,
            file=self.file,
            line=self.line,
            column=self.column,
            now=self.now if now is None else now,
            attributes=self.attributes if attributes is None else attributes,
        )

    def specialize(self, site: Site) -> Pred | bool:
        """The condition for objects at ``site`` only, with ``site.*`` predicates decided:
        ``True``/``False`` when the site alone decides it."""
        return compile_predicates(
            self.predicates, self.context, Binding(self.now, self.attributes), site
        )

    def missing_providers(self, attributes: AttributeTables | None = None) -> frozenset[str]:
        """Provider variables this condition uses that have no table in ``attributes`` (by
        default, those it was bound with): they take their defaults, and a cycle log says so."""
        tables = self.attributes if attributes is None else attributes
        return frozenset(
            p.variable.name
            for p in self.predicates
            if p.variable.provider and p.variable.attribute not in tables
        )

    def __repr__(self) -> str:
        return f"Condition({self.text!r}, context={self.context.value!r}, line={self.line})"


def parse_condition(
    text: str,
    *,
    context: ContextName | Context,
    line: int = 1,
    file: str = "<string>",
    column: int = 1,
    registry: VariableRegistry | None = None,
    now: float | None = None,
    attributes: AttributeTables | None = None,
) -> Condition:
    """Parse and compile one condition line.

    ``column`` is where ``text`` starts in its file line (a detox statement passes the column
    after its keyword), so errors point into the file. ``now`` (default: the current time)
    anchors relative dates; ``attributes`` holds the provider tables. Raises ``PolicyErrors``.
    """
    ctx = Context(context)
    predicates = parse_predicates(
        text,
        context=ctx,
        registry=REGISTRY if registry is None else registry,
        file=file,
        line=line,
        column=column,
    )
    return Condition(
        text.strip(),
        predicates,
        context=ctx,
        file=file,
        line=line,
        column=column,
        now=now,
        attributes=attributes,
    )
