"""Read queries behind the REST API (queue summary, lists, history, link statistics)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

S = "transfer"


def like_pattern(wildcard: str) -> str:
    """``*`` and ``?`` wildcards as a LIKE pattern (with LIKE's own characters escaped)."""
    escaped = wildcard.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


async def summary(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"""SELECT kind, source, site, state, count(*) AS files,
                       coalesce(sum(size), 0)::bigint AS bytes
                FROM {S}.tasks WHERE state NOT IN ('done', 'cancelled')
                GROUP BY kind, source, site, state
                ORDER BY kind, source NULLS FIRST, site, state"""
        )
    )


_TASK_OUT = """id, kind, state, lfn, dataset, block, source, site, size, priority, attempts,
    reason, job_id, created, updated, submitted_at, not_before"""


async def tasks_page(
    conn: asyncpg.Connection,
    states: list[str],
    *,
    kind: str | None,
    site: str | None,
    source: str | None,
    limit: int,
    offset: int,
) -> tuple[int, list[asyncpg.Record]]:
    where = """state = ANY($1::text[]) AND ($2::text IS NULL OR kind = $2)
               AND ($3::text IS NULL OR site = $3) AND ($4::text IS NULL OR source = $4)"""
    args: list[Any] = [states, kind, site, source]
    total = await conn.fetchval(f"SELECT count(*) FROM {S}.tasks WHERE {where}", *args)
    rows = await conn.fetch(
        f"""SELECT {_TASK_OUT} FROM {S}.tasks WHERE {where}
            ORDER BY priority DESC, id LIMIT $5 OFFSET $6""",
        *args,
        limit,
        offset,
    )
    return int(total), list(rows)


async def history_page(
    conn: asyncpg.Connection,
    *,
    kind: str | None,
    site: str | None,
    source: str | None,
    result: str | None,
    lfn: str | None,
    since: datetime | None,
    limit: int,
    offset: int,
) -> tuple[int, list[asyncpg.Record]]:
    where = """($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR site = $2)
               AND ($3::text IS NULL OR source = $3) AND ($4::text IS NULL OR result = $4)
               AND ($5::text IS NULL OR lfn LIKE $5) AND ($6::timestamptz IS NULL
               OR finished >= $6)"""
    args: list[Any] = [kind, site, source, result, like_pattern(lfn) if lfn else None, since]
    total = await conn.fetchval(f"SELECT count(*) FROM {S}.history WHERE {where}", *args)
    rows = await conn.fetch(
        f"""SELECT id, task_id, kind, lfn, source, site, result, error, started, finished,
                   duration, bytes
            FROM {S}.history WHERE {where}
            ORDER BY finished DESC, id DESC LIMIT $7 OFFSET $8""",
        *args,
        limit,
        offset,
    )
    return int(total), list(rows)


@dataclass(frozen=True, slots=True)
class LinkBucket:
    start: datetime
    bytes: int
    done: int
    failed: int


@dataclass(slots=True)
class LinkStats:
    kind: str
    source: str | None
    destination: str
    done: int
    failed: int
    bytes: int
    buckets: list[LinkBucket]


async def link_stats(
    conn: asyncpg.Connection, now: datetime, window: float, buckets: int
) -> list[LinkStats]:
    start = now - timedelta(seconds=window)
    width = window / buckets
    rows = await conn.fetch(
        f"""SELECT kind, source, site,
                   least(floor(extract(epoch FROM finished - $1) / $2)::int, $3 - 1) AS b,
                   count(*) FILTER (WHERE result = 'done') AS done,
                   count(*) FILTER (WHERE result = 'failed') AS failed,
                   coalesce(sum(bytes), 0)::bigint AS bytes
            FROM {S}.history WHERE finished >= $1 AND finished <= $4
            GROUP BY kind, source, site, b""",
        start,
        width,
        buckets,
        now,
    )
    links: dict[tuple[str, str | None, str], LinkStats] = {}
    for r in rows:
        key = (r["kind"], r["source"], r["site"])
        stats = links.get(key)
        if stats is None:
            stats = links[key] = LinkStats(
                kind=r["kind"],
                source=r["source"],
                destination=r["site"],
                done=0,
                failed=0,
                bytes=0,
                buckets=[
                    LinkBucket(start + timedelta(seconds=i * width), 0, 0, 0)
                    for i in range(buckets)
                ],
            )
        stats.done += r["done"]
        stats.failed += r["failed"]
        stats.bytes += r["bytes"]
        index = max(0, int(r["b"]))
        old = stats.buckets[index]
        stats.buckets[index] = LinkBucket(
            old.start, old.bytes + r["bytes"], old.done + r["done"], old.failed + r["failed"]
        )
    return sorted(links.values(), key=lambda s: (s.kind, s.source or "", s.destination))


async def replicas_page(
    conn: asyncpg.Connection,
    *,
    now: datetime,
    stuck_window: float,
    kind: str | None,
    site: str | None,
    stuck_only: bool,
    limit: int,
    offset: int,
) -> tuple[int, list[asyncpg.Record]]:
    since = now - timedelta(seconds=stuck_window)
    rows = await conn.fetch(
        f"""WITH p AS (
              SELECT r.id, r.kind, r.dataset, r.block, r.site, r.group_name, r.files_total,
                     r.bytes_total, r.created,
                     count(t.id) FILTER (WHERE t.state = 'done') AS files_done,
                     coalesce(sum(t.size) FILTER (WHERE t.state = 'done'), 0)::bigint
                       AS bytes_done,
                     coalesce(sum(t.size) FILTER (WHERE t.state = 'done'
                                                   AND t.finished_at >= $1), 0)::bigint
                       AS bytes_recent,
                     count(t.id) FILTER (WHERE t.state = 'done' AND t.finished_at >= $1)
                       AS files_recent,
                     count(t.id) FILTER (WHERE t.state = 'held') AS files_held,
                     max(t.finished_at) FILTER (WHERE t.state = 'done') AS last_progress
              FROM {S}.replicas r LEFT JOIN {S}.tasks t ON t.replica_id = r.id
              WHERE r.state = 'active' AND ($2::text IS NULL OR r.kind = $2)
                AND ($3::text IS NULL OR r.site = $3)
              GROUP BY r.id),
            s AS (
              SELECT p.*, (p.created <= $1 AND
                           (CASE WHEN p.bytes_total > 0
                                 THEN p.bytes_recent < 0.01 * p.bytes_total
                                 ELSE p.files_recent < 0.01 * p.files_total END)) AS stuck
              FROM p)
            SELECT * FROM s WHERE NOT $4::bool OR stuck
            ORDER BY stuck DESC, id""",
        since,
        kind,
        site,
        stuck_only,
    )
    # In-flight replicas number in the thousands at most: paged here rather than counting
    # the aggregate twice in SQL.
    return len(rows), list(rows[offset : offset + limit])
