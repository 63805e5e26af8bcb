"""All SQL of the consistency service (asyncpg). Functions take a connection; the caller owns
the transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from dynamo_consistency.repository.tables import SCHEMA

S = SCHEMA
# Advisory locks of this service are (LOCK_CLASS, site id): the class keeps them apart from
# any other service's locks in the same database.
LOCK_CLASS = 0x636F6E73  # "cons"

RUN_FILE_COLUMNS = (
    "run_id",
    "kind",
    "path",
    "size",
    "dataset",
    "block",
    "listed_size",
    "strike",
    "unrecoverable",
    "source",
    "acted",
    "note",
)


@dataclass(frozen=True, slots=True)
class SiteRow:
    id: int
    name: str
    state: str
    state_reason: str
    state_changed: datetime | None
    requested: datetime | None
    requested_dry_run: bool
    approval_run: int | None
    approval_first_strike: bool
    last_check: datetime | None
    last_run_id: int | None

    @classmethod
    def of(cls, r: asyncpg.Record) -> SiteRow:
        return cls(
            id=r["id"],
            name=r["name"],
            state=r["state"],
            state_reason=r["state_reason"],
            state_changed=r["state_changed"],
            requested=r["requested"],
            requested_dry_run=r["requested_dry_run"],
            approval_run=r["approval_run"],
            approval_first_strike=r["approval_first_strike"],
            last_check=r["last_check"],
            last_run_id=r["last_run_id"],
        )


# ------------------------------------------------------------------------------- sites


async def ensure_sites(conn: asyncpg.Connection, names: Sequence[str]) -> None:
    if names:
        await conn.execute(
            f"INSERT INTO {S}.sites (name) SELECT unnest($1::text[]) ON CONFLICT (name) DO NOTHING",
            list(names),
        )


async def site(conn: asyncpg.Connection, name: str) -> SiteRow | None:
    row = await conn.fetchrow(f"SELECT * FROM {S}.sites WHERE name = $1", name)
    return SiteRow.of(row) if row is not None else None


async def candidates(
    conn: asyncpg.Connection,
    eligible: Sequence[str],
    due_before: datetime,
    exclude: Sequence[str],
    limit: int,
) -> list[SiteRow]:
    """Sites a worker may take now, best first: approvals waiting to be carried out, then
    checks asked for through the API (oldest request first), then enabled sites due for a
    check, the one checked longest ago first."""
    rows = await conn.fetch(
        f"""
        SELECT * FROM {S}.sites
        WHERE name <> ALL($3::text[])
          AND (approval_run IS NOT NULL
               OR (requested IS NOT NULL AND state <> 'disabled')
               OR (state = 'enabled' AND name = ANY($1::text[])
                   AND (last_check IS NULL OR last_check < $2)))
        ORDER BY approval_run IS NULL, requested IS NULL, requested, last_check NULLS FIRST, name
        LIMIT $4
        """,
        list(eligible),
        due_before,
        list(exclude),
        limit,
    )
    return [SiteRow.of(r) for r in rows]


async def try_lock(conn: asyncpg.Connection, site_id: int) -> bool:
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", LOCK_CLASS, site_id))


async def unlock(conn: asyncpg.Connection, site_id: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1, $2)", LOCK_CLASS, site_id)


async def locked_sites(conn: asyncpg.Connection) -> set[int]:
    """Ids of the sites some worker holds the lock of (a check or an approval is running)."""
    rows = await conn.fetch(
        """
        SELECT objid FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND classid = $1 AND objsubid = 2
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
        """,
        LOCK_CLASS,
    )
    return {int(r["objid"]) for r in rows}


async def request_check(
    conn: asyncpg.Connection, name: str, now: datetime, dry_run: bool
) -> SiteRow | None:
    row = await conn.fetchrow(
        f"""
        UPDATE {S}.sites SET requested = coalesce(requested, $2), requested_dry_run = $3
        WHERE name = $1 RETURNING *
        """,
        name,
        now,
        dry_run,
    )
    return SiteRow.of(row) if row is not None else None


async def clear_request(conn: asyncpg.Connection, site_id: int, taken_at: datetime) -> None:
    # Only a request made before the check started is served by it; one made while it ran
    # asks for another check.
    await conn.execute(
        f"""
        UPDATE {S}.sites SET requested = NULL, requested_dry_run = false
        WHERE id = $1 AND requested <= $2
        """,
        site_id,
        taken_at,
    )


async def request_approval(
    conn: asyncpg.Connection, name: str, run_id: int, first_strike: bool, now: datetime
) -> None:
    await conn.execute(
        f"""
        UPDATE {S}.sites SET approval_run = $2, approval_first_strike = $3,
            approval_requested = $4
        WHERE name = $1
        """,
        name,
        run_id,
        first_strike,
        now,
    )


async def clear_approval(conn: asyncpg.Connection, site_id: int, run_id: int) -> None:
    await conn.execute(
        f"UPDATE {S}.sites SET approval_run = NULL WHERE id = $1 AND approval_run = $2",
        site_id,
        run_id,
    )


async def set_state(
    conn: asyncpg.Connection, name: str, state: str, reason: str, now: datetime
) -> SiteRow | None:
    row = await conn.fetchrow(
        f"""
        UPDATE {S}.sites SET state = $2, state_reason = $3, state_changed = $4
        WHERE name = $1 RETURNING *
        """,
        name,
        state,
        reason,
        now,
    )
    return SiteRow.of(row) if row is not None else None


async def halt_if_enabled(conn: asyncpg.Connection, name: str, reason: str, now: datetime) -> None:
    # An operator may have disabled (or halted) the site while its check ran: that stands.
    await conn.execute(
        f"""
        UPDATE {S}.sites SET state = 'halted', state_reason = $2, state_changed = $3
        WHERE name = $1 AND state = 'enabled'
        """,
        name,
        reason,
        now,
    )


async def mark_checked(
    conn: asyncpg.Connection, site_id: int, run_id: int, finished: datetime
) -> None:
    await conn.execute(
        f"UPDATE {S}.sites SET last_check = $2, last_run_id = $3 WHERE id = $1",
        site_id,
        finished,
        run_id,
    )


# -------------------------------------------------------------------------------- runs


async def insert_run(
    conn: asyncpg.Connection, site_name: str, worker: str, started: datetime, dry_run: bool
) -> int:
    return int(
        await conn.fetchval(
            f"""
            INSERT INTO {S}.runs (site, worker, started, status, dry_run)
            VALUES ($1, $2, $3, 'running', $4) RETURNING id
            """,
            site_name,
            worker,
            started,
            dry_run,
        )
    )


async def update_run(conn: asyncpg.Connection, run_id: int, fields: dict[str, Any]) -> None:
    if not fields:
        return
    names = list(fields)
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, 2))
    await conn.execute(f"UPDATE {S}.runs SET {assignments} WHERE id = $1", run_id, *fields.values())


async def run(conn: asyncpg.Connection, run_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT * FROM {S}.runs WHERE id = $1", run_id
    )
    return row


async def runs_of_site(
    conn: asyncpg.Connection, name: str, limit: int, offset: int
) -> tuple[int, list[asyncpg.Record]]:
    total = int(await conn.fetchval(f"SELECT count(*) FROM {S}.runs WHERE site = $1", name))
    rows = await conn.fetch(
        f"SELECT * FROM {S}.runs WHERE site = $1 ORDER BY started DESC, id DESC LIMIT $2 OFFSET $3",
        name,
        limit,
        offset,
    )
    return total, list(rows)


async def latest_compared_run(conn: asyncpg.Connection, name: str, before_run: int) -> int | None:
    """The last check of the site before ``before_run`` that got as far as a comparison."""
    value = await conn.fetchval(
        f"""
        SELECT id FROM {S}.runs
        WHERE site = $1 AND id < $2 AND status = 'done'
        ORDER BY id DESC LIMIT 1
        """,
        name,
        before_run,
    )
    return None if value is None else int(value)


async def missing_lfns(conn: asyncpg.Connection, run_id: int) -> set[str]:
    rows = await conn.fetch(
        f"SELECT path FROM {S}.run_files WHERE run_id = $1 AND kind = 'missing'", run_id
    )
    return {r["path"] for r in rows}


async def summary(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every site with its latest finished run (or none)."""
    return list(
        await conn.fetch(
            f"""
            SELECT s.id AS site_id, s.name, s.state, s.state_reason, s.requested,
                   s.approval_run, r.*
            FROM {S}.sites s
            LEFT JOIN LATERAL (
                SELECT * FROM {S}.runs
                WHERE site = s.name AND status <> 'running'
                ORDER BY id DESC LIMIT 1
            ) r ON true
            ORDER BY r.finished DESC NULLS LAST, s.name
            """
        )
    )


async def save_files(conn: asyncpg.Connection, rows: Iterable[tuple[Any, ...]]) -> None:
    records = list(rows)
    if records:
        await conn.copy_records_to_table(
            "run_files", records=records, columns=RUN_FILE_COLUMNS, schema_name=S
        )


async def run_files(
    conn: asyncpg.Connection,
    run_id: int,
    kind: str,
    *,
    unrecoverable: bool | None = None,
    strike: int | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[int, list[asyncpg.Record]]:
    where, args = _files_filter(run_id, kind, unrecoverable, strike)
    total = int(await conn.fetchval(f"SELECT count(*) FROM {S}.run_files WHERE {where}", *args))
    query = f"SELECT * FROM {S}.run_files WHERE {where} ORDER BY path"
    if limit is not None:
        query += f" LIMIT {int(limit)} OFFSET {int(offset)}"
    return total, list(await conn.fetch(query, *args))


async def stream_paths(
    conn: asyncpg.Connection,
    run_id: int,
    kind: str,
    *,
    unrecoverable: bool | None = None,
    chunk: int = 5000,
) -> AsyncIterator[list[str]]:
    """The paths of one list in order, a chunk at a time (the caller holds a transaction)."""
    where, args = _files_filter(run_id, kind, unrecoverable, None)
    cursor = conn.cursor(
        f"SELECT path FROM {S}.run_files WHERE {where} ORDER BY path", *args, prefetch=chunk
    )
    batch: list[str] = []
    async for record in cursor:
        batch.append(record["path"])
        if len(batch) >= chunk:
            yield batch
            batch = []
    if batch:
        yield batch


def _files_filter(
    run_id: int, kind: str, unrecoverable: bool | None, strike: int | None
) -> tuple[str, list[Any]]:
    clauses = ["run_id = $1", "kind = $2"]
    args: list[Any] = [run_id, kind]
    if unrecoverable is not None:
        args.append(unrecoverable)
        clauses.append(f"unrecoverable = ${len(args)}")
    if strike is not None:
        args.append(strike)
        clauses.append(f"strike >= ${len(args)}")
    return " AND ".join(clauses), args


async def mark_acted(conn: asyncpg.Connection, run_id: int, kind: str, paths: list[str]) -> None:
    if paths:
        await conn.execute(
            f"""
            UPDATE {S}.run_files SET acted = true
            WHERE run_id = $1 AND kind = $2 AND path = ANY($3::text[])
            """,
            run_id,
            kind,
            paths,
        )


async def set_sources(conn: asyncpg.Connection, run_id: int, sources: dict[str, str]) -> None:
    if sources:
        await conn.execute(
            f"""
            UPDATE {S}.run_files f SET source = s.source
            FROM unnest($2::text[], $3::text[]) AS s(path, source)
            WHERE f.run_id = $1 AND f.kind = 'missing' AND f.path = s.path
            """,
            run_id,
            list(sources),
            list(sources.values()),
        )


async def prune_files(conn: asyncpg.Connection, older_than: datetime) -> int:
    # The latest finished run of every site keeps its lists: the two-strike rule and an
    # approval read them.
    result = await conn.execute(
        f"""
        DELETE FROM {S}.run_files f USING {S}.runs r
        WHERE f.run_id = r.id AND r.finished < $1
          AND r.id NOT IN (SELECT last_run_id FROM {S}.sites WHERE last_run_id IS NOT NULL)
        """,
        older_than,
    )
    return int(result.split()[-1])


async def abandon_runs(conn: asyncpg.Connection, now: datetime) -> int:
    """Runs left 'running' by a worker that died: nobody holds their site's lock any more
    (a worker takes the lock before it starts a run and releases it after the run ends)."""
    held = sorted(await locked_sites(conn))
    result = await conn.execute(
        f"""
        UPDATE {S}.runs r SET status = 'failed', action = 'failed', finished = $2,
            error = 'the worker stopped before the check finished'
        FROM {S}.sites s
        WHERE r.site = s.name AND r.status = 'running' AND NOT (s.id = ANY($1::int[]))
        """,
        held,
        now,
    )
    return int(result.split()[-1])


# ------------------------------------------------------------------------------ outbox


async def add_event(
    conn: asyncpg.Connection, type_: str, envelope_json: str, now: datetime
) -> None:
    await conn.execute(
        f"INSERT INTO {S}.outbox (type, envelope, created) VALUES ($1, $2, $3)",
        type_,
        envelope_json,
        now,
    )


async def unpublished(conn: asyncpg.Connection, limit: int) -> list[tuple[int, str]]:
    rows = await conn.fetch(
        f"""
        SELECT id, envelope FROM {S}.outbox WHERE NOT published
        ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
        """,
        limit,
    )
    return [(r["id"], r["envelope"]) for r in rows]


async def mark_published(conn: asyncpg.Connection, ids: list[int]) -> None:
    await conn.execute(f"UPDATE {S}.outbox SET published = true WHERE id = ANY($1::bigint[])", ids)


async def prune_outbox(conn: asyncpg.Connection, older_than: datetime) -> None:
    await conn.execute(f"DELETE FROM {S}.outbox WHERE published AND created < $1", older_than)
