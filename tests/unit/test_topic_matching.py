"""AMQP topic matching of the in-process bus (``*`` = exactly one word, ``#`` = zero or more)."""

from __future__ import annotations

import itertools

import pytest

from dynamo_common.bus.memory import compile_topic_pattern, topic_matches


@pytest.mark.parametrize(
    ("pattern", "key"),
    [
        ("inventory.replica.created.v1", "inventory.replica.created.v1"),
        ("inventory.*.created.v1", "inventory.replica.created.v1"),
        ("inventory.#", "inventory.replica.created.v1"),
        ("inventory.#", "inventory"),
        ("#", "inventory.replica.created.v1"),
        ("#", "a"),
        ("#", ""),
        ("#.v1", "v1"),
        ("#.v1", "transfer.file.done.v1"),
        ("a.#.b", "a.b"),
        ("a.#.b", "a.x.b"),
        ("a.#.b", "a.x.y.z.b"),
        ("a.#.#.b", "a.b"),
        ("#.#", "a.b.c"),
        ("*", "a"),
        ("*.*", "a.b"),
        ("*.b.*", "a.b.c"),
        ("#.b.#", "b"),
        ("#.b.#", "a.b.c.d"),
        ("a.*.#", "a.b"),
        ("a.*.#", "a.b.c.d"),
        ("#.*", "a"),
        ("", ""),
        ("a..b", "a..b"),
        ("a.*.b", "a..b"),
    ],
)
def test_matching_keys(pattern: str, key: str) -> None:
    assert topic_matches(pattern, key)


@pytest.mark.parametrize(
    ("pattern", "key"),
    [
        ("inventory.replica.created.v1", "inventory.replica.deleted.v1"),
        ("inventory.*", "inventory.replica.created.v1"),
        ("inventory.*", "inventory"),
        ("*", ""),
        ("*", "a.b"),
        ("*.*", "a"),
        ("a.#.b", "a"),
        ("a.#.b", "a.b.c"),
        ("a.#.b", "ab"),
        ("#.v1", "v1x"),
        ("#.v1", "a.v2"),
        ("a.*.#", "a"),
        ("#.*", ""),
        ("", "a"),
        ("a", "A"),
        ("inventory", "inventoryX"),
    ],
)
def test_non_matching_keys(pattern: str, key: str) -> None:
    assert not topic_matches(pattern, key)


@pytest.mark.parametrize(
    "word",
    ["a+b", "a(b", "x$", "^y", "a|b", "[c]", "d\\e", "f{2}", "g?", "h\\."],
)
def test_regex_metacharacters_in_words_are_literal(word: str) -> None:
    assert topic_matches(f"pre.{word}.post", f"pre.{word}.post")
    assert not topic_matches(f"pre.{word}.post", "pre.zz.post")


def test_hash_only_matches_whole_words() -> None:
    assert not topic_matches("a.#", "ab.c")
    assert not topic_matches("#.c", "a.bc")
    assert topic_matches("a.#", "a.bc")


def test_compiled_patterns_are_cached() -> None:
    assert compile_topic_pattern("cache.*.me.#") is compile_topic_pattern("cache.*.me.#")


def test_many_hashes_do_not_backtrack_exponentially() -> None:
    # Consecutive hashes collapse into one; a failing match stays fast on long keys.
    key = ".".join(["w"] * 60) + ".nope"
    assert not topic_matches("#.#.#.#.#.#.#.#.#.#.x", key)
    assert not topic_matches("#.w.#.w.#.w.#.x", ".".join(["w"] * 30))


def _reference_match(pattern: list[str], key: list[str]) -> bool:
    # Straightforward recursive definition of AMQP topic matching, to check the regex against.
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_reference_match(rest, key[i:]) for i in range(len(key) + 1))
    if not key:
        return False
    return (head == "*" or head == key[0]) and _reference_match(rest, key[1:])


def test_agrees_with_reference_definition_on_all_small_cases() -> None:
    patterns = [
        list(words)
        for size in range(5)
        for words in itertools.product(["a", "b", "*", "#"], repeat=size)
    ]
    keys = [list(words) for size in range(5) for words in itertools.product("ab", repeat=size)]
    for pattern in patterns:
        for key in keys:
            expected = _reference_match(pattern, key)
            got = topic_matches(".".join(pattern), ".".join(key))
            assert got == expected, (pattern, key)
