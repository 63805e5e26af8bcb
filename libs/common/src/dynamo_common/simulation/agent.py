"""The contract between the simulator and the agents whose decisions it replays.

An agent (detox, the dealer) registers a factory under the entry-point group
``dynamo.agents``; the factory reads the agent's options (policy files and settings, as the
service would read them) and returns an ``Agent``. ``Agent.decide`` is the service's own
decision function behind a thin adapter: it receives the read model, what the service's
runtime would have fetched before the cycle (access records, copy requests, the last detox
outcome, copies in flight) and the simulated clock, and returns what the service's runtime
would have turned into commands. No I/O happens inside; ``dynamo_common`` never imports a
service.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from dynamo_common.model.objects import Inventory

AGENT_GROUP = "dynamo.agents"


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """Accesses of a dataset at a site in one hour (the popularity records a service reads)."""

    dataset: str
    site: str
    time: float
    count: int


@dataclass(frozen=True, slots=True)
class AccessSummary:
    """Per dataset and site: the last access, and how many accesses fell in a window."""

    dataset: str
    site: str
    last_access: float
    window_accesses: int


@dataclass(frozen=True, slots=True)
class CopyRequest:
    """A user's explicit request: one copy of ``dataset`` at ``site`` for ``group``."""

    id: int
    dataset: str
    site: str
    group: str
    created: float


@dataclass(frozen=True, slots=True)
class Copy:
    """Make ``dataset`` (or one ``block`` of it) complete at ``site``, owned by ``group``."""

    dataset: str
    block: str | None
    site: str
    group: str
    reference: str = ""


@dataclass(frozen=True, slots=True)
class Deletion:
    """Delete the replica of ``dataset`` (or one ``block`` of it) at ``site``."""

    dataset: str
    block: str | None
    site: str
    reference: str = ""


@dataclass(frozen=True, slots=True)
class OwnerChange:
    """Hand the block replica to another group (detox's hand-offs)."""

    dataset: str
    block: str
    site: str
    group: str


class AccessLog(Protocol):
    """The popularity records the simulator has collected so far."""

    def records(self, since: float) -> Sequence[AccessRecord]: ...

    def summaries(self, window_start: float) -> Sequence[AccessSummary]: ...


@dataclass(frozen=True, slots=True)
class AgentInputs:
    """What a service's runtime fetches before a cycle."""

    accesses: AccessLog
    requests: Sequence[CopyRequest] = ()
    protected: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """site -> (protected bytes, quota) of the last detox cycle."""
    placed: frozenset[tuple[str, str | None, str]] = frozenset()
    """(dataset, block, site) of the copies this strategy's agents placed, still in flight."""


@dataclass(slots=True)
class AgentDecisions:
    copies: list[Copy] = field(default_factory=list)
    deletions: list[Deletion] = field(default_factory=list)
    owner_changes: list[OwnerChange] = field(default_factory=list)
    decisions: int = 0
    """How many decisions the cycle recorded (replicas judged, proposals decided)."""
    protected: dict[str, tuple[int, int]] | None = None
    """Detox: site -> (protected bytes, quota), for the dealer's balancer."""
    notes: list[str] = field(default_factory=list)


class Agent(Protocol):
    name: str

    def decide(self, inventory: Inventory, inputs: AgentInputs, now: float) -> AgentDecisions:
        """One cycle. Must not modify ``inventory``."""
        ...


AgentFactory = Callable[[Mapping[str, Any], Path], Agent]
"""(options from the scenario, the directory relative paths in them are resolved from)."""


class AgentError(Exception):
    """An agent that is not installed, or whose options are wrong."""


def installed_agents() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=AGENT_GROUP)})


def load_agent(name: str, options: Mapping[str, Any], base: Path) -> Agent:
    for ep in entry_points(group=AGENT_GROUP, name=name):
        try:
            factory: AgentFactory = ep.load()
        except Exception as exc:
            raise AgentError(f"agent {name!r} ({ep.value}) cannot be loaded: {exc}") from exc
        return factory(options, base)
    known = ", ".join(installed_agents()) or "none"
    raise AgentError(f"no agent {name!r} is installed (installed: {known})")
