"""The synthetic grid generator: determinism, valid names, target counts, consistent outputs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from pydantic import BaseModel

from dynamo_common.gridgen import (
    CI,
    CMS,
    TENTH,
    TINY,
    DatasetDef,
    Grid,
    Scale,
    commands,
    generate,
    get_scale,
    rows,
    to_inventory,
)
from dynamo_common.gridgen.catalog import GROUPS, MAX_FILE, MIN_FILE
from dynamo_common.gridgen.generate import allocate
from dynamo_common.messages import inventory as inv
from dynamo_common.messages.registry import InventoryCommand, command_model
from dynamo_common.messages.types import (
    BLOCK_NAME_RE,
    DATASET_NAME_RE,
    SITE_NAME_RE,
    SiteStatus,
    StorageType,
)
from dynamo_common.model import Inventory, apply_event
from dynamo_inventory.service.planner import (
    CommandRejected,
    IdCounters,
    PlanContext,
    lfns_referenced,
    plan,
)

DIGEST_CODE = """
import hashlib
from dynamo_common.gridgen import commands, generate

def digest(scale, seed, include_files=True, batch=1000):
    h = hashlib.sha256()
    for key, command in commands(generate(scale, seed), batch, include_files=include_files):
        h.update(key.encode())
        h.update(command.model_dump_json().encode())
    return h.hexdigest()
"""
# Run as is in this process and in fresh interpreters with other hash seeds.
_namespace: dict[str, object] = {}
exec(DIGEST_CODE, _namespace)
digest = cast(Callable[..., str], _namespace["digest"])


@pytest.fixture(scope="module")
def tiny() -> Grid:
    return generate("tiny", seed=7)


@pytest.fixture(scope="module")
def ci() -> Grid:
    return generate("ci", seed=0)


# ---------------------------------------------------------------------------------------------
# Scales
# ---------------------------------------------------------------------------------------------


def test_presets_follow_the_design_table() -> None:
    assert (CI.sites, CI.datasets, CI.blocks, CI.files) == (100, 3_000, 20_000, 600_000)
    assert (CI.dataset_replicas, CI.block_replicas) == (6_000, 30_000)
    assert TENTH.blocks == 200_000 and TENTH.files == 6_000_000 and TENTH.sites == 100
    assert CMS.datasets == 300_000 and CMS.block_replicas == 3_000_000 and CMS.sites == 100
    assert get_scale("tiny") is TINY and get_scale(CI) is CI
    with pytest.raises(ValueError, match="unknown scale"):
        get_scale("huge")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"blocks": 4},  # fewer blocks than datasets
        {"files": 9},  # fewer files than blocks
        {"block_replicas": 4},  # fewer block replicas than dataset replicas
        {"dataset_replicas": 10_000},  # more than datasets x sites
    ],
)
def test_impossible_scales_are_refused(kwargs: dict[str, Any]) -> None:
    base = Scale(sites=3, datasets=5, blocks=10, dataset_replicas=5, block_replicas=10, files=20)
    with pytest.raises(ValueError):
        replace(base, **kwargs)


def test_allocate_is_exact_and_respects_bounds() -> None:
    parts = allocate(1000, [0.1, 5.0, 1.0, 0.0, 2.5], 1)
    assert sum(parts) == 1000 and min(parts) >= 1
    capped = allocate(10, [1.0, 100.0, 1.0], 1, caps=[3, 4, 3])
    assert sum(capped) == 10 and capped[1] == 4


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    first = digest("tiny", 3)
    assert digest("tiny", 3) == first
    assert digest("tiny", 4) != first


def test_stream_does_not_depend_on_hash_randomisation() -> None:
    code = DIGEST_CODE + "\nprint(digest('tiny', 3))\n"
    results = set()
    for hash_seed in ("0", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        results.add(out.stdout.strip())
    assert results == {digest("tiny", 3)}


def test_files_are_reproducible_per_block(tiny: Grid) -> None:
    again = generate("tiny", seed=7)
    assert tiny.block_files(17) == again.block_files(17) == tiny.block_files(17)
    assert tiny.block_files(17) != generate("tiny", seed=8).block_files(17)


# ---------------------------------------------------------------------------------------------
# Content
# ---------------------------------------------------------------------------------------------


def test_ci_counts_meet_the_targets(ci: Grid) -> None:
    counts = ci.counts()
    for kind in ("sites", "datasets", "blocks", "dataset_replicas", "block_replicas", "files"):
        target = getattr(CI, kind)
        assert abs(counts[kind] - target) <= target * 0.1, (kind, counts[kind], target)
    assert sum(d.num_blocks for d in ci.datasets) == len(ci.blocks)
    assert sum(ci.blocks.num_files) == ci.num_files


def test_ci_looks_like_cms(ci: Grid) -> None:
    tiers = Counter(d.tier for d in ci.datasets)
    assert set(tiers) == {
        "RAW",
        "AOD",
        "AODSIM",
        "MINIAOD",
        "MINIAODSIM",
        "NANOAOD",
        "NANOAODSIM",
        "GEN-SIM",
        "USER",
    }
    assert tiers["MINIAODSIM"] > tiers["RAW"]
    statuses = Counter(d.status.value for d in ci.datasets)
    assert statuses["valid"] > 0.8 * len(ci.datasets)
    assert {"production", "deprecated", "invalid"} <= set(statuses)
    assert 0 < sum(d.is_open for d in ci.datasets) < 0.2 * len(ci.datasets)
    assert all(not ci.blocks.is_open[b] for d in ci.datasets if not d.is_open for b in d.blocks)
    assert all(any(ci.blocks.is_open[b] for b in d.blocks) for d in ci.datasets if d.is_open)

    names = [d.name for d in ci.datasets]
    assert len(set(names)) == len(names)
    assert all(re.match(DATASET_NAME_RE, n) for n in names)
    assert all(re.match(r"^CMSSW_\d+_\d+_\d+$", d.software_version) for d in ci.datasets)
    assert len(set(ci.blocks.name)) == len(ci.blocks)
    assert all(re.match(r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$", n) for n in ci.blocks.name)

    sites = [s.name for s in ci.sites]
    assert sites[:3] == ["T0_CH_CERN_Disk", "T0_CH_CERN_MSS", "T1_US_FNAL_Disk"]
    assert {"T1_US_FNAL_MSS", "T2_US_MIT", "T2_DE_DESY", "T2_CH_CERN"} <= set(sites)
    assert len(set(sites)) == 100 and all(re.match(SITE_NAME_RE, n) for n in sites)
    statuses_ = Counter(s.status for s in ci.sites)
    assert statuses_[SiteStatus.MORGUE] == 1 and statuses_[SiteStatus.WAITROOM] >= 1
    for s in ci.sites:
        assert [p for p, _ in s.protocols] == ["file", "root"]
        assert s.protocols[1][1] == (("/store/(.*)", f"root://{s.host}:1094//store/$1"),)
        assert s.storage_type is (StorageType.TAPE if s.name.endswith("_MSS") else StorageType.DISK)


def test_replicas_are_placed_like_cms(ci: Grid) -> None:
    per_dataset = Counter(dr.dataset for dr in ci.dataset_replicas)
    assert set(per_dataset.values()) <= {1, 2, 3}
    tape = {i for i, s in enumerate(ci.sites) if s.storage_type is StorageType.TAPE}
    data_ops = [g.name for g in ci.groups].index("DataOps") + 1
    for dr in ci.dataset_replicas:
        dataset = ci.datasets[dr.dataset]
        assert (dr.site in tape) == dr.is_custodial
        if dr.is_custodial:
            assert dataset.tier in ("RAW", "AOD") and dr.group == data_ops
            assert ci.sites[dr.site].name.endswith("_MSS")
            assert dr.num_block_replicas == dataset.num_blocks
        assert 1 <= dr.num_block_replicas <= dataset.num_blocks
        members = [ci.block_replicas.block[i] for i in dr.block_replicas]
        assert all(b in dataset.blocks for b in members) and len(set(members)) == len(members)
    custodial = {ci.datasets[dr.dataset].tier for dr in ci.dataset_replicas if dr.is_custodial}
    assert custodial == {"RAW", "AOD"}
    pairs = [(dr.dataset, dr.site) for dr in ci.dataset_replicas]
    assert len(set(pairs)) == len(pairs)

    brs = ci.block_replicas
    partial = sum(brs.num_files[i] < ci.blocks.num_files[brs.block[i]] for i in range(len(brs)))
    assert 0.02 < partial / len(brs) < 0.08
    groups = Counter(ci.group_name(dr.group) for dr in ci.dataset_replicas)
    assert set(groups) <= {name for name, _ in GROUPS} | {"None"}
    assert groups.most_common(1)[0][0] == "AnalysisOps"


def test_sites_are_half_to_mostly_full(ci: Grid) -> None:
    used: Counter[tuple[int, int]] = Counter()
    brs = ci.block_replicas
    for i in range(len(brs)):
        used[brs.site[i], brs.group[i]] += brs.size[i]
    for s_index, site in enumerate(ci.sites):
        assert site.quotas["Physics"] == site.quotas.get("AnalysisOps", 0) + site.quotas["DataOps"]
        for g_index, (group, _) in enumerate(GROUPS, 1):
            held = used[s_index, g_index]
            if held and group in site.quotas:
                assert 0.5 <= held / site.quotas[group] <= 0.95, (site.name, group)


def test_block_sizes_are_the_sums_of_their_files(tiny: Grid) -> None:
    lfns = set()
    for b in range(len(tiny.blocks)):
        files = tiny.block_files(b)
        assert len(files) == tiny.blocks.num_files[b]
        assert sum(f.size for f in files) == tiny.blocks.size[b]
        base = tiny.datasets[tiny.blocks.dataset[b]].lfn_base
        for f in files:
            assert MIN_FILE <= f.size <= MAX_FILE
            assert re.match(r"^[0-9a-f]{8}$", f.adler32)
            assert re.match(
                re.escape(base) + r"/\d{5}/[0-9A-F]{8}(-[0-9A-F]{4}){3}-[0-9A-F]{12}\.root$", f.lfn
            )
            lfns.add(f.lfn)
    assert len(lfns) == tiny.num_files == TINY.files
    assert all(d.size == sum(tiny.blocks.size[b] for b in d.blocks) for d in tiny.datasets)


def test_lfn_layout_follows_cms_conventions(ci: Grid) -> None:
    by_tier: dict[str, DatasetDef] = {}
    for d in ci.datasets:
        by_tier.setdefault(d.tier, d)
    raw = by_tier["RAW"]
    primary, processed, _ = raw.name[1:].split("/")
    era = processed.split("-")[0]
    assert raw.lfn_base == f"/store/data/{era}/{primary}/RAW/{processed.split('-')[-1]}"
    aod = by_tier["AOD"]
    primary, processed, _ = aod.name[1:].split("/")
    era, rest = processed.split("-", 1)
    assert aod.lfn_base == f"/store/data/{era}/{primary}/AOD/{rest}"
    assert by_tier["MINIAODSIM"].lfn_base.startswith("/store/")
    assert by_tier["USER"].lfn_base.startswith("/store/user/")


def test_partial_block_replicas_hold_the_first_files(tiny: Grid) -> None:
    brs = tiny.block_replicas
    seen = 0
    for i in range(len(brs)):
        b = brs.block[i]
        files = tiny.block_files(b)
        assert brs.size[i] == sum(f.size for f in files[: brs.num_files[i]])
        seen += brs.num_files[i] < len(files)
    assert seen > 0


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


class Replay:
    """Runs generated commands through the inventory's own planner (its domain rules, which
    reject any reference to an object not created yet) and applies the resulting events with
    the shared apply code, as the inventory service does after each commit."""

    def __init__(self) -> None:
        self.model = Inventory()
        self.ids = IdCounters()
        self.files: dict[str, inv.FileState] = {}
        self.now = datetime(2024, 1, 1, tzinfo=UTC)

    def __call__(self, key: str, cmd: BaseModel) -> None:
        known = {lfn: self.files[lfn] for lfn in lfns_referenced(key, cmd) if lfn in self.files}
        ctx = PlanContext(model=self.model, now=self.now, ids=self.ids, files=known)
        for event in plan(key, cmd, ctx):
            apply_event(self.model, event.type, event.data)
            if isinstance(event.data, inv.FilesAdded):
                self.files.update((f.lfn, f) for f in event.data.files)


def shape(model: Inventory) -> dict[str, object]:
    """Everything commands can determine (not times), in a comparable form."""
    return {
        "sites": [
            (s.id, s.name, s.storage_type, s.status, s.host, s.protocols, s.quotas)
            for s in model.sites.values()
        ],
        "groups": sorted((g.id, g.name, g.olevel) for g in model.groups.values()),
        "datasets": [
            (
                d.id,
                d.name,
                d.status,
                d.data_type,
                d.software_version,
                d.is_open,
                d.size,
                d.num_files,
                [
                    (
                        b.id,
                        b.name,
                        b.size,
                        b.num_files,
                        b.is_open,
                        sorted(
                            (r.site.name, r.group.name, r.is_custodial, r.size, r.num_files)
                            for r in b.replicas
                        ),
                    )
                    for b in d.blocks.values()
                ],
                sorted(
                    (r.site.name, r.group.name, r.growing, sorted(r.block_replicas))
                    for r in d.replicas.values()
                ),
            )
            for d in model.datasets.values()
        ],
    }


def _load(grid: Grid, cmd: BaseModel) -> int:
    """Items in a command, a DatasetReplicaSpec counting as the block replicas it creates."""
    if isinstance(cmd, inv.CreateReplicas):
        blocks = {d.name: d.num_blocks for d in grid.datasets}
        return sum(blocks[r.dataset] for r in cmd.dataset_replicas) + len(cmd.block_replicas)
    return sum(len(v) for v in cmd.__dict__.values() if isinstance(v, list))


PHASES = ["groups", "sites", "datasets", "blocks", "files", "close-blocks", "close-datasets"]


def _phase(key: str, cmd: BaseModel) -> int:
    if isinstance(cmd, inv.UpsertDatasets):
        return 2 if cmd.datasets[0].is_open else 6
    if isinstance(cmd, inv.UpsertBlocks):
        return 3 if cmd.blocks[0].is_open else 5
    return {
        InventoryCommand.UPSERT_GROUPS: 0,
        InventoryCommand.UPSERT_SITES: 1,
        InventoryCommand.ADD_FILES: 4,
        InventoryCommand.CREATE_REPLICAS: 7,
    }[InventoryCommand(key)]


@pytest.mark.parametrize("include_files", [True, False])
def test_commands_replay_into_the_same_inventory(tiny: Grid, include_files: bool) -> None:
    replay = Replay()
    batch = 37
    phases = []
    for key, cmd in commands(tiny, batch, include_files=include_files):
        assert isinstance(cmd, command_model(key))
        assert 1 <= _load(tiny, cmd) <= batch
        phases.append(_phase(key, cmd))
        replay(key, cmd)
    assert phases == sorted(phases)
    assert (4 in phases) is include_files
    assert len(replay.files) == (tiny.num_files if include_files else 0)
    assert shape(replay.model) == shape(to_inventory(tiny))


def test_ci_block_level_commands_replay(ci: Grid) -> None:
    replay = Replay()
    sent: Counter[str] = Counter()
    for key, cmd in commands(ci, 5000, include_files=False, validate=False):
        replay(key, cmd)
        if isinstance(cmd, inv.CreateReplicas):
            assert all(not r.growing and r.complete for r in cmd.dataset_replicas)
            sent["dataset_replicas"] += len(cmd.dataset_replicas)
            sent["block_replicas"] += len(cmd.block_replicas)
    # Whole dataset replicas travel as one item, the others as their block replicas.
    assert 0.2 * CI.dataset_replicas < sent["dataset_replicas"] < 0.8 * CI.dataset_replicas
    assert sent["block_replicas"] > 0.2 * CI.block_replicas
    assert shape(replay.model) == shape(to_inventory(ci))


def test_replay_refuses_an_unknown_reference() -> None:
    # The replays mean something: a block replica of a block never created is refused.
    bad = inv.CreateReplicas(
        block_replicas=[inv.BlockReplicaSpec(dataset="/A/B-v1/AOD", block="x", site="T2_X")]
    )
    with pytest.raises(CommandRejected):
        Replay()(InventoryCommand.CREATE_REPLICAS, bad)


def test_trusted_commands_equal_validated_ones(tiny: Grid) -> None:
    validated = list(commands(tiny, 50))
    trusted = list(commands(tiny, 50, validate=False))
    assert len(validated) == len(trusted)
    for (k1, c1), (k2, c2) in zip(validated, trusted, strict=True):
        assert k1 == k2 and type(c1) is type(c2)
        assert c1 == c2
        assert c1.model_dump_json() == c2.model_dump_json()
        assert c1.model_fields_set == c2.model_fields_set


def test_batches_split_large_dataset_replicas(tiny: Grid) -> None:
    replay = Replay()
    for key, cmd in commands(tiny, 2, include_files=False):
        assert 1 <= _load(tiny, cmd) <= 2
        replay(key, cmd)
    assert shape(replay.model) == shape(to_inventory(tiny))
    with pytest.raises(ValueError):
        next(commands(tiny, 0))
    with pytest.raises(ValueError):
        next(commands(tiny, inv.MAX_BATCH + 1))


# ---------------------------------------------------------------------------------------------
# Rows and the in-memory model
# ---------------------------------------------------------------------------------------------


def test_rows_match_the_grid(tiny: Grid) -> None:
    r = rows(tiny)
    sites = list(r.sites)
    assert [s[:2] for s in sites] == [(i, s.name) for i, s in enumerate(tiny.sites, 1)]
    assert len(list(r.site_rules)) == 2 * len(sites)
    assert {q[1] for q in r.site_quotas} >= {"AnalysisOps", "DataOps", "Physics"}
    assert [g[1] for g in r.groups] == [name for name, _ in GROUPS]
    datasets = list(r.datasets)
    assert sum(d[8] for d in datasets) == tiny.num_files
    blocks = list(r.blocks)
    assert [b[0] for b in blocks] == list(range(1, len(tiny.blocks) + 1))
    assert all(1 <= b[1] <= len(datasets) for b in blocks)
    assert len(list(r.dataset_replicas)) == len(tiny.dataset_replicas)
    block_replicas = list(r.block_replicas)
    assert all(1 <= br[0] <= len(blocks) and 1 <= br[1] <= len(sites) for br in block_replicas)
    files = list(r.files)
    assert [f[0] for f in files] == list(range(1, tiny.num_files + 1))
    sizes: Counter[int] = Counter()
    for _, block_id, _, size, _ in files:
        sizes[block_id] += size
    assert all(sizes[b[0]] == b[3] for b in blocks)


def test_to_inventory_holds_the_grid(tiny: Grid) -> None:
    model = to_inventory(tiny)
    counts = tiny.counts()
    got = model.counts()
    for kind in ("sites", "datasets", "blocks", "dataset_replicas", "block_replicas"):
        assert got[kind] == counts[kind]
    assert got["groups"] == len(GROUPS) + 1  # and the implicit None
    site = model.sites["T2_US_MIT"]
    assert site.dataset_replicas and all(r.site is site for r in site.dataset_replicas.values())
    for dataset in model.datasets.values():
        assert dataset.size == sum(b.size for b in dataset.blocks.values())
        for replica in dataset.replicas.values():
            assert all(br.block.dataset is dataset for br in replica.block_replicas.values())


def test_a_custom_minimal_scale() -> None:
    scale = Scale(sites=2, datasets=3, blocks=3, dataset_replicas=2, block_replicas=2, files=3)
    grid = generate(scale, seed=1, file_root="/tmp/grid")
    assert grid.counts()["files"] == 3 and len(grid.dataset_replicas) == 2
    assert grid.sites[0].protocols[0][1][0][1] == "file:///tmp/grid/T0_CH_CERN_Disk/store/$1"
    replay = Replay()
    for key, cmd in commands(grid):
        replay(key, cmd)
    assert shape(replay.model) == shape(to_inventory(grid))
    with pytest.raises(ValueError, match="file_root"):
        generate(scale, file_root="relative/path")


def test_names_pass_the_contract_validators(tiny: Grid) -> None:
    # Building the contracts validates every name, LFN and checksum (pydantic raises if not);
    # the patterns are checked directly too, in case a contract stops validating one.
    kinds = Counter(key for key, _ in commands(tiny))
    assert kinds[InventoryCommand.ADD_FILES.value] > 0
    assert all(re.match(BLOCK_NAME_RE, n) for n in tiny.blocks.name)
    assert all(re.match(DATASET_NAME_RE, d.name) for d in tiny.datasets)
