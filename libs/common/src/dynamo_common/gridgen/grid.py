"""The generated grid: compact definitions of every object but files, and files on demand.

Sites, groups, datasets and dataset replicas are small ``__slots__`` objects; blocks and block
replicas, which are millions at the ``cms`` scale, are columns (``array`` and ``bytearray``)
read through light views. Files are never stored: the files of block ``b`` are a pure function
of (seed, ``b``, the block's file count, its dataset), recomputed whenever they are asked for.

References between objects are 0-based indexes into the grid's lists (``dataset``, ``block``,
``site``), except groups, which are referred to by id: 0 is the implicit unowned group
``None``, 1.. are ``Grid.groups`` in order. The ids the inventory would give are index + 1.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterator
from typing import NamedTuple

from dynamo_common.gridgen.scale import Scale
from dynamo_common.messages.types import (
    NO_GROUP,
    DatasetStatus,
    OwnershipLevel,
    SiteStatus,
    StorageType,
)

ProtocolRules = tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
"""``((protocol, ((match, result), ...)), ...)``, the form ``model.objects.Site`` keeps."""


class SiteDef:
    __slots__ = ("host", "name", "protocols", "quotas", "status", "storage_type", "tier")

    def __init__(
        self,
        name: str,
        tier: int,
        storage_type: StorageType,
        status: SiteStatus,
        host: str,
        protocols: ProtocolRules,
        quotas: dict[str, int],
    ) -> None:
        self.name = name
        self.tier = tier
        self.storage_type = storage_type
        self.status = status
        self.host = host
        self.protocols = protocols
        self.quotas = quotas

    def __repr__(self) -> str:
        return f"SiteDef({self.name!r})"


class GroupDef:
    __slots__ = ("name", "olevel")

    def __init__(self, name: str, olevel: OwnershipLevel) -> None:
        self.name = name
        self.olevel = olevel

    def __repr__(self) -> str:
        return f"GroupDef({self.name!r})"


class DatasetDef:
    __slots__ = (
        "data_type",
        "first_block",
        "is_open",
        "last_update",
        "lfn_base",
        "name",
        "num_blocks",
        "num_files",
        "size",
        "software_version",
        "status",
        "tier",
    )

    def __init__(
        self,
        name: str,
        tier: str,
        status: DatasetStatus,
        data_type: str,
        software_version: str,
        is_open: bool,
        last_update: float,
        lfn_base: str,
    ) -> None:
        self.name = name
        self.tier = tier
        self.status = status
        self.data_type = data_type
        self.software_version = software_version
        self.is_open = is_open
        self.last_update = last_update
        self.lfn_base = lfn_base
        # Filled in once the blocks exist: blocks first_block .. first_block + num_blocks - 1.
        self.first_block = 0
        self.num_blocks = 0
        self.size = 0
        self.num_files = 0

    @property
    def blocks(self) -> range:
        return range(self.first_block, self.first_block + self.num_blocks)

    def __repr__(self) -> str:
        return f"DatasetDef({self.name!r})"


class DatasetReplicaDef:
    __slots__ = (
        "dataset",
        "first_block_replica",
        "group",
        "growing",
        "is_custodial",
        "last_update",
        "num_block_replicas",
        "site",
    )

    def __init__(
        self,
        dataset: int,
        site: int,
        group: int,
        is_custodial: bool,
        last_update: float,
        first_block_replica: int,
        num_block_replicas: int,
    ) -> None:
        self.dataset = dataset
        self.site = site
        self.group = group
        self.is_custodial = is_custodial
        self.growing = False
        self.last_update = last_update
        self.first_block_replica = first_block_replica
        self.num_block_replicas = num_block_replicas

    @property
    def block_replicas(self) -> range:
        return range(self.first_block_replica, self.first_block_replica + self.num_block_replicas)

    def __repr__(self) -> str:
        return f"DatasetReplicaDef(dataset={self.dataset}, site={self.site})"


class BlockInfo(NamedTuple):
    idx: int
    dataset: int
    name: str
    size: int
    num_files: int
    is_open: bool
    last_update: float


class BlockTable:
    """Blocks as columns; ``table[i]`` gives a ``BlockInfo``. Blocks of one dataset are
    contiguous, in dataset order."""

    __slots__ = ("dataset", "file_offset", "is_open", "last_update", "name", "num_files", "size")

    def __init__(self) -> None:
        self.dataset: array[int] = array("i")
        self.name: list[str] = []
        self.size: array[int] = array("q")
        self.num_files: array[int] = array("i")
        self.is_open = bytearray()
        self.last_update: array[float] = array("d")
        # file_offset[b] = number of files in blocks before b, so file ids are stable.
        self.file_offset: array[int] = array("q")

    def __len__(self) -> int:
        return len(self.name)

    def __getitem__(self, i: int) -> BlockInfo:
        return BlockInfo(
            i,
            self.dataset[i],
            self.name[i],
            self.size[i],
            self.num_files[i],
            bool(self.is_open[i]),
            self.last_update[i],
        )

    def __iter__(self) -> Iterator[BlockInfo]:
        for i in range(len(self.name)):
            yield self[i]


class BlockReplicaInfo(NamedTuple):
    idx: int
    dataset_replica: int
    block: int
    site: int
    group: int
    is_custodial: bool
    size: int
    num_files: int
    last_update: float


class BlockReplicaTable:
    """Block replicas as columns; those of one dataset replica are contiguous. A replica with
    ``num_files`` below its block's holds the block's first ``num_files`` files (in the order
    ``Grid.block_files`` gives them) and ``size`` is their sum."""

    __slots__ = (
        "block",
        "dataset_replica",
        "group",
        "is_custodial",
        "last_update",
        "num_files",
        "site",
        "size",
    )

    def __init__(self) -> None:
        self.dataset_replica: array[int] = array("i")
        self.block: array[int] = array("i")
        self.site: array[int] = array("H")
        self.group: array[int] = array("B")
        self.is_custodial = bytearray()
        self.size: array[int] = array("q")
        self.num_files: array[int] = array("i")
        self.last_update: array[float] = array("d")

    def __len__(self) -> int:
        return len(self.block)

    def __getitem__(self, i: int) -> BlockReplicaInfo:
        return BlockReplicaInfo(
            i,
            self.dataset_replica[i],
            self.block[i],
            self.site[i],
            self.group[i],
            bool(self.is_custodial[i]),
            self.size[i],
            self.num_files[i],
            self.last_update[i],
        )

    def __iter__(self) -> Iterator[BlockReplicaInfo]:
        for i in range(len(self.block)):
            yield self[i]


class FileInfo(NamedTuple):
    lfn: str
    size: int
    adler32: str


# Bytes drawn per file from a block's stream: 4 for the size (a quantile and 24 bits of jitter,
# catalog.JITTER_BITS), 16 for the name, 4 for adler32. Each kind is one run of n bytes per
# block, so the sizes of all files are the stream's first 4n bytes.
_SIZE_BYTES = 4
_BYTES_PER_FILE = 24
STREAM_PREFIX = "dynamo-gridgen:"


def block_stream(seed: int, block: int, num_bytes: int) -> bytes:
    """The block's own random bytes. An extendable-output hash of (seed, block) gives the
    first bytes (the file sizes) without computing the rest (names, checksums), and it is the
    same on every platform and Python."""
    return hashlib.shake_128(f"{STREAM_PREFIX}{seed}:{block}".encode()).digest(num_bytes)


def first_files_size(
    seed: int, block: int, num_files: int, count: int, sizes: tuple[int, ...]
) -> int:
    """Total size of the first ``count`` of the block's ``num_files`` files."""
    raw = block_stream(seed, block, _SIZE_BYTES * num_files)
    n = num_files
    return (
        sum(map(sizes.__getitem__, raw[:count]))
        + (sum(raw[n : n + count]) << 16)
        + (sum(raw[2 * n : 2 * n + count]) << 8)
        + sum(raw[3 * n : 3 * n + count])
    )


def block_files(
    seed: int, block: int, num_files: int, lfn_base: str, sizes: tuple[int, ...]
) -> list[FileInfo]:
    n = num_files
    raw = block_stream(seed, block, _BYTES_PER_FILE * n + 1)
    names = raw[4 * n : 20 * n].hex().upper()
    sums = raw[20 * n : 24 * n].hex()
    directory = f"{lfn_base}/{raw[24 * n] % 10 * 10000:05d}/"
    out = []
    for j in range(n):
        u = names[32 * j : 32 * j + 32]
        out.append(
            FileInfo(
                f"{directory}{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}.root",
                sizes[raw[j]] + (raw[n + j] << 16) + (raw[2 * n + j] << 8) + raw[3 * n + j],
                sums[8 * j : 8 * j + 8],
            )
        )
    return out


class Grid:
    """A generated grid. Build one with ``gridgen.generate``."""

    __slots__ = (
        "block_replicas",
        "blocks",
        "dataset_replicas",
        "datasets",
        "groups",
        "scale",
        "seed",
        "sites",
        "size_tables",
    )

    def __init__(
        self,
        seed: int,
        scale: Scale,
        sites: list[SiteDef],
        groups: list[GroupDef],
        datasets: list[DatasetDef],
        blocks: BlockTable,
        dataset_replicas: list[DatasetReplicaDef],
        block_replicas: BlockReplicaTable,
        size_tables: dict[str, tuple[int, ...]],
    ) -> None:
        self.seed = seed
        self.scale = scale
        self.sites = sites
        self.groups = groups
        self.datasets = datasets
        self.blocks = blocks
        self.dataset_replicas = dataset_replicas
        self.block_replicas = block_replicas
        self.size_tables = size_tables

    @property
    def num_files(self) -> int:
        return int(self.blocks.file_offset[-1]) if len(self.blocks) else 0

    def group_name(self, group_id: int) -> str:
        return NO_GROUP if group_id == 0 else self.groups[group_id - 1].name

    def block_files(self, block: int) -> list[FileInfo]:
        """The files of block ``block`` (an index), recomputed on every call."""
        dataset = self.datasets[self.blocks.dataset[block]]
        return block_files(
            self.seed,
            block,
            self.blocks.num_files[block],
            dataset.lfn_base,
            self.size_tables[dataset.tier],
        )

    def iter_files(self) -> Iterator[tuple[int, FileInfo]]:
        """Every file as (block index, file), block by block; one block in memory at a time."""
        for block in range(len(self.blocks)):
            for f in self.block_files(block):
                yield block, f

    def counts(self) -> dict[str, int]:
        return {
            "sites": len(self.sites),
            "groups": len(self.groups),
            "datasets": len(self.datasets),
            "blocks": len(self.blocks),
            "dataset_replicas": len(self.dataset_replicas),
            "block_replicas": len(self.block_replicas),
            "files": self.num_files,
        }

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.counts().items())
        return f"Grid(seed={self.seed}, scale={self.scale.name}, {counts})"
