"""Each operator of the condition language, on each type of variable it applies to."""

from __future__ import annotations

import pytest

from dynamo_common.messages.types import DatasetStatus, SiteStatus, StorageType
from dynamo_common.model.objects import DatasetReplica, Inventory
from dynamo_common.policy import Attributes, SiteContext, parse_condition
from dynamo_common.policy.parser import NumberValue

from .factories import DAY, GB, NOW, TB, add_dataset, add_replica, add_site, make_inventory


@pytest.fixture
def inventory() -> Inventory:
    return make_inventory()


def replica_of(
    inventory: Inventory,
    name: str = "/Primary/Processed-v1/AOD",
    *,
    site: str = "T2_US_MIT",
    status: DatasetStatus = DatasetStatus.VALID,
    size: int = GB,
    last_update: float = NOW,
    group: str = "AnalysisOps",
) -> DatasetReplica:
    target = inventory.sites.get(site) or add_site(inventory, site)
    dataset = add_dataset(
        inventory, name, block_sizes=(size,), status=status, last_update=last_update
    )
    return add_replica(inventory, dataset, target, group=group)


def holds(text: str, obj: object, attributes: Attributes | None = None) -> bool:
    return parse_condition(text, context="replica", now=NOW, attributes=attributes)(obj)


# == and != on text, with and without wildcards


def test_text_equality_compares_the_whole_string(inventory: Inventory) -> None:
    replica = replica_of(inventory, "/A/B/RAW")
    assert holds("dataset.name == /A/B/RAW", replica)
    assert not holds("dataset.name == /A/B/RA", replica)
    assert not holds("dataset.name == /A/B/RAW2", replica)


def test_text_inequality_is_the_negation_of_equality(inventory: Inventory) -> None:
    replica = replica_of(inventory, "/A/B/RAW")
    assert holds("dataset.name != /A/B/AOD", replica)
    assert not holds("dataset.name != /A/B/RAW", replica)


def test_wildcard_equality_matches_whole_string(inventory: Inventory) -> None:
    replica = replica_of(inventory, "/ZeroBias1/Run2015A-PromptReco-v1/RECO")
    assert holds("dataset.name == /ZeroBias*/Run2015A-PromptReco-v1/RECO", replica)
    assert holds("dataset.name == /*/*/RECO", replica)
    assert not holds("dataset.name == /*/*/REC", replica)
    assert not holds("dataset.name == *Bias1", replica)


def test_star_matches_across_slashes_like_fnmatch(inventory: Inventory) -> None:
    replica = replica_of(inventory, "/A/B-Express-v1/RAW")
    assert holds("dataset.name == /*Express*", replica)


def test_question_mark_matches_exactly_one_character(inventory: Inventory) -> None:
    site_name = "T2_US_MIT"
    replica = replica_of(inventory, site=site_name)
    assert holds("site.name == T?_US_MIT", replica)
    assert not holds("site.name == T?_US_MI", replica)
    assert not holds("site.name == T??_US_MIT", replica)


def test_wildcard_inequality_excludes_matching_names(inventory: Inventory) -> None:
    scouting = replica_of(inventory, "/ScoutingX/Run1/RAW")
    plain = replica_of(inventory, "/Jet/Run1/RAW", site="T2_DE_DESY")
    condition = "dataset.name == /*/*/RAW and dataset.name != /*Scouting*/*/RAW"
    assert not holds(condition, scouting)
    assert holds(condition, plain)


def test_brackets_and_dots_in_a_pattern_are_literal_characters(inventory: Inventory) -> None:
    replica = replica_of(inventory, "/A/v1.0[x]/RAW")
    assert holds("dataset.name == /A/v1.0[x]/*", replica)
    assert not holds("dataset.name == /A/v1a0[x]/*", replica)


def test_text_value_runs_to_the_end_of_the_predicate_with_inner_spaces(
    inventory: Inventory,
) -> None:
    replica = replica_of(inventory, group="IB RelVal")
    assert holds("blockreplica.owner == IB RelVal and site.storage_type == DISK", replica)
    assert not holds("blockreplica.owner == IB", replica)


def test_trailing_whitespace_is_not_part_of_a_text_value(inventory: Inventory) -> None:
    # Production files have such lines ('Delete dataset.name == /*/Run2017B-.../ALCARECO ').
    replica = replica_of(inventory, "/A/B/ALCARECO")
    assert holds("dataset.name == /A/B/ALCARECO \t ", replica)


def test_unowned_block_replicas_have_the_owner_none(inventory: Inventory) -> None:
    replica = replica_of(inventory, group="None")
    assert holds("blockreplica.owner == None", replica)
    assert not holds("blockreplica.owner != None", replica)


# =~ and !=~


def test_regex_match_requires_the_whole_string(inventory: Inventory) -> None:
    replica = replica_of(inventory, "/JetHT/Run2017B-v1/MINIAOD")
    assert holds(r"dataset.name =~ /JetHT/Run201[67][A-Z]-v\d+/MINIAOD", replica)
    assert not holds("dataset.name =~ /JetHT", replica)
    assert not holds("dataset.name =~ MINIAOD", replica)


def test_regex_non_match_is_the_negation(inventory: Inventory) -> None:
    replica = replica_of(inventory, "/JetHT/Run2017B-v1/MINIAOD")
    assert holds("dataset.name !=~ .*/AOD", replica)
    assert not holds("dataset.name !=~ .*/MINIAOD", replica)


def test_regex_star_is_a_regex_quantifier_not_a_wildcard(inventory: Inventory) -> None:
    replica = replica_of(inventory, site="T2_US_MIT")
    assert holds("site.name =~ T2_US_.*", replica)
    assert not holds("site.name =~ T2_US_*", replica)


# < and > on numbers and times


def test_number_comparisons_are_strict(inventory: Inventory) -> None:
    replica = replica_of(inventory, size=2 * GB)
    assert holds("dataset.size > 1999999999", replica)
    assert not holds("dataset.size > 2000000000", replica)
    assert holds("dataset.size < 2000000001", replica)
    assert not holds("dataset.size < 2000000000", replica)


def test_number_equality_ignores_int_versus_float(inventory: Inventory) -> None:
    replica = replica_of(inventory, size=2 * GB)
    assert holds("dataset.size == 2GB", replica)
    assert holds("dataset.size != 3GB", replica)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.5TB", 1.5 * TB),
        ("200GB", 200 * GB),
        ("10 MB", 10e6),
        ("512", 512.0),
        ("1kB", 1e3),
        ("1KB", 1e3),
        ("2PB", 2e15),
        ("1GiB", 2.0**30),
        ("1e3", 1e3),
        ("0.85", 0.85),
        ("-5", -5.0),
    ],
)
def test_sizes_use_decimal_units(inventory: Inventory, text: str, expected: float) -> None:
    value = parse_condition(f"dataset.size == {text}", context="replica").predicates[0].value
    assert isinstance(value, NumberValue)
    assert value.value == expected


def test_time_less_and_greater_compare_timestamps(inventory: Inventory) -> None:
    replica = replica_of(inventory, last_update=NOW - 10 * DAY)
    assert holds("dataset.last_update < 1 week ago", replica)
    assert not holds("dataset.last_update > 1 week ago", replica)
    assert holds("dataset.last_update > 2 weeks ago", replica)


# older_than and newer_than


def test_older_than_means_before_the_date(inventory: Inventory) -> None:
    old = replica_of(inventory, "/A/Old/RAW", last_update=NOW - 91 * DAY)
    young = replica_of(inventory, "/A/Young/RAW", last_update=NOW - 89 * DAY)
    assert holds("dataset.last_update older_than 90 days ago", old)
    assert not holds("dataset.last_update older_than 90 days ago", young)


def test_newer_than_means_after_the_date(inventory: Inventory) -> None:
    old = replica_of(inventory, "/A/Old/RAW", last_update=NOW - 91 * DAY)
    young = replica_of(inventory, "/A/Young/RAW", last_update=NOW - 89 * DAY)
    assert holds("dataset.last_update newer_than 90 days ago", young)
    assert not holds("dataset.last_update newer_than 90 days ago", old)


# in and notin


def test_in_matches_any_list_item(inventory: Inventory) -> None:
    replica = replica_of(inventory, site="T2_CH_CERN")
    assert holds("site.name in [T1_US_FNAL_Disk T2_CH_CERN]", replica)
    assert not holds("site.name in [T1_US_FNAL_Disk T2_CH_CSCS]", replica)


def test_list_items_may_hold_wildcards(inventory: Inventory) -> None:
    replica = replica_of(inventory, site="T1_IT_CNAF_Disk")
    assert holds("site.name in [T1_*_Disk T2_*]", replica)
    assert not holds("site.name in [T1_*_MSS T2_*]", replica)


def test_notin_holds_when_no_item_matches(inventory: Inventory) -> None:
    replica = replica_of(inventory, site="T3_US_Local")
    assert holds("site.name notin [T1_*_Disk T2_*]", replica)
    assert not holds("site.name notin [T1_*_Disk T3_US_Local]", replica)


def test_a_single_item_list_is_a_list(inventory: Inventory) -> None:
    replica = replica_of(inventory, site="T2_CH_CERN")
    assert holds("site.name in [T2_CH_CERN]", replica)
    assert holds("site.name in [ T2_CH_CERN ]", replica)


def test_in_on_enumerated_values(inventory: Inventory) -> None:
    replica = replica_of(inventory, status=DatasetStatus.PRODUCTION)
    assert holds("dataset.status in [VALID PRODUCTION]", replica)
    assert holds("dataset.status notin [INVALID DEPRECATED]", replica)


def test_in_on_numbers_with_units(inventory: Inventory) -> None:
    replica = replica_of(inventory, size=2 * GB)
    assert holds("dataset.size in [1GB 2GB]", replica)
    assert holds("dataset.size notin [1GB 3GB]", replica)


# Enumerations


def test_enumerated_equality_uses_capitalised_names(inventory: Inventory) -> None:
    replica = replica_of(inventory, status=DatasetStatus.INVALID)
    assert holds("dataset.status == INVALID", replica)
    assert holds("dataset.status != VALID", replica)


def test_mss_is_the_tape_storage_type(inventory: Inventory) -> None:
    tape = add_site(inventory, "T1_US_FNAL_MSS", StorageType.TAPE)
    replica = replica_of(inventory, site=tape.name)
    assert holds("site.storage_type == MSS", replica)
    assert not holds("site.storage_type == DISK", replica)


def test_site_status_values(inventory: Inventory) -> None:
    add_site(inventory, "T2_XX_Dead", status=SiteStatus.MORGUE)
    replica = replica_of(inventory, site="T2_XX_Dead")
    assert holds("site.status == MORGUE", replica)
    assert holds("site.status != READY", replica)


# Booleans, not, and


def test_bare_boolean_variable_holds_when_true(inventory: Inventory) -> None:
    site = add_site(inventory, "T2_US_MIT")
    dataset = add_dataset(inventory, block_sizes=(GB, GB))
    complete = add_replica(inventory, dataset, site)
    other = add_site(inventory, "T2_DE_DESY")
    partial = add_replica(inventory, dataset, other, partial=["b1"])
    assert holds("replica.incomplete", partial)
    assert not holds("replica.incomplete", complete)


def test_not_negates_a_boolean_variable(inventory: Inventory) -> None:
    site = add_site(inventory, "T2_US_MIT")
    dataset = add_dataset(inventory)
    complete = add_replica(inventory, dataset, site)
    assert holds("not replica.incomplete", complete)


def test_and_requires_every_predicate(inventory: Inventory) -> None:
    replica = replica_of(inventory, "/A/B/RAW", status=DatasetStatus.INVALID)
    assert holds("dataset.status == INVALID and dataset.name == /*/*/RAW", replica)
    assert not holds("dataset.status == INVALID and dataset.name == /*/*/AOD", replica)
    assert not holds("dataset.status == VALID and dataset.name == /*/*/RAW", replica)


def test_four_or_more_predicates_are_all_required(inventory: Inventory) -> None:
    replica = replica_of(inventory, "/A/B/RAW", size=3 * GB)
    text = (
        "dataset.name == /A/*/* and dataset.size > 1GB and dataset.size < 5GB "
        "and site.storage_type == DISK"
    )
    assert holds(text, replica)
    assert not holds(text + " and site.name == T1_*", replica)


def test_always_and_never_are_constant_site_conditions() -> None:
    inventory = make_inventory()
    site = SiteContext(add_site(inventory, "T2_US_MIT"), "Physics", 0, 0)
    always = parse_condition("always", context="site")
    never = parse_condition("never", context="site")
    assert always(site) and always.constant is True
    assert not never(site) and never.constant is False
    assert parse_condition("site.name == T2_* and never", context="site").constant is False


def test_site_conditions_see_partition_occupancy_and_quota() -> None:
    inventory = make_inventory()
    site = add_site(inventory, "T2_US_MIT")
    full = SiteContext(site, "Physics", used=95 * TB, quota=100 * TB)
    empty = SiteContext(site, "Physics", used=10 * TB, quota=100 * TB)
    trigger = parse_condition("site.occupancy > 0.9", context="site")
    assert trigger(full)
    assert not trigger(empty)
    assert parse_condition("site.quota == 100TB and site.name == T2_*", context="site")(full)


def test_a_site_without_quota_counts_any_data_as_over_it() -> None:
    inventory = make_inventory()
    site = add_site(inventory, "T1_US_FNAL_MSS", StorageType.TAPE)
    assert SiteContext(site, "Tape", used=1, quota=0).occupancy == float("inf")
    assert SiteContext(site, "Tape", used=0, quota=0).occupancy == 0.0


def test_provider_variables_read_the_attribute_tables(inventory: Inventory) -> None:
    replica = replica_of(inventory)
    attributes = Attributes()
    attributes.provide("dataset.usage_rank")[replica.dataset] = 200
    assert holds("dataset.usage_rank > 150", replica, attributes=attributes)
    assert not holds("dataset.usage_rank > 250", replica, attributes=attributes)


def test_lists_may_mix_literal_and_wildcard_items(inventory: Inventory) -> None:
    fnal = replica_of(inventory, "/A/B/RAW", site="T1_US_FNAL_Disk")
    mit = replica_of(inventory, "/A/C/RAW", site="T2_US_MIT")
    cern = replica_of(inventory, "/A/D/RAW", site="T0_CH_CERN_Disk")
    text = "site.name in [T0_CH_CERN_Disk T1_*_Disk]"
    assert [holds(text, r) for r in (fnal, mit, cern)] == [True, False, True]
    text = "site.name notin [T0_CH_CERN_Disk T1_*_Disk]"
    assert [holds(text, r) for r in (fnal, mit, cern)] == [False, True, False]


BLOCK_PREDICATES = [
    "blockreplica.owner == DataOps",
    "blockreplica.owner != DataOps",
    "blockreplica.owner == Data*",
    "blockreplica.owner != Data*",
    "blockreplica.owner =~ (Data|Analysis)Ops",
    "blockreplica.owner !=~ DataOps",
    "blockreplica.owner in [DataOps local]",
    "blockreplica.owner in [Data* local]",
    "blockreplica.owner in [DataOps Analysis*]",
    "blockreplica.owner notin [DataOps]",
    "blockreplica.owner notin [Data* local]",
    "blockreplica.last_update older_than 15 days ago",
    "blockreplica.last_update newer_than 15 days ago",
    "blockreplica.num_full_disk_copy < 2",
    "blockreplica.num_full_disk_copy > 1",
    "blockreplica.num_full_disk_copy == 2",
    "blockreplica.on_tape",
    "not blockreplica.on_tape",
    "blockreplica.age_relative_to_newest > 0",
]


@pytest.mark.parametrize("text", BLOCK_PREDICATES)
def test_block_replica_predicate_on_a_dataset_replica_is_any_of_its_block_replicas(
    text: str,
) -> None:
    inventory = make_inventory()
    mit = add_site(inventory, "T2_US_MIT")
    desy = add_site(inventory, "T2_DE_DESY")
    tape = add_site(inventory, "T1_US_FNAL_MSS", StorageType.TAPE)
    dataset = add_dataset(
        inventory,
        block_sizes=(GB, GB, GB),
        block_times=(NOW - 30 * DAY, NOW - 20 * DAY, NOW - 10 * DAY),
    )
    replicas = [
        add_replica(inventory, dataset, mit, group="AnalysisOps", block_groups={"b2": "DataOps"}),
        add_replica(inventory, dataset, desy, group="DataOps", blocks=["b0", "b2"]),
        add_replica(inventory, dataset, tape, group="local", blocks=["b1"]),
    ]
    on_replica = parse_condition(text, context="replica", now=NOW)
    on_block = parse_condition(text, context="blockreplica", now=NOW)
    outcomes = []
    for replica in replicas:
        expected = any(on_block(br) for br in replica.block_replicas.values())
        assert on_replica(replica) == expected, replica
        outcomes.append(expected)
    assert parse_condition(text + " and site.name == T*", context="replica", now=NOW).select(
        replicas
    ) == [r for r, hit in zip(replicas, outcomes, strict=True) if hit]
