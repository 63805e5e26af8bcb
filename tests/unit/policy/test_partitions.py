"""Partition definition files, membership of block replicas, and per-site usage."""

from __future__ import annotations

import pytest

from dynamo_common.messages.types import StorageType
from dynamo_common.model.objects import Inventory
from dynamo_common.policy import (
    Attributes,
    PolicyErrors,
    compile_partitions,
    membership_predicates,
    parse_partitions,
    site_usage,
)

from .factories import GB, TB, add_dataset, add_partition, add_replica, add_site, make_inventory

PAGE_EXAMPLE = """\
AnalysisOps:  blockreplica.owner == AnalysisOps and site.storage_type == DISK
Tape:         site.storage_type == MSS
Physics:      [AnalysisOps, Tape]
"""

PRODUCTION_FILE = """\
# Partition definitions

AnalysisOps:  blockreplica.owner == AnalysisOps and site.storage_type == DISK
DataOpsDisk:  blockreplica.owner == DataOps and site.storage_type == DISK
RelVal:       blockreplica.owner == RelVal
caf-comm:     blockreplica.owner == caf-comm and site.storage_type == DISK
IB RelVal:    blockreplica.owner == IB RelVal and site.storage_type == DISK
Unsubscribed: blockreplica.owner == None and site.storage_type == DISK
Express:      blockreplica.owner == express and dataset.name == /*/*Express*/* and site.storage_type == DISK
Tape:         site.storage_type == MSS
# Tape partition with no quota
PhysicsTape:  site.storage_type == MSS
Physics:      [AnalysisOps, DataOpsDisk, PhysicsTape]
DataOps:      [DataOpsDisk, PhysicsTape]
"""  # noqa: E501


def errors_of(text: str) -> list[str]:
    with pytest.raises(PolicyErrors) as caught:
        parse_partitions(text, file="partitions.txt")
    return [str(error) for error in caught.value.errors]


# Parsing


def test_page_example_parses_into_conditions_and_a_union() -> None:
    partitions = parse_partitions(PAGE_EXAMPLE)
    assert list(partitions) == ["AnalysisOps", "Tape", "Physics"]
    assert partitions["Tape"].condition is not None
    assert partitions["Tape"].condition.text == "site.storage_type == MSS"
    assert partitions["Physics"].is_union
    assert partitions["Physics"].members == ("AnalysisOps", "Tape")
    assert partitions["Physics"].bases == {"AnalysisOps", "Tape"}


def test_production_partition_file_parses_unchanged() -> None:
    partitions = parse_partitions(PRODUCTION_FILE)
    assert len(partitions) == 11
    assert partitions["IB RelVal"].line == 7
    assert partitions["DataOps"].bases == {"DataOpsDisk", "PhysicsTape"}


def test_unions_of_unions_flatten_to_condition_partitions() -> None:
    partitions = parse_partitions(
        "A: site.name == A\nB: site.name == B\nAB: [A, B]\nAll: [AB, C]\nC: site.name == C\n"
    )
    assert partitions["All"].bases == {"A", "B", "C"}


def test_partitions_convert_to_model_objects() -> None:
    model = parse_partitions(PAGE_EXAMPLE).to_model()
    assert [(p.name, p.condition, p.subpartitions) for p in model] == [
        (
            "AnalysisOps",
            "blockreplica.owner == AnalysisOps and site.storage_type == DISK",
            (),
        ),
        ("Tape", "site.storage_type == MSS", ()),
        ("Physics", None, ("AnalysisOps", "Tape")),
    ]


def test_comments_need_a_space_before_them_so_block_names_survive() -> None:
    partitions = parse_partitions("Pinned: dataset.name == /A/B/C#x  # keep this one\n")
    assert partitions["Pinned"].condition is not None
    assert partitions["Pinned"].condition.text == "dataset.name == /A/B/C#x"


# Errors


def test_unknown_partition_in_a_union() -> None:
    assert errors_of("Tape: site.storage_type == MSS\nPhysics: [AnalysisOps, Tpe]\n") == [
        "partitions.txt:2:11: unknown partition 'AnalysisOps' in the union 'Physics'",
        "partitions.txt:2:24: unknown partition 'Tpe' in the union 'Physics'; did you mean 'Tape'?",
    ]


def test_union_cycle() -> None:
    assert errors_of("A: [B]\nB: [C]\nC: [A]\n") == [
        "partitions.txt:1:1: partition union cycle: A -> B -> C -> A"
    ]


def test_union_containing_itself() -> None:
    assert errors_of("Tape: site.storage_type == MSS\n  Loop: [Tape, Loop]\n") == [
        "partitions.txt:2:3: partition union cycle: Loop -> Loop"
    ]


def test_duplicate_partition_names() -> None:
    assert errors_of("Tape: site.storage_type == MSS\n\nTape: site.name == T1_*\n") == [
        "partitions.txt:3:1: duplicate partition 'Tape' (first defined on line 1)"
    ]


def test_condition_errors_point_into_the_file() -> None:
    assert errors_of("Tape:   site.storage_type == TAPE\nBad: dataset.nmae == x\n") == [
        "partitions.txt:1:30: unknown value 'TAPE' for site.storage_type; expected one of "
        "DISK, MSS, BUFFER",
        "partitions.txt:2:6: unknown variable 'dataset.nmae'; did you mean 'dataset.name'?",
    ]


def test_site_only_variables_are_refused_in_partition_conditions() -> None:
    assert errors_of("Full: site.occupancy > 0.9\n") == [
        "partitions.txt:1:7: variable 'site.occupancy' cannot be used in block-replica "
        "conditions (only in site conditions)"
    ]


def test_line_without_a_colon() -> None:
    assert errors_of("  Tape site.storage_type == MSS\n") == [
        "partitions.txt:1:3: expected '<Name>: <condition>' or '<Name>: [A, B, ...]'"
    ]


def test_missing_name_and_missing_condition() -> None:
    assert errors_of(": site.storage_type == MSS\nTape:\n") == [
        "partitions.txt:1:1: expected a partition name before ':'",
        "partitions.txt:2:6: empty condition: expected a predicate",
    ]


def test_invalid_partition_name() -> None:
    assert errors_of("Tape/Disk: site.storage_type == MSS\n") == [
        "partitions.txt:1:1: invalid partition name 'Tape/Disk' (letters, digits, '_', '-', "
        "'.', spaces)"
    ]


def test_union_syntax_errors() -> None:
    assert errors_of("A: site.name == A\nU: [A, B\nV: []\nW: [A,, A]\nX: [A] and more\n") == [
        "partitions.txt:2:4: unbalanced list: '[' is not closed by ']'",
        "partitions.txt:3:4: empty union: expected partition names between '[' and ']'",
        "partitions.txt:4:7: expected a partition name between commas",
        "partitions.txt:5:8: unexpected 'and' after ']'",
    ]


def test_all_errors_of_a_file_are_reported_together() -> None:
    errors = errors_of("A: [B]\nB: [A]\nC: site.nmae == x\nC: site.name == x\nD: [Zed]\n")
    assert len(errors) == 4


# Membership and usage


@pytest.fixture
def grid() -> Inventory:
    inventory = make_inventory()
    mit = add_site(inventory, "T2_US_MIT", quotas={"AnalysisOps": 10 * TB, "Physics": 20 * TB})
    fnal = add_site(inventory, "T1_US_FNAL_MSS", StorageType.TAPE, quotas={"Tape": 100 * TB})
    add_site(inventory, "T2_XX_Empty")
    aod = add_dataset(inventory, "/A/B/AOD", block_sizes=(GB, 2 * GB))
    raw = add_dataset(inventory, "/A/B/RAW", block_sizes=(4 * GB,))
    express = add_dataset(inventory, "/A/B-Express-v1/RAW", block_sizes=(8 * GB,))
    add_replica(inventory, aod, mit, group="AnalysisOps", block_groups={"b1": "DataOps"})
    add_replica(inventory, raw, mit, group="DataOps", partial=["b0"])
    add_replica(inventory, express, mit, group="express")
    add_replica(inventory, aod, fnal, group="DataOps")
    add_replica(inventory, raw, fnal, group="DataOps")
    return inventory


GRID_PARTITIONS = """\
AnalysisOps: blockreplica.owner == AnalysisOps and site.storage_type == DISK
DataOpsDisk: blockreplica.owner == DataOps and site.storage_type == DISK
Express:     blockreplica.owner == express and dataset.name == /*/*Express*/*
Tape:        site.storage_type == MSS
Physics:     [AnalysisOps, DataOpsDisk, Tape]
Everything:  [Physics, Tape, Express]
"""


def test_membership_of_block_replicas(grid: Inventory) -> None:
    members = membership_predicates(parse_partitions(GRID_PARTITIONS))
    mit = grid.sites["T2_US_MIT"].dataset_replicas["/A/B/AOD"]
    analysis, dataops = mit.block_replicas["b0"], mit.block_replicas["b1"]
    assert members["AnalysisOps"](analysis) and not members["AnalysisOps"](dataops)
    assert members["DataOpsDisk"](dataops)
    assert members["Physics"](analysis) and members["Physics"](dataops)
    assert not members["Tape"](analysis)
    tape = grid.sites["T1_US_FNAL_MSS"].dataset_replicas["/A/B/RAW"].block_replicas["b0"]
    assert members["Tape"](tape) and members["Physics"](tape)
    assert not members["DataOpsDisk"](tape)


def test_site_usage_sums_block_replica_bytes_per_partition(grid: Inventory) -> None:
    usage = site_usage(grid, parse_partitions(GRID_PARTITIONS))
    assert usage["T2_US_MIT"] == {
        "AnalysisOps": (1 * GB, 10 * TB),
        "DataOpsDisk": (2 * GB + 2 * GB, 0),  # AOD b1, and half of the RAW block
        "Express": (8 * GB, 0),
        "Tape": (0, 0),
        "Physics": (1 * GB + 4 * GB, 20 * TB),
        "Everything": (13 * GB, 0),
    }
    assert usage["T1_US_FNAL_MSS"] == {
        "AnalysisOps": (0, 0),
        "DataOpsDisk": (0, 0),
        "Express": (0, 0),
        "Tape": (7 * GB, 100 * TB),
        "Physics": (7 * GB, 0),
        "Everything": (7 * GB, 0),
    }
    assert usage["T2_XX_Empty"] == {name: (0, 0) for name in usage["T2_XX_Empty"]}


def test_union_usage_counts_a_replica_in_two_members_once() -> None:
    inventory = make_inventory()
    site = add_site(inventory, "T2_US_MIT")
    dataset = add_dataset(inventory, block_sizes=(GB,))
    add_replica(inventory, dataset, site, group="AnalysisOps")
    partitions = parse_partitions(
        "Disk: site.storage_type == DISK\nOwned: blockreplica.owner != None\nBoth: [Disk, Owned]\n"
    )
    usage = site_usage(inventory, partitions)["T2_US_MIT"]
    assert usage == {"Disk": (GB, 0), "Owned": (GB, 0), "Both": (GB, 0)}


def test_site_usage_defaults_to_the_inventory_partitions(grid: Inventory) -> None:
    add_partition(grid, "Tape", "site.storage_type == MSS")
    add_partition(grid, "Owned", "blockreplica.owner != None")
    add_partition(grid, "Any", None, ("Tape", "Owned"))
    usage = site_usage(grid)
    assert usage["T1_US_FNAL_MSS"]["Tape"] == (7 * GB, 100 * TB)
    assert usage["T2_US_MIT"]["Owned"] == (1 * GB + 2 * GB + 2 * GB + 8 * GB, 0)
    assert usage["T2_US_MIT"]["Any"] == usage["T2_US_MIT"]["Owned"]


def test_site_usage_uses_attribute_tables_for_provider_variables(grid: Inventory) -> None:
    partitions = parse_partitions("Locked: blockreplica.is_locked\n")
    assert site_usage(grid, partitions)["T2_US_MIT"]["Locked"] == (0, 0)
    attributes = Attributes()
    locked = grid.sites["T2_US_MIT"].dataset_replicas["/A/B/RAW"].block_replicas["b0"]
    attributes.provide("blockreplica.is_locked")[locked] = True
    usage = site_usage(grid, partitions, attributes=attributes)
    assert usage["T2_US_MIT"]["Locked"] == (2 * GB, 0)
    assert partitions.missing_providers() == {"blockreplica.is_locked"}


def test_compile_partitions_reports_errors_by_partition_name() -> None:
    inventory = make_inventory()
    add_partition(inventory, "Bad", "site.storage_type == TAPE")
    add_partition(inventory, "Loop", None, ("Loop",))
    add_partition(inventory, "Lost", None, ("Nowhere",))
    with pytest.raises(PolicyErrors) as caught:
        compile_partitions(inventory.partitions)
    messages = [str(error) for error in caught.value.errors]
    assert messages == [
        "<partition Bad>:1:22: unknown value 'TAPE' for site.storage_type; expected one of "
        "DISK, MSS, BUFFER",
        "<partition Loop>:1:1: partition union cycle: Loop -> Loop",
        "<partition Lost>:1:1: unknown partition 'Nowhere' in the union 'Lost'",
    ]
