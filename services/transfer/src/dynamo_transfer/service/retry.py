"""What happens after a failed attempt: retry later, or hold for an operator."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from dynamo_transfer.service.states import State


class Severity(StrEnum):
    RECOVERABLE = "recoverable"  # try again later, maybe from the same source
    SOURCE = "source"  # this source will never deliver this file (missing, corrupt)
    DESTINATION = "destination"  # no source can help (no write permission, no space)


@dataclass(frozen=True, slots=True)
class Failure:
    error: str
    severity: Severity = Severity.RECOVERABLE


@dataclass(frozen=True, slots=True)
class Decision:
    state: State  # RETRY or HELD
    delay: float  # seconds to wait before the next attempt (0 when held)
    reason: str


def tally(
    failures: Mapping[str, int],
    ruled_out: Mapping[str, str],
    source: str | None,
    failure: Failure,
) -> tuple[dict[str, int], dict[str, str]]:
    """A file's failed attempts per source and its ruled-out sources (with the error that
    ruled each out) after ``failure`` of an attempt from ``source``. Without a source (a
    deletion) there is nothing to count."""
    failures, ruled_out = dict(failures), dict(ruled_out)
    if source is not None:
        failures[source] = failures.get(source, 0) + 1
        if failure.severity is Severity.SOURCE:
            ruled_out[source] = failure.error
    return failures, ruled_out


def backoff(attempts: int, base: float, cap: float, spread_key: int = 0) -> float:
    """Exponential backoff: ``base`` after the first failure, doubling, at most ``cap``.

    ``spread_key`` (the task id) adds up to 10 % so that files that failed together (a site
    outage) do not all come back in the same second.
    """
    if attempts < 1:
        return 0.0
    delay = min(cap, base * 2.0 ** min(attempts - 1, 60))
    spread = (spread_key * 2654435761 % 1000) / 10_000.0
    return min(cap, delay * (1.0 + spread))


def after_failure(
    failure: Failure,
    attempts: int,
    max_attempts: int,
    sources_left: int,
    base: float,
    cap: float,
    spread_key: int = 0,
) -> Decision:
    """Decide the state after failed attempt number ``attempts``.

    ``sources_left`` counts sources not yet ruled out for this file (after this failure's
    source was ruled out, if it was a source error); deletions pass 1.
    """
    if failure.severity is Severity.DESTINATION:
        return Decision(State.HELD, 0.0, failure.error)
    if failure.severity is Severity.SOURCE and sources_left == 0:
        return Decision(State.HELD, 0.0, f"all sources failed: {failure.error}")
    if attempts >= max_attempts:
        return Decision(State.HELD, 0.0, f"gave up after {attempts} attempts: {failure.error}")
    if failure.severity is Severity.SOURCE:
        # Another source is known to be untried or less failed: no reason to wait.
        return Decision(State.RETRY, 0.0, failure.error)
    return Decision(State.RETRY, backoff(attempts, base, cap, spread_key), failure.error)
