"""A hand-built world for the kernel's tests (no tests here): two disk sites and a tape
site, one group, the Physics partition, datasets of 10 GB blocks."""

from __future__ import annotations

import numpy as np

from dynamo_common.messages.types import StorageType
from dynamo_common.model.objects import (
    Block,
    BlockReplica,
    Dataset,
    DatasetReplica,
    Group,
    Inventory,
    Partition,
    Site,
)
from dynamo_common.simulation.kernel import Kernel
from dynamo_common.simulation.trace import Trace
from dynamo_common.simulation.world import SiteParams, membership

GB = 10**9
START = 1_700_000_000.0


def world(datasets: dict[str, tuple[int, list[str]]], quota: int = 100 * GB) -> Inventory:
    """``datasets``: name -> (blocks of 10 GB, sites holding it complete)."""
    model = Inventory()
    for i, (name, kind) in enumerate(
        [("T2_A", StorageType.DISK), ("T2_B", StorageType.DISK), ("T1_X_MSS", StorageType.TAPE)]
    ):
        quotas = {"Physics": quota} if kind is StorageType.DISK else {}
        model.sites[name] = Site(i + 1, name, kind, quotas=quotas)
    group = Group(1, "AnalysisOps")
    model.groups["AnalysisOps"] = group
    model.partitions["Physics"] = Partition(
        "Physics", "blockreplica.owner == AnalysisOps and site.storage_type == DISK"
    )
    block_id = 0
    for d, (name, (blocks, sites)) in enumerate(datasets.items()):
        dataset = Dataset(d + 1, name, is_open=False, last_update=START - 86400 * (d + 1))
        model.datasets[name] = dataset
        for b in range(blocks):
            block_id += 1
            block = Block(block_id, dataset, f"b{b}", 10 * GB, 10, False, START - 86400)
            dataset.blocks[block.name] = block
            dataset.size += block.size
            dataset.num_files += 10
        for site_name in sites:
            site = model.sites[site_name]
            replica = DatasetReplica(dataset, site, group, False, dataset.last_update)
            dataset.replicas[site_name] = replica
            site.dataset_replicas[name] = replica
            for block in dataset.blocks.values():
                br = BlockReplica(block, site, group, False, block.size, 10, dataset.last_update)
                replica.block_replicas[block.name] = br
                block.replicas.append(br)
    return model


def params(slots: int = 10, gbps: float = 8.0, quota: int = 100 * GB) -> list[SiteParams]:
    rate = gbps * 1e9 / 8
    return [
        SiteParams("T1_X_MSS", False, 0, 0, rate),
        SiteParams("T2_A", True, quota, slots, rate),
        SiteParams("T2_B", True, quota, slots, rate),
    ]


def trace(datasets: list[str], rows: list[tuple[int, int, int, int]], hours: int = 48) -> Trace:
    """``rows``: (hour, dataset index, site index into [T2_A, T2_B], count)."""
    columns = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
    arrays = [np.asarray(c, dtype=np.int64) for c in columns]
    return Trace(datasets, ["T2_A", "T2_B"], *arrays, hours=hours)


def kernel(
    model: Inventory,
    rows: list[tuple[int, int, int, int]] | None = None,
    *,
    slots: int = 10,
    request_probability: float = 0.0,
    requests_per_group: bool = False,
    check: str = "full",
) -> Kernel:
    names = sorted(model.datasets)
    return Kernel(
        model,
        params(slots=slots, quota=model.sites["T2_A"].quotas["Physics"]),
        membership(model, "Physics"),
        trace(names, rows or []),
        START,
        tape_latency=2 * 3600.0,
        request_probability=request_probability,
        request_group="AnalysisOps",
        production_group="AnalysisOps",
        seed=1,
        check=check,
        sample_hours=6,
        requests_per_group=requests_per_group,
    )
