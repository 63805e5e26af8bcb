"""Copy requests as an explicit state machine: one table of allowed moves.

    new ──> activated ──> completed
     │  └─────────────────^
     ├──> rejected
     └──> cancelled <── activated

A move that is not in the table (a late or duplicate message, a cancel after completion)
is recognised and ignored by the caller, never applied.
"""

from __future__ import annotations

from typing import Literal

State = Literal["new", "activated", "completed", "rejected", "cancelled"]

TRANSITIONS: dict[State, frozenset[State]] = {
    "new": frozenset({"activated", "completed", "rejected", "cancelled"}),
    "activated": frozenset({"completed", "cancelled"}),
    "completed": frozenset(),
    "rejected": frozenset(),
    "cancelled": frozenset(),
}

DELETION_TRANSITIONS: dict[State, frozenset[State]] = {
    "new": frozenset({"activated", "rejected", "cancelled"}),
    "activated": frozenset({"completed", "rejected"}),
    "completed": frozenset(),
    "rejected": frozenset(),
    "cancelled": frozenset(),
}
"""Deletion requests: cancelled only before their commands go out (files deleted cannot be
brought back by a cancel); activated once the inventory and the transfer service took the
commands; completed when the replica is gone from the inventory."""

OPEN: frozenset[State] = frozenset({"new", "activated"})
"""States in which a request is still worked on (and may be cancelled)."""


def allowed(
    current: State, target: State, table: dict[State, frozenset[State]] | None = None
) -> bool:
    return target in (TRANSITIONS if table is None else table)[current]
