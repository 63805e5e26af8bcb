"""The in-memory inventory (DESIGN.md section 1).

Global decisions need the whole picture at once, so every agent holds the inventory in memory.
The objects are compact: ``__slots__``, interned names, references instead of repeated strings,
timestamps as float seconds, and block replicas of one block in a short list (a block has a
handful of replicas, a dict per block would cost more than the block itself).
Files are not held in memory; the inventory loads them per block on demand.
"""

from __future__ import annotations

import sys

from dynamo_common.messages.types import (
    NO_GROUP,
    DatasetStatus,
    OwnershipLevel,
    SiteStatus,
    StorageType,
)

intern = sys.intern


class Site:
    __slots__ = (
        "dataset_replicas",
        "host",
        "id",
        "name",
        "protocols",
        "quotas",
        "status",
        "storage_type",
    )

    def __init__(
        self,
        id: int,
        name: str,
        storage_type: StorageType = StorageType.DISK,
        status: SiteStatus = SiteStatus.READY,
        host: str = "",
        protocols: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (),
        quotas: dict[str, int] | None = None,
    ) -> None:
        self.id = id
        self.name = intern(name)
        self.storage_type = storage_type
        self.status = status
        self.host = host
        # (protocol name, ((match regex, result template), ...)), in rule order.
        self.protocols = protocols
        self.quotas: dict[str, int] = quotas or {}
        self.dataset_replicas: dict[str, DatasetReplica] = {}

    def __repr__(self) -> str:
        return f"Site({self.name!r})"


class Group:
    __slots__ = ("id", "name", "olevel")

    def __init__(self, id: int, name: str, olevel: OwnershipLevel = OwnershipLevel.DATASET) -> None:
        self.id = id
        self.name = intern(name)
        self.olevel = olevel

    def __repr__(self) -> str:
        return f"Group({self.name!r})"


class Dataset:
    __slots__ = (
        "blocks",
        "data_type",
        "id",
        "is_open",
        "last_update",
        "name",
        "num_files",
        "replicas",
        "size",
        "software_version",
        "status",
    )

    def __init__(
        self,
        id: int,
        name: str,
        status: DatasetStatus = DatasetStatus.VALID,
        data_type: str = "",
        software_version: str = "",
        is_open: bool = True,
        last_update: float = 0.0,
    ) -> None:
        self.id = id
        self.name = name
        self.status = status
        self.data_type = intern(data_type)
        self.software_version = intern(software_version)
        self.is_open = is_open
        self.last_update = last_update
        self.blocks: dict[str, Block] = {}
        self.replicas: dict[str, DatasetReplica] = {}
        # Kept as running sums of the blocks (updated by apply) because detox and dealer read
        # them for every replica in every cycle.
        self.size = 0
        self.num_files = 0

    @property
    def tier(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    def __repr__(self) -> str:
        return f"Dataset({self.name!r})"


class Block:
    __slots__ = ("dataset", "id", "is_open", "last_update", "name", "num_files", "replicas", "size")

    def __init__(
        self,
        id: int,
        dataset: Dataset,
        name: str,
        size: int = 0,
        num_files: int = 0,
        is_open: bool = True,
        last_update: float = 0.0,
    ) -> None:
        self.id = id
        self.dataset = dataset
        self.name = name
        self.size = size
        self.num_files = num_files
        self.is_open = is_open
        self.last_update = last_update
        self.replicas: list[BlockReplica] = []

    @property
    def full_name(self) -> str:
        return f"{self.dataset.name}#{self.name}"

    def replica_at(self, site: Site) -> BlockReplica | None:
        for replica in self.replicas:
            if replica.site is site:
                return replica
        return None

    def __repr__(self) -> str:
        return f"Block({self.full_name!r})"


class DatasetReplica:
    __slots__ = ("block_replicas", "dataset", "group", "growing", "last_update", "site")

    def __init__(
        self,
        dataset: Dataset,
        site: Site,
        group: Group,
        growing: bool = False,
        last_update: float = 0.0,
    ) -> None:
        self.dataset = dataset
        self.site = site
        self.group = group
        self.growing = growing
        self.last_update = last_update
        self.block_replicas: dict[str, BlockReplica] = {}

    @property
    def size(self) -> int:
        return sum(br.size for br in self.block_replicas.values())

    @property
    def is_complete(self) -> bool:
        blocks = self.dataset.blocks
        if len(self.block_replicas) != len(blocks):
            return False
        return all(br.is_complete for br in self.block_replicas.values())

    def __repr__(self) -> str:
        return f"DatasetReplica({self.dataset.name!r}@{self.site.name})"


class BlockReplica:
    __slots__ = ("block", "group", "is_custodial", "last_update", "num_files", "site", "size")

    def __init__(
        self,
        block: Block,
        site: Site,
        group: Group,
        is_custodial: bool = False,
        size: int = 0,
        num_files: int = 0,
        last_update: float = 0.0,
    ) -> None:
        self.block = block
        self.site = site
        self.group = group
        self.is_custodial = is_custodial
        self.size = size
        self.num_files = num_files
        self.last_update = last_update

    @property
    def is_complete(self) -> bool:
        return self.size >= self.block.size and self.num_files >= self.block.num_files

    def __repr__(self) -> str:
        return f"BlockReplica({self.block.full_name!r}@{self.site.name})"


class Partition:
    __slots__ = ("condition", "description", "name", "subpartitions")

    def __init__(
        self,
        name: str,
        condition: str | None = None,
        subpartitions: tuple[str, ...] = (),
        description: str = "",
    ) -> None:
        self.name = intern(name)
        self.condition = condition
        self.subpartitions = subpartitions
        self.description = description


class Container:
    __slots__ = ("datasets", "name")

    def __init__(self, name: str, datasets: tuple[str, ...] = ()) -> None:
        self.name = name
        self.datasets = datasets


class Inventory:
    """The whole inventory at sequence number ``seq`` (the last event applied)."""

    __slots__ = ("containers", "datasets", "groups", "partitions", "seq", "sites")

    def __init__(self) -> None:
        self.seq = 0
        self.sites: dict[str, Site] = {}
        self.groups: dict[str, Group] = {NO_GROUP: Group(0, NO_GROUP)}
        self.datasets: dict[str, Dataset] = {}
        self.partitions: dict[str, Partition] = {}
        self.containers: dict[str, Container] = {}

    def group(self, name: str) -> Group:
        group = self.groups.get(name)
        if group is None:
            raise KeyError(f"unknown group {name!r}")
        return group

    def counts(self) -> dict[str, int]:
        blocks = dataset_replicas = block_replicas = 0
        for dataset in self.datasets.values():
            blocks += len(dataset.blocks)
            dataset_replicas += len(dataset.replicas)
            for replica in dataset.replicas.values():
                block_replicas += len(replica.block_replicas)
        return {
            "sites": len(self.sites),
            "groups": len(self.groups),
            "datasets": len(self.datasets),
            "blocks": blocks,
            "dataset_replicas": dataset_replicas,
            "block_replicas": block_replicas,
            "partitions": len(self.partitions),
            "containers": len(self.containers),
        }
