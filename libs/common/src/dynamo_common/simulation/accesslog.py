"""The popularity records a simulated strategy collects as its jobs run, in the shapes the
agents' runtimes fetch: records per (dataset, site, day) for the dealer, and per (dataset,
site) the last access and the accesses in a sliding window for detox."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from dynamo_common.simulation.agent import AccessRecord, AccessSummary

DAY = 86400.0


class SimAccessLog:
    def __init__(self, start: float) -> None:
        self.start = start
        self._records: list[AccessRecord] = []
        self._times: list[float] = []
        self._day = -1
        self._today: dict[tuple[str, str], int] = {}
        self._days: list[dict[tuple[str, str], int]] = []
        self._last: dict[tuple[str, str], float] = {}
        self._window_days = (0, 0)
        self._window: dict[tuple[str, str], int] = {}

    def add(self, dataset: str, site: str, time: float, count: int) -> None:
        day = int((time - self.start) // DAY)
        while self._day < day:
            self._close_day()
        key = (dataset, site)
        self._today[key] = self._today.get(key, 0) + count
        self._last[key] = time

    def _close_day(self) -> None:
        if self._day >= 0:
            # Records of a day carry its middle as their time (the dealer's decay needs no
            # finer grain than its half-life of days).
            when = self.start + self._day * DAY + DAY / 2
            for (dataset, site), count in sorted(self._today.items()):
                self._records.append(AccessRecord(dataset, site, when, count))
                self._times.append(when)
            self._days.append(self._today)
        self._today = {}
        self._day += 1

    def records(self, since: float) -> Sequence[AccessRecord]:
        closed = self._records[bisect_left(self._times, since) :]
        if not self._today:
            return closed
        now = self.start + self._day * DAY
        today = [AccessRecord(d, s, now, c) for (d, s), c in sorted(self._today.items())]
        return closed + today

    def _slide(self, window_start: float) -> None:
        """Keep ``_window`` = the sum of the closed days in [first, now) incrementally: a
        cycle adds the days closed since the last one and drops those that left."""
        first = max(0, int((window_start - self.start) // DAY) + 1)
        lo, hi = self._window_days
        if first < lo:
            self._window, lo, hi = {}, first, first
        table = self._window
        for day in range(lo, min(first, hi)):
            for key, count in self._days[day].items():
                left = table[key] - count
                if left:
                    table[key] = left
                else:
                    del table[key]
        for day in range(max(first, hi), len(self._days)):
            for key, count in self._days[day].items():
                table[key] = table.get(key, 0) + count
        self._window_days = (first, max(first, len(self._days)))

    def summaries(self, window_start: float) -> Sequence[AccessSummary]:
        """Per (dataset, site) ever accessed: the last access and the accesses of the whole
        days after ``window_start`` and of today."""
        self._slide(window_start)
        window = self._window
        today = self._today
        return [
            AccessSummary(d, s, last, window.get((d, s), 0) + today.get((d, s), 0))
            for (d, s), last in self._last.items()
        ]


class ListAccessLog:
    """An exact log over a fixed list of records (window counts to the second, as the detox
    database computes them): for replaying recorded inputs and for comparisons with the
    services."""

    def __init__(self, records: Sequence[AccessRecord]) -> None:
        self._records = sorted(records, key=lambda r: (r.time, r.dataset, r.site))

    def records(self, since: float) -> Sequence[AccessRecord]:
        return [r for r in self._records if r.time >= since]

    def summaries(self, window_start: float) -> Sequence[AccessSummary]:
        last: dict[tuple[str, str], float] = {}
        window: dict[tuple[str, str], int] = {}
        for r in self._records:
            key = (r.dataset, r.site)
            last[key] = max(last.get(key, r.time), r.time)
            if r.time >= window_start:
                window[key] = window.get(key, 0) + r.count
        return [AccessSummary(d, s, t, window.get((d, s), 0)) for (d, s), t in last.items()]
