"""Reading the inventory schema: the cold-start load, files on demand, and the event log."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import asyncpg
import orjson

from dynamo_common.messages import inventory as inv
from dynamo_common.messages.types import (
    NO_GROUP,
    DatasetStatus,
    OwnershipLevel,
    SiteStatus,
    StorageType,
)
from dynamo_common.model.objects import (
    Block,
    BlockReplica,
    Container,
    Dataset,
    DatasetReplica,
    Group,
    Inventory,
    Partition,
    Site,
)

S = "inventory"


async def load_inventory(conn: asyncpg.Connection) -> Inventory:
    """The whole inventory except files, in one repeatable-read transaction so that the model
    matches the sequence number it is tagged with."""
    # Hundreds of thousands of long-lived objects: the cyclic collector would rescan them again
    # and again while they are created, and after the load they never become garbage, so they
    # are moved out of its reach (gc.freeze) for the life of the process.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return await _load(conn)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


async def _load(conn: asyncpg.Connection) -> Inventory:
    model = Inventory()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        model.seq = int(await conn.fetchval(f"SELECT seq FROM {S}.writer_state WHERE id = 1"))
        sites_by_id: dict[int, Site] = {}
        for r in await conn.fetch(
            f"SELECT id, name, storage_type, status, host, protocols::text,"
            f" quotas::text FROM {S}.sites"
        ):
            protocols = tuple(
                (p["name"], tuple((rule["match"], rule["result"]) for rule in p["rules"]))
                for p in orjson.loads(r[5])
            )
            site = Site(
                r[0], r[1], StorageType(r[2]), SiteStatus(r[3]), r[4], protocols, orjson.loads(r[6])
            )
            model.sites[site.name] = site
            sites_by_id[site.id] = site
        groups_by_id: dict[int, Group] = {0: model.groups[NO_GROUP]}
        for r in await conn.fetch(f"SELECT id, name, olevel FROM {S}.groups"):
            group = Group(r[0], r[1], OwnershipLevel(r[2]))
            model.groups[group.name] = group
            groups_by_id[group.id] = group
        statuses = {s.value: s for s in DatasetStatus}
        datasets_by_id: dict[int, Dataset] = {}
        for r in await conn.fetch(
            f"SELECT id, name, status, data_type, software_version, is_open, "
            f"extract(epoch from last_update)::float8 FROM {S}.datasets"
        ):
            dataset = Dataset(r[0], r[1], statuses[r[2]], r[3], r[4], r[5], r[6])
            model.datasets[dataset.name] = dataset
            datasets_by_id[dataset.id] = dataset
        blocks_by_id: dict[int, Block] = {}
        for r in await conn.fetch(
            f"SELECT id, dataset_id, name, size, num_files, is_open, "
            f"extract(epoch from last_update)::float8 FROM {S}.blocks"
        ):
            dataset = datasets_by_id[r[1]]
            block = Block(r[0], dataset, r[2], r[3], r[4], r[5], r[6])
            dataset.blocks[block.name] = block
            dataset.size += block.size
            dataset.num_files += block.num_files
            blocks_by_id[block.id] = block
        for r in await conn.fetch(
            f"SELECT dataset_id, site_id, group_id, growing, "
            f"extract(epoch from last_update)::float8 FROM {S}.dataset_replicas"
        ):
            dataset = datasets_by_id[r[0]]
            site = sites_by_id[r[1]]
            replica = DatasetReplica(dataset, site, groups_by_id[r[2]], r[3], r[4])
            dataset.replicas[site.name] = replica
            site.dataset_replicas[dataset.name] = replica
        for r in await conn.fetch(
            f"SELECT block_id, site_id, group_id, is_custodial, size, num_files, "
            f"extract(epoch from last_update)::float8 FROM {S}.block_replicas"
        ):
            block = blocks_by_id[r[0]]
            site = sites_by_id[r[1]]
            block_replica = BlockReplica(block, site, groups_by_id[r[2]], r[3], r[4], r[5], r[6])
            block.dataset.replicas[site.name].block_replicas[block.name] = block_replica
            block.replicas.append(block_replica)
        for r in await conn.fetch(
            f"SELECT name, condition, subpartitions::text, description FROM {S}.partitions"
        ):
            model.partitions[r[0]] = Partition(r[0], r[1], tuple(orjson.loads(r[2])), r[3])
        for r in await conn.fetch(f"SELECT name, datasets::text FROM {S}.containers"):
            model.containers[r[0]] = Container(r[0], tuple(orjson.loads(r[1])))
    return model


async def current_seq(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval(f"SELECT seq FROM {S}.writer_state WHERE id = 1"))


_FILE_COLUMNS = (
    f"SELECT d.name, b.name, f.lfn, f.size, f.adler32, f.crc32 FROM {S}.files f "
    f"JOIN {S}.blocks b ON b.id = f.block_id JOIN {S}.datasets d ON d.id = b.dataset_id"
)


def _file_state(r: asyncpg.Record) -> inv.FileState:
    return inv.FileState.model_construct(
        dataset=r[0], block=r[1], lfn=r[2], size=r[3], adler32=r[4], crc32=r[5]
    )


async def files_by_lfn(conn: asyncpg.Connection, lfns: Sequence[str]) -> dict[str, inv.FileState]:
    if not lfns:
        return {}
    rows = await conn.fetch(f"{_FILE_COLUMNS} WHERE f.lfn = ANY($1::text[])", list(lfns))
    return {r[2]: _file_state(r) for r in rows}


async def files_of_block(
    conn: asyncpg.Connection, block_id: int, limit: int, offset: int
) -> tuple[int, list[inv.FileState]]:
    total = await conn.fetchval(f"SELECT count(*) FROM {S}.files WHERE block_id = $1", block_id)
    rows = await conn.fetch(
        f"{_FILE_COLUMNS} WHERE f.block_id = $1 ORDER BY f.lfn LIMIT $2 OFFSET $3",
        block_id,
        limit,
        offset,
    )
    return int(total), [_file_state(r) for r in rows]


async def site_files(
    conn: asyncpg.Connection, site_id: int, chunk: int = 5000
) -> AsyncIterator[bytes]:
    """Every file of every block replica at a site, as NDJSON lines (dataset, block, lfn,
    size, adler32), ordered by dataset, block and LFN: one streamed query, so a consistency
    check of a site with millions of files costs one request instead of one per block.
    Needs an open transaction on ``conn`` (the cursor lives in it)."""
    query = (
        f"SELECT d.name, b.name, f.lfn, f.size, f.adler32 FROM {S}.block_replicas br "
        f"JOIN {S}.blocks b ON b.id = br.block_id "
        f"JOIN {S}.datasets d ON d.id = b.dataset_id "
        f"JOIN {S}.files f ON f.block_id = b.id "
        "WHERE br.site_id = $1 ORDER BY d.name, b.name, f.lfn"
    )
    lines: list[bytes] = []
    dumps = orjson.dumps
    async for r in conn.cursor(query, site_id, prefetch=chunk):
        lines.append(
            dumps({"dataset": r[0], "block": r[1], "lfn": r[2], "size": r[3], "adler32": r[4]})
        )
        if len(lines) >= chunk:
            yield b"\n".join(lines) + b"\n"
            lines = []
    if lines:
        yield b"\n".join(lines) + b"\n"


async def events_after(conn: asyncpg.Connection, after: int, limit: int) -> list[tuple[int, str]]:
    rows = await conn.fetch(
        f"SELECT seq, envelope FROM {S}.events WHERE seq > $1 ORDER BY seq LIMIT $2", after, limit
    )
    return [(int(r[0]), str(r[1])) for r in rows]


async def oldest_retained_seq(conn: asyncpg.Connection) -> int | None:
    value = await conn.fetchval(f"SELECT min(seq) FROM {S}.events")
    return None if value is None else int(value)


async def unpublished_events(conn: asyncpg.Connection, limit: int) -> list[tuple[int, str]]:
    rows = await conn.fetch(
        f"SELECT seq, envelope FROM {S}.events WHERE NOT published ORDER BY seq LIMIT $1", limit
    )
    return [(int(r[0]), str(r[1])) for r in rows]


async def mark_published(conn: asyncpg.Connection, seqs: Sequence[int]) -> None:
    await conn.execute(
        f"UPDATE {S}.events SET published = true WHERE seq = ANY($1::bigint[])", list(seqs)
    )


async def prune_events(conn: asyncpg.Connection, older_than: datetime) -> int:
    """Forget published events older than the retention window (never the newest one)."""
    result = await conn.execute(
        f"DELETE FROM {S}.events WHERE published AND time < $1 "
        f"AND seq < (SELECT seq FROM {S}.writer_state WHERE id = 1)",
        older_than,
    )
    return int(result.split()[-1])


async def prune_commands(conn: asyncpg.Connection, older_than: datetime) -> int:
    result = await conn.execute(f"DELETE FROM {S}.commands WHERE received < $1", older_than)
    return int(result.split()[-1])
