"""Seeding the demo grid: files written to the sites' directories, the inventory built with
its own commands on the bus (it is the single writer: nothing here touches its tables).

Every command has an id derived from the seed step, so seeding that was interrupted (Ctrl-C,
a crash) can simply run again: the inventory answers a command id it has already applied with
the recorded reply and changes nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from dynamo_common.bus.base import Bus
from dynamo_common.gridgen import DatasetDef
from dynamo_common.messages import inventory as inv
from dynamo_common.messages.envelope import Envelope
from dynamo_common.messages.registry import InventoryCommand as C
from dynamo_common.messages.types import DatasetStatus, StorageType
from dynamo_common.policy import parse_partitions
from dynamo_common.standalone.demo.grid import GROUPS, DemoGrid, file_content

__all__ = ["SeedError", "seed_grid", "send_command", "site_directory", "write_site_files"]

SOURCE = "/dynamo/standalone/demo"
_IDS = uuid.UUID("5d1f8f0e-3c56-4a39-9d0c-2f6ad5f1a2b7")
_BATCH = 5_000


class SeedError(RuntimeError):
    """The inventory refused a seeding command (its reason is in the message)."""


async def send_command(
    bus: Bus, step: str, command_type: str, body: BaseModel, reply_timeout: float = 60.0
) -> None:
    """One inventory command with an id derived from ``step`` (sending it again is a no-op);
    a refusal raises SeedError with the inventory's reason."""
    envelope = Envelope(
        id=str(uuid.uuid5(_IDS, step)),
        type=command_type,
        source=SOURCE,
        data=body.model_dump(mode="json", exclude_none=True),
    )
    reply = inv.CommandReply.model_validate((await bus.request(envelope, reply_timeout)).data)
    if reply.status != "accepted":
        raise SeedError(f"the inventory refused {command_type} ({step}): {reply.reason}")


def site_directory(sites_root: Path, site: str) -> Path:
    return sites_root / site


def _site_specs(grid: DemoGrid, sites_root: Path) -> list[inv.SiteSpec]:
    return [
        inv.SiteSpec(
            name=site.name,
            storage_type=site.storage_type,
            protocols=[
                inv.Protocol(
                    name="file",
                    rules=[
                        inv.PfnRule(
                            match="/store/(.*)",
                            result=f"file://{site_directory(sites_root, site.name)}/store/$1",
                        )
                    ],
                )
            ],
            quotas=dict(site.quotas),
        )
        for site in grid.sites
    ]


def _chunks(items: Sequence[Any], size: int = _BATCH) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def write_site_files(grid: DemoGrid, sites_root: Path) -> int:
    """Write every replica's files into its site's directory; returns the number written.
    Files already there with the right size are left alone (a resumed seeding)."""
    written = 0
    for dataset, _block, demo_file in grid.files():
        data = file_content(demo_file.lfn, demo_file.size)
        for site in dataset.sites:
            path = site_directory(sites_root, site) / demo_file.lfn.lstrip("/")
            if path.is_file() and path.stat().st_size == demo_file.size:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            written += 1
    return written


async def seed_grid(
    bus: Bus,
    grid: DemoGrid,
    sites_root: Path,
    partitions_text: str,
    *,
    say: Callable[[str], None] = lambda _: None,
    reply_timeout: float = 60.0,
) -> None:
    """Build the demo grid in the inventory, its files first on the sites' storage (so no
    replica is ever registered before its files are there)."""

    async def send(step: str, command_type: str, body: BaseModel) -> None:
        await send_command(bus, step, command_type, body, reply_timeout)

    partitions = parse_partitions(partitions_text, file="partitions.txt")
    datasets = grid.datasets
    blocks = [(d, b) for d in datasets for b in d.blocks]
    files = list(grid.files())

    say(f"seeding {len(grid.sites)} sites, {len(GROUPS)} groups, {len(partitions)} partitions")
    await send("sites", C.UPSERT_SITES, inv.UpsertSites(sites=_site_specs(grid, sites_root)))
    await send(
        "groups",
        C.UPSERT_GROUPS,
        inv.UpsertGroups(groups=[inv.GroupSpec(name=g) for g in GROUPS]),
    )
    await send(
        "partitions",
        C.UPSERT_PARTITIONS,
        inv.UpsertPartitions(
            partitions=[
                inv.PartitionState(
                    name=p.name,
                    condition=p.condition.text if p.condition is not None else None,
                    subpartitions=list(p.members),
                )
                for p in partitions.values()
            ]
        ),
    )

    say(f"seeding {len(datasets)} datasets, {len(blocks)} blocks, {len(files)} files")
    for i, chunk in enumerate(_chunks(datasets)):
        await send(
            f"datasets/{i}",
            C.UPSERT_DATASETS,
            inv.UpsertDatasets(datasets=[_dataset_spec(d, is_open=True) for d in chunk]),
        )
    for i, chunk in enumerate(_chunks(blocks)):
        await send(
            f"blocks/{i}",
            C.UPSERT_BLOCKS,
            inv.UpsertBlocks(blocks=[inv.BlockSpec(dataset=d.name, name=b.name) for d, b in chunk]),
        )
    for i, chunk in enumerate(_chunks(files)):
        await send(
            f"files/{i}",
            C.ADD_FILES,
            inv.AddFiles(
                files=[
                    inv.FileSpec(
                        dataset=d.name, block=b.name, lfn=f.lfn, size=f.size, adler32=f.adler32
                    )
                    for d, b, f in chunk
                ]
            ),
        )
    for i, chunk in enumerate(_chunks(blocks)):
        await send(
            f"close-blocks/{i}",
            C.UPSERT_BLOCKS,
            inv.UpsertBlocks(
                blocks=[inv.BlockSpec(dataset=d.name, name=b.name, is_open=False) for d, b in chunk]
            ),
        )
    closed = [d for d in datasets if d.status is not DatasetStatus.PRODUCTION]
    for i, chunk in enumerate(_chunks(closed)):
        await send(
            f"close-datasets/{i}",
            C.UPSERT_DATASETS,
            inv.UpsertDatasets(datasets=[_dataset_spec(d, is_open=False) for d in chunk]),
        )

    written = await asyncio.to_thread(write_site_files, grid, sites_root)
    say(f"wrote {written} files into {sites_root}")

    tape = {s.name for s in grid.sites if s.storage_type is StorageType.TAPE}
    replicas = [
        inv.DatasetReplicaSpec(
            dataset=d.name,
            site=site,
            group=d.group,
            # Data in production grows at the site producing it (its first).
            growing=d.status is DatasetStatus.PRODUCTION and site == d.disk_sites[0],
            complete=True,
            is_custodial=site in tape,
        )
        for d in datasets
        for site in d.sites
    ]
    say(f"seeding {len(replicas)} dataset replicas")
    for i, chunk in enumerate(_chunks(replicas)):
        await send(
            f"replicas/{i}",
            C.CREATE_REPLICAS,
            inv.CreateReplicas(dataset_replicas=list(chunk)),
        )


def _dataset_spec(dataset: DatasetDef, *, is_open: bool) -> inv.DatasetSpec:
    """A generated dataset as the inventory's command takes it: open while it is seeded,
    closed once its blocks are (unless it is still in production)."""
    return inv.DatasetSpec(
        name=dataset.name,
        status=dataset.status,
        data_type=dataset.data_type,
        software_version=dataset.software_version,
        is_open=is_open,
    )
