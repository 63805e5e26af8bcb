"""Production: a dataset still being produced gains a block every so often at the site that
produces it, so a subscription to it keeps the dealer busy (and the pages moving)."""

from __future__ import annotations

import asyncio
import posixpath
import random
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from dynamo_common.bus.base import Bus, BusError
from dynamo_common.messages import inventory as inv
from dynamo_common.messages.registry import InventoryCommand as C
from dynamo_common.messages.types import DatasetStatus
from dynamo_common.standalone.demo.grid import (
    FULL_SITE,
    MAX_FILE,
    MIN_FILE,
    DemoBlock,
    DemoDataset,
    DemoFile,
    DemoGrid,
    file_content,
)
from dynamo_common.standalone.demo.seed import SeedError, send_command, site_directory

__all__ = ["SUBSCRIBER", "new_block", "produce_forever", "production_dataset"]

SUBSCRIBER = "T2_US_Nebraska"
"""The site the demo subscribes to the dataset in production."""


def production_dataset(grid: DemoGrid) -> DemoDataset | None:
    """An analysis dataset in production, made at one site that is neither the subscriber nor
    the site detox frees."""
    for dataset in grid.datasets:
        if (
            dataset.status is DatasetStatus.PRODUCTION
            and dataset.group == "AnalysisOps"
            and SUBSCRIBER not in dataset.disk_sites
            and FULL_SITE not in dataset.disk_sites
        ):
            return dataset
    return None


def new_block(dataset: DemoDataset, index: int) -> DemoBlock:
    """The ``index``-th block of ``dataset`` (a function of both: a block produced again
    after a restart has the same name and files)."""
    rng = random.Random(f"{dataset.name}#{index}")
    # The dataset's LFN directory: its first file's, less the block number and file name.
    base = posixpath.dirname(posixpath.dirname(dataset.blocks[0].files[0].lfn))
    files = tuple(
        DemoFile(
            f"{base}/{index:05d}/{uuid.UUID(int=rng.getrandbits(128), version=4)}.root",
            rng.randint(MIN_FILE, MAX_FILE),
        )
        for _ in range(3)
    )
    return DemoBlock(str(uuid.UUID(int=rng.getrandbits(128), version=4)), files)


async def produce_forever(
    bus: Bus,
    dataset: DemoDataset,
    sites_root: Path,
    inventory_url: str,
    say: Callable[[str], None],
    *,
    interval: float = 45.0,
) -> None:
    """A new closed block of ``dataset`` at its first site every ``interval`` seconds: files
    written first, then registered, the site's replica of the block completed, and the block
    closed last."""
    origin = dataset.disk_sites[0]
    failing = False
    async with httpx.AsyncClient(timeout=30.0) as http:
        while True:
            await asyncio.sleep(interval)
            try:
                block = await _produce(bus, http, dataset, origin, sites_root, inventory_url)
            except (httpx.HTTPError, SeedError, BusError, OSError) as exc:
                # Tried again next round with the same names and command ids.
                if not failing:
                    say(f"[yellow]production[/] paused: {type(exc).__name__}: {exc}")
                failing = True
                continue
            failing = False
            say(
                f"[blue]production[/] new block {dataset.name}#{block.name[:8]} at {origin} "
                f"({len(block.files)} files)"
            )


async def _produce(
    bus: Bus,
    http: httpx.AsyncClient,
    dataset: DemoDataset,
    origin: str,
    sites_root: Path,
    inventory_url: str,
) -> DemoBlock:
    response = await http.get(f"{inventory_url}/api/v1/dataset", params={"name": dataset.name})
    response.raise_for_status()
    # Closed blocks only: a block whose round broke off half-way is still open, and the next
    # round makes it again under the same name (its commands already applied are no-ops).
    closed = sum(1 for b in response.json()["blocks"] if not b["is_open"])
    block = new_block(dataset, closed)
    await asyncio.to_thread(_write, block, site_directory(sites_root, origin))
    step = f"production/{dataset.name}/{block.name}"
    await send_command(
        bus,
        f"{step}/block",
        C.UPSERT_BLOCKS,
        inv.UpsertBlocks(blocks=[inv.BlockSpec(dataset=dataset.name, name=block.name)]),
    )
    await send_command(
        bus,
        f"{step}/files",
        C.ADD_FILES,
        inv.AddFiles(
            files=[
                inv.FileSpec(
                    dataset=dataset.name,
                    block=block.name,
                    lfn=f.lfn,
                    size=f.size,
                    adler32=f.adler32,
                )
                for f in block.files
            ]
        ),
    )
    await send_command(
        bus,
        f"{step}/complete",
        C.UPDATE_REPLICAS,
        inv.UpdateReplicas(
            block_replicas=[
                inv.BlockReplicaUpdate(
                    dataset=dataset.name, block=block.name, site=origin, complete=True
                )
            ]
        ),
    )
    await send_command(
        bus,
        f"{step}/close",
        C.UPSERT_BLOCKS,
        inv.UpsertBlocks(
            blocks=[inv.BlockSpec(dataset=dataset.name, name=block.name, is_open=False)]
        ),
    )
    return block


def _write(block: DemoBlock, site_dir: Path) -> None:
    for f in block.files:
        path = site_dir / f.lfn.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(file_content(f.lfn, f.size))
