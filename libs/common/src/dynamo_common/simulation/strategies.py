"""The strategies compared on the same trace and the same initial placement.

* ``agents``: the configured Dynamo agents (detox, the dealer, ...) through their own
  decision functions, each on its schedule. Users' explicit requests go to the dealer when
  one runs, else they are carried out at once.
* ``lru``: explicit requests are carried out at once; a site whose occupancy (with the copies
  coming) passes the trigger deletes its least recently used replicas down to the target,
  never the last complete disk copy of a dataset (how Rucio's reaper works).
* ``static``: the initial placement and what production adds; nothing is copied; a site
  over the trigger deletes its oldest replicas (never a last disk copy).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from dynamo_common.messages.types import SiteStatus, StorageType
from dynamo_common.model.objects import DatasetReplica
from dynamo_common.simulation.agent import Agent, AgentInputs, Deletion, load_agent
from dynamo_common.simulation.kernel import Kernel, SiteBook, replica_complete
from dynamo_common.simulation.metrics import CycleRecord
from dynamo_common.simulation.scenario import AgentsStrategy, ThresholdStrategy

HOUR = 3600.0


class Driver:
    name: str

    def act(self, kernel: Kernel) -> None:
        raise NotImplementedError


@dataclass(slots=True)
class _Scheduled:
    agent: Agent
    every: float
    """Hours."""
    next: float = 0.0


@dataclass
class AgentsDriver(Driver):
    name: str
    agents: list[_Scheduled]
    protected: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def has_dealer(self) -> bool:
        return any(s.agent.name == "dealer" for s in self.agents)

    def act(self, kernel: Kernel) -> None:
        hour = kernel.hour
        for scheduled in self.agents:
            if hour + 1e-9 < scheduled.next:
                continue
            scheduled.next = hour + scheduled.every
            agent = scheduled.agent
            inputs = AgentInputs(
                accesses=kernel.log,
                requests=kernel.open_requests() if agent.name == "dealer" else (),
                protected=dict(self.protected),
                placed=kernel.placed(),
            )
            started = time.perf_counter()
            decisions = agent.decide(kernel.inventory, inputs, kernel.now)
            wall = time.perf_counter() - started
            for change in decisions.owner_changes:
                kernel.hand_off(change)
            for deletion in decisions.deletions:
                kernel.delete(deletion)
            copies = 0
            for copy in decisions.copies:
                copies += kernel.copy(copy, by_agent=True)
            if decisions.protected is not None:
                self.protected = decisions.protected
            kernel.metrics.cycles.append(
                CycleRecord(
                    hour, agent.name, decisions.decisions, copies, len(decisions.deletions), wall
                )
            )
        if not self.has_dealer:
            kernel.carry_out_requests()


def _other_disk_copy(replica: DatasetReplica) -> bool:
    for other in replica.dataset.replicas.values():
        if (
            other is not replica
            and other.site.storage_type is StorageType.DISK
            and other.site.status is SiteStatus.READY
            and replica_complete(other)
        ):
            return True
    return False


@dataclass
class ThresholdDriver(Driver):
    name: str
    kind: str
    trigger: float
    target: float

    def act(self, kernel: Kernel) -> None:
        if self.kind == "lru":
            kernel.carry_out_requests()
        for book in kernel.occupancy_order():
            if book.capacity and book.used + book.pending > self.trigger * book.capacity:
                self._reap(kernel, book)

    def _reap(self, kernel: Kernel, book: SiteBook) -> None:
        site = book.params.name
        candidates = []
        for replica in book.site.dataset_replicas.values():
            if not replica_complete(replica) or not _other_disk_copy(replica):
                continue
            if self.kind == "lru":
                used = kernel.last_used.get((replica.dataset.name, site), replica.last_update)
            else:
                used = replica.last_update
            candidates.append((used, replica.dataset.name))
        candidates.sort()
        goal = self.target * book.capacity
        for _, dataset in candidates:
            if book.used + book.pending <= goal:
                break
            held = book.site.dataset_replicas.get(dataset)
            # An earlier deletion in this pass may have made this the last disk copy.
            if held is None or not _other_disk_copy(held):
                continue
            kernel.delete(Deletion(dataset, None, site, self.kind))


def make_driver(strategy: AgentsStrategy | ThresholdStrategy, base: Path) -> Driver:
    if isinstance(strategy, AgentsStrategy):
        agents = [
            _Scheduled(load_agent(spec.agent, spec.options, base), spec.every_hours)
            for spec in strategy.agents
        ]
        return AgentsDriver(strategy.name, agents)
    return ThresholdDriver(strategy.name, strategy.kind, strategy.trigger, strategy.target)


def describe(strategy: AgentsStrategy | ThresholdStrategy) -> str:
    if strategy.description:
        return strategy.description
    if isinstance(strategy, ThresholdStrategy):
        if strategy.kind == "lru":
            return (
                f"LRU deletion above {strategy.trigger:.0%} down to {strategy.target:.0%}; "
                "copies only on explicit request"
            )
        return f"static placement; oldest replicas deleted above {strategy.trigger:.0%}"
    return "agents: " + ", ".join(a.agent for a in strategy.agents)
