"""The demo grid: a dozen CMS-like sites and a few hundred datasets of real, small files.

Everything is a pure function of a seed, so two runs (and the tests) agree on names, sizes and
placements. Sizes are the real sizes of the files written to the sites' directories (a few KB
each): the transfer and consistency services compare them with what they find on storage, so
the quotas are scaled down to these bytes instead of the files being declared larger.
"""

from __future__ import annotations

import hashlib
import random
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from dynamo_common.gridgen.catalog import TIER_BY_NAME, dataset_name, next_version
from dynamo_common.messages.types import DatasetStatus, StorageType

__all__ = [
    "FULL_SITE",
    "GROUPS",
    "TAPE_SITE",
    "DemoBlock",
    "DemoDataset",
    "DemoFile",
    "DemoGrid",
    "DemoSite",
    "build_grid",
    "file_content",
]

TAPE_SITE = "T0_CH_CERN_MSS"
FULL_SITE = "T2_DE_DESY"
"""The disk site seeded above detox's 90% trigger, so the newcomer watches it being freed."""

GROUPS = ("AnalysisOps", "DataOps")

# (name, storage type, relative capacity): T1 disks hold more than T2s, T3s little.
_SITES: tuple[tuple[str, StorageType, float], ...] = (
    (TAPE_SITE, StorageType.TAPE, 0.0),
    ("T1_US_FNAL_Disk", StorageType.DISK, 3.0),
    ("T1_DE_KIT_Disk", StorageType.DISK, 2.0),
    ("T1_IT_CNAF_Disk", StorageType.DISK, 2.0),
    ("T2_US_MIT", StorageType.DISK, 1.2),
    (FULL_SITE, StorageType.DISK, 1.2),
    ("T2_CH_CERN", StorageType.DISK, 1.5),
    ("T2_FR_GRIF_IRFU", StorageType.DISK, 1.0),
    ("T2_US_Nebraska", StorageType.DISK, 1.0),
    ("T2_IT_Pisa", StorageType.DISK, 0.8),
    ("T2_UK_London_IC", StorageType.DISK, 0.8),
    ("T3_US_FNALLPC", StorageType.DISK, 0.4),
)

# (tier, share of the datasets, owning group, custodial copy on tape)
_TIERS: tuple[tuple[str, int, str, bool], ...] = (
    ("RAW", 2, "DataOps", True),
    ("AOD", 4, "DataOps", True),
    ("MINIAOD", 5, "AnalysisOps", False),
    ("NANOAOD", 3, "AnalysisOps", False),
    ("AODSIM", 4, "AnalysisOps", True),
    ("MINIAODSIM", 6, "AnalysisOps", False),
    ("NANOAODSIM", 3, "AnalysisOps", False),
)

MIN_FILE = 2_000
MAX_FILE = 12_000

# Occupancy of the Physics partition each disk site is seeded with (quota = bytes / this).
_OCCUPANCY = (0.45, 0.8)
_FULL_OCCUPANCY = 0.94


@dataclass(frozen=True, slots=True)
class DemoSite:
    name: str
    storage_type: StorageType
    quotas: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DemoFile:
    lfn: str
    size: int

    @property
    def adler32(self) -> str:
        return f"{zlib.adler32(file_content(self.lfn, self.size)) & 0xFFFFFFFF:08x}"


@dataclass(frozen=True, slots=True)
class DemoBlock:
    name: str
    files: tuple[DemoFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True, slots=True)
class DemoDataset:
    name: str
    data_type: str
    software_version: str
    status: DatasetStatus
    group: str
    blocks: tuple[DemoBlock, ...]
    disk_sites: tuple[str, ...]
    on_tape: bool

    @property
    def size(self) -> int:
        return sum(b.size for b in self.blocks)

    @property
    def sites(self) -> tuple[str, ...]:
        return (*self.disk_sites, TAPE_SITE) if self.on_tape else self.disk_sites


@dataclass(frozen=True, slots=True)
class DemoGrid:
    sites: tuple[DemoSite, ...]
    datasets: tuple[DemoDataset, ...]

    def files(self) -> Iterator[tuple[DemoDataset, DemoBlock, DemoFile]]:
        for dataset in self.datasets:
            for block in dataset.blocks:
                for f in block.files:
                    yield dataset, block, f

    def used(self, site: str) -> int:
        return sum(d.size for d in self.datasets if site in d.sites)

    def site(self, name: str) -> DemoSite:
        return next(s for s in self.sites if s.name == name)


def file_content(lfn: str, size: int) -> bytes:
    """The bytes of a demo file: a function of its LFN, so any copy can be checked."""
    seed = hashlib.sha256(lfn.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _dataset_names(rng: random.Random, count: int) -> Iterator[tuple[str, str, str, str, str]]:
    """(name, tier, data type, software version, LFN base) for ``count`` distinct datasets."""
    weights = [share for _, share, _, _ in _TIERS]
    taken: set[str] = set()
    for _ in range(count):
        tier_name = rng.choices([t for t, _, _, _ in _TIERS], weights)[0]
        entry = dataset_name(TIER_BY_NAME[tier_name], rng, relval_share=0.0)
        while entry.name in taken:
            entry = next_version(entry)
        taken.add(entry.name)
        yield entry.name, tier_name, entry.data_type, entry.software_version, entry.lfn_base


def build_grid(seed: int = 2018, datasets: int = 300) -> DemoGrid:
    """The demo grid. Every dataset has one to three complete disk replicas (DataOps' tiers
    also a custodial one on tape); quotas are set so each disk site starts between 45% and
    80% full, and ``FULL_SITE`` at 94%."""
    rng = random.Random(seed)
    disk = [(name, weight) for name, kind, weight in _SITES if kind is StorageType.DISK]
    tiers = {name: (group, tape) for name, _, group, tape in _TIERS}
    made: list[DemoDataset] = []
    for name, tier, data_type, software, lfn_base in _dataset_names(rng, datasets):
        group, tape = tiers[tier]
        blocks = []
        for index in range(rng.choice((1, 1, 2, 2, 3))):
            block = _uuid(rng)
            files = tuple(
                DemoFile(
                    f"{lfn_base}/{index:05d}/{_uuid(rng)}.root", rng.randint(MIN_FILE, MAX_FILE)
                )
                for _ in range(rng.randint(2, 4))
            )
            blocks.append(DemoBlock(block, files))
        copies = 1 if tier == "RAW" else rng.choice((1, 2, 2, 3))
        holders: list[str] = []
        while len(holders) < copies:
            site = rng.choices([n for n, _ in disk], [w for _, w in disk])[0]
            if site not in holders:
                holders.append(site)
        status = DatasetStatus.PRODUCTION if rng.random() < 0.04 else DatasetStatus.VALID
        made.append(
            DemoDataset(
                name=name,
                data_type=data_type,
                software_version=software,
                status=status,
                group=group,
                blocks=tuple(blocks),
                disk_sites=tuple(holders),
                on_tape=tape,
            )
        )
    grid = DemoGrid(sites=(), datasets=tuple(made))
    sites = []
    for name, kind, _ in _SITES:
        used = grid.used(name)
        if kind is StorageType.TAPE:
            # Tape is not what this demo fills: room for ten times what it holds.
            sites.append(DemoSite(name, kind, {"Tape": _round_up(used * 10)}))
            continue
        occupancy = _FULL_OCCUPANCY if name == FULL_SITE else rng.uniform(*_OCCUPANCY)
        sites.append(DemoSite(name, kind, {"Physics": _round_up(used / occupancy)}))
    return DemoGrid(sites=tuple(sites), datasets=grid.datasets)


def _round_up(value: float, step: int = 1_000) -> int:
    return max(step, -(-int(value) // step) * step)
