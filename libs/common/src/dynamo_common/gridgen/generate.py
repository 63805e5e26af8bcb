"""Building a ``Grid`` from a ``Scale`` and a seed.

Every random choice comes from one ``random.Random(seed)`` consumed in a fixed order, or from a
block's own hash stream (``grid.block_stream``); nothing iterates over a set or depends on
``hash()``, so a seed gives the same grid in every process.
"""

from __future__ import annotations

import hashlib
import random
from array import array
from bisect import bisect
from collections.abc import Iterator
from itertools import accumulate, repeat

from dynamo_common.gridgen.catalog import (
    GROUP_ID,
    GROUPS,
    NONE_ID,
    QUOTA_PARTITIONS,
    TIERS,
    Tier,
    dataset_name,
    next_version,
    site_host,
    site_names,
)
from dynamo_common.gridgen.grid import (
    STREAM_PREFIX,
    BlockReplicaTable,
    BlockTable,
    DatasetDef,
    DatasetReplicaDef,
    Grid,
    GroupDef,
    SiteDef,
    first_files_size,
)
from dynamo_common.gridgen.scale import Scale, get_scale
from dynamo_common.messages.types import DatasetStatus, SiteStatus, StorageType

EPOCH_START = 1_451_606_400  # 2016-01-01T00:00:00Z
EPOCH_SPAN = 7 * 365 * 86_400
DAY = 86_400

PARTIAL_BLOCK_REPLICAS = 0.05
DEFAULT_FILE_ROOT = "/srv/dynamo/storage"

_STATUS_CDF = (
    (0.86, DatasetStatus.VALID),
    (0.92, DatasetStatus.PRODUCTION),
    (0.97, DatasetStatus.DEPRECATED),
    (1.01, DatasetStatus.INVALID),
)


def generate(
    scale: Scale | str = "tiny", seed: int = 0, *, file_root: str = DEFAULT_FILE_ROOT
) -> Grid:
    """A deterministic CMS-like grid of ``scale`` (a ``Scale`` or a preset name).

    ``file_root`` is where the ``file`` protocol of every site puts its files
    (``<file_root>/<site>/store/...``), for demos that keep sites in local directories.
    """
    sc = get_scale(scale)
    if not file_root.startswith("/") or file_root.endswith("/"):
        raise ValueError("file_root must be an absolute path without a trailing '/'")
    rng = random.Random(seed)
    sites, weights = _sites(sc.sites, rng, file_root)
    groups = [GroupDef(name, olevel) for name, olevel in GROUPS]
    datasets, tiers = _datasets(sc, rng)
    blocks = _blocks(sc, rng, seed, datasets, tiers)
    dataset_replicas, block_replicas = _replicas(
        sc, rng, seed, sites, weights, datasets, tiers, blocks
    )
    _quotas(rng, sites, block_replicas)
    return Grid(
        seed,
        sc,
        sites,
        groups,
        datasets,
        blocks,
        dataset_replicas,
        block_replicas,
        {t.name: t.sizes for t in TIERS},
    )


def _rounded(ts: float) -> float:
    # Whole seconds survive a round trip through datetime and JSON unchanged.
    return float(int(ts))


def allocate(
    total: int, weights: list[float], minimum: int, caps: list[int] | None = None
) -> list[int]:
    """Split ``total`` into ``minimum`` each plus the rest in proportion to ``weights``, never
    above ``caps``. Cumulative rounding makes the parts add up to ``total`` exactly (unless the
    caps forbid it) without sorting."""
    n = len(weights)
    counts = [minimum] * n
    remaining = total - minimum * n
    if remaining < 0:
        raise ValueError(f"cannot give {minimum} each to {n} out of {total}")
    active = list(range(n)) if caps is None else [i for i in range(n) if caps[i] > minimum]
    while remaining > 0 and active:
        weight = sum(weights[i] for i in active)
        if weight <= 0:
            weight = float(len(active))
            share = [1.0] * n
        else:
            share = weights
        acc = 0.0
        prev = 0
        given = 0
        for i in active:
            acc += share[i] * remaining / weight
            target = min(round(acc), remaining)
            add = target - prev
            prev = target
            if caps is not None:
                add = min(add, caps[i] - counts[i])
            counts[i] += add
            given += add
        if given == 0:
            # Rounding left a remainder no entry reached: hand it out one by one.
            for i in active:
                if remaining - given == 0:
                    break
                if caps is None or counts[i] < caps[i]:
                    counts[i] += 1
                    given += 1
        remaining -= given
        if caps is not None:
            active = [i for i in active if counts[i] < caps[i]]
    return counts


# ---------------------------------------------------------------------------------------------
# Sites
# ---------------------------------------------------------------------------------------------


def _sites(count: int, rng: random.Random, file_root: str) -> tuple[list[SiteDef], list[float]]:
    names = site_names(count)
    statuses = [SiteStatus.READY] * count
    small = [i for i, s in enumerate(names) if s.tier >= 2]
    if len(small) >= 2:
        t3 = [i for i in small if names[i].tier == 3]
        statuses[rng.choice(t3 or small)] = SiteStatus.MORGUE
        ready = [i for i in small if statuses[i] is SiteStatus.READY]
        for i in rng.sample(ready, max(1, round(len(small) * 0.06))):
            statuses[i] = SiteStatus.WAITROOM
    sites: list[SiteDef] = []
    weights: list[float] = []
    for s, status in zip(names, statuses, strict=True):
        host = site_host(s.name)
        protocols = (
            ("file", (("/store/(.*)", f"file://{file_root}/{s.name}/store/$1"),)),
            ("root", (("/store/(.*)", f"root://{host}:1094//store/$1"),)),
        )
        sites.append(SiteDef(s.name, s.tier, s.storage_type, status, host, protocols, {}))
        # How much data a site attracts: T1 disks are large, T3s small, draining sites less.
        base = (8.0, 5.0, 1.5, 0.3)[s.tier] * rng.lognormvariate(0.0, 0.4)
        if status is SiteStatus.MORGUE:
            base *= 0.3
        elif status is SiteStatus.WAITROOM:
            base *= 0.5
        weights.append(base)
    return sites, weights


def _quotas(rng: random.Random, sites: list[SiteDef], brs: BlockReplicaTable) -> None:
    """Quotas per partition sized from what the site holds, so that it is 50-95% full."""
    used = [[0] * (len(GROUPS) + 1) for _ in sites]
    for s, g, size in zip(brs.site, brs.group, brs.size, strict=True):
        used[s][g] += size
    for i, site in enumerate(sites):
        fill = rng.uniform(0.5, 0.95)
        total = sum(used[i])
        # A partition the site holds nothing of still gets a little room, as on a real site.
        floor = int(total / fill * 0.05) + 1 if total else 100 * 10**12
        quotas: dict[str, int] = {}
        for partition in QUOTA_PARTITIONS:
            held = used[i][GROUP_ID[partition]]
            always = partition == "DataOps" or (
                partition == "AnalysisOps" and site.storage_type is StorageType.DISK
            )
            if held:
                quotas[partition] = int(held / fill) + 1
            elif always:
                quotas[partition] = floor
        quotas["Physics"] = quotas.get("AnalysisOps", 0) + quotas["DataOps"]
        site.quotas = quotas


# ---------------------------------------------------------------------------------------------
# Datasets and blocks
# ---------------------------------------------------------------------------------------------


def _datasets(sc: Scale, rng: random.Random) -> tuple[list[DatasetDef], list[Tier]]:
    cdf = list(accumulate(t.share for t in TIERS))
    total_share = cdf[-1]
    seen: set[str] = set()
    datasets: list[DatasetDef] = []
    tiers: list[Tier] = []
    for _ in range(sc.datasets):
        tier = TIERS[bisect(cdf, rng.random() * total_share)]
        dn = dataset_name(tier, rng)
        attempts = 1
        while dn.name in seen:
            # A few fresh draws keep the versions realistic; then reprocess (v+1) until free,
            # which always ends, however full the name space of a tier gets.
            if attempts < 3 or tier.kind == "user":
                dn = dataset_name(tier, rng)
                attempts += 1
            else:
                dn = next_version(dn)
        seen.add(dn.name)
        u = rng.random()
        status = next(s for p, s in _STATUS_CDF if u < p)
        is_open = status is DatasetStatus.PRODUCTION or (
            status is DatasetStatus.VALID and rng.random() < 0.04
        )
        created = EPOCH_START + rng.random() * EPOCH_SPAN
        datasets.append(
            DatasetDef(
                dn.name,
                tier.name,
                status,
                dn.data_type,
                dn.software_version,
                is_open,
                _rounded(created),
                dn.lfn_base,
            )
        )
        tiers.append(tier)
    return datasets, tiers


def _blocks(
    sc: Scale, rng: random.Random, seed: int, datasets: list[DatasetDef], tiers: list[Tier]
) -> BlockTable:
    lognorm = rng.lognormvariate
    per_dataset = allocate(sc.blocks, [lognorm(0.0, 1.1) * t.blocks for t in tiers], 1)
    block_tier = [t for t, n in zip(tiers, per_dataset, strict=True) for _ in range(n)]
    per_block = allocate(sc.files, [lognorm(0.0, 0.8) * t.files for t in block_tier], 1)

    table = BlockTable()
    table.dataset = array("i", [d for d, n in enumerate(per_dataset) for _ in range(n)])
    table.num_files = array("i", per_block)
    table.file_offset = array("q", accumulate(per_block, initial=0))
    table.size = array("q", _full_sizes(seed, per_block, block_tier))
    getrandbits = rng.getrandbits
    table.name = [_uuid(f"{getrandbits(128):032x}") for _ in per_block]

    is_open = table.is_open
    last_update = table.last_update
    random_ = rng.random
    sizes = table.size
    block = 0
    for dataset, nb in zip(datasets, per_dataset, strict=True):
        dataset.first_block = block
        dataset.num_blocks = nb
        dataset.num_files = table.file_offset[block + nb] - table.file_offset[block]
        dataset.size = sum(sizes[block : block + nb])
        open_from = nb - (1 + (random_() < 0.3)) if dataset.is_open else nb
        ts = dataset.last_update
        # Blocks follow each other by hours to days; a big dataset's within some months, so
        # that no time lies in the future.
        step = DAY * min(1.0, 40.0 / nb)
        for j in range(nb):
            is_open.append(j >= open_from)
            last_update.append(ts)
            # Whole seconds (as _rounded) survive datetime and JSON round trips unchanged.
            ts = float(int(ts + (0.05 + 2.95 * random_()) * step))
        block += nb
        dataset.last_update = last_update[block - 1]
    return table


def _uuid(h: str) -> str:
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _full_sizes(seed: int, per_block: list[int], block_tier: list[Tier]) -> Iterator[int]:
    # first_files_size(seed, b, n, n, sizes), inlined: this runs once per block of the grid.
    shake = hashlib.shake_128
    for b, (n, tier) in enumerate(zip(per_block, block_tier, strict=True)):
        raw = shake(f"{STREAM_PREFIX}{seed}:{b}".encode()).digest(4 * n)
        yield (
            sum(map(tier.sizes.__getitem__, raw[:n]))
            + (sum(raw[n : 2 * n]) << 16)
            + (sum(raw[2 * n : 3 * n]) << 8)
            + sum(raw[3 * n :])
        )


# ---------------------------------------------------------------------------------------------
# Replicas
# ---------------------------------------------------------------------------------------------


class _Picker:
    """Weighted choice of distinct sites out of a fixed candidate list."""

    __slots__ = ("cdf", "sites", "total")

    def __init__(self, sites: list[int], weights: list[float]) -> None:
        self.sites = sites
        self.cdf = list(accumulate(weights[s] for s in sites))
        self.total = self.cdf[-1] if self.cdf else 0.0

    def pick(self, rng: random.Random, k: int) -> list[int]:
        chosen: list[int] = []
        last = len(self.cdf) - 1
        for _ in range(8 * k):
            if len(chosen) == k:
                return chosen
            site = self.sites[min(bisect(self.cdf, rng.random() * self.total), last)]
            if site not in chosen:
                chosen.append(site)
        # Weights too uneven for rejection to finish: complete in candidate order.
        for site in self.sites:
            if len(chosen) == k:
                break
            if site not in chosen:
                chosen.append(site)
        return chosen


def _group(rng: random.Random, tier: Tier, relval: bool) -> int:
    u = rng.random()
    if tier.name == "RAW":
        return GROUP_ID["DataOps"]
    if tier.kind == "user":
        return GROUP_ID["local"] if u < 0.7 else NONE_ID
    if relval:
        return GROUP_ID["IB_RelVal"] if u < 0.9 else NONE_ID
    if tier.name == "GEN-SIM":
        return GROUP_ID["DataOps"] if u < 0.8 else GROUP_ID["AnalysisOps"] if u < 0.9 else NONE_ID
    for p, name in ((0.72, "AnalysisOps"), (0.90, "DataOps"), (0.93, "FacOps"), (0.95, "local")):
        if u < p:
            return GROUP_ID[name]
    return NONE_ID


def _replicas(
    sc: Scale,
    rng: random.Random,
    seed: int,
    sites: list[SiteDef],
    weights: list[float],
    datasets: list[DatasetDef],
    tiers: list[Tier],
    blocks: BlockTable,
) -> tuple[list[DatasetReplicaDef], BlockReplicaTable]:
    disk = [i for i, s in enumerate(sites) if s.storage_type is StorageType.DISK]

    def of_tiers(*wanted: int) -> list[int]:
        return [i for i in disk if sites[i].tier in wanted] or disk

    disk_pickers = {
        "RAW": _Picker(of_tiers(0, 1), weights),
        "GEN-SIM": _Picker(of_tiers(1, 2), weights),
        "USER": _Picker(of_tiers(2, 3), weights),
    }
    default_picker = _Picker(of_tiers(1, 2, 3), weights)
    tape = [i for i, s in enumerate(sites) if s.storage_type is StorageType.TAPE]
    tape_pickers = {
        "RAW": _Picker(tape, weights),
        "AOD": _Picker([i for i in tape if sites[i].tier == 1] or tape, weights),
    }

    def pickers(tier: Tier) -> tuple[_Picker, _Picker | None]:
        tape_picker = tape_pickers.get(tier.name) if tier.tape and tape else None
        return disk_pickers.get(tier.name, default_picker), tape_picker

    # How many replicas each dataset gets: 1 to 3 around the target mean, more of the popular
    # analysis tiers, fewer of RAW (on tape) and user data.
    n_datasets = len(datasets)
    minimum = 1 if sc.dataset_replicas >= n_datasets else 0
    most = max(3, -(-sc.dataset_replicas // n_datasets) + 1)
    caps = []
    for tier in tiers:
        disk_picker, tape_picker = pickers(tier)
        caps.append(min(most, len(disk_picker.sites) + (tape_picker is not None)))
    extra = [t.replicas * rng.uniform(0.5, 1.5) for t in tiers]
    per_dataset = allocate(sc.dataset_replicas, extra, minimum, caps)

    full_total = sum(n * ds.num_blocks for n, ds in zip(per_dataset, datasets, strict=True))
    remaining_target = sc.block_replicas
    remaining_full = full_total
    remaining_drs = sum(per_dataset)

    drs: list[DatasetReplicaDef] = []
    brs = BlockReplicaTable()
    random_ = rng.random
    uniform = rng.uniform
    randrange = rng.randrange
    b_files, b_size, b_ts = blocks.num_files, blocks.size, blocks.last_update
    size_append = brs.size.append
    files_append = brs.num_files.append
    ts_append = brs.last_update.append
    for d, (dataset, tier, k) in enumerate(zip(datasets, tiers, per_dataset, strict=True)):
        if k == 0:
            continue
        disk_picker, tape_picker = pickers(tier)
        placements: list[tuple[int, bool]] = []
        if tape_picker is not None:
            placements.append((tape_picker.pick(rng, 1)[0], True))
        placements.extend((s, False) for s in disk_picker.pick(rng, k - len(placements)))
        relval = dataset.lfn_base.startswith("/store/relval/")
        nb = dataset.num_blocks
        sizes = tier.sizes
        for site, custodial in placements:
            group = GROUP_ID["DataOps"] if custodial else _group(rng, tier, relval)
            dr_ts = _rounded(dataset.last_update + uniform(0.0, 60.0) * DAY)
            # Coverage feedback: each replica aims at the share of its blocks the target still
            # needs, so the total lands on the target whatever the block-count distribution.
            remaining_drs -= 1
            ratio = remaining_target / remaining_full if remaining_full else 1.0
            if custodial or ratio >= 1.0 or nb == 1 or random_() < 2.0 * ratio - 1.0:
                count = nb
            else:
                fraction = random_() * min(1.0, 2.0 * ratio)
                count = min(nb - 1, max(1, round(fraction * nb)))
            count = max(1, min(count, remaining_target - remaining_drs))
            remaining_full -= nb
            remaining_target -= count
            first = dataset.first_block
            chosen = (
                range(first, first + nb)
                if count == nb
                else sorted(rng.sample(range(first, first + nb), count))
            )
            dr_index = len(drs)
            drs.append(DatasetReplicaDef(d, site, group, custodial, dr_ts, len(brs), count))
            brs.dataset_replica.extend(repeat(dr_index, count))
            brs.block.extend(chosen)
            brs.site.extend(repeat(site, count))
            brs.group.extend(repeat(group, count))
            brs.is_custodial.extend(repeat(custodial, count))
            for b in chosen:
                nf = b_files[b]
                if random_() < PARTIAL_BLOCK_REPLICAS:
                    present = randrange(nf)
                    size_append(first_files_size(seed, b, nf, present, sizes))
                else:
                    present = nf
                    size_append(b_size[b])
                files_append(present)
                ts = b_ts[b]
                ts_append(float(int((ts if ts > dr_ts else dr_ts) + random_() * 2 * DAY)))
    return drs, brs
