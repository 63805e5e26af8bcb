"""The user-data namespace (issue 9), shared by the services that must respect it.

A user's datasets are named ``/<user>/<anything>/USER`` and their files live under
``/store/user/<user>/``; only Dynamo writes there, on the owner's (or an admin's) behalf. The
dealer manages that data; detox must not let one user lock another's.
"""

from __future__ import annotations

import re
from typing import Final

TIER: Final = "USER"
USER_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
USER_MAX: Final = 64
"""The longest user name ``USER_RE`` admits."""
_WILDCARDS: Final = "*?"


def dataset_owner(dataset: str) -> str | None:
    """The user whose namespace ``dataset`` names, or None when it is not a user dataset."""
    parts = dataset.split("/")
    if len(parts) != 4 or parts[0] != "" or parts[3] != TIER or not parts[2]:
        return None
    # fullmatch: ``$`` alone would let a trailing newline into a user name.
    return parts[1] if USER_RE.fullmatch(parts[1]) else None


# Deciding whether a ``*``/``?`` pattern can match a user dataset is an intersection of two
# regular languages: the pattern's and that of ``/<user>/<name>/USER``. The latter is walked
# as a small automaton, so the answer holds for names that exist nowhere yet (a user who has
# no data today may have some tomorrow, and a lock outlives today's inventory).
# States: before the leading '/'; ``_USER0 + k`` after k characters of the user name; then
# the name's first character, the rest of the name, the tier's characters, and done.
_START: Final = 0
_USER0: Final = 1
_NAME0: Final = _USER0 + USER_MAX + 1
_NAME1: Final = _NAME0 + 1
_TIER0: Final = _NAME1 + 1
_DONE: Final = _TIER0 + len(TIER)
_DEAD: Final = -1
# One character of each class the automaton distinguishes: enough to follow a '?' or '*'.
_ANY_CHAR: Final = ("/", "a", "_", " ", *sorted(set(TIER)))


def _is_alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def _step(state: int, c: str) -> int:
    if state == _START:
        return _USER0 if c == "/" else _DEAD
    if _USER0 <= state < _NAME0:
        read = state - _USER0
        if c == "/":
            return _NAME0 if read > 0 else _DEAD
        ok = _is_alnum(c) if read == 0 else (_is_alnum(c) or c in "_.-")
        return state + 1 if ok and read < USER_MAX else _DEAD
    if state == _NAME0:
        return _NAME1 if c != "/" else _DEAD
    if state == _NAME1:
        return _TIER0 if c == "/" else _NAME1
    if _TIER0 <= state < _DONE:
        return state + 1 if c == TIER[state - _TIER0] else _DEAD
    return _DEAD


def _any_step(state: int) -> set[int]:
    return {nxt for c in _ANY_CHAR if (nxt := _step(state, c)) != _DEAD}


def can_match_user_data(pattern: str) -> bool:
    """Whether the dataset ``pattern`` (``*`` and ``?`` wildcards, whole-name match) can match
    some user dataset ``/<user>/<name>/USER``, whether or not such a dataset exists."""
    states = {_START}
    for c in pattern:
        if c == "*":
            # '*' may match nothing or any run of characters: everything reachable from here.
            closure, todo = set(states), list(states)
            while todo:
                for nxt in _any_step(todo.pop()):
                    if nxt not in closure:
                        closure.add(nxt)
                        todo.append(nxt)
            states = closure
        elif c == "?":
            states = {nxt for state in states for nxt in _any_step(state)}
        else:
            states = {nxt for state in states if (nxt := _step(state, c)) != _DEAD}
        if not states:
            return False
    return _DONE in states


def namespace_refusal(pattern: str, user: str) -> str | None:
    """Why ``user`` may not lock the dataset ``pattern``, or None when they may.

    The rule: a pattern that can match any user dataset (``/<user>/<name>/USER``) must start
    with the user's own namespace written out, ``/<user>/``; a wildcard there could reach
    another user, even one with no data yet, and so could any other namespace once its user
    writes data. Patterns that cannot match a user dataset (e.g. ``/Foo*/*/AOD``) are not
    concerned; one whose tier part is a wildcard (``/Foo/*``) is."""
    if not can_match_user_data(pattern):
        return None
    own = f"/{user}/"
    if pattern.startswith(own) and not any(w in user for w in _WILDCARDS):
        return None
    if pattern.startswith("/"):
        first = pattern[1:].split("/", 1)[0]
        wrong = f"its first part {first!r} is not your user name written out"
    else:
        wrong = "it does not start with '/'"
    return (
        f"{pattern} can match another user's data (/<user>/<name>/{TIER}) and {wrong}; "
        f"a lock on user data must name your own namespace: {own}..., "
        f"one on other data a tier that is not {TIER} (e.g. /<primary>/*/AOD)"
    )
