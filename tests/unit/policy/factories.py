"""Small hand-built inventories for policy tests.

Objects are linked the way ``dynamo_common.model.apply`` links them (replicas registered on
the dataset, the site and the block), so the policy code sees what it sees in production.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dynamo_common.messages.types import DatasetStatus, SiteStatus, StorageType
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

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
DAY = 86400.0
GB = 10**9
TB = 10**12


def make_inventory() -> Inventory:
    return Inventory()


def add_site(
    inventory: Inventory,
    name: str,
    storage_type: StorageType = StorageType.DISK,
    status: SiteStatus = SiteStatus.READY,
    quotas: dict[str, int] | None = None,
) -> Site:
    site = Site(len(inventory.sites) + 1, name, storage_type, status, quotas=quotas)
    inventory.sites[name] = site
    return site


def add_group(inventory: Inventory, name: str) -> Group:
    group = inventory.groups.get(name)
    if group is None:
        group = Group(len(inventory.groups) + 1, name)
        inventory.groups[name] = group
    return group


def add_dataset(
    inventory: Inventory,
    name: str = "/Primary/Processed-v1/AOD",
    *,
    block_sizes: Sequence[int] = (GB,),
    status: DatasetStatus = DatasetStatus.VALID,
    last_update: float = NOW,
    block_times: Sequence[float] | None = None,
    software_version: str = "",
) -> Dataset:
    dataset = Dataset(
        len(inventory.datasets) + 1,
        name,
        status,
        software_version=software_version,
        last_update=last_update,
    )
    for index, size in enumerate(block_sizes):
        when = block_times[index] if block_times is not None else last_update
        block = Block(index + 1, dataset, f"b{index}", size, 1, False, when)
        dataset.blocks[block.name] = block
        dataset.size += size
        dataset.num_files += 1
    inventory.datasets[name] = dataset
    return dataset


def add_replica(
    inventory: Inventory,
    dataset: Dataset,
    site: Site,
    *,
    group: str = "AnalysisOps",
    blocks: Iterable[str] | None = None,
    partial: Iterable[str] = (),
    last_update: float | None = None,
    block_groups: dict[str, str] | None = None,
) -> DatasetReplica:
    """A replica of ``blocks`` (default: all) at ``site``; the blocks in ``partial`` hold
    half their bytes and none of their files."""
    owner = add_group(inventory, group)
    when = dataset.last_update if last_update is None else last_update
    replica = DatasetReplica(dataset, site, owner, last_update=when)
    dataset.replicas[site.name] = replica
    site.dataset_replicas[dataset.name] = replica
    partial_set = set(partial)
    names = list(dataset.blocks) if blocks is None else list(blocks)
    for name in names:
        block = dataset.blocks[name]
        block_owner = add_group(inventory, (block_groups or {}).get(name, group))
        incomplete = name in partial_set
        block_replica = BlockReplica(
            block,
            site,
            block_owner,
            size=block.size // 2 if incomplete else block.size,
            num_files=0 if incomplete else block.num_files,
            last_update=block.last_update if last_update is None else last_update,
        )
        replica.block_replicas[name] = block_replica
        block.replicas.append(block_replica)
    return replica


def add_partition(
    inventory: Inventory,
    name: str,
    condition: str | None = None,
    subpartitions: tuple[str, ...] = (),
) -> Partition:
    partition = Partition(name, condition, subpartitions)
    inventory.partitions[name] = partition
    return partition
