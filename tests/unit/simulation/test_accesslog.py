"""The simulator's access log gives detox and the dealer what their runtimes would fetch: its
incremental window equals a count from scratch at every cycle."""

from __future__ import annotations

import random

from dynamo_common.simulation.accesslog import ListAccessLog, SimAccessLog
from dynamo_common.simulation.agent import AccessRecord

START = 1_700_000_000.0
DAY = 86400.0


def test_the_sliding_window_equals_a_count_from_scratch() -> None:
    rng = random.Random(3)
    log = SimAccessLog(START)
    added: list[AccessRecord] = []
    for hour in range(24 * 20):
        now = START + hour * 3600
        for _ in range(rng.randrange(4)):
            record = AccessRecord(
                f"/D{rng.randrange(6)}/R/AOD", f"T2_{rng.randrange(3)}", now, 1 + rng.randrange(5)
            )
            log.add(record.dataset, record.site, record.time, record.count)
            added.append(record)
        if hour % 6 == 5:
            window_start = now - 7 * DAY
            # The log counts whole days after the window start, and today.
            first_day = START + (int((window_start - START) // DAY) + 1) * DAY
            expected: dict[tuple[str, str], int] = {}
            last: dict[tuple[str, str], float] = {}
            for r in added:
                key = (r.dataset, r.site)
                last[key] = r.time
                if r.time >= max(first_day, START):
                    expected[key] = expected.get(key, 0) + r.count
            got = {
                (s.dataset, s.site): (s.last_access, s.window_accesses)
                for s in log.summaries(window_start)
            }
            assert got == {k: (last[k], expected.get(k, 0)) for k in last}
    assert sum(r.count for r in log.records(START)) == sum(r.count for r in added)
    assert all(r.time >= START + 10 * DAY for r in log.records(START + 10 * DAY))


def test_the_exact_log_counts_to_the_second() -> None:
    records = [
        AccessRecord("/A/B/C", "T2_A", START, 2),
        AccessRecord("/A/B/C", "T2_A", START + 100, 3),
        AccessRecord("/A/B/C", "T2_B", START + 50, 1),
    ]
    log = ListAccessLog(records)
    summaries = {
        (s.dataset, s.site): (s.last_access, s.window_accesses) for s in log.summaries(START + 60)
    }
    assert summaries == {("/A/B/C", "T2_A"): (START + 100, 3), ("/A/B/C", "T2_B"): (START + 50, 0)}
    assert [r.count for r in log.records(START + 50)] == [1, 3]
