"""All SQL of detox: cycle records, commands to send, locks, access records.

Every function runs on the caller's connection; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from dynamo_detox.service.engine import CycleOutcome, ReplicaDecision
from dynamo_detox.service.locks import Lock
from dynamo_detox.service.popularity import AccessSummary

S = "detox"
_DECISION_COLUMNS = [
    "cycle_id",
    "site",
    "dataset",
    "blocks",
    "decision",
    "action",
    "line",
    "size",
    "handed_to",
    "iteration",
]


async def init_connection(conn: asyncpg.Connection) -> None:
    """JSONB as Python objects (pool ``init``)."""
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda value: orjson.dumps(value).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )


def like_pattern(pattern: str) -> str:
    """A shell-style pattern (``*``, ``?``) as a LIKE pattern."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


# ---------------------------------------------------------------------------------- cycles


async def ensure_policy(
    conn: asyncpg.Connection, digest: str, partition: str, text: str, now: datetime
) -> None:
    await conn.execute(
        f"INSERT INTO {S}.policies (digest, partition, text, first_seen) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (digest) DO NOTHING",
        digest,
        partition,
        text,
        now,
    )


async def create_cycle(
    conn: asyncpg.Connection,
    *,
    kind: str,
    partition: str,
    digest: str,
    requested_by: str | None,
    comment: str,
    now: datetime,
) -> int:
    """A queued cycle. Raises ``asyncpg.UniqueViolationError`` when a real cycle of the
    partition is already queued or running."""
    cycle_id: int = await conn.fetchval(
        f"INSERT INTO {S}.cycles (kind, partition, policy_digest, status, requested_by, comment,"
        " created) VALUES ($1, $2, $3, 'queued', $4, $5, $6) RETURNING id",
        kind,
        partition,
        digest,
        requested_by,
        comment,
        now,
    )
    return cycle_id


async def start_cycle(conn: asyncpg.Connection, cycle_id: int, now: datetime, seq: int) -> None:
    await conn.execute(
        f"UPDATE {S}.cycles SET status = 'running', started = $2, inventory_seq = $3 WHERE id = $1",
        cycle_id,
        now,
        seq,
    )


def _decision_rows(cycle_id: int, decisions: Iterable[ReplicaDecision]) -> list[tuple[Any, ...]]:
    return [
        (
            cycle_id,
            d.site,
            d.dataset,
            None if d.blocks is None else list(d.blocks),
            d.decision.value,
            d.action.value,
            d.line,
            d.size,
            d.handed_to,
            d.iteration,
        )
        for d in decisions
    ]


async def record_outcome(
    conn: asyncpg.Connection, cycle_id: int, outcome: CycleOutcome, finished: datetime
) -> None:
    """The whole record of a decided cycle, and its totals."""
    await conn.copy_records_to_table(
        "cycle_sites",
        schema_name=S,
        columns=[
            "cycle_id",
            "site",
            "quota",
            "used_before",
            "used_after",
            "deleted",
            "handed_over",
            "protected",
            "triggered",
            "stopped",
            "candidates_left",
        ],
        records=[
            (
                cycle_id,
                s.site,
                s.quota,
                s.used_before,
                s.used_after,
                s.deleted,
                s.handed_over,
                s.protected,
                s.triggered,
                s.stopped,
                s.candidates_left,
            )
            for s in outcome.sites
        ],
    )
    await conn.copy_records_to_table(
        "decisions",
        schema_name=S,
        columns=_DECISION_COLUMNS,
        records=_decision_rows(cycle_id, outcome.decisions),
    )
    await conn.execute(
        f"UPDATE {S}.cycles SET status = 'done', finished = $2, decided_at = $3,"
        " iterations = $4, sites = $5, sites_triggered = $6, replicas_deleted = $7,"
        " bytes_deleted = $8, bytes_handed_over = $9, missing_providers = $10, warnings = $11"
        " WHERE id = $1",
        cycle_id,
        finished,
        outcome.now,
        outcome.iterations,
        len(outcome.sites),
        sum(1 for s in outcome.sites if s.triggered),
        len(outcome.deletions),
        outcome.deleted_bytes,
        sum(s.handed_over for s in outcome.sites),
        outcome.missing_providers,
        outcome.warnings,
    )


async def fail_cycle(
    conn: asyncpg.Connection, cycle_id: int, error: str, finished: datetime
) -> None:
    await conn.execute(
        f"UPDATE {S}.cycles SET status = 'failed', error = $2, finished = $3 WHERE id = $1",
        cycle_id,
        error,
        finished,
    )


async def fail_interrupted(conn: asyncpg.Connection, now: datetime) -> int:
    """Cycles a stopped process left queued or running (their decisions were never
    recorded): failed, so that the partition can run again."""
    result: str = await conn.execute(
        f"UPDATE {S}.cycles SET status = 'failed', finished = $1,"
        " error = 'interrupted: the detox service stopped before the cycle was recorded'"
        " WHERE status IN ('queued', 'running')",
        now,
    )
    return int(result.split()[-1])


_CYCLE_COLUMNS = """c.id, c.kind, c.partition, c.policy_digest, c.status, c.requested_by,
    c.comment, c.created, c.started, c.finished, c.inventory_seq, c.iterations, c.sites,
    c.sites_triggered, c.replicas_deleted, c.bytes_deleted, c.bytes_handed_over,
    c.missing_providers, c.warnings, c.error"""


async def list_cycles(
    conn: asyncpg.Connection,
    *,
    kind: str | None,
    partition: str | None,
    status: str | None,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    where = "($1::text IS NULL OR c.kind = $1) AND ($2::text IS NULL OR c.partition = $2)"
    where += " AND ($3::text IS NULL OR c.status = $3)"
    rows = await conn.fetch(
        f"SELECT {_CYCLE_COLUMNS} FROM {S}.cycles c WHERE {where}"
        " ORDER BY c.id DESC LIMIT $4 OFFSET $5",
        kind,
        partition,
        status,
        limit,
        offset,
    )
    total = await conn.fetchval(
        f"SELECT count(*) FROM {S}.cycles c WHERE {where}", kind, partition, status
    )
    return list(rows), int(total)


async def get_cycle(conn: asyncpg.Connection, cycle_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {_CYCLE_COLUMNS}, p.text AS policy_text FROM {S}.cycles c"
        f" JOIN {S}.policies p ON p.digest = c.policy_digest WHERE c.id = $1",
        cycle_id,
    )
    return row


async def policy_text(conn: asyncpg.Connection, digest: str) -> str | None:
    text: str | None = await conn.fetchval(
        f"SELECT text FROM {S}.policies WHERE digest = $1", digest
    )
    return text


async def last_real_cycle(
    conn: asyncpg.Connection, partition: str, before: int | None = None
) -> int | None:
    found: int | None = await conn.fetchval(
        f"SELECT id FROM {S}.cycles WHERE kind = 'real' AND status = 'done' AND partition = $1"
        " AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT 1",
        partition,
        before,
    )
    return found


async def cycle_sites(
    conn: asyncpg.Connection, cycle_id: int, *, triggered: bool | None, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    where = "cycle_id = $1 AND ($2::boolean IS NULL OR triggered = $2)"
    rows = await conn.fetch(
        f"SELECT * FROM {S}.cycle_sites WHERE {where} ORDER BY site LIMIT $3 OFFSET $4",
        cycle_id,
        triggered,
        limit,
        offset,
    )
    total = await conn.fetchval(
        f"SELECT count(*) FROM {S}.cycle_sites WHERE {where}", cycle_id, triggered
    )
    return list(rows), int(total)


async def site_decisions(
    conn: asyncpg.Connection,
    cycle_id: int,
    site: str,
    *,
    decision: str | None,
    dataset: str | None,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    where = (
        "cycle_id = $1 AND site = $2 AND ($3::text IS NULL OR decision = $3)"
        " AND ($4::text IS NULL OR dataset LIKE $4)"
    )
    args = (cycle_id, site, decision, None if dataset is None else like_pattern(dataset))
    rows = await conn.fetch(
        f"SELECT * FROM {S}.decisions WHERE {where}"
        " ORDER BY dataset, blocks NULLS FIRST, line LIMIT $5 OFFSET $6",
        *args,
        limit,
        offset,
    )
    total = await conn.fetchval(f"SELECT count(*) FROM {S}.decisions WHERE {where}", *args)
    return list(rows), int(total)


async def search_decisions(
    conn: asyncpg.Connection,
    *,
    dataset: str,
    site: str | None,
    decision: str | None,
    kind: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    """A dataset (pattern) across cycles, newest cycle first: why was X deleted at Y on Z."""
    pattern = like_pattern(dataset)
    exact = pattern == dataset
    where = (
        ("d.dataset = $1" if exact else "d.dataset LIKE $1")
        + " AND ($2::text IS NULL OR d.site LIKE $2) AND ($3::text IS NULL OR d.decision = $3)"
        " AND ($4::text IS NULL OR c.kind = $4) AND ($5::timestamptz IS NULL OR c.started >= $5)"
        " AND ($6::timestamptz IS NULL OR c.started < $6)"
    )
    args = (
        dataset if exact else pattern,
        None if site is None else like_pattern(site),
        decision,
        kind,
        since,
        until,
    )
    rows = await conn.fetch(
        f"SELECT d.*, c.kind, c.partition, c.started, c.policy_digest FROM {S}.decisions d"
        f" JOIN {S}.cycles c ON c.id = d.cycle_id WHERE {where}"
        " ORDER BY d.cycle_id DESC, d.site, d.dataset, d.line LIMIT $7 OFFSET $8",
        *args,
        limit,
        offset,
    )
    total = await conn.fetchval(
        f"SELECT count(*) FROM {S}.decisions d JOIN {S}.cycles c ON c.id = d.cycle_id"
        f" WHERE {where}",
        *args,
    )
    return list(rows), int(total)


async def deletions(conn: asyncpg.Connection, cycle_id: int) -> AsyncIterator[asyncpg.Record]:
    """Every deletion of a cycle, by site and dataset (a cursor: the list may be long)."""
    async with conn.transaction():
        async for row in conn.cursor(
            f"SELECT site, dataset, blocks, size, line, action, iteration FROM {S}.decisions"
            " WHERE cycle_id = $1 AND decision = 'delete' ORDER BY site, dataset, blocks",
            cycle_id,
        ):
            yield row


async def compare(
    conn: asyncpg.Connection,
    test_id: int,
    real_id: int,
    *,
    change: str | None,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int, asyncpg.Record]:
    """Bytes deleted per dataset replica in a test run against a real cycle: rows where the
    test run deletes more (``additional``) or less (``kept``)."""
    base = f"""
        WITH t AS (SELECT site, dataset, sum(size) AS size FROM {S}.decisions
                   WHERE cycle_id = $1 AND decision = 'delete' GROUP BY site, dataset),
             r AS (SELECT site, dataset, sum(size) AS size FROM {S}.decisions
                   WHERE cycle_id = $2 AND decision = 'delete' GROUP BY site, dataset),
             diff AS (
                SELECT site, dataset, coalesce(t.size, 0) AS test_bytes,
                       coalesce(r.size, 0) AS real_bytes,
                       CASE WHEN coalesce(t.size, 0) > coalesce(r.size, 0) THEN 'additional'
                            ELSE 'kept' END AS change
                FROM t FULL JOIN r USING (site, dataset)
                WHERE coalesce(t.size, 0) <> coalesce(r.size, 0))
    """
    where = "WHERE ($3::text IS NULL OR change = $3)"
    rows = await conn.fetch(
        base + f"SELECT * FROM diff {where} ORDER BY site, dataset LIMIT $4 OFFSET $5",
        test_id,
        real_id,
        change,
        limit,
        offset,
    )
    totals = await conn.fetchrow(
        base + f"SELECT count(*) AS total,"
        " count(*) FILTER (WHERE change = 'additional') AS additional,"
        " count(*) FILTER (WHERE change = 'kept') AS kept,"
        " coalesce(sum(test_bytes - real_bytes) FILTER (WHERE change = 'additional'), 0)"
        " AS additional_bytes,"
        " coalesce(sum(real_bytes - test_bytes) FILTER (WHERE change = 'kept'), 0) AS kept_bytes"
        f" FROM diff {where}",
        test_id,
        real_id,
        change,
    )
    assert totals is not None
    return list(rows), int(totals["total"]), totals


async def prune_cycles(conn: asyncpg.Connection, kind: str, before: datetime) -> int:
    result: str = await conn.execute(
        f"DELETE FROM {S}.cycles WHERE kind = $1 AND created < $2 AND status IN ('done', 'failed')",
        kind,
        before,
    )
    return int(result.split()[-1])


# -------------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class CommandRow:
    id: str
    cycle_id: int
    seq: int
    items: list[dict[str, Any]]


async def add_commands(
    conn: asyncpg.Connection,
    cycle_id: int,
    batches: Sequence[tuple[str, list[dict[str, Any]]]],
    now: datetime,
) -> None:
    await conn.executemany(
        f"INSERT INTO {S}.commands (id, cycle_id, seq, items, status, updated)"
        " VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT (id) DO NOTHING",
        [(cid, cycle_id, seq, items, now) for seq, (cid, items) in enumerate(batches)],
    )


async def pending_commands(
    conn: asyncpg.Connection, cycle_id: int | None = None
) -> list[CommandRow]:
    rows = await conn.fetch(
        f"SELECT id, cycle_id, seq, items FROM {S}.commands WHERE status = 'pending'"
        " AND ($1::bigint IS NULL OR cycle_id = $1) ORDER BY cycle_id, seq",
        cycle_id,
    )
    return [CommandRow(r["id"], r["cycle_id"], r["seq"], r["items"]) for r in rows]


async def finish_command(
    conn: asyncpg.Connection,
    command_id: str,
    accepted: list[dict[str, Any]],
    rejected: list[dict[str, Any]],
    reason: str | None,
    now: datetime,
) -> None:
    await conn.execute(
        f"UPDATE {S}.commands SET status = 'done', accepted = $2, rejected = $3, reason = $4,"
        " updated = $5 WHERE id = $1",
        command_id,
        accepted,
        rejected,
        reason,
        now,
    )


async def command_summary(conn: asyncpg.Connection, cycle_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"SELECT count(*) AS batches,"
        " count(*) FILTER (WHERE status = 'pending') AS pending,"
        " coalesce(sum(jsonb_array_length(accepted)), 0) AS accepted,"
        " coalesce(sum(jsonb_array_length(rejected)), 0) AS rejected"
        f" FROM {S}.commands WHERE cycle_id = $1",
        cycle_id,
    )
    assert row is not None
    return row


# ----------------------------------------------------------------------------------- locks


def _lock(row: asyncpg.Record) -> Lock:
    return Lock(
        id=row["id"],
        dataset=row["dataset"],
        block=row["block"],
        sites=row["sites"],
        until=row["until"],
        owner=row["owner"],
        comment=row["comment"],
        created=row["created"],
        released=row["released"],
    )


async def add_lock(
    conn: asyncpg.Connection,
    *,
    dataset: str,
    block: str | None,
    sites: str,
    until: datetime,
    owner: str,
    comment: str,
    now: datetime,
) -> Lock:
    row = await conn.fetchrow(
        f"INSERT INTO {S}.locks (dataset, block, sites, until, owner, comment, created, updated)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING *",
        dataset,
        block,
        sites,
        until,
        owner,
        comment,
        now,
    )
    assert row is not None
    return _lock(row)


async def get_lock(conn: asyncpg.Connection, lock_id: int) -> Lock | None:
    row = await conn.fetchrow(f"SELECT * FROM {S}.locks WHERE id = $1", lock_id)
    return None if row is None else _lock(row)


async def list_locks(
    conn: asyncpg.Connection,
    *,
    owner: str | None,
    active_at: datetime | None,
    dataset: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Lock], int]:
    where = (
        "($1::text IS NULL OR owner = $1)"
        " AND ($2::timestamptz IS NULL OR (released IS NULL AND until > $2))"
        " AND ($3::text IS NULL OR dataset LIKE $3)"
    )
    args = (owner, active_at, None if dataset is None else like_pattern(dataset))
    rows = await conn.fetch(
        f"SELECT * FROM {S}.locks WHERE {where} ORDER BY id LIMIT $4 OFFSET $5",
        *args,
        limit,
        offset,
    )
    total = await conn.fetchval(f"SELECT count(*) FROM {S}.locks WHERE {where}", *args)
    return [_lock(r) for r in rows], int(total)


async def active_locks(conn: asyncpg.Connection, at: datetime) -> list[Lock]:
    rows = await conn.fetch(
        f"SELECT * FROM {S}.locks WHERE released IS NULL AND until > $1 ORDER BY id", at
    )
    return [_lock(r) for r in rows]


async def update_lock(
    conn: asyncpg.Connection, lock_id: int, until: datetime, comment: str | None, now: datetime
) -> Lock | None:
    row = await conn.fetchrow(
        f"UPDATE {S}.locks SET until = $2, comment = coalesce($3, comment), updated = $4"
        " WHERE id = $1 AND released IS NULL RETURNING *",
        lock_id,
        until,
        comment,
        now,
    )
    return None if row is None else _lock(row)


async def release_lock(
    conn: asyncpg.Connection, lock_id: int, by: str, now: datetime
) -> Lock | None:
    row = await conn.fetchrow(
        f"UPDATE {S}.locks SET released = $2, released_by = $3, updated = $2"
        " WHERE id = $1 AND released IS NULL RETURNING *",
        lock_id,
        now,
        by,
    )
    return None if row is None else _lock(row)


# -------------------------------------------------------------------------------- accesses


async def add_accesses(
    conn: asyncpg.Connection, records: Iterable[tuple[str, str, datetime, int]]
) -> int:
    rows = list(records)
    await conn.copy_records_to_table(
        "accesses", schema_name=S, columns=["dataset", "site", "time", "count"], records=rows
    )
    return len(rows)


async def access_summaries(conn: asyncpg.Connection, window_start: datetime) -> list[AccessSummary]:
    rows = await conn.fetch(
        f"SELECT dataset, site, extract(epoch FROM max(time)) AS last_access,"
        " coalesce(sum(count) FILTER (WHERE time >= $1), 0) AS window_accesses"
        f" FROM {S}.accesses GROUP BY dataset, site",
        window_start,
    )
    return [
        AccessSummary(r["dataset"], r["site"], float(r["last_access"]), int(r["window_accesses"]))
        for r in rows
    ]


class DatabasePopularity:
    """The default ``PopularitySource``: the access records posted to the API."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def summaries(self, window_start: float) -> list[AccessSummary]:
        async with self.pool.acquire() as conn:
            return await access_summaries(conn, datetime.fromtimestamp(window_start, UTC))


async def popularity(
    conn: asyncpg.Connection,
    *,
    window_start: datetime,
    dataset: str | None,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    where = "($2::text IS NULL OR dataset LIKE $2)"
    args = (window_start, None if dataset is None else like_pattern(dataset))
    rows = await conn.fetch(
        f"SELECT dataset, max(time) AS last_access,"
        " coalesce(sum(count) FILTER (WHERE time >= $1), 0) AS window_accesses,"
        " count(DISTINCT site) AS sites"
        f" FROM {S}.accesses WHERE {where} GROUP BY dataset ORDER BY dataset"
        " LIMIT $3 OFFSET $4",
        *args,
        limit,
        offset,
    )
    total = await conn.fetchval(
        f"SELECT count(DISTINCT dataset) FROM {S}.accesses WHERE {where} AND $1::timestamptz"
        " IS NOT NULL",
        *args,
    )
    return list(rows), int(total)


async def accesses_since(
    conn: asyncpg.Connection, *, since: datetime, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    """The raw access records from ``since`` on (the dealer weighs them by their age)."""
    rows = await conn.fetch(
        f"SELECT dataset, site, time, count FROM {S}.accesses WHERE time >= $1"
        " ORDER BY time, dataset, site LIMIT $2 OFFSET $3",
        since,
        limit,
        offset,
    )
    total = await conn.fetchval(f"SELECT count(*) FROM {S}.accesses WHERE time >= $1", since)
    return list(rows), int(total)


async def prune_accesses(conn: asyncpg.Connection, before: datetime) -> int:
    result: str = await conn.execute(f"DELETE FROM {S}.accesses WHERE time < $1", before)
    return int(result.split()[-1])
