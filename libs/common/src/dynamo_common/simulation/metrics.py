"""What a strategy achieved: accesses served from disk, transfers, deletions, occupancy over
time, last copies lost, and how the agents' cycles went."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DAY = 86400.0
HOUR = 3600.0


@dataclass(slots=True)
class CycleRecord:
    hour: float
    agent: str
    decisions: int
    copies: int
    deletions: int
    wall: float


@dataclass(slots=True)
class Metrics:
    start: float
    sites: list[str]
    accesses: int = 0
    hits: int = 0
    """Accesses that ran on a site holding a complete disk copy."""
    at_home: int = 0
    """... of which at the users' own site."""
    waited: int = 0
    """Accesses whose data was on disk but every holding site's slots were taken."""
    no_copy: int = 0
    """Accesses of a dataset with no complete disk copy anywhere."""
    copies: int = 0
    copies_refused: int = 0
    copies_failed: int = 0
    requests: int = 0
    requests_expired: int = 0
    produced: int = 0
    production_refused: int = 0
    bytes_transferred: int = 0
    bytes_deleted: int = 0
    deletions: int = 0
    last_copies_deleted: int = 0
    last_disk_copies_deleted: int = 0
    over_capacity: int = 0
    cycles: list[CycleRecord] = field(default_factory=list)
    daily_hits: dict[int, list[int]] = field(default_factory=dict)
    """day -> [hits, accesses]."""
    daily_transfer: dict[int, int] = field(default_factory=dict)
    daily_deleted: dict[int, int] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)
    """Sample times, hours from the start."""
    occupancy: dict[str, list[float]] = field(default_factory=dict)
    hours_above_90: dict[str, int] = field(default_factory=dict)
    hours_above_quota: dict[str, int] = field(default_factory=dict)
    wall_seconds: float = 0.0
    """The whole run, warm-up included."""
    simulated_hours: int = 0
    """Measured hours (after the warm-up)."""
    warmup_hours: int = 0
    warmup_agent_seconds: float = 0.0
    """The agents' own time during the warm-up (their measured time is in ``cycles``)."""

    def _day(self, now: float) -> int:
        return int((now - self.start) // DAY)

    def served(self, now: float, hits: int, accesses: int) -> None:
        entry = self.daily_hits.setdefault(self._day(now), [0, 0])
        entry[0] += hits
        entry[1] += accesses

    def transferred(self, now: float, size: int) -> None:
        self.bytes_transferred += size
        day = self._day(now)
        self.daily_transfer[day] = self.daily_transfer.get(day, 0) + size

    def deleted(self, now: float, size: int) -> None:
        self.deletions += 1
        self.bytes_deleted += size
        day = self._day(now)
        self.daily_deleted[day] = self.daily_deleted.get(day, 0) + size

    def sample(self, now: float, occupancy: dict[str, float]) -> None:
        self.times.append((now - self.start) / HOUR)
        for name in self.sites:
            self.occupancy.setdefault(name, []).append(round(occupancy.get(name, 0.0), 5))

    def hourly(self, occupancy: dict[str, float]) -> None:
        self.simulated_hours += 1
        for name, value in occupancy.items():
            if value > 0.9:
                self.hours_above_90[name] = self.hours_above_90.get(name, 0) + 1
            if value > 1.0:
                self.hours_above_quota[name] = self.hours_above_quota.get(name, 0) + 1

    @property
    def hit_rate(self) -> float:
        return self.hits / self.accesses if self.accesses else 0.0

    def summary(self) -> dict[str, Any]:
        decisions = [c.decisions for c in self.cycles]
        site_hours = max(1, self.simulated_hours * max(1, len(self.sites)))
        return {
            "accesses": self.accesses,
            "hits": self.hits,
            "hit_rate": round(self.hit_rate, 6),
            "at_home": self.at_home,
            "waited": self.waited,
            "no_copy": self.no_copy,
            "copies": self.copies,
            "copies_refused": self.copies_refused,
            "copies_failed": self.copies_failed,
            "requests": self.requests,
            "requests_expired": self.requests_expired,
            "datasets_produced": self.produced,
            "production_refused": self.production_refused,
            "bytes_transferred": self.bytes_transferred,
            "bytes_deleted": self.bytes_deleted,
            "deletions": self.deletions,
            "last_copies_deleted": self.last_copies_deleted,
            "last_disk_copies_deleted": self.last_disk_copies_deleted,
            "site_hours_above_90": sum(self.hours_above_90.values()),
            "site_hours_above_quota": sum(self.hours_above_quota.values()),
            "share_of_site_hours_above_90": round(
                sum(self.hours_above_90.values()) / site_hours, 6
            ),
            "cycles": len(self.cycles),
            "decisions_per_cycle": round(sum(decisions) / len(decisions), 1) if decisions else 0,
            "agent_wall_seconds": round(sum(c.wall for c in self.cycles), 3),
            "warmup_agent_wall_seconds": round(self.warmup_agent_seconds, 3),
            "warmup_hours": self.warmup_hours,
            "simulated_hours": self.simulated_hours,
            "wall_seconds": round(self.wall_seconds, 3),
            "simulated_per_wall": (
                round((self.simulated_hours + self.warmup_hours) * HOUR / self.wall_seconds)
                if self.wall_seconds
                else None
            ),
        }

    def series(self) -> dict[str, Any]:
        days = sorted(self.daily_hits)
        return {
            "sample_hours": self.times,
            "occupancy": self.occupancy,
            "hours_above_90": dict(sorted(self.hours_above_90.items())),
            "hours_above_quota": dict(sorted(self.hours_above_quota.items())),
            "daily": [
                {
                    "day": day,
                    "hits": self.daily_hits[day][0],
                    "accesses": self.daily_hits[day][1],
                    "bytes_transferred": self.daily_transfer.get(day, 0),
                    "bytes_deleted": self.daily_deleted.get(day, 0),
                }
                for day in days
            ],
            "cycles": [
                {
                    "hour": c.hour,
                    "agent": c.agent,
                    "decisions": c.decisions,
                    "copies": c.copies,
                    "deletions": c.deletions,
                    "wall": round(c.wall, 4),
                }
                for c in self.cycles
            ],
        }
