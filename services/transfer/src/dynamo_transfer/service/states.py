"""The per-file state machine of transfer and deletion tasks.

The allowed moves are one explicit table. Every state change in the service goes through
:func:`transition`, so an update that arrives late or twice (an FTS poll answering for a file
already finished, a copy reported after a restart already settled it) is recognised as a
forbidden move and ignored instead of silently rewriting history.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class State(StrEnum):
    NEW = "new"  # accepted, no source chosen yet
    QUEUED = "queued"  # source and PFNs chosen, waiting for room on its link
    SUBMITTED = "submitted"  # handed to a backend (intent recorded before the hand-over)
    DONE = "done"
    FAILED = "failed"  # the last attempt failed; immediately followed by retry or held
    RETRY = "retry"  # waiting out its backoff
    HELD = "held"  # needs an operator (or a changed grid): listed with its reason
    CANCELLED = "cancelled"  # an opposite request superseded it


class Kind(StrEnum):
    TRANSFER = "transfer"
    DELETION = "deletion"


TRANSITIONS: Mapping[State, frozenset[State]] = {
    State.NEW: frozenset({State.QUEUED, State.HELD, State.CANCELLED}),
    # Back to NEW when the chosen source stopped being usable before submission.
    State.QUEUED: frozenset({State.SUBMITTED, State.NEW, State.HELD, State.CANCELLED}),
    # A submitted file cannot be cancelled: the backend may already be writing it. An
    # opposite request waits for it to finish instead.
    State.SUBMITTED: frozenset({State.DONE, State.FAILED}),
    State.FAILED: frozenset({State.RETRY, State.HELD}),
    State.RETRY: frozenset({State.NEW, State.CANCELLED}),
    State.HELD: frozenset({State.NEW, State.CANCELLED}),
    State.DONE: frozenset(),
    State.CANCELLED: frozenset(),
}

ACTIVE: frozenset[State] = frozenset(
    {State.NEW, State.QUEUED, State.SUBMITTED, State.FAILED, State.RETRY, State.HELD}
)
"""States in which a task still stands for its (kind, lfn, site): at most one such task."""

PENDING: frozenset[State] = frozenset({State.NEW, State.QUEUED, State.RETRY, State.HELD})
"""States an opposite request cancels (nothing is being written or deleted yet)."""

FINAL: frozenset[State] = frozenset({State.DONE, State.CANCELLED})


class ForbiddenTransition(ValueError):
    def __init__(self, current: State, new: State) -> None:
        super().__init__(f"a task cannot go from {current.value} to {new.value}")
        self.current = current
        self.new = new


def allowed(current: State | str, new: State | str) -> bool:
    return State(new) in TRANSITIONS[State(current)]


def transition(current: State | str, new: State | str) -> State:
    """``new`` if the table allows the move from ``current``; raises ForbiddenTransition."""
    cur, nxt = State(current), State(new)
    if nxt not in TRANSITIONS[cur]:
        raise ForbiddenTransition(cur, nxt)
    return nxt


def sources_of(state: State | str) -> frozenset[State]:
    """Every state from which ``state`` can be reached (for guarded SQL updates)."""
    target = State(state)
    return frozenset(s for s, nexts in TRANSITIONS.items() if target in nexts)


def opposite(kind: Kind | str) -> Kind:
    return Kind.DELETION if Kind(kind) is Kind.TRANSFER else Kind.TRANSFER
