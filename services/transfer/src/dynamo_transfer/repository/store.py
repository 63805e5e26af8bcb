"""All SQL of the queue: intake, scheduling, outcomes, jobs, leadership, replica bookkeeping
and outbox.

Every function runs its statements on the caller's connection; the caller owns the
transaction and commits. State changes are guarded by the state they expect (``WHERE state =
ANY(...)``), so a late or repeated update changes nothing and the caller can tell.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from dynamo_transfer.service.batching import Candidate, Link
from dynamo_transfer.service.intake import Existing, NewTask, ReplicaTarget, RowKey
from dynamo_transfer.service.states import PENDING, Kind, State, sources_of

S = "transfer"
_INTAKE_LOCK = 0x7472616E73666572  # "transfer": one intake transaction at a time
_LEADER_LOCK = 0x7472616E73666C64  # "transfld": one instance runs the queue

_TASK_COLUMNS = """t.id, t.kind, t.state, t.lfn, t.site, t.dataset, t.block, t.replica_id,
    t.size, t.adler32, t.priority, t.source, t.protocol, t.source_pfn, t.dest_pfn, t.tape,
    t.attempts, t.failures, t.ruled_out, t.reason, t.job_id, t.created, t.submitted_at"""


async def init_connection(conn: asyncpg.Connection) -> None:
    """JSONB as Python objects (pool ``init``)."""
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda value: orjson.dumps(value).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )


@dataclass(frozen=True, slots=True)
class TaskRow:
    id: int
    kind: Kind
    state: State
    lfn: str
    site: str
    dataset: str | None
    block: str | None
    replica_id: int | None
    size: int | None
    adler32: str | None
    priority: int
    source: str | None
    protocol: str | None
    source_pfn: str | None
    dest_pfn: str | None
    tape: bool
    attempts: int
    failures: dict[str, int]
    ruled_out: dict[str, str]
    reason: str | None
    job_id: str | None
    created: datetime
    submitted_at: datetime | None

    @property
    def link(self) -> Link:
        return Link(self.source, self.site)

    @classmethod
    def of(cls, r: asyncpg.Record) -> TaskRow:
        return cls(
            id=r["id"],
            kind=Kind(r["kind"]),
            state=State(r["state"]),
            lfn=r["lfn"],
            site=r["site"],
            dataset=r["dataset"],
            block=r["block"],
            replica_id=r["replica_id"],
            size=r["size"],
            adler32=r["adler32"],
            priority=r["priority"],
            source=r["source"],
            protocol=r["protocol"],
            source_pfn=r["source_pfn"],
            dest_pfn=r["dest_pfn"],
            tape=r["tape"],
            attempts=r["attempts"],
            failures=dict(r["failures"] or {}),
            ruled_out=dict(r["ruled_out"] or {}),
            reason=r["reason"],
            job_id=r["job_id"],
            created=r["created"],
            submitted_at=r["submitted_at"],
        )


def _one(status: str) -> bool:
    """True when a command tag says one row changed (``UPDATE 1``)."""
    return status.endswith(" 1")


def _states(states: Iterable[State]) -> list[str]:
    return sorted(s.value for s in states)


# ---------------------------------------------------------------------------- commands


async def recorded_reply(conn: asyncpg.Connection, command_id: str) -> str | None:
    value = await conn.fetchval(f"SELECT reply FROM {S}.commands WHERE id = $1", command_id)
    return None if value is None else str(value)


async def record_command(
    conn: asyncpg.Connection, command_id: str, command_type: str, now: datetime, reply: str
) -> None:
    await conn.execute(
        f"INSERT INTO {S}.commands (id, type, received, reply) VALUES ($1, $2, $3, $4)",
        command_id,
        command_type,
        now,
        reply,
    )


async def prune_commands(conn: asyncpg.Connection, before: datetime) -> None:
    await conn.execute(f"DELETE FROM {S}.commands WHERE received < $1", before)


# ---------------------------------------------------------------------------- intake


async def lock_intake(conn: asyncpg.Connection) -> None:
    # Serialises intakes so that a transfer and a deletion of one file arriving together
    # always see each other (one cancels the other) instead of both being queued.
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _INTAKE_LOCK)


async def existing_tasks(
    conn: asyncpg.Connection, pairs: Sequence[tuple[str, str]]
) -> list[Existing]:
    """Open tasks for these (lfn, site) pairs, and done ones inside still-active replicas."""
    if not pairs:
        return []
    rows = await conn.fetch(
        f"""SELECT t.id, t.kind, t.lfn, t.site, t.state,
                   r.kind AS r_kind, r.dataset AS r_dataset, r.block AS r_block, r.site AS r_site
            FROM unnest($1::text[], $2::text[]) AS k(lfn, site)
            JOIN {S}.tasks t ON t.lfn = k.lfn AND t.site = k.site
            LEFT JOIN {S}.replicas r ON r.id = t.replica_id
            WHERE t.state NOT IN ('done', 'cancelled')
               OR (t.state = 'done' AND r.state = 'active')""",
        [p[0] for p in pairs],
        [p[1] for p in pairs],
    )
    return [
        Existing(
            task_id=r["id"],
            kind=Kind(r["kind"]),
            lfn=r["lfn"],
            site=r["site"],
            state=State(r["state"]),
            row=(
                RowKey(Kind(r["r_kind"]), r["r_dataset"], r["r_block"], r["r_site"])
                if r["r_kind"] is not None
                else None
            ),
        )
        for r in rows
    ]


async def active_rows(
    conn: asyncpg.Connection, kind: Kind, keys: Sequence[RowKey]
) -> set[tuple[str, str, str]]:
    """Which of the block replicas ``keys`` (dataset, block, site) have an active row of
    ``kind``."""
    rows = await conn.fetch(
        f"""SELECT r.dataset, r.block, r.site FROM {S}.replicas r
            JOIN unnest($2::text[], $3::text[], $4::text[]) AS k(dataset, block, site)
              ON r.dataset = k.dataset AND r.block = k.block AND r.site = k.site
            WHERE r.kind = $1 AND r.state = 'active'""",
        kind.value,
        [k.dataset for k in keys],
        [k.block for k in keys],
        [k.site for k in keys],
    )
    return {(r["dataset"], r["block"], r["site"]) for r in rows}


async def ensure_replica_rows(
    conn: asyncpg.Connection, targets: Sequence[ReplicaTarget], now: datetime
) -> dict[RowKey, int]:
    """The active row of every target block replica, created where there is none."""
    ids: dict[RowKey, int] = {}
    for target in targets:
        key = target.key
        files = len(target.files)
        size = sum(f.size for f in target.files)
        row_id = await conn.fetchval(
            f"""UPDATE {S}.replicas SET files_total = $5, bytes_total = $6, updated = $7
                WHERE kind = $1 AND dataset = $2 AND block = $3 AND site = $4
                  AND state = 'active'
                RETURNING id""",
            key.kind.value,
            key.dataset,
            key.block,
            key.site,
            files,
            size,
            now,
        )
        if row_id is None:
            row_id = await conn.fetchval(
                f"""INSERT INTO {S}.replicas (kind, dataset, block, site, group_name, state,
                                              files_total, bytes_total, created, updated)
                    VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $8)
                    RETURNING id""",
                key.kind.value,
                key.dataset,
                key.block,
                key.site,
                target.group,
                files,
                size,
                now,
            )
        ids[key] = int(row_id)
    return ids


async def insert_tasks(
    conn: asyncpg.Connection,
    tasks: Sequence[NewTask],
    row_ids: Mapping[RowKey, int],
    command_id: str,
    now: datetime,
) -> int:
    if not tasks:
        return 0
    cols: list[list[Any]] = [[] for _ in range(9)]
    for t in tasks:
        values = (
            t.kind.value,
            t.lfn,
            t.site,
            t.dataset,
            t.block,
            row_ids[t.row] if t.row is not None else None,
            t.size,
            t.adler32,
            t.priority,
        )
        for col, value in zip(cols, values, strict=True):
            col.append(value)
    inserted = await conn.fetchval(
        f"""WITH ins AS (
              INSERT INTO {S}.tasks (kind, state, lfn, site, dataset, block, replica_id, size,
                                     adler32, priority, command_id, created, updated)
              SELECT k, 'new', l, s, d, b, r, sz, a, p, $10, $11, $11
              FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                          $6::bigint[], $7::bigint[], $8::text[], $9::smallint[])
                   AS x(k, l, s, d, b, r, sz, a, p)
              ON CONFLICT (kind, lfn, site) WHERE state NOT IN ('done', 'cancelled')
              DO NOTHING
              RETURNING 1)
            SELECT count(*) FROM ins""",
        *cols,
        command_id,
        now,
    )
    return int(inserted)


async def adopt_tasks(
    conn: asyncpg.Connection, adopt: Mapping[int, RowKey], row_ids: Mapping[RowKey, int]
) -> None:
    if adopt:
        await conn.execute(
            f"""UPDATE {S}.tasks t SET replica_id = x.r
                FROM unnest($1::bigint[], $2::bigint[]) AS x(id, r)
                WHERE t.id = x.id AND t.replica_id IS NULL""",
            list(adopt),
            [row_ids[key] for key in adopt.values()],
        )


async def cancel_tasks(
    conn: asyncpg.Connection, task_ids: Sequence[int], reason: str, now: datetime
) -> int:
    """Cancel pending tasks; their block replicas can no longer finish as asked and are
    closed as cancelled (the later, opposite request now stands for the file)."""
    if not task_ids:
        return 0
    rows = await conn.fetch(
        f"""UPDATE {S}.tasks SET state = 'cancelled', reason = $3, updated = $4,
                                 finished_at = $4
            WHERE id = ANY($1::bigint[]) AND state = ANY($2::text[])
            RETURNING replica_id""",
        list(task_ids),
        _states(PENDING),
        reason,
        now,
    )
    replica_ids = sorted({r["replica_id"] for r in rows if r["replica_id"] is not None})
    if replica_ids:
        await conn.execute(
            f"""UPDATE {S}.replicas SET state = 'cancelled', note = $2, updated = $3,
                                        finished = $3
                WHERE id = ANY($1::bigint[]) AND state = 'active'""",
            replica_ids,
            reason,
            now,
        )
    return len(rows)


# ---------------------------------------------------------------------------- scheduling


async def release_due_retries(conn: asyncpg.Connection, now: datetime) -> int:
    result = await conn.execute(
        f"""UPDATE {S}.tasks SET state = 'new', updated = $1
            WHERE state = 'retry' AND (not_before IS NULL OR not_before <= $1)""",
        now,
    )
    return int(result.split()[-1])


async def next_retry_due(conn: asyncpg.Connection) -> datetime | None:
    due: datetime | None = await conn.fetchval(
        f"SELECT min(not_before) FROM {S}.tasks WHERE state = 'retry'"
    )
    return due


async def tasks_in_state(
    conn: asyncpg.Connection, state: State, kind: Kind | None = None, limit: int = 1000
) -> list[TaskRow]:
    rows = await conn.fetch(
        f"""SELECT {_TASK_COLUMNS} FROM {S}.tasks t
            WHERE t.state = $1 AND ($2::text IS NULL OR t.kind = $2)
            ORDER BY t.priority DESC, t.id LIMIT $3""",
        state.value,
        kind.value if kind else None,
        limit,
    )
    return [TaskRow.of(r) for r in rows]


async def tasks_by_id(conn: asyncpg.Connection, ids: Sequence[int]) -> list[TaskRow]:
    rows = await conn.fetch(
        f"SELECT {_TASK_COLUMNS} FROM {S}.tasks t WHERE t.id = ANY($1::bigint[]) ORDER BY t.id",
        list(ids),
    )
    return [TaskRow.of(r) for r in rows]


async def task_for_update(conn: asyncpg.Connection, task_id: int) -> TaskRow | None:
    row = await conn.fetchrow(
        f"SELECT {_TASK_COLUMNS} FROM {S}.tasks t WHERE t.id = $1 FOR UPDATE", task_id
    )
    return None if row is None else TaskRow.of(row)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a new task goes: its source (None for a deletion), protocol and PFNs."""

    task_id: int
    source: str | None
    protocol: str
    source_pfn: str | None
    dest_pfn: str
    tape: bool


async def set_queued(
    conn: asyncpg.Connection, placements: Sequence[Placement], now: datetime
) -> int:
    """Queue placed tasks, in one statement: a round trip per task made placement the
    slowest step of handing thousands of files to the backend. Returns how many moved."""
    if not placements:
        return 0
    result = await conn.execute(
        f"""UPDATE {S}.tasks t SET state = 'queued', source = x.source, protocol = x.protocol,
                                   source_pfn = x.source_pfn, dest_pfn = x.dest_pfn,
                                   tape = x.tape, reason = NULL, updated = $7
            FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                        $6::boolean[]) AS x(id, source, protocol, source_pfn, dest_pfn, tape)
            WHERE t.id = x.id AND t.state = ANY($8::text[])""",
        [p.task_id for p in placements],
        [p.source for p in placements],
        [p.protocol for p in placements],
        [p.source_pfn for p in placements],
        [p.dest_pfn for p in placements],
        [p.tape for p in placements],
        now,
        _states(sources_of(State.QUEUED)),
    )
    return int(result.split()[-1])


async def set_held(conn: asyncpg.Connection, task_id: int, reason: str, now: datetime) -> bool:
    result = await conn.execute(
        f"""UPDATE {S}.tasks SET state = 'held', reason = $2, updated = $3, not_before = NULL
            WHERE id = $1 AND state = ANY($4::text[])""",
        task_id,
        reason,
        now,
        _states(sources_of(State.HELD)),
    )
    return _one(result)


async def queued_candidates(conn: asyncpg.Connection, kind: Kind, per_link: int) -> list[Candidate]:
    """Queued tasks of ``kind`` that may run now, the first ``per_link`` of each link in
    priority order (no link could take more), so a long queue on one link never hides the
    others. None while the opposite kind is being carried out on the same file: a copy and a
    deletion of one file never overlap."""
    rows = await conn.fetch(
        f"""SELECT id, source, site, priority, created, size FROM (
              SELECT t.id, t.source, t.site, t.priority, t.created,
                     coalesce(t.size, 0) AS size,
                     row_number() OVER (PARTITION BY t.source, t.site
                                        ORDER BY t.priority DESC, t.created, t.id) AS n
              FROM {S}.tasks t
              WHERE t.state = 'queued' AND t.kind = $1
                AND NOT EXISTS (
                  SELECT 1 FROM {S}.tasks o
                  WHERE o.lfn = t.lfn AND o.site = t.site AND o.kind <> t.kind
                    AND o.state IN ('submitted', 'failed'))) ranked
            WHERE n <= $2""",
        kind.value,
        per_link,
    )
    return [
        Candidate(
            task_id=r["id"],
            link=Link(r["source"] if kind is Kind.TRANSFER else None, r["site"]),
            priority=r["priority"],
            created=r["created"].timestamp(),
            size=r["size"],
        )
        for r in rows
    ]


async def active_counts(conn: asyncpg.Connection, kind: Kind) -> dict[Link, int]:
    rows = await conn.fetch(
        f"""SELECT source, site, count(*) AS n FROM {S}.tasks
            WHERE state = 'submitted' AND kind = $1 GROUP BY source, site""",
        kind.value,
    )
    return {Link(r["source"] if kind is Kind.TRANSFER else None, r["site"]): r["n"] for r in rows}


async def mark_submitted(
    conn: asyncpg.Connection, task_ids: Sequence[int], job_id: str, now: datetime
) -> list[TaskRow]:
    rows = await conn.fetch(
        f"""UPDATE {S}.tasks t SET state = 'submitted', job_id = $2, submitted_at = $3,
                                   updated = $3
            WHERE t.id = ANY($1::bigint[]) AND t.state = 'queued'
            RETURNING {_TASK_COLUMNS}""",
        list(task_ids),
        job_id,
        now,
    )
    return sorted((TaskRow.of(r) for r in rows), key=lambda t: t.id)


async def submitted(
    conn: asyncpg.Connection, kind: Kind, job_id: str | None = None
) -> list[TaskRow]:
    rows = await conn.fetch(
        f"""SELECT {_TASK_COLUMNS} FROM {S}.tasks t
            WHERE t.state = 'submitted' AND t.kind = $1 AND ($2::text IS NULL OR t.job_id = $2)
            ORDER BY t.id""",
        kind.value,
        job_id,
    )
    return [TaskRow.of(r) for r in rows]


async def set_done(
    conn: asyncpg.Connection, task_id: int, moved: int, now: datetime, note: str | None
) -> None:
    await conn.execute(
        f"""UPDATE {S}.tasks SET state = 'done', bytes = $2, finished_at = $3, updated = $3,
                                 reason = $4, not_before = NULL
            WHERE id = $1 AND state = 'submitted'""",
        task_id,
        moved,
        now,
        note,
    )


async def set_failed(
    conn: asyncpg.Connection,
    task_id: int,
    *,
    state: State,
    reason: str,
    attempts: int,
    failures: Mapping[str, int],
    ruled_out: Mapping[str, str],
    not_before: datetime | None,
    now: datetime,
) -> None:
    # submitted -> failed -> retry|held happen in this one statement: "failed" is the moment
    # of the decision, never a state a task waits in.
    await conn.execute(
        f"""UPDATE {S}.tasks SET state = $2, reason = $3, attempts = $4, failures = $5,
                                 ruled_out = $6, not_before = $7, updated = $8, job_id = NULL
            WHERE id = $1 AND state = 'submitted'""",
        task_id,
        state.value,
        reason,
        attempts,
        dict(failures),
        dict(ruled_out),
        not_before,
        now,
    )


async def insert_history(
    conn: asyncpg.Connection,
    task: TaskRow,
    *,
    result: str,
    error: str | None,
    started: datetime | None,
    finished: datetime,
    duration: float,
    moved: int,
) -> None:
    await conn.execute(
        f"""INSERT INTO {S}.history (task_id, kind, lfn, source, site, result, error, started,
                                     finished, duration, bytes)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
        task.id,
        task.kind.value,
        task.lfn,
        task.source,
        task.site,
        result,
        error,
        started,
        finished,
        duration,
        moved,
    )


async def release_held(
    conn: asyncpg.Connection,
    *,
    ids: Sequence[int] | None,
    site: str | None,
    source: str | None,
    kind: Kind | None,
    now: datetime,
) -> int:
    """Held tasks back to new, with a clean slate: an operator released them after fixing
    what held them, so earlier failures must not count against the next attempts."""
    result = await conn.execute(
        f"""UPDATE {S}.tasks SET state = 'new', attempts = 0, failures = '{{}}'::jsonb,
                                 ruled_out = '{{}}'::jsonb, reason = NULL, not_before = NULL,
                                 updated = $5
            WHERE state = 'held'
              AND ($1::bigint[] IS NULL OR id = ANY($1::bigint[]))
              AND ($2::text IS NULL OR site = $2)
              AND ($3::text IS NULL OR source = $3)
              AND ($4::text IS NULL OR kind = $4)""",
        list(ids) if ids is not None else None,
        site,
        source,
        kind.value if kind else None,
        now,
    )
    return int(result.split()[-1])


# ---------------------------------------------------------------------------- jobs


async def insert_job(
    conn: asyncpg.Connection, job_id: str, backend: str, link: Link, now: datetime
) -> None:
    await conn.execute(
        f"""INSERT INTO {S}.jobs (id, backend, source, destination, state, created, updated)
            VALUES ($1, $2, $3, $4, 'intent', $5, $5)""",
        job_id,
        backend,
        link.source or "",
        link.destination,
        now,
    )


async def set_job_submitted(
    conn: asyncpg.Connection, job_id: str, external_id: str, now: datetime
) -> None:
    await conn.execute(
        f"""UPDATE {S}.jobs SET external_id = $2, state = 'submitted', updated = $3
            WHERE id = $1""",
        job_id,
        external_id,
        now,
    )


async def finish_job(conn: asyncpg.Connection, job_id: str, now: datetime) -> None:
    await conn.execute(
        f"UPDATE {S}.jobs SET state = 'finished', updated = $2 WHERE id = $1", job_id, now
    )


@dataclass(frozen=True, slots=True)
class JobRow:
    id: str
    external_id: str | None
    state: str
    created: datetime


async def open_jobs(conn: asyncpg.Connection, backend: str) -> list[JobRow]:
    rows = await conn.fetch(
        f"""SELECT id, external_id, state, created FROM {S}.jobs
            WHERE backend = $1 AND state <> 'finished' ORDER BY created""",
        backend,
    )
    return [JobRow(r["id"], r["external_id"], r["state"], r["created"]) for r in rows]


# ---------------------------------------------------------------------------- leadership


async def try_leader_lock(conn: asyncpg.Connection) -> bool:
    """Take the leader's lock if no other session holds it. A session lock: ``conn`` must be
    a connection of its own (not the pool's), held for as long as this instance leads."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LEADER_LOCK))


async def ping(conn: asyncpg.Connection) -> None:
    await conn.fetchval("SELECT 1")


# ---------------------------------------------------------------------------- replicas


@dataclass(frozen=True, slots=True)
class ReplicaRow:
    id: int
    kind: Kind
    dataset: str
    block: str
    site: str
    group: str
    files_total: int
    bytes_total: int
    reported_files: int
    reported_bytes: int
    files_done: int
    bytes_done: int
    open_tasks: int


async def active_replicas(conn: asyncpg.Connection) -> list[ReplicaRow]:
    rows = await conn.fetch(
        f"""SELECT r.id, r.kind, r.dataset, r.block, r.site, r.group_name, r.files_total,
                   r.bytes_total, r.reported_files, r.reported_bytes,
                   count(t.id) FILTER (WHERE t.state = 'done') AS files_done,
                   coalesce(sum(t.size) FILTER (WHERE t.state = 'done'), 0) AS bytes_done,
                   count(t.id) FILTER (WHERE t.state NOT IN ('done', 'cancelled')) AS open_tasks
            FROM {S}.replicas r LEFT JOIN {S}.tasks t ON t.replica_id = r.id
            WHERE r.state = 'active'
            GROUP BY r.id ORDER BY r.id"""
    )
    return [
        ReplicaRow(
            id=r["id"],
            kind=Kind(r["kind"]),
            dataset=r["dataset"],
            block=r["block"],
            site=r["site"],
            group=r["group_name"],
            files_total=r["files_total"],
            bytes_total=r["bytes_total"],
            reported_files=r["reported_files"],
            reported_bytes=r["reported_bytes"],
            files_done=r["files_done"],
            bytes_done=int(r["bytes_done"]),
            open_tasks=r["open_tasks"],
        )
        for r in rows
    ]


async def set_reported(
    conn: asyncpg.Connection, replica_id: int, files: int, size: int, now: datetime
) -> None:
    await conn.execute(
        f"""UPDATE {S}.replicas SET reported_files = $2, reported_bytes = $3, updated = $4
            WHERE id = $1""",
        replica_id,
        files,
        size,
        now,
    )


async def close_replica(
    conn: asyncpg.Connection, replica_id: int, state: str, note: str | None, now: datetime
) -> bool:
    result = await conn.execute(
        f"""UPDATE {S}.replicas SET state = $2, note = $3, updated = $4, finished = $4
            WHERE id = $1 AND state = 'active'""",
        replica_id,
        state,
        note,
        now,
    )
    return _one(result)


# ---------------------------------------------------------------------------- outbox


async def add_events(
    conn: asyncpg.Connection, rows: Sequence[tuple[str, str]], now: datetime
) -> None:
    if rows:
        await conn.executemany(
            f"INSERT INTO {S}.outbox (type, envelope, created) VALUES ($1, $2, $3)",
            [(type_, envelope, now) for type_, envelope in rows],
        )


async def claim_unpublished(conn: asyncpg.Connection, limit: int) -> list[tuple[int, str]]:
    """Unpublished events, locked for this transaction: several instances relay without
    publishing the same row at the same time."""
    rows = await conn.fetch(
        f"""SELECT id, envelope FROM {S}.outbox WHERE NOT published ORDER BY id
            LIMIT $1 FOR UPDATE SKIP LOCKED""",
        limit,
    )
    return [(r["id"], r["envelope"]) for r in rows]


async def mark_published(conn: asyncpg.Connection, ids: Sequence[int]) -> None:
    await conn.execute(
        f"UPDATE {S}.outbox SET published = true WHERE id = ANY($1::bigint[])", list(ids)
    )


async def prune_outbox(conn: asyncpg.Connection, before: datetime) -> None:
    await conn.execute(f"DELETE FROM {S}.outbox WHERE published AND created < $1", before)
