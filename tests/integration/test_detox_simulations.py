"""The "what if" of the decision simulator through detox's REST API, on real PostgreSQL: a
packaged scenario run with a changed detox policy gives other numbers than the unchanged run,
runs are queued and run one at a time, bad input is refused and stores nothing, and a run a
stopped service left running is marked interrupted at the next start."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from dynamo_common.policy.errors import PolicyErrors
from dynamo_common.settings import to_asyncpg_dsn
from dynamo_detox.service.simulations import MAX_DAYS, SimulationSpec, prepare
from tests.integration.test_detox_support import RunningDetox, eventually, run_detox

pytestmark = pytest.mark.timeout(300)

SERVICE_POLICY = """\
Partition Physics
When site.occupancy > 0.9
Until site.occupancy < 0.85
Dismiss
"""
DAYS = 2
WAIT = 120.0


def _policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "Physics.txt"
    path.write_text(SERVICE_POLICY)
    return path


async def _scenario_policy(detox: RunningDetox) -> str:
    scenarios = {s["name"]: s for s in await detox.get("/api/v1/simulations/scenarios")}
    policy: str = scenarios["tiny"]["policy"]
    return policy


def _stricter(policy: str) -> str:
    changed = policy.replace("When site.occupancy > 0.87", "When site.occupancy > 0.5")
    changed = changed.replace("Until site.occupancy < 0.8", "Until site.occupancy < 0.4")
    assert changed != policy
    return changed


async def _finished(detox: RunningDetox, run_id: int) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        run: dict[str, Any] = await detox.get(f"/api/v1/simulations/{run_id}")
        return run if run["status"] in ("done", "failed") else None

    return await eventually(done, f"simulation {run_id}", within=WAIT)


def _by_name(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in run["result"]["strategies"]}


async def test_the_packaged_scenarios_are_listed_with_their_detox_policy(
    inventory: Any, database_url: str, tmp_path: Path
) -> None:
    async with run_detox(inventory, database_url, [_policy_file(tmp_path)]) as detox:
        scenarios = {s["name"]: s for s in await detox.get("/api/v1/simulations/scenarios")}
    assert {"tiny", "tenth-month"} <= set(scenarios)
    tiny = scenarios["tiny"]
    assert tiny["grid"] == "tiny"
    assert tiny["strategies"] == ["dynamo", "lru", "static"]
    assert tiny["policy"].splitlines()[4] == "Partition Physics"


async def test_a_changed_policy_gives_other_numbers_than_the_scenarios_own(
    inventory: Any, database_url: str, tmp_path: Path
) -> None:
    async with run_detox(inventory, database_url, [_policy_file(tmp_path)]) as detox:
        own = await _scenario_policy(detox)
        stricter = _stricter(own)
        first = await detox.send(
            "POST", "/api/v1/simulations", {"scenario": "tiny", "days": DAYS}, 202
        )
        second = await detox.send(
            "POST",
            "/api/v1/simulations",
            {"scenario": "tiny", "days": DAYS, "policy": stricter, "comment": "what if"},
            202,
        )
        assert first["status"] == "queued" and first["days"] == DAYS and first["seed"] == 7
        unchanged = await _finished(detox, first["id"])
        changed = await _finished(detox, second["id"])
        listed = await detox.get("/api/v1/simulations", limit=1)

    assert unchanged["status"] == "done", unchanged["error"]
    assert changed["status"] == "done", changed["error"]
    assert unchanged["policy"] == own and not unchanged["policy_changed"]
    assert changed["policy"] == stricter and changed["policy_changed"]
    assert changed["requested_by"] == "alice" and changed["comment"] == "what if"
    # One at a time, oldest first.
    assert datetime.fromisoformat(changed["started"]) >= datetime.fromisoformat(
        unchanged["finished"]
    )

    base, what_if = _by_name(unchanged), _by_name(changed)
    assert set(base) == {"dynamo", "lru", "static"}
    # Detox deletes down to 40% instead of 80%: far more is deleted, and copied back.
    assert (
        what_if["dynamo"]["summary"]["bytes_deleted"] > base["dynamo"]["summary"]["bytes_deleted"]
    )
    assert what_if["dynamo"]["summary"]["hit_rate"] != base["dynamo"]["summary"]["hit_rate"]
    # The baselines do not run detox: the same trace gives them the same numbers.
    for name in ("lru", "static"):
        assert what_if[name]["summary"] == {
            **base[name]["summary"],
            "wall_seconds": what_if[name]["summary"]["wall_seconds"],
            "simulated_per_wall": what_if[name]["summary"]["simulated_per_wall"],
        }
    # The series the page plots: occupancy per site over time, hits and transfers per day.
    series = what_if["dynamo"]["series"]
    assert len(series["daily"]) == DAYS
    assert series["sample_hours"] and all(
        len(values) == len(series["sample_hours"]) for values in series["occupancy"].values()
    )
    assert changed["result"]["days"] == DAYS

    assert listed["total"] == 2 and listed["limit"] == 1
    assert [r["id"] for r in listed["items"]] == [second["id"]]
    assert "result" not in listed["items"][0]


async def test_bad_requests_are_refused_with_their_reason_and_store_nothing(
    inventory: Any, database_url: str, tmp_path: Path
) -> None:
    async with run_detox(inventory, database_url, [_policy_file(tmp_path)]) as detox:
        bad = "Partition Physics\nWhen site.occupancy >> 0.9\nDismiss\n"
        problem = await detox.send(
            "POST", "/api/v1/simulations", {"scenario": "tiny", "policy": bad}, 422
        )
        assert problem["title"] == "Invalid policy"
        where = {(e["line"], e["column"]) for e in problem["errors"]}
        assert (2, 21) in where, problem["errors"]

        unknown = await detox.send("POST", "/api/v1/simulations", {"scenario": "nowhere"}, 404)
        assert "tiny" in unknown["detail"]
        await detox.send("POST", "/api/v1/simulations", {"scenario": "tiny", "days": 15}, 422)
        await detox.send("POST", "/api/v1/simulations", {"scenario": "tiny", "days": 0}, 422)
        await detox.send("POST", "/api/v1/simulations", {"scenario": "tiny", "extra": 1}, 422)
        await detox.send("POST", "/api/v1/simulations", {"scenario": "tiny"}, 401, user=None)
        assert (await detox.get("/api/v1/simulations"))["total"] == 0
        await detox.get("/api/v1/simulations/1", expect=404)
        await detox.get(f"/api/v1/simulations/{2**70}", expect=422)


async def test_a_restart_fails_the_run_it_interrupted_and_runs_the_queued_one(
    inventory: Any, database_url: str, tmp_path: Path
) -> None:
    policy = _policy_file(tmp_path)
    async with run_detox(inventory, database_url, [policy]) as detox:
        # Nothing queued yet: the schema exists once the service has started.
        assert (await detox.get("/api/v1/simulations"))["total"] == 0

    # What a killed process leaves behind: one run in progress, one waiting its turn.
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        now = datetime.now(UTC)
        ids = [
            await conn.fetchval(
                "INSERT INTO detox.simulations (scenario, days, seed, policy, policy_changed,"
                " status, requested_by, created, started) VALUES"
                " ('tiny', $1, 7, NULL, false, $2, 'alice', $3, $4) RETURNING id",
                float(DAYS),
                status,
                now,
                now if status == "running" else None,
            )
            for status in ("running", "queued")
        ]
    finally:
        await conn.close()

    async with run_detox(inventory, database_url, [policy]) as detox:
        interrupted = await detox.get(f"/api/v1/simulations/{ids[0]}")
        waiting = await _finished(detox, ids[1])
    assert interrupted["status"] == "failed"
    assert interrupted["error"].startswith("interrupted")
    assert interrupted["result"] is None
    assert waiting["status"] == "done", waiting["error"]
    assert {s["name"] for s in waiting["result"]["strategies"]} == {"dynamo", "lru", "static"}


def test_a_run_without_days_is_cut_to_the_longest_the_api_accepts() -> None:
    month = prepare(SimulationSpec("tenth-month", policy=None, days=None, seed=None))
    assert month.days == MAX_DAYS == 14
    assert month.scenario.warmup_days == 7
    assert month.policy is not None and "Partition Physics" in month.policy
    week = prepare(SimulationSpec("tiny", policy=None, days=None, seed=3))
    assert (week.days, week.seed) == (7, 3)
    with pytest.raises(PolicyErrors):
        prepare(SimulationSpec("tiny", policy="Partition Physics\n", days=1, seed=None))
