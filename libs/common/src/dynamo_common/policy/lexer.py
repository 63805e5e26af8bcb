"""Tokenizer of one condition line.

Values in the language are free text (``blockreplica.owner == IB RelVal`` is a real production
line whose value holds a space; regular expressions hold brackets), so tokens only find the
structure: the ``and`` separators, the variable, the operator and where the value starts. The
parser reads values from the source text between token offsets, never by re-joining tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

OPERATOR_CHARS = frozenset("=!<>~")


class TokenKind(StrEnum):
    WORD = "word"
    OPERATOR = "operator"
    LBRACKET = "["
    RBRACKET = "]"


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str
    start: int
    """Offset of the first character in the condition text (0-based)."""
    end: int
    spaced: bool
    """Whitespace (or the start of the text) precedes the token."""


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    n = len(text)
    spaced = True
    while pos < n:
        ch = text[pos]
        if ch.isspace():
            pos += 1
            spaced = True
            continue
        start = pos
        if ch == "[":
            kind = TokenKind.LBRACKET
            pos += 1
        elif ch == "]":
            kind = TokenKind.RBRACKET
            pos += 1
        elif ch in OPERATOR_CHARS:
            kind = TokenKind.OPERATOR
            while pos < n and text[pos] in OPERATOR_CHARS:
                pos += 1
        else:
            kind = TokenKind.WORD
            while pos < n:
                c = text[pos]
                if c.isspace() or c in "[]" or c in OPERATOR_CHARS:
                    break
                pos += 1
        tokens.append(Token(kind, text[start:pos], start, pos, spaced))
        spaced = False
    return tokens


@dataclass(frozen=True, slots=True)
class Segment:
    """The tokens of one predicate and the span of source text they cover."""

    tokens: tuple[Token, ...]
    start: int
    end: int
    and_before: Token | None
    and_after: Token | None


def _is_and(tokens: list[Token], i: int) -> bool:
    token = tokens[i]
    if token.kind is not TokenKind.WORD or token.text != "and" or not token.spaced:
        return False
    return i + 1 == len(tokens) or tokens[i + 1].spaced


def split_predicates(text: str, tokens: list[Token]) -> list[Segment]:
    """Split at every whitespace-delimited ``and``: the language has no other connective and
    no grouping, so this never needs to look inside values."""
    segments: list[Segment] = []
    current: list[Token] = []
    seg_start = 0
    and_before: Token | None = None
    for i, token in enumerate(tokens):
        if _is_and(tokens, i):
            end = current[-1].end if current else token.start
            segments.append(Segment(tuple(current), seg_start, end, and_before, token))
            current = []
            seg_start = token.end
            and_before = token
            continue
        if not current:
            seg_start = token.start
        current.append(token)
    end = current[-1].end if current else max(len(text.rstrip()), seg_start)
    segments.append(Segment(tuple(current), seg_start, end, and_before, None))
    return segments
