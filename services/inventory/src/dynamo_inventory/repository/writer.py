"""Writing events' changes to the inventory schema. Every function only flushes statements on
the caller's connection; the caller owns the transaction and commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from dynamo_common.messages import inventory as inv
from dynamo_common.messages.registry import InventoryEvent as E
from dynamo_common.messages.types import NO_GROUP
from dynamo_common.model.objects import Inventory
from dynamo_inventory.service.planner import PlannedEvent

S = "inventory"


class IdResolver:
    """Integer ids of the objects a batch of events names, from the events themselves (objects
    created in the same command) or from the in-memory model."""

    def __init__(self, model: Inventory, events: Sequence[PlannedEvent]) -> None:
        self.model = model
        self.sites: dict[str, int] = {}
        self.groups: dict[str, int] = {}
        self.datasets: dict[str, int] = {}
        self.blocks: dict[tuple[str, str], int] = {}
        for event in events:
            data = event.data
            if isinstance(data, inv.SitesChanged):
                self.sites.update((s.name, s.id) for s in data.sites)
            elif isinstance(data, inv.GroupsChanged):
                self.groups.update((g.name, g.id) for g in data.groups)
            elif isinstance(data, inv.DatasetsChanged):
                self.datasets.update((d.name, d.id) for d in data.datasets)
            elif isinstance(data, inv.BlocksChanged):
                self.blocks.update(((b.dataset, b.name), b.id) for b in data.blocks)

    def site(self, name: str) -> int:
        return self.sites.get(name) or self.model.sites[name].id

    def group(self, name: str) -> int:
        if name == NO_GROUP:
            return 0
        return self.groups.get(name) or self.model.groups[name].id

    def dataset(self, name: str) -> int:
        return self.datasets.get(name) or self.model.datasets[name].id

    def block(self, dataset: str, name: str) -> int:
        return self.blocks.get((dataset, name)) or self.model.datasets[dataset].blocks[name].id


async def persist(
    conn: asyncpg.Connection, events: Sequence[PlannedEvent], model: Inventory
) -> None:
    ids = IdResolver(model, events)
    for event in events:
        await _WRITERS[event.type](conn, event.data, ids)


async def _sites(conn: asyncpg.Connection, data: inv.SitesChanged, ids: IdResolver) -> None:
    await conn.executemany(
        f"""INSERT INTO {S}.sites (id, name, storage_type, status, host, protocols, quotas)
            VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb)
            ON CONFLICT (id) DO UPDATE SET storage_type = EXCLUDED.storage_type,
              status = EXCLUDED.status, host = EXCLUDED.host,
              protocols = EXCLUDED.protocols, quotas = EXCLUDED.quotas""",
        [
            (
                s.id,
                s.name,
                s.storage_type.value,
                s.status.value,
                s.host,
                orjson.dumps([p.model_dump() for p in s.protocols]).decode(),
                orjson.dumps(s.quotas).decode(),
            )
            for s in data.sites
        ],
    )


async def _groups(conn: asyncpg.Connection, data: inv.GroupsChanged, ids: IdResolver) -> None:
    await conn.executemany(
        f"""INSERT INTO {S}.groups (id, name, olevel) VALUES ($1, $2, $3)
            ON CONFLICT (id) DO UPDATE SET olevel = EXCLUDED.olevel""",
        [(g.id, g.name, g.olevel.value) for g in data.groups],
    )


async def _datasets(conn: asyncpg.Connection, data: inv.DatasetsChanged, ids: IdResolver) -> None:
    await conn.executemany(
        f"""INSERT INTO {S}.datasets (id, name, status, data_type, software_version, is_open,
                                      last_update)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,
              data_type = EXCLUDED.data_type, software_version = EXCLUDED.software_version,
              is_open = EXCLUDED.is_open, last_update = EXCLUDED.last_update""",
        [
            (
                d.id,
                d.name,
                d.status.value,
                d.data_type,
                d.software_version,
                d.is_open,
                d.last_update,
            )
            for d in data.datasets
        ],
    )


async def _datasets_deleted(
    conn: asyncpg.Connection, data: inv.DatasetsDeleted, ids: IdResolver
) -> None:
    await conn.execute(
        f"DELETE FROM {S}.datasets WHERE id = ANY($1::int[])", [ids.dataset(n) for n in data.names]
    )


async def _blocks(
    conn: asyncpg.Connection,
    data: inv.BlocksChanged | inv.FilesAdded | inv.FilesRemoved,
    ids: IdResolver,
) -> None:
    await conn.executemany(
        f"""INSERT INTO {S}.blocks (id, dataset_id, name, size, num_files, is_open, last_update)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (id) DO UPDATE SET size = EXCLUDED.size,
              num_files = EXCLUDED.num_files, is_open = EXCLUDED.is_open,
              last_update = EXCLUDED.last_update""",
        [
            (b.id, ids.dataset(b.dataset), b.name, b.size, b.num_files, b.is_open, b.last_update)
            for b in data.blocks
        ],
    )


async def _files_added(conn: asyncpg.Connection, data: inv.FilesAdded, ids: IdResolver) -> None:
    await conn.copy_records_to_table(
        "files",
        schema_name=S,
        columns=["block_id", "lfn", "size", "adler32", "crc32"],
        records=[
            (ids.block(f.dataset, f.block), f.lfn, f.size, f.adler32, f.crc32) for f in data.files
        ],
    )
    await _blocks(conn, data, ids)


async def _files_removed(conn: asyncpg.Connection, data: inv.FilesRemoved, ids: IdResolver) -> None:
    await conn.execute(
        f"DELETE FROM {S}.files WHERE lfn = ANY($1::text[])", [f.lfn for f in data.files]
    )
    await _blocks(conn, data, ids)


async def _replicas(conn: asyncpg.Connection, data: inv.ReplicasChanged, ids: IdResolver) -> None:
    if data.dataset_replicas:
        await conn.executemany(
            f"""INSERT INTO {S}.dataset_replicas (dataset_id, site_id, group_id, growing,
                                                  last_update)
                VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (dataset_id, site_id) DO UPDATE SET group_id = EXCLUDED.group_id,
                  growing = EXCLUDED.growing, last_update = EXCLUDED.last_update""",
            [
                (
                    ids.dataset(r.dataset),
                    ids.site(r.site),
                    ids.group(r.group),
                    r.growing,
                    r.last_update,
                )
                for r in data.dataset_replicas
            ],
        )
    if data.block_replicas:
        # One statement over arrays beats executemany by a wide margin for large batches.
        rows = [
            (
                ids.block(r.dataset, r.block),
                ids.site(r.site),
                ids.group(r.group),
                r.is_custodial,
                r.size,
                r.num_files,
                r.last_update,
            )
            for r in data.block_replicas
        ]
        cols = list(zip(*rows, strict=True))
        await conn.execute(
            f"""INSERT INTO {S}.block_replicas (block_id, site_id, group_id, is_custodial, size,
                                                num_files, last_update)
                SELECT * FROM unnest($1::int[], $2::int[], $3::int[], $4::bool[], $5::bigint[],
                                     $6::int[], $7::timestamptz[])
                ON CONFLICT (block_id, site_id) DO UPDATE SET group_id = EXCLUDED.group_id,
                  is_custodial = EXCLUDED.is_custodial, size = EXCLUDED.size,
                  num_files = EXCLUDED.num_files, last_update = EXCLUDED.last_update""",
            *[list(c) for c in cols],
        )


async def _replicas_deleted(
    conn: asyncpg.Connection, data: inv.ReplicasDeleted, ids: IdResolver
) -> None:
    if data.block_replicas:
        await conn.execute(
            f"""DELETE FROM {S}.block_replicas br
                USING unnest($1::int[], $2::int[]) AS k(block_id, site_id)
                WHERE br.block_id = k.block_id AND br.site_id = k.site_id""",
            [ids.block(k.dataset, k.block) for k in data.block_replicas],
            [ids.site(k.site) for k in data.block_replicas],
        )
    if data.dataset_replicas:
        dataset_ids = [ids.dataset(k.dataset) for k in data.dataset_replicas]
        site_ids = [ids.site(k.site) for k in data.dataset_replicas]
        await conn.execute(
            f"""DELETE FROM {S}.block_replicas br
                USING {S}.blocks b, unnest($1::int[], $2::int[]) AS k(dataset_id, site_id)
                WHERE br.block_id = b.id AND b.dataset_id = k.dataset_id
                  AND br.site_id = k.site_id""",
            dataset_ids,
            site_ids,
        )
        await conn.execute(
            f"""DELETE FROM {S}.dataset_replicas dr
                USING unnest($1::int[], $2::int[]) AS k(dataset_id, site_id)
                WHERE dr.dataset_id = k.dataset_id AND dr.site_id = k.site_id""",
            dataset_ids,
            site_ids,
        )


async def _containers(
    conn: asyncpg.Connection, data: inv.ContainersChanged, ids: IdResolver
) -> None:
    await conn.executemany(
        f"""INSERT INTO {S}.containers (name, datasets) VALUES ($1, $2::jsonb)
            ON CONFLICT (name) DO UPDATE SET datasets = EXCLUDED.datasets""",
        [(c.name, orjson.dumps(c.datasets).decode()) for c in data.containers],
    )


async def _containers_deleted(
    conn: asyncpg.Connection, data: inv.ContainersDeleted, ids: IdResolver
) -> None:
    await conn.execute(f"DELETE FROM {S}.containers WHERE name = ANY($1::text[])", data.names)


async def _partitions(
    conn: asyncpg.Connection, data: inv.PartitionsChanged, ids: IdResolver
) -> None:
    await conn.executemany(
        f"""INSERT INTO {S}.partitions (name, condition, subpartitions, description)
            VALUES ($1, $2, $3::jsonb, $4)
            ON CONFLICT (name) DO UPDATE SET condition = EXCLUDED.condition,
              subpartitions = EXCLUDED.subpartitions, description = EXCLUDED.description""",
        [
            (p.name, p.condition, orjson.dumps(p.subpartitions).decode(), p.description)
            for p in data.partitions
        ],
    )


async def _partitions_deleted(
    conn: asyncpg.Connection, data: inv.PartitionsDeleted, ids: IdResolver
) -> None:
    await conn.execute(f"DELETE FROM {S}.partitions WHERE name = ANY($1::text[])", data.names)


_WRITERS: dict[str, Any] = {
    E.SITE_CREATED: _sites,
    E.SITE_UPDATED: _sites,
    E.GROUP_CREATED: _groups,
    E.GROUP_UPDATED: _groups,
    E.DATASET_CREATED: _datasets,
    E.DATASET_UPDATED: _datasets,
    E.DATASET_DELETED: _datasets_deleted,
    E.BLOCK_CREATED: _blocks,
    E.BLOCK_UPDATED: _blocks,
    E.FILE_ADDED: _files_added,
    E.FILE_REMOVED: _files_removed,
    E.REPLICA_CREATED: _replicas,
    E.REPLICA_UPDATED: _replicas,
    E.REPLICA_DELETED: _replicas_deleted,
    E.CONTAINER_UPDATED: _containers,
    E.CONTAINER_DELETED: _containers_deleted,
    E.PARTITION_UPDATED: _partitions,
    E.PARTITION_DELETED: _partitions_deleted,
}


# ------------------------------------------------------------------- log, state, commands


async def locked_seq(conn: asyncpg.Connection) -> int:
    """The last written sequence number, row-locked until the transaction ends, so only one
    writer at a time can go on to write the next ones."""
    value = await conn.fetchval(f"SELECT seq FROM {S}.writer_state WHERE id = 1 FOR UPDATE")
    return int(value)


async def append_events(
    conn: asyncpg.Connection, rows: Sequence[tuple[int, str, datetime, str]], last_seq: int
) -> None:
    await conn.executemany(
        f"INSERT INTO {S}.events (seq, type, time, envelope) VALUES ($1, $2, $3, $4)", rows
    )
    await conn.execute(f"UPDATE {S}.writer_state SET seq = $1 WHERE id = 1", last_seq)


async def record_command(
    conn: asyncpg.Connection,
    command_id: str,
    command_type: str,
    received: datetime,
    reply_json: str,
) -> None:
    await conn.execute(
        f"INSERT INTO {S}.commands (id, type, received, reply) VALUES ($1, $2, $3, $4)",
        command_id,
        command_type,
        received,
        reply_json,
    )


async def recorded_reply(conn: asyncpg.Connection, command_id: str) -> str | None:
    value = await conn.fetchval(f"SELECT reply FROM {S}.commands WHERE id = $1", command_id)
    return None if value is None else str(value)
