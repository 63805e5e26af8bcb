"""The demo grid: realistic, reproducible, and sized so each agent has something to do."""

from __future__ import annotations

import re
import zlib
from datetime import UTC, datetime

import pytest

from dynamo_common.messages.types import BLOCK_NAME_RE, DATASET_NAME_RE, StorageType
from dynamo_common.policy import parse_partitions
from dynamo_common.policy.detox import parse_detox_policy
from dynamo_common.policy.enforcer import parse_enforcer_rules
from dynamo_common.standalone.demo.activity import (
    AccessGenerator,
    hand_removals,
    subscription_target,
)
from dynamo_common.standalone.demo.grid import FULL_SITE, TAPE_SITE, build_grid, file_content
from dynamo_common.standalone.demo.production import SUBSCRIBER, new_block, production_dataset
from dynamo_common.standalone.demo.schedules import POLICIES, POLICY_FILES, demo_settings

GRID = build_grid()


def occupancy(site: str) -> float:
    return GRID.used(site) / GRID.site(site).quotas["Physics"]


def test_the_same_seed_gives_the_same_grid() -> None:
    again = build_grid()
    assert [d.name for d in again.datasets] == [d.name for d in GRID.datasets]
    assert [s.quotas for s in again.sites] == [s.quotas for s in GRID.sites]
    assert build_grid(seed=7).datasets[0].name != GRID.datasets[0].name


def test_a_dozen_sites_of_every_tier_with_one_tape_site() -> None:
    names = [s.name for s in GRID.sites]
    assert len(names) == 12
    assert {n[:2] for n in names} == {"T0", "T1", "T2", "T3"}
    tape = [s.name for s in GRID.sites if s.storage_type is StorageType.TAPE]
    assert tape == [TAPE_SITE]


def test_a_few_hundred_datasets_named_like_cms_data_with_small_real_files() -> None:
    assert len(GRID.datasets) == 300
    assert len({d.name for d in GRID.datasets}) == 300
    for dataset, block, demo_file in GRID.files():
        assert re.match(DATASET_NAME_RE, dataset.name)
        assert re.match(BLOCK_NAME_RE, block.name)
        assert demo_file.lfn.startswith("/store/")
        assert 2_000 <= demo_file.size <= 12_000
    _, _, first = next(GRID.files())
    data = file_content(first.lfn, first.size)
    assert len(data) == first.size
    assert first.adler32 == f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def test_one_disk_site_starts_above_detox_trigger_and_the_others_below_it() -> None:
    disk = [s.name for s in GRID.sites if s.storage_type is StorageType.DISK]
    assert occupancy(FULL_SITE) > 0.9
    assert all(0.4 < occupancy(site) < 0.85 for site in disk if site != FULL_SITE)


def test_the_full_site_holds_replicas_detox_may_delete() -> None:
    spare = [
        d
        for d in GRID.datasets
        if FULL_SITE in d.disk_sites and (d.on_tape or len(d.disk_sites) > 1)
    ]
    assert sum(d.size for d in spare) > 0.1 * GRID.site(FULL_SITE).quotas["Physics"]


def test_the_file_removed_by_hand_has_another_copy_away_from_the_full_site() -> None:
    removal = next(hand_removals(GRID))
    dataset = next(d for d in GRID.datasets if d.name == removal.dataset)
    assert removal.site in dataset.disk_sites and len(dataset.disk_sites) >= 2
    assert FULL_SITE not in dataset.disk_sites


def test_accesses_favour_a_few_hot_datasets() -> None:
    generator = AccessGenerator(GRID, seed=1)
    counts: dict[str, int] = {}
    for _ in range(50):
        for record in generator.records(datetime.now(UTC)):
            counts[record["dataset"]] = counts.get(record["dataset"], 0) + record["count"]
    top = sorted(counts.values(), reverse=True)
    assert sum(top[:5]) > sum(top[20:])
    assert all(
        r["site"] in {s.name for s in GRID.sites} for r in generator.records(datetime.now(UTC))
    )


@pytest.mark.parametrize("name", POLICY_FILES)
def test_the_demo_policy_files_are_valid(name: str) -> None:
    text = (POLICIES / name).read_text()
    if name == "partitions.txt":
        assert set(parse_partitions(text)) == {"AnalysisOps", "DataOps", "Physics", "Tape"}
    elif name.endswith(".json"):
        parse_enforcer_rules(text, file=name)
    else:
        assert parse_detox_policy(text, file=name).partition == "Physics"


def test_demo_schedules_pass_only_settings_a_service_declares() -> None:
    assert demo_settings("consistency", {"grace_period"}) == {"grace_period": 10.0}
    assert demo_settings("nosuchservice", {"grace_period"}) == {}


def test_production_makes_new_blocks_named_by_their_rank_in_the_dataset() -> None:
    dataset = production_dataset(GRID)
    assert dataset is not None and dataset.status.value == "production"
    assert SUBSCRIBER not in dataset.disk_sites and FULL_SITE not in dataset.disk_sites
    third, again = new_block(dataset, 3), new_block(dataset, 3)
    assert third == again
    assert new_block(dataset, 4).name != third.name
    lfn_dir = dataset.blocks[0].files[0].lfn.rsplit("/", 2)[0]
    assert all(f.lfn.startswith(f"{lfn_dir}/00003/") for f in third.files)
    assert subscription_target(GRID) == (dataset.name, SUBSCRIBER)
