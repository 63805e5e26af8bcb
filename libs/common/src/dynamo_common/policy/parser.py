"""Parser of one condition line into typed predicates.

Grammar (one line; no grouping, no ``or``)::

    condition := predicate ( "and" predicate )*
    predicate := "not" BOOLVAR | BOOLVAR | VARIABLE OPERATOR value
    value     := text-to-end-of-predicate | "[" item* "]"

Every value is checked against the variable's type here, so a bad file is refused when it is
loaded, not in the middle of a cycle. Errors carry the column of the offending text; the parser
keeps going after an error (in the next predicate) to report all of them at once.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dynamo_common.policy.dates import DateSpec, DateSyntaxError, parse_date
from dynamo_common.policy.errors import PolicyError, PolicyErrors
from dynamo_common.policy.lexer import Segment, Token, TokenKind, split_predicates, tokenize
from dynamo_common.policy.variables import Context, Variable, VariableRegistry, VarType


class Op(StrEnum):
    IS = "is"
    """A bare boolean variable."""
    NOT = "not"
    EQ = "=="
    NE = "!="
    MATCH = "=~"
    NOT_MATCH = "!=~"
    LT = "<"
    GT = ">"
    OLDER = "older_than"
    NEWER = "newer_than"
    IN = "in"
    NOTIN = "notin"


_WRITTEN_OPERATORS = {op.value: op for op in Op if op not in (Op.IS, Op.NOT)}
OPERATORS: dict[VarType, tuple[Op, ...]] = {
    VarType.TEXT: (Op.EQ, Op.NE, Op.MATCH, Op.NOT_MATCH, Op.IN, Op.NOTIN),
    VarType.ENUM: (Op.EQ, Op.NE, Op.IN, Op.NOTIN),
    VarType.NUMBER: (Op.EQ, Op.NE, Op.LT, Op.GT, Op.IN, Op.NOTIN),
    VarType.TIME: (Op.LT, Op.GT, Op.OLDER, Op.NEWER),
    VarType.BOOL: (),
}
_TYPE_NAMES = {
    VarType.TEXT: "a text",
    VarType.ENUM: "an enumerated",
    VarType.NUMBER: "a number",
    VarType.TIME: "a time",
    VarType.BOOL: "a boolean",
}
_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_NUMBER_RE = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(?:[ \t]*([A-Za-z]+))?")
# Decimal units as the page says; the binary ones are unambiguous, so accepted as well.
SIZE_UNITS: dict[str, float] = {
    "b": 1.0,
    "kb": 1e3,
    "mb": 1e6,
    "gb": 1e9,
    "tb": 1e12,
    "pb": 1e15,
    "eb": 1e18,
    "kib": 2.0**10,
    "mib": 2.0**20,
    "gib": 2.0**30,
    "tib": 2.0**40,
    "pib": 2.0**50,
}


# Values


@dataclass(frozen=True, slots=True)
class TextValue:
    """A text to compare with; ``pattern`` is its whole-string regex when it holds ``*`` or
    ``?``, else the comparison is plain equality."""

    text: str
    pattern: re.Pattern[str] | None


@dataclass(frozen=True, slots=True)
class RegexValue:
    text: str
    pattern: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class EnumValue:
    name: str
    value: Any


@dataclass(frozen=True, slots=True)
class NumberValue:
    text: str
    value: float


@dataclass(frozen=True, slots=True)
class DateValue:
    text: str
    spec: DateSpec


ItemValue = TextValue | EnumValue | NumberValue


@dataclass(frozen=True, slots=True)
class ListValue:
    items: tuple[ItemValue, ...]


Value = TextValue | RegexValue | EnumValue | NumberValue | DateValue | ListValue


@dataclass(frozen=True, slots=True)
class Predicate:
    variable: Variable
    op: Op
    value: Value | None
    column: int
    """Column of the predicate in the file line."""
    text: str


def wildcard_pattern(text: str) -> re.Pattern[str] | None:
    """Shell-style ``*`` and ``?`` as a whole-string regex; ``None`` for plain text. Only
    these two are special (``[`` in a name is a bracket, not a character class)."""
    if "*" not in text and "?" not in text:
        return None
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text]
    return re.compile("".join(parts), re.DOTALL)


class _Collector:
    def __init__(self, file: str, line: int, column: int) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.errors: list[PolicyError] = []

    def col(self, offset: int) -> int:
        return self.column + offset

    def add(self, offset: int, message: str) -> None:
        self.errors.append(
            PolicyError(message, file=self.file, line=self.line, column=self.col(offset))
        )


_CONTEXT_NAMES = {
    Context.REPLICA: "replica",
    Context.BLOCKREPLICA: "block-replica",
    Context.SITE: "site",
}


def _operator_list(var: Variable) -> str:
    return ", ".join(op.value for op in OPERATORS[var.type])


def _first_word(raw: str, offset: int) -> tuple[str, int, str, int]:
    """(first word, its offset, rest after it, offset of the rest's first word)."""
    stripped = raw.lstrip()
    start = offset + len(raw) - len(stripped)
    word = stripped.split(None, 1)[0] if stripped else ""
    rest = stripped[len(word) :]
    rest_offset = start + len(word) + len(rest) - len(rest.lstrip())
    return word, start, rest.strip(), rest_offset


class _PredicateParser:
    def __init__(
        self,
        text: str,
        context: Context,
        registry: VariableRegistry,
        errors: _Collector,
    ) -> None:
        self.text = text
        self.context = context
        self.registry = registry
        self.errors = errors

    # Variables

    def _variable(self, token: Token) -> Variable | None:
        if token.kind is not TokenKind.WORD or not _IDENTIFIER_RE.fullmatch(token.text):
            self.errors.add(token.start, f"expected a variable, found '{token.text}'")
            return None
        variable = self.registry.get(token.text)
        if variable is not None and variable.available_in(self.context):
            return variable
        if variable is not None:
            where = " and ".join(_CONTEXT_NAMES[c] for c in Context if c in variable.contexts)
            self.errors.add(
                token.start,
                f"variable '{token.text}' cannot be used in {_CONTEXT_NAMES[self.context]} "
                f"conditions (only in {where} conditions)",
            )
            return None
        message = f"unknown variable '{token.text}'"
        close = difflib.get_close_matches(token.text, self.registry.names(self.context), n=1)
        if close:
            message += f"; did you mean '{close[0]}'?"
        self.errors.add(token.start, message)
        return None

    # Predicates

    def parse(self, segment: Segment) -> Predicate | None:
        tokens = segment.tokens
        if not tokens:
            if segment.and_before is not None:
                self.errors.add(segment.and_before.start, "expected a predicate after 'and'")
            elif segment.and_after is not None:
                self.errors.add(segment.and_after.start, "expected a predicate before 'and'")
            else:
                self.errors.add(segment.start, "empty condition: expected a predicate")
            return None
        source = self.text[segment.start : segment.end]
        column = self.errors.col(segment.start)
        first = tokens[0]
        if first.kind is TokenKind.WORD and first.text == "not":
            return self._negation(tokens, source, column)
        variable = self._variable(first)
        if variable is None:
            return None
        if len(tokens) == 1:
            if variable.type is VarType.BOOL:
                return Predicate(variable, Op.IS, None, column, source)
            self.errors.add(
                first.end,
                f"expected an operator after '{variable.name}' (one of {_operator_list(variable)})",
            )
            return None
        op_token = tokens[1]
        op = _WRITTEN_OPERATORS.get(op_token.text)
        if variable.type is VarType.BOOL:
            if op is None:
                self.errors.add(
                    op_token.start,
                    f"unexpected '{op_token.text}' after boolean variable '{variable.name}'; "
                    f"write '{variable.name}' or 'not {variable.name}'",
                )
            else:
                self.errors.add(
                    op_token.start,
                    f"operator '{op.value}' is not valid for boolean variable "
                    f"'{variable.name}'; write '{variable.name}' or 'not {variable.name}'",
                )
            return None
        if op is None:
            self.errors.add(
                op_token.start,
                f"unknown operator '{op_token.text}'; expected one of {_operator_list(variable)}",
            )
            return None
        if op not in OPERATORS[variable.type]:
            self.errors.add(
                op_token.start,
                f"operator '{op.value}' is not valid for {_TYPE_NAMES[variable.type]} variable "
                f"'{variable.name}'; expected one of {_operator_list(variable)}",
            )
            return None
        if len(tokens) == 2:
            self.errors.add(op_token.end, f"expected a value after '{op.value}'")
            return None
        value_start = tokens[2].start
        value = self._value(variable, op, self.text[value_start : segment.end], value_start)
        if value is None:
            return None
        return Predicate(variable, op, value, column, source)

    def _negation(self, tokens: tuple[Token, ...], source: str, column: int) -> Predicate | None:
        if len(tokens) == 1:
            self.errors.add(tokens[0].start, "expected a boolean variable after 'not'")
            return None
        variable = self._variable(tokens[1])
        if variable is None:
            return None
        if variable.type is not VarType.BOOL:
            self.errors.add(
                tokens[1].start,
                f"'not' applies to boolean variables only; '{variable.name}' is "
                f"{_TYPE_NAMES[variable.type]} variable",
            )
            return None
        if len(tokens) > 2:
            self.errors.add(
                tokens[2].start,
                f"unexpected '{tokens[2].text}' after 'not {variable.name}'",
            )
            return None
        return Predicate(variable, Op.NOT, None, column, source)

    # Values

    def _value(self, variable: Variable, op: Op, raw: str, offset: int) -> Value | None:
        if op in (Op.IN, Op.NOTIN):
            return self._list(variable, op, raw, offset)
        vtype = variable.type
        if op in (Op.MATCH, Op.NOT_MATCH):
            return self._regex(raw.strip(), offset)
        if vtype is VarType.TEXT:
            return TextValue(raw.strip(), wildcard_pattern(raw.strip()))
        if vtype is VarType.TIME:
            try:
                spec = parse_date(raw)
            except DateSyntaxError as exc:
                self.errors.add(offset, str(exc))
                return None
            return DateValue(raw.strip(), spec)
        if vtype is VarType.NUMBER:
            return self._number(raw.strip(), offset, after="the value")
        word, word_offset, rest, rest_offset = _first_word(raw, offset)
        item = self._enum(variable, word, word_offset)
        if item is not None and rest:
            self.errors.add(rest_offset, f"unexpected '{rest.split()[0]}' after the value")
            return None
        return item

    def _regex(self, text: str, offset: int) -> RegexValue | None:
        try:
            return RegexValue(text, re.compile(text, re.DOTALL))
        except re.error as exc:
            self.errors.add(offset + (exc.pos or 0), f"invalid regular expression: {exc.msg}")
            return None

    def _enum(self, variable: Variable, word: str, offset: int) -> EnumValue | None:
        if word in variable.enum_values:
            return EnumValue(word, variable.enum_values[word])
        allowed = ", ".join(variable.enum_values)
        hint = ""
        if word.upper() in variable.enum_values:
            hint = " (enumerated values are written in capitals)"
        self.errors.add(
            offset,
            f"unknown value '{word}' for {variable.name}; expected one of {allowed}{hint}",
        )
        return None

    def _number(self, text: str, offset: int, *, after: str) -> NumberValue | None:
        m = _NUMBER_RE.match(text)
        if m is None:
            self.errors.add(
                offset,
                f"expected a number (a size may carry a unit, as in 1.5TB), found '{text}'",
            )
            return None
        value = float(m.group(1))
        unit = m.group(2)
        end = m.end()
        if unit is not None and unit.lower() not in SIZE_UNITS and m.start(2) > m.end(1):
            # '0.9 foo': a word after a space is only a unit if it is one.
            unit = None
            end = m.end(1)
        if unit is not None:
            factor = SIZE_UNITS.get(unit.lower())
            if factor is None:
                self.errors.add(
                    offset + m.start(2),
                    f"unknown size unit '{unit}'; expected B, kB, MB, GB, TB, PB "
                    "(decimal) or KiB, MiB, GiB, TiB, PiB",
                )
                return None
            value *= factor
        rest = text[end:]
        if rest.strip():
            extra = rest.lstrip()
            self.errors.add(
                offset + end + len(rest) - len(extra),
                f"unexpected '{extra.split()[0]}' after {after}",
            )
            return None
        return NumberValue(text[:end], value)

    def _list(self, variable: Variable, op: Op, raw: str, offset: int) -> ListValue | None:
        stripped = raw.rstrip()
        if not stripped.startswith("["):
            self.errors.add(offset, f"expected '[' after '{op.value}'")
            return None
        close = stripped.find("]")
        if close < 0:
            self.errors.add(offset, "unbalanced list: '[' is not closed by ']'")
            return None
        nested = stripped.find("[", 1, close)
        if nested >= 0:
            self.errors.add(offset + nested, "unbalanced list: '[' inside a list")
            return None
        trailing = stripped[close + 1 :]
        if trailing.strip():
            extra = trailing.lstrip()
            self.errors.add(
                offset + close + 1 + len(trailing) - len(extra),
                f"unexpected '{extra.split()[0]}' after the list",
            )
            return None
        items: list[ItemValue] = []
        ok = True
        for m in re.finditer(r"\S+", stripped[1:close]):
            item = self._item(variable, m.group(), offset + 1 + m.start())
            if item is None:
                ok = False
            else:
                items.append(item)
        if not ok:
            return None
        if not items:
            self.errors.add(offset, "empty list: expected items between '[' and ']'")
            return None
        return ListValue(tuple(items))

    def _item(self, variable: Variable, word: str, offset: int) -> ItemValue | None:
        if variable.type is VarType.TEXT:
            return TextValue(word, wildcard_pattern(word))
        if variable.type is VarType.ENUM:
            return self._enum(variable, word, offset)
        return self._number(word, offset, after="the list item")


def parse_predicates(
    text: str,
    *,
    context: Context,
    registry: VariableRegistry,
    file: str = "<string>",
    line: int = 1,
    column: int = 1,
) -> tuple[Predicate, ...]:
    """Parse one condition; ``column`` is where ``text`` starts in its file line.

    Raises ``PolicyErrors`` with every error found.
    """
    errors = _Collector(file, line, column)
    if not text.strip():
        errors.add(len(text) - len(text.lstrip()), "empty condition: expected a predicate")
        raise PolicyErrors(errors.errors)
    parser = _PredicateParser(text, context, registry, errors)
    predicates: list[Predicate] = []
    for segment in split_predicates(text, tokenize(text)):
        predicate = parser.parse(segment)
        if predicate is not None:
            predicates.append(predicate)
    if errors.errors:
        raise PolicyErrors(errors.errors)
    return tuple(predicates)
