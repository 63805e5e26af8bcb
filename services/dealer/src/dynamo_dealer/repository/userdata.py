"""All SQL of user data: user datasets, their blocks (which site, open or closed) and files.

Every function runs on the caller's connection; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from dynamo_dealer.service.userdata import BlockPlan, OpenBlock

S = "dealer"


async def add_dataset(
    conn: asyncpg.Connection, name: str, owner: str, now: datetime
) -> asyncpg.Record | None:
    """The new dataset, or None when the name is taken."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"INSERT INTO {S}.userdata_datasets (name, owner, state, created, updated)"
        " VALUES ($1, $2, 'open', $3, $3) ON CONFLICT DO NOTHING RETURNING *",
        name,
        owner,
        now,
    )
    return row


async def get_dataset(
    conn: asyncpg.Connection, name: str, *, lock: bool = False
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT * FROM {S}.userdata_datasets WHERE name = $1" + (" FOR UPDATE" if lock else ""),
        name,
    )
    return row


async def list_datasets(
    conn: asyncpg.Connection, owner: str | None, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    clause = "($1::text IS NULL OR d.owner = $1)"
    rows = await conn.fetch(
        f"SELECT d.*, coalesce(f.files, 0) AS files, coalesce(f.size, 0) AS size"
        f" FROM {S}.userdata_datasets d LEFT JOIN (SELECT dataset, count(*) AS files,"
        f" sum(size)::bigint AS size FROM {S}.userdata_files GROUP BY dataset) f"
        f" ON f.dataset = d.name WHERE {clause} ORDER BY d.name LIMIT $2 OFFSET $3",
        owner,
        limit,
        offset,
    )
    total = await conn.fetchval(
        f"SELECT count(*) FROM {S}.userdata_datasets d WHERE {clause}", owner
    )
    return list(rows), int(total)


async def set_state(
    conn: asyncpg.Connection, name: str, state: str, now: datetime, home: str | None = None
) -> None:
    await conn.execute(
        f"UPDATE {S}.userdata_datasets SET state = $2, updated = $3,"
        " home = coalesce($4, home) WHERE name = $1",
        name,
        state,
        now,
        home,
    )


async def set_home(conn: asyncpg.Connection, name: str, home: str, now: datetime) -> bool:
    """Whether ``home`` is now the dataset's site (False: another site was chosen before)."""
    done = await conn.fetchval(
        f"UPDATE {S}.userdata_datasets SET home = $2, updated = $3"
        " WHERE name = $1 AND (home IS NULL OR home = $2) RETURNING true",
        name,
        home,
        now,
    )
    return bool(done)


async def datasets_in(conn: asyncpg.Connection, states: Sequence[str]) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"SELECT * FROM {S}.userdata_datasets WHERE state = ANY($1::text[]) ORDER BY name",
            list(states),
        )
    )


async def consolidating(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"SELECT * FROM {S}.userdata_datasets WHERE home IS NOT NULL"
            " AND state <> 'deleting' ORDER BY name"
        )
    )


async def drop_dataset(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute(f"DELETE FROM {S}.userdata_files WHERE dataset = $1", name)
    await conn.execute(f"DELETE FROM {S}.userdata_datasets WHERE name = $1", name)


async def open_block(conn: asyncpg.Connection, dataset: str, site: str) -> OpenBlock | None:
    row = await conn.fetchrow(
        f"SELECT name, num_files FROM {S}.userdata_blocks"
        " WHERE dataset = $1 AND site = $2 AND is_open ORDER BY name LIMIT 1",
        dataset,
        site,
    )
    return None if row is None else OpenBlock(row["name"], row["num_files"])


async def open_blocks(conn: asyncpg.Connection, dataset: str) -> list[str]:
    rows = await conn.fetch(
        f"SELECT name FROM {S}.userdata_blocks WHERE dataset = $1 AND is_open ORDER BY name",
        dataset,
    )
    return [r["name"] for r in rows]


async def blocks(conn: asyncpg.Connection, dataset: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"SELECT * FROM {S}.userdata_blocks WHERE dataset = $1 ORDER BY name", dataset
        )
    )


async def taken(conn: asyncpg.Connection, lfns: Sequence[str]) -> set[str]:
    rows = await conn.fetch(
        f"SELECT lfn FROM {S}.userdata_files WHERE lfn = ANY($1::text[])", list(lfns)
    )
    return {r["lfn"] for r in rows}


async def user_bytes(conn: asyncpg.Connection, owner: str) -> int:
    return int(
        await conn.fetchval(
            f"SELECT coalesce(sum(size), 0)::bigint FROM {S}.userdata_files WHERE owner = $1",
            owner,
        )
    )


async def record_blocks(
    conn: asyncpg.Connection, dataset: str, site: str, plans: Sequence[BlockPlan]
) -> None:
    """The new blocks (open), before their files are registered: a block the inventory knows
    is always known here, so it is reused rather than made twice."""
    new = [p for p in plans if p.new]
    if not new:
        return
    await conn.executemany(
        f"INSERT INTO {S}.userdata_blocks (dataset, name, site) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING",
        [(dataset, p.name, site) for p in new],
    )
    await conn.execute(
        f"UPDATE {S}.userdata_datasets SET next_block = next_block + $2 WHERE name = $1",
        dataset,
        len(new),
    )


async def record_files(
    conn: asyncpg.Connection,
    dataset: str,
    site: str,
    owner: str,
    plans: Sequence[BlockPlan],
    now: datetime,
) -> None:
    await conn.executemany(
        f"INSERT INTO {S}.userdata_files (lfn, dataset, block, site, owner, size, adler32,"
        " created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [
            (f.lfn, dataset, p.name, site, owner, f.size, f.adler32, now)
            for p in plans
            for f in p.files
        ],
    )
    await conn.executemany(
        f"UPDATE {S}.userdata_blocks SET num_files = num_files + $3, size = size + $4,"
        " is_open = is_open AND NOT $5 WHERE dataset = $1 AND name = $2",
        [(dataset, p.name, len(p.files), sum(f.size for f in p.files), p.close) for p in plans],
    )


async def close_blocks(conn: asyncpg.Connection, dataset: str) -> None:
    await conn.execute(
        f"UPDATE {S}.userdata_blocks SET is_open = false WHERE dataset = $1", dataset
    )


async def files(
    conn: asyncpg.Connection, dataset: str, block: str | None, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    clause = "dataset = $1 AND ($2::text IS NULL OR block = $2)"
    rows = await conn.fetch(
        f"SELECT * FROM {S}.userdata_files WHERE {clause} ORDER BY lfn LIMIT $3 OFFSET $4",
        dataset,
        block,
        limit,
        offset,
    )
    total = await conn.fetchval(
        f"SELECT count(*) FROM {S}.userdata_files WHERE {clause}", dataset, block
    )
    return list(rows), int(total)
