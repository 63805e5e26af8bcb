"""The tokenizer finds the structure of a condition line; values stay source text."""

from __future__ import annotations

from dynamo_common.policy.lexer import TokenKind, split_predicates, tokenize


def kinds(text: str) -> list[tuple[str, str]]:
    return [(t.kind.value, t.text) for t in tokenize(text)]


def test_operators_split_from_words_without_spaces() -> None:
    assert kinds("dataset.size>1.5TB") == [
        ("word", "dataset.size"),
        ("operator", ">"),
        ("word", "1.5TB"),
    ]
    assert kinds("dataset.name !=~ x") == [
        ("word", "dataset.name"),
        ("operator", "!=~"),
        ("word", "x"),
    ]


def test_brackets_are_tokens_of_their_own() -> None:
    assert kinds("site.name in [T1_* T2_*]") == [
        ("word", "site.name"),
        ("word", "in"),
        ("[", "["),
        ("word", "T1_*"),
        ("word", "T2_*"),
        ("]", "]"),
    ]


def test_tokens_record_their_offsets() -> None:
    token = tokenize("  not replica.incomplete")[1]
    assert (token.kind, token.text, token.start, token.end) == (
        TokenKind.WORD,
        "replica.incomplete",
        6,
        24,
    )


def test_predicates_split_at_whitespace_delimited_and_only() -> None:
    text = "dataset.name == /A/Band/RAW and site.name == T2_*and"
    segments = split_predicates(text, tokenize(text))
    assert [text[s.start : s.end] for s in segments] == [
        "dataset.name == /A/Band/RAW",
        "site.name == T2_*and",
    ]


def test_trailing_and_leaves_an_empty_predicate() -> None:
    text = "replica.incomplete and"
    segments = split_predicates(text, tokenize(text))
    assert len(segments) == 2
    assert segments[1].tokens == ()
    assert segments[1].and_before is not None
