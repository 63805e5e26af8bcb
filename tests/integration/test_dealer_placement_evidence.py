"""The dealer closes a placement on evidence (the inventory's answer to the command that
creates its replica, and the read model having reached that answer), not after a grace
period. The dealer's clock stands still in these tests: nothing here may wait for time to
pass. Real inventory and PostgreSQL on the in-process bus; a stand-in takes the transfers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.integration.test_dealer_support import WAIT, CommandLog, eventually, run_dealer
from tests.integration.test_detox_support import seed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

GB = 10**9
TB = 10**12
A = "/Alpha/Run2024A-v1/AOD"
NOW = 1_800_000_000.0


async def _placements(dealer: Any) -> list[dict[str, Any]]:
    async with dealer.runtime.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT dataset, site, state, answered_seq, refusal FROM dealer.placements ORDER BY id"
        )
    return [dict(r) for r in rows]


async def _replicas_in_flight(dealer: Any) -> int:
    summary = await dealer.get("/api/v1/dealer/monitoring")
    return int(summary["total"]["replicas"])


async def test_a_copy_the_inventory_refuses_is_closed_at_once_with_the_reason(
    inventory: Any, database_url: str
) -> None:
    await seed(
        inventory, {"T1_SOURCE": 100 * TB, "T2_US_ONE": 10 * TB}, {"T1_SOURCE": [(A, 50 * GB)]}
    )
    transfers = CommandLog()
    await transfers.start(inventory.bus)
    async with run_dealer(inventory, database_url, clock=lambda: NOW) as dealer:
        rt = dealer.runtime
        body = {"items": [A], "sites": ["T2_US_ONE"], "group": "AnalysisOps"}
        await dealer.send("POST", "/api/v1/dealer/requests", body, 201)
        # The commands are held back after the cycle decides, so the dataset can go away
        # between the decision and the command that creates its copy.
        async with rt.send_lock:
            submitted = await dealer.send("POST", "/api/v1/dealer/cycles", {}, 202, user="operator")

            async def recorded() -> bool:
                cycle = await dealer.get(f"/api/v1/dealer/cycles/{submitted['id']}")
                return bool(cycle["status"] == "done")

            await eventually(recorded, "the cycle recorded")
            assert [
                (p["dataset"], p["state"], p["answered_seq"]) for p in await _placements(dealer)
            ] == [(A, "flying", None)]
            assert await _replicas_in_flight(dealer) == 1
            await inventory.ok(
                "POST",
                "/api/v1/replicas/delete",
                {"dataset_replicas": [{"dataset": A, "site": "T1_SOURCE"}]},
            )
            await inventory.ok("POST", "/api/v1/datasets/delete", {"names": [A]})
            await eventually(
                lambda: A not in rt.readmodel.model.datasets, "the dataset gone from the read model"
            )
        await asyncio.wait_for(rt.wait_idle(), WAIT)

        (placement,) = await _placements(dealer)
        assert placement["state"] == "over"
        assert placement["refusal"] == f"refused by the inventory: unknown dataset {A!r}"
        assert await _replicas_in_flight(dealer) == 0
        # Nothing was created, and no transfer asked for.
        assert transfers.requests() == []
        assert A not in inventory.runtime.model.sites["T2_US_ONE"].dataset_replicas


async def test_a_copy_deleted_soon_after_it_was_created_is_over_once_the_read_model_shows_it(
    inventory: Any, database_url: str
) -> None:
    await seed(
        inventory, {"T1_SOURCE": 100 * TB, "T2_US_ONE": 10 * TB}, {"T1_SOURCE": [(A, 50 * GB)]}
    )
    transfers = CommandLog()
    await transfers.start(inventory.bus)
    async with run_dealer(inventory, database_url, clock=lambda: NOW) as dealer:
        body = {"items": [A], "sites": ["T2_US_ONE"], "group": "AnalysisOps"}
        await dealer.send("POST", "/api/v1/dealer/requests", body, 201)
        await dealer.cycle()
        (placement,) = await _placements(dealer)
        # The answer's sequence number is the event that created the empty replica.
        created = inventory.runtime.model.datasets[A].replicas["T2_US_ONE"]
        assert created.size == 0
        assert placement["state"] == "flying" and placement["refusal"] is None
        assert 0 < placement["answered_seq"] <= inventory.runtime.model.seq
        assert await _replicas_in_flight(dealer) == 1
        assert transfers.requests() == [(A, None, "T2_US_ONE")]

        # Someone deletes the new replica within minutes: the placement is over as soon as
        # the dealer's read model shows it, not an hour after it was placed.
        await inventory.ok(
            "POST",
            "/api/v1/replicas/delete",
            {"dataset_replicas": [{"dataset": A, "site": "T2_US_ONE"}]},
        )

        async def closed() -> bool:
            return [p["state"] for p in await _placements(dealer)] == ["over"]

        await eventually(closed, "the placement closed")
        assert await _replicas_in_flight(dealer) == 0
        (placement,) = await _placements(dealer)
        assert placement["refusal"] is None


def _migrate(database_url: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from dynamo_common.settings import to_sqlalchemy_url
    from dynamo_dealer.app import MIGRATIONS
    from dynamo_dealer.repository.tables import SCHEMA

    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    cfg.attributes["database_url"] = to_sqlalchemy_url(database_url)
    cfg.attributes["version_table_schema"] = SCHEMA
    command.upgrade(cfg, revision)


async def test_placements_in_flight_before_the_upgrade_keep_the_answers_their_commands_got(
    database_url: str,
) -> None:
    import asyncpg

    from dynamo_common.settings import to_asyncpg_dsn

    await asyncio.to_thread(_migrate, database_url, "0002")
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        when = "2027-01-15T08:00:00+00:00"
        await conn.execute(
            "INSERT INTO dealer.cycles (id, status, created) VALUES"
            " (1, 'done', $1::text::timestamptz), (2, 'done', $1::text::timestamptz)",
            when,
        )
        placed = [  # cycle, dataset, block, site
            (1, "/A/R-v1/AOD", None, "T2_A"),  # accepted
            (1, "/B/R-v1/AOD", "b1", "T2_A"),  # refused
            (1, "/C/R-v1/AOD", None, "T2_B"),  # accepted, and closed since
            (2, "/D/R-v1/AOD", None, "T2_A"),  # its command not answered yet
        ]
        for n, (cycle, dataset, block, site) in enumerate(placed):
            await conn.execute(
                'INSERT INTO dealer.placements (cycle_id, dataset, block, site, "group", volume,'
                " priority, reference, placed, mark_time, state) VALUES ($1, $2, $3, $4,"
                " 'AnalysisOps', 1, 3, '', $5::text::timestamptz, $5::text::timestamptz, $6)",
                cycle,
                dataset,
                block,
                site,
                when,
                "over" if n == 2 else "flying",
            )

        def item(dataset: str, block: str | None, site: str) -> dict[str, Any]:
            return {"dataset": dataset, "block": block, "site": site, "group": "AnalysisOps"}

        items = [item(d, b, s) for _, d, b, s in placed]
        refused = [{**items[1], "reason": "unknown block /B/R-v1/AOD#b1"}]
        await conn.execute(
            "INSERT INTO dealer.commands (id, cycle_id, placements, state, rejected, created)"
            " VALUES ('c1', 1, $1::text::jsonb, 'done', $2::text::jsonb, $5::text::timestamptz),"
            " ('c2', 2, $3::text::jsonb, 'pending', $4::text::jsonb, $5::text::timestamptz)",
            json.dumps(items[:3]),
            json.dumps(refused),
            json.dumps(items[3:]),
            "[]",
            when,
        )
        await asyncio.to_thread(_migrate, database_url, "head")
        rows = await conn.fetch(
            "SELECT dataset, state, answered_seq, refusal FROM dealer.placements ORDER BY id"
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [
        ("/A/R-v1/AOD", "flying", 0, None),
        ("/B/R-v1/AOD", "flying", 0, "unknown block /B/R-v1/AOD#b1"),
        ("/C/R-v1/AOD", "over", None, None),
        ("/D/R-v1/AOD", "flying", None, None),
    ]
