"""All SQL of the dealer: requests, subscriptions, cycle records, placements, commands.

Every function runs on the caller's connection; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from dynamo_dealer.service.monitoring import Tracked
from dynamo_dealer.service.plugins.requests import RequestSpec
from dynamo_dealer.service.plugins.subscriptions import SubscriptionSpec
from dynamo_dealer.service.proposals import Outcome, Placement

S = "dealer"


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


def _ts(value: datetime) -> float:
    return value.timestamp()


# --------------------------------------------------------------------------------- requests


async def create_request(
    conn: asyncpg.Connection,
    *,
    requester: str,
    state: str,
    items: Sequence[str],
    resolved: Sequence[tuple[str, str | None]],
    sites: Sequence[str],
    n_copies: int,
    group: str,
    comment: str,
    size: int,
    reason: str | None,
    now: datetime,
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f'INSERT INTO {S}.requests (requester, state, items, resolved, sites, n_copies, "group",'
        " comment, size, reason, created, updated)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING *",
        requester,
        state,
        list(items),
        [list(i) for i in resolved],
        list(sites),
        n_copies,
        group,
        comment,
        size,
        reason,
        now,
    )
    return row


async def get_request(
    conn: asyncpg.Connection, request_id: int, *, lock: bool = False
) -> asyncpg.Record | None:
    suffix = " FOR UPDATE" if lock else ""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT * FROM {S}.requests WHERE id = $1{suffix}", request_id
    )
    return row


async def list_requests(
    conn: asyncpg.Connection,
    *,
    requester: str | None,
    state: str | None,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    where = ["($1::text IS NULL OR requester = $1)", "($2::text IS NULL OR state = $2)"]
    clause = " AND ".join(where)
    rows = await conn.fetch(
        f"SELECT * FROM {S}.requests WHERE {clause} ORDER BY id DESC LIMIT $3 OFFSET $4",
        requester,
        state,
        limit,
        offset,
    )
    total: int = await conn.fetchval(
        f"SELECT count(*) FROM {S}.requests WHERE {clause}", requester, state
    )
    return list(rows), total


async def set_request_state(
    conn: asyncpg.Connection,
    request_id: int,
    expected: str,
    state: str,
    reason: str | None,
    now: datetime,
    *,
    table: str = "requests",
) -> bool:
    """Move a request (a copy request, or with ``table="deletion_requests"`` a deletion
    request) from ``expected`` to ``state``; False when it was no longer in ``expected``
    (someone else moved it first)."""
    assert table in ("requests", "deletion_requests")
    result: str = await conn.execute(
        f"UPDATE {S}.{table} SET state = $3, reason = coalesce($4, reason), updated = $5"
        " WHERE id = $1 AND state = $2",
        request_id,
        expected,
        state,
        reason,
        now,
    )
    return result.endswith(" 1")


async def note_request(conn: asyncpg.Connection, request_id: int, reason: str) -> None:
    await conn.execute(
        f"UPDATE {S}.requests SET reason = $2 WHERE id = $1 AND reason IS DISTINCT FROM $2",
        request_id,
        reason,
    )


def request_spec(row: asyncpg.Record) -> RequestSpec:
    return RequestSpec(
        id=row["id"],
        group=row["group"],
        items=tuple((d, b) for d, b in row["resolved"]),
        sites=tuple(row["sites"]),
        n_copies=row["n_copies"],
    )


async def open_requests(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"SELECT * FROM {S}.requests WHERE state IN ('new', 'activated') ORDER BY id"
        )
    )


async def request_placements(conn: asyncpg.Connection, request_id: int) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"SELECT * FROM {S}.placements WHERE reference = $1 ORDER BY id",
            f"requests:{request_id}",
        )
    )


# ----------------------------------------------------------------------- deletion requests


async def create_deletion(
    conn: asyncpg.Connection,
    *,
    requester: str,
    state: str,
    dataset: str,
    block: str | None,
    site: str,
    comment: str,
    size: int,
    reason: str | None,
    now: datetime,
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"INSERT INTO {S}.deletion_requests (requester, state, dataset, block, site, comment,"
        " size, reason, created, updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)"
        " RETURNING *",
        requester,
        state,
        dataset,
        block,
        site,
        comment,
        size,
        reason,
        now,
    )
    return row


async def get_deletion(
    conn: asyncpg.Connection, request_id: int, *, lock: bool = False
) -> asyncpg.Record | None:
    suffix = " FOR UPDATE" if lock else ""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT * FROM {S}.deletion_requests WHERE id = $1{suffix}", request_id
    )
    return row


async def list_deletions(
    conn: asyncpg.Connection,
    *,
    requester: str | None,
    state: str | None,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    clause = "($1::text IS NULL OR requester = $1) AND ($2::text IS NULL OR state = $2)"
    rows = await conn.fetch(
        f"SELECT * FROM {S}.deletion_requests WHERE {clause} ORDER BY id DESC LIMIT $3 OFFSET $4",
        requester,
        state,
        limit,
        offset,
    )
    total: int = await conn.fetchval(
        f"SELECT count(*) FROM {S}.deletion_requests WHERE {clause}", requester, state
    )
    return list(rows), total


async def open_deletions(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"SELECT * FROM {S}.deletion_requests WHERE state IN ('new', 'activated') ORDER BY id"
        )
    )


# ---------------------------------------------------------------------------- subscriptions


async def add_subscription(
    conn: asyncpg.Connection, item: str, site: str, group: str, who: str, now: datetime
) -> asyncpg.Record | None:
    """The new subscription, or None when the site already follows the item."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f'INSERT INTO {S}.subscriptions (item, site, "group", created_by, created)'
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (item, site) DO NOTHING RETURNING *",
        item,
        site,
        group,
        who,
        now,
    )
    return row


async def list_subscriptions(
    conn: asyncpg.Connection,
    *,
    site: str | None = None,
    item: str | None = None,
    limit: int = 100_000,
    offset: int = 0,
) -> tuple[list[asyncpg.Record], int]:
    clause = "($1::text IS NULL OR site = $1) AND ($2::text IS NULL OR item LIKE $2)"
    pattern = like_pattern(item) if item else None
    rows = await conn.fetch(
        f"SELECT * FROM {S}.subscriptions WHERE {clause} ORDER BY id LIMIT $3 OFFSET $4",
        site,
        pattern,
        limit,
        offset,
    )
    total: int = await conn.fetchval(
        f"SELECT count(*) FROM {S}.subscriptions WHERE {clause}", site, pattern
    )
    return list(rows), total


async def delete_subscription(conn: asyncpg.Connection, subscription_id: int) -> bool:
    result: str = await conn.execute(
        f"DELETE FROM {S}.subscriptions WHERE id = $1", subscription_id
    )
    return result.endswith(" 1")


def subscription_spec(row: asyncpg.Record) -> SubscriptionSpec:
    return SubscriptionSpec(row["id"], row["item"], row["site"], row["group"])


# ----------------------------------------------------------------------------------- cycles


async def create_cycle(
    conn: asyncpg.Connection,
    *,
    dry_run: bool,
    requested_by: str | None,
    comment: str,
    now: datetime,
) -> int:
    """A queued cycle. Raises ``asyncpg.UniqueViolationError`` when one of the same kind is
    already queued or running."""
    cycle_id: int = await conn.fetchval(
        f"INSERT INTO {S}.cycles (status, dry_run, requested_by, comment, created)"
        " VALUES ('queued', $1, $2, $3, $4) RETURNING id",
        dry_run,
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


def _decision_rows(cycle_id: int, outcomes: Sequence[Outcome]) -> list[tuple[Any, ...]]:
    return [
        (
            cycle_id,
            index,
            o.proposal.plugin,
            o.proposal.reference,
            o.proposal.dataset,
            o.proposal.block,
            o.proposal.site,
            o.site,
            o.proposal.group,
            o.proposal.priority,
            o.proposal.weight,
            o.decision.value,
            o.reason,
            o.proposal.reason,
            o.volume,
            o.merged_into,
        )
        for index, o in enumerate(outcomes)
    ]


_DECISION_COLUMNS = [
    "cycle_id",
    "idx",
    "plugin",
    "reference",
    "dataset",
    "block",
    "requested_site",
    "site",
    "group",
    "priority",
    "weight",
    "decision",
    "reason",
    "proposal_reason",
    "volume",
    "merged_into",
]


async def record_cycle(
    conn: asyncpg.Connection,
    cycle_id: int,
    *,
    outcomes: Sequence[Outcome],
    counts: dict[str, int],
    per_plugin: dict[str, Any],
    bytes_placed: int,
    warnings: list[str],
    seq: int,
    detox_cycle: int | None,
    now: datetime,
) -> None:
    await conn.copy_records_to_table(
        "decisions",
        schema_name=S,
        columns=_DECISION_COLUMNS,
        records=_decision_rows(cycle_id, outcomes),
    )
    await conn.execute(
        f"UPDATE {S}.cycles SET status = 'done', finished = $2, proposals = $3, accepted = $4,"
        " rejected = $5, deferred = $6, merged = $7, bytes_placed = $8, per_plugin = $9,"
        " warnings = $10, inventory_seq = $11, detox_cycle = $12 WHERE id = $1",
        cycle_id,
        now,
        len(outcomes),
        counts.get("accepted", 0),
        counts.get("rejected", 0),
        counts.get("deferred", 0),
        counts.get("merged", 0),
        bytes_placed,
        per_plugin,
        warnings,
        seq,
        detox_cycle,
    )


async def fail_cycle(conn: asyncpg.Connection, cycle_id: int, error: str, now: datetime) -> None:
    await conn.execute(
        f"UPDATE {S}.cycles SET status = 'failed', error = $2, finished = $3 WHERE id = $1",
        cycle_id,
        error[:4000],
        now,
    )


async def fail_interrupted(conn: asyncpg.Connection, now: datetime) -> int:
    result: str = await conn.execute(
        f"UPDATE {S}.cycles SET status = 'failed', error = 'interrupted by a stop of the dealer',"
        " finished = $1 WHERE status IN ('queued', 'running')",
        now,
    )
    return int(result.split()[-1])


async def list_cycles(
    conn: asyncpg.Connection, *, status: str | None, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    rows = await conn.fetch(
        f"SELECT * FROM {S}.cycles WHERE ($1::text IS NULL OR status = $1)"
        " ORDER BY id DESC LIMIT $2 OFFSET $3",
        status,
        limit,
        offset,
    )
    total: int = await conn.fetchval(
        f"SELECT count(*) FROM {S}.cycles WHERE ($1::text IS NULL OR status = $1)", status
    )
    return list(rows), total


async def get_cycle(conn: asyncpg.Connection, cycle_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT * FROM {S}.cycles WHERE id = $1", cycle_id
    )
    return row


async def balanced(conn: asyncpg.Connection, detox_cycle: int) -> bool:
    """Whether a real dealer cycle already balanced from this detox cycle."""
    found: bool = await conn.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM {S}.cycles WHERE detox_cycle = $1 AND status = 'done'"
        " AND NOT dry_run)",
        detox_cycle,
    )
    return found


async def last_cycle_time(conn: asyncpg.Connection) -> datetime | None:
    value: datetime | None = await conn.fetchval(
        f"SELECT max(created) FROM {S}.cycles WHERE NOT dry_run"
    )
    return value


async def decisions(
    conn: asyncpg.Connection,
    cycle_id: int,
    *,
    plugin: str | None,
    decision: str | None,
    site: str | None,
    dataset: str | None,
    reference: str | None,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    clause = (
        "cycle_id = $1 AND ($2::text IS NULL OR plugin = $2)"
        " AND ($3::text IS NULL OR decision = $3)"
        " AND ($4::text IS NULL OR site = $4 OR requested_site = $4)"
        " AND ($5::text IS NULL OR dataset LIKE $5)"
        " AND ($6::text IS NULL OR reference = $6)"
    )
    args = (
        cycle_id,
        plugin,
        decision,
        site,
        like_pattern(dataset) if dataset else None,
        reference,
    )
    rows = await conn.fetch(
        f"SELECT * FROM {S}.decisions WHERE {clause} ORDER BY idx LIMIT $7 OFFSET $8",
        *args,
        limit,
        offset,
    )
    total: int = await conn.fetchval(f"SELECT count(*) FROM {S}.decisions WHERE {clause}", *args)
    return list(rows), total


async def request_decisions(
    conn: asyncpg.Connection, cycle_id: int
) -> dict[str, list[tuple[str, str]]]:
    """Per request id, the (decision, reason) of each of its proposals in the cycle."""
    rows = await conn.fetch(
        f"SELECT reference, decision, reason FROM {S}.decisions"
        " WHERE cycle_id = $1 AND plugin = 'requests' ORDER BY idx",
        cycle_id,
    )
    out: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        out.setdefault(r["reference"], []).append((r["decision"], r["reason"]))
    return out


# ------------------------------------------------------------------- placements and commands


async def add_placements(
    conn: asyncpg.Connection,
    cycle_id: int,
    placements: Sequence[Placement],
    blocks: Sequence[list[str]],
    now: datetime,
) -> None:
    await conn.copy_records_to_table(
        "placements",
        schema_name=S,
        columns=[
            "cycle_id",
            "dataset",
            "block",
            "site",
            "group",
            "volume",
            "priority",
            "reference",
            "placed",
            "blocks",
            "mark_bytes",
            "mark_time",
            "state",
        ],
        records=[
            (
                cycle_id,
                p.dataset,
                p.block,
                p.site,
                p.group,
                p.volume,
                p.priority,
                p.reference,
                now,
                b,
                0,
                now,
                "flying",
            )
            for p, b in zip(placements, blocks, strict=True)
        ],
    )


async def flying(conn: asyncpg.Connection, site: str | None = None) -> list[Tracked]:
    rows = await conn.fetch(
        "SELECT id, dataset, block, site, placed, mark_bytes, mark_time, answered_seq, refusal"
        f" FROM {S}.placements WHERE state = 'flying' AND ($1::text IS NULL OR site = $1)"
        " ORDER BY id",
        site,
    )
    return [
        Tracked(
            r["id"],
            r["dataset"],
            r["block"],
            r["site"],
            _ts(r["placed"]),
            r["mark_bytes"],
            _ts(r["mark_time"]),
            r["answered_seq"],
            r["refusal"],
        )
        for r in rows
    ]


async def answer_placements(
    conn: asyncpg.Connection,
    cycle_id: int,
    answered: Sequence[tuple[Placement, int]],
    refused: Sequence[tuple[Placement, str]],
) -> None:
    """Record the answers to a batch's commands on its placements in flight: the inventory
    sequence number that shows each accepted creation, the reason of each refusal."""
    for rows, column, kind in ((answered, "answered_seq", "bigint"), (refused, "refusal", "text")):
        if not rows:
            continue
        await conn.execute(
            f"UPDATE {S}.placements p SET {column} = u.value"
            f" FROM unnest($2::text[], $3::text[], $4::text[], $5::{kind}[])"
            " AS u(dataset, block, site, value)"
            " WHERE p.cycle_id = $1 AND p.state = 'flying' AND p.dataset = u.dataset"
            " AND p.block IS NOT DISTINCT FROM u.block AND p.site = u.site",
            cycle_id,
            [p.dataset for p, _ in rows],
            [p.block for p, _ in rows],
            [p.site for p, _ in rows],
            [value for _, value in rows],
        )


async def placed_keys(conn: asyncpg.Connection) -> frozenset[tuple[str, str | None, str]]:
    """(dataset, block, site) of every block in flight that the dealer placed (a dataset
    placement names the blocks it covered when it was placed)."""
    rows = await conn.fetch(
        f"SELECT dataset, block, site, blocks FROM {S}.placements WHERE state = 'flying'"
    )
    keys: set[tuple[str, str | None, str]] = set()
    for r in rows:
        keys.add((r["dataset"], r["block"], r["site"]))
        for block in r["blocks"]:
            keys.add((r["dataset"], block, r["site"]))
    return frozenset(keys)


async def update_marks(
    conn: asyncpg.Connection,
    marks: Iterable[tuple[int, int, datetime]],
    over: Iterable[int],
) -> None:
    await conn.executemany(
        f"UPDATE {S}.placements SET mark_bytes = $2, mark_time = $3"
        " WHERE id = $1 AND mark_bytes <> $2",
        list(marks),
    )
    done = list(over)
    if done:
        await conn.execute(
            f"UPDATE {S}.placements SET state = 'over' WHERE id = ANY($1::bigint[])", done
        )


async def add_commands(
    conn: asyncpg.Connection,
    cycle_id: int,
    batches: Sequence[tuple[str, list[dict[str, Any]]]],
    now: datetime,
) -> None:
    await conn.executemany(
        f"INSERT INTO {S}.commands (id, cycle_id, placements, state, created)"
        " VALUES ($1, $2, $3, 'pending', $4) ON CONFLICT (id) DO NOTHING",
        [(cid, cycle_id, items, now) for cid, items in batches],
    )


async def pending_commands(
    conn: asyncpg.Connection, cycle_id: int | None = None
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"SELECT * FROM {S}.commands WHERE state = 'pending'"
            " AND ($1::bigint IS NULL OR cycle_id = $1) ORDER BY created, id",
            cycle_id,
        )
    )


async def finish_command(
    conn: asyncpg.Connection,
    command_id: str,
    accepted: int,
    rejected: list[dict[str, Any]],
    reason: str | None,
    now: datetime,
) -> None:
    await conn.execute(
        f"UPDATE {S}.commands SET state = 'done', accepted = $2, rejected = $3, reason = $4,"
        " finished = $5 WHERE id = $1",
        command_id,
        accepted,
        rejected,
        reason,
        now,
    )


async def command_summary(conn: asyncpg.Connection, cycle_id: int) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        "SELECT count(*) AS batches,"
        " count(*) FILTER (WHERE state = 'pending') AS pending,"
        " coalesce(sum(accepted), 0) AS accepted,"
        " coalesce(sum(jsonb_array_length(rejected)), 0) AS rejected"
        f" FROM {S}.commands WHERE cycle_id = $1",
        cycle_id,
    )
    return row


def now_utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
