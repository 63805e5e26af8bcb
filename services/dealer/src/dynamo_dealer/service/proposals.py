"""What plugins propose and what the engine decides about it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Decision(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DEFERRED = "deferred"
    """Valid, but a cap or the space left this cycle held it back: proposed again next cycle."""
    MERGED = "merged"
    """Overlaps a proposal that was kept (same data, same or open destination)."""


@dataclass(frozen=True, slots=True)
class Proposal:
    """Replicate ``dataset`` (or one ``block`` of it) for ``group``: at ``site`` when given,
    else at one of ``allowed`` (None: any target site). ``priority`` orders plugins (their
    configured priority); ``weight`` orders proposals of one plugin (the most wanted first)."""

    plugin: str
    dataset: str
    group: str
    priority: float = 0.0
    block: str | None = None
    site: str | None = None
    allowed: frozenset[str] | None = None
    weight: float = 0.0
    reference: str = ""
    """What the plugin proposes it for: a request id, a rule name, a site to empty."""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    proposal: Proposal
    decision: Decision
    reason: str
    site: str | None = None
    volume: int = 0
    merged_into: int | None = None
    """Index (in the cycle's outcomes) of the proposal this one was merged into."""


@dataclass(frozen=True, slots=True)
class Placement:
    """An accepted copy: what the commands carry out."""

    dataset: str
    block: str | None
    site: str
    group: str
    volume: int
    priority: int
    """1..5, the transfer service's scale."""
    reference: str
