"""All SQL of the "what if" simulations (``detox.simulations``, migration 0002)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from dynamo_detox.service.simulations import INTERRUPTED, Claimed, SimulationSpec

S = "detox"
_COLUMNS = """id, scenario, days, seed, policy_changed, status, requested_by, comment, created,
    started, finished, error"""


async def create(
    conn: asyncpg.Connection,
    *,
    scenario: str,
    days: float,
    seed: int,
    policy: str | None,
    policy_changed: bool,
    requested_by: str,
    comment: str,
    now: datetime,
) -> int:
    run_id: int = await conn.fetchval(
        f"INSERT INTO {S}.simulations (scenario, days, seed, policy, policy_changed, status,"
        " requested_by, comment, created) VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8)"
        " RETURNING id",
        scenario,
        days,
        seed,
        policy,
        policy_changed,
        requested_by,
        comment,
        now,
    )
    return run_id


async def get(conn: asyncpg.Connection, run_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {_COLUMNS}, policy, result FROM {S}.simulations WHERE id = $1", run_id
    )
    return row


async def list_runs(
    conn: asyncpg.Connection,
    *,
    status: str | None,
    scenario: str | None,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    where = "($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR scenario = $2)"
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM {S}.simulations WHERE {where} ORDER BY id DESC LIMIT $3 OFFSET $4",
        status,
        scenario,
        limit,
        offset,
    )
    total = await conn.fetchval(
        f"SELECT count(*) FROM {S}.simulations WHERE {where}", status, scenario
    )
    return list(rows), int(total)


async def fail_interrupted(conn: asyncpg.Connection, now: datetime) -> int:
    """Runs a stopped process left running: their thread died with it. Queued runs stay
    queued and are run by this process."""
    result: str = await conn.execute(
        f"UPDATE {S}.simulations SET status = 'failed', finished = $1, error = $2"
        " WHERE status = 'running'",
        now,
        INTERRUPTED,
    )
    return int(result.split()[-1])


class DatabaseSimulations:
    """The worker's queue (``SimulationStore``) on the service's pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def claim_next(self, now: datetime) -> Claimed | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                f"UPDATE {S}.simulations SET status = 'running', started = $1 WHERE id = ("
                f"SELECT id FROM {S}.simulations WHERE status = 'queued' ORDER BY id"
                " LIMIT 1 FOR UPDATE SKIP LOCKED)"
                " RETURNING id, scenario, days, seed, policy, policy_changed",
                now,
            )
        if row is None:
            return None
        spec = SimulationSpec(
            scenario=row["scenario"],
            policy=row["policy"] if row["policy_changed"] else None,
            days=row["days"],
            seed=row["seed"],
        )
        return Claimed(id=row["id"], spec=spec)

    async def finish(self, run_id: int, result: dict[str, Any], now: datetime) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                f"UPDATE {S}.simulations SET status = 'done', finished = $2, result = $3"
                " WHERE id = $1",
                run_id,
                now,
                result,
            )

    async def fail(self, run_id: int, error: str, now: datetime) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                f"UPDATE {S}.simulations SET status = 'failed', finished = $2, error = $3"
                " WHERE id = $1",
                run_id,
                now,
                error,
            )
