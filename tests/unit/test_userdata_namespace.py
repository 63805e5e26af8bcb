"""The user-data namespace: which names are a user's, and which lock patterns a user may use.

The lock rule is decided from the pattern alone: a user who has no data today may write some
tomorrow, and a lock taken now would then cover it."""

from __future__ import annotations

import random

import pytest

from dynamo_common.userdata import can_match_user_data, dataset_owner, namespace_refusal


def test_a_user_dataset_names_its_owner_and_official_data_names_nobody() -> None:
    assert dataset_owner("/alice/ntuples-v2/USER") == "alice"
    assert dataset_owner("/SingleMuon/Run2017D-v1/AOD") is None
    assert dataset_owner("/alice/USER") is None
    assert dataset_owner("/al ice/x/USER") is None
    assert dataset_owner("/alice\n/x/USER") is None


@pytest.mark.parametrize(
    ("pattern", "first"),
    [
        ("/bo*/*/USER", "'bo*'"),  # bob, who has no data yet
        ("/?ob/*/USER*", "'?ob'"),
        ("/b*/*/USER", "'b*'"),
        ("/alice*/*/USER", "'alice*'"),  # alicexyz is someone else
        ("/al?ce/x/USER", "'al?ce'"),
        ("/bob/ntuples/USER", "'bob'"),
        ("/*", "'*'"),
        ("/*/*/USER", "'*'"),
    ],
)
def test_a_pattern_that_could_reach_another_user_is_refused_naming_the_wrong_part(
    pattern: str, first: str
) -> None:
    refusal = namespace_refusal(pattern, "alice")
    assert refusal is not None
    assert f"its first part {first} is not your user name written out" in refusal
    assert "another user's data" in refusal
    assert "a lock on user data must name your own namespace: /alice/..." in refusal


def test_a_pattern_not_anchored_at_the_root_is_refused_even_if_it_ends_in_the_own_namespace() -> (
    None
):
    # '*/alice/x/USER' only matches alice's data, but the rule is kept simple to explain.
    for pattern in ["*", "*/alice/x/USER", "*USER"]:
        refusal = namespace_refusal(pattern, "alice")
        assert refusal is not None and "it does not start with '/'" in refusal, pattern


@pytest.mark.parametrize(
    "pattern", ["/alice/*/USER", "/alice/ntuples/USER", "/alice/*", "/alice/n?/US*"]
)
def test_the_own_namespace_written_out_may_be_locked(pattern: str) -> None:
    assert can_match_user_data(pattern)
    assert namespace_refusal(pattern, "alice") is None


@pytest.mark.parametrize(
    "pattern",
    [
        "/Foo*/*/AOD",
        "/SingleMuon/Run2017D-v1/AOD",
        "/*/*/AOD*",
        "/*/*/USE",  # the tier is exactly USER
        "/*/*/*/USER",  # four parts: not a dataset of the user tier
        "/a/b/c/USER",
        "/x/USER",  # two parts
        "/_x/*/USER",  # no user name starts with '_'
        "/al ice/*/USER",  # nor contains a space
        "/" + "a" * 65 + "/*/USER",  # longer than a user name may be
        "USER",
    ],
)
def test_a_pattern_that_cannot_match_user_data_is_not_concerned(pattern: str) -> None:
    assert not can_match_user_data(pattern)
    assert namespace_refusal(pattern, "alice") is None


@pytest.mark.parametrize(
    "pattern",
    ["/*/*/*", "/a*/x/*", "/*/x/US?R", "/*", "*", "/?" + "a" * 63 + "/n/*", "/D01/*", "/D01/*/*"],
)
def test_a_wildcard_in_the_tier_can_match_user_data_and_is_refused(pattern: str) -> None:
    # '/D01/*' means official data, but a user named D01 could write /D01/x/USER tomorrow.
    assert can_match_user_data(pattern)
    refusal = namespace_refusal(pattern, "alice")
    assert refusal is not None
    assert "one on other data a tier that is not USER (e.g. /<primary>/*/AOD)" in refusal


def test_a_caller_whose_name_has_wildcards_has_no_namespace_to_lock() -> None:
    # 'a*' written out would still be a wildcard reaching 'ab', 'ac'...
    assert namespace_refusal("/a*/x/USER", "a*") is not None


def _random_pattern(rng: random.Random) -> str:
    def part(choices: list[str]) -> str:
        return "".join(rng.choice(choices) for _ in range(rng.randint(1, 3)))

    pieces = ["a", "b", "alice", "_", "-", "*", "?", "U", "R"]
    if rng.random() < 0.2:
        return part([*pieces, "/", "USER"])
    tiers = ["USER", "US?R", "*", "U*", "USER*", "*R", "AOD", "?SER", "USE"]
    return f"/{part(pieces)}/{part(pieces)}/{rng.choice(tiers)}"


def _random_expansion(rng: random.Random, pattern: str) -> str:
    runs = ["", "a", "b", "alice", "ce", "/", "a/b", "USER", "x/USER", "_", " "]
    singles = ["a", "b", "/", "_", "U", "E", " "]
    return "".join(
        rng.choice(runs) if c == "*" else rng.choice(singles) if c == "?" else c for c in pattern
    )


def test_whatever_a_pattern_matches_agrees_with_dataset_owner() -> None:
    # Expanding patterns at random: any user dataset one matches must be one the check
    # foresaw, and its owner must be the caller whenever the pattern is allowed.
    rng = random.Random(20261122)
    seen = 0
    for _ in range(3000):
        pattern = _random_pattern(rng)
        possible = can_match_user_data(pattern)
        refused = namespace_refusal(pattern, "alice") is not None
        for _ in range(20):
            name = _random_expansion(rng, pattern)
            owner = dataset_owner(name)
            if owner is None:
                continue
            seen += 1
            assert possible, (pattern, name)
            assert refused or owner == "alice", (pattern, name)
    assert seen > 1000  # the expansions do reach user datasets: the check means something
