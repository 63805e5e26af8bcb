"""Values of the inventory-derived variables, provider variables and the registry."""

from __future__ import annotations

import pytest

from dynamo_common.messages.types import DatasetStatus, SiteStatus, StorageType
from dynamo_common.model.objects import Block, DatasetReplica, Inventory
from dynamo_common.policy import (
    REGISTRY,
    AttributeProvider,
    Attributes,
    Context,
    Level,
    PolicyErrors,
    Variable,
    VarType,
    parse_condition,
)

from .factories import DAY, GB, NOW, add_dataset, add_replica, add_site, make_inventory


def value(name: str, obj: object, context: str = "replica", threshold: str = "") -> bool:
    text = f"{name} {threshold}".strip()
    return parse_condition(text, context=Context(context), now=NOW)(obj)


@pytest.fixture
def grid() -> Inventory:
    """A dataset of three blocks with replicas at a disk site (complete), a second disk site
    (missing block b2), a tape site (complete) and a morgue disk site (complete)."""
    inventory = make_inventory()
    disk = add_site(inventory, "T2_US_MIT")
    other = add_site(inventory, "T2_DE_DESY")
    tape = add_site(inventory, "T1_US_FNAL_MSS", StorageType.TAPE)
    dead = add_site(inventory, "T2_XX_Dead", status=SiteStatus.MORGUE)
    dataset = add_dataset(
        inventory,
        "/A/B-v1/AOD",
        block_sizes=(GB, 2 * GB, 3 * GB),
        block_times=(NOW - 30 * DAY, NOW - 20 * DAY, NOW - 10 * DAY),
        software_version="CMSSW_10_6_4",
    )
    add_replica(inventory, dataset, disk, group="AnalysisOps")
    add_replica(inventory, dataset, other, group="DataOps", blocks=["b0", "b1"])
    add_replica(inventory, dataset, tape, group="DataOps")
    add_replica(inventory, dataset, dead, group="AnalysisOps")
    return inventory


def replica(inventory: Inventory, site: str, dataset: str = "/A/B-v1/AOD") -> DatasetReplica:
    return inventory.datasets[dataset].replicas[site]


def test_dataset_attributes_come_from_the_model(grid: Inventory) -> None:
    r = replica(grid, "T2_US_MIT")
    assert value("dataset.name", r, threshold="== /A/B-v1/AOD")
    assert value("dataset.status", r, threshold="== VALID")
    assert value("dataset.size", r, threshold="== 6GB")
    assert value("dataset.release", r, threshold="== CMSSW_10_6_*")


def test_dataset_on_tape_is_full_when_a_tape_replica_is_complete(grid: Inventory) -> None:
    assert value("dataset.on_tape", replica(grid, "T2_US_MIT"), threshold="== FULL")


def test_dataset_on_tape_is_partial_when_tape_replicas_are_incomplete() -> None:
    inventory = make_inventory()
    tape = add_site(inventory, "T1_US_FNAL_MSS", StorageType.TAPE)
    disk = add_site(inventory, "T2_US_MIT")
    dataset = add_dataset(inventory, block_sizes=(GB, GB))
    add_replica(inventory, dataset, tape, blocks=["b0"])
    r = add_replica(inventory, dataset, disk)
    assert value("dataset.on_tape", r, threshold="== PARTIAL")


def test_dataset_on_tape_is_none_without_tape_replicas() -> None:
    inventory = make_inventory()
    dataset = add_dataset(inventory)
    r = add_replica(inventory, dataset, add_site(inventory, "T2_US_MIT"))
    assert value("dataset.on_tape", r, threshold="== NONE")


def test_num_full_disk_copy_counts_complete_replicas_on_ready_disk_sites(grid: Inventory) -> None:
    # MIT only: DESY is incomplete, FNAL is tape, Dead is in the morgue.
    r = replica(grid, "T2_DE_DESY")
    assert value("dataset.num_full_disk_copy", r, threshold="== 1")


def test_replica_size_and_incomplete(grid: Inventory) -> None:
    desy = replica(grid, "T2_DE_DESY")
    assert value("replica.size", desy, threshold="== 3GB")
    assert value("replica.incomplete", desy)
    assert not value("replica.incomplete", replica(grid, "T2_US_MIT"))


def test_replica_missing_files_is_incomplete() -> None:
    inventory = make_inventory()
    dataset = add_dataset(inventory, block_sizes=(GB, GB))
    r = add_replica(inventory, dataset, add_site(inventory, "T2_US_MIT"), partial=["b1"])
    assert value("replica.incomplete", r)


def test_first_and_last_block_created(grid: Inventory) -> None:
    r = replica(grid, "T2_US_MIT")
    assert value("replica.first_block_created", r, threshold="older_than 29 days ago")
    assert value("replica.first_block_created", r, threshold="newer_than 31 days ago")
    assert value("replica.last_block_created", r, threshold="newer_than 11 days ago")
    assert value("replica.last_block_created", r, threshold="older_than 9 days ago")


def test_empty_replica_takes_its_own_time_as_block_creation() -> None:
    inventory = make_inventory()
    dataset = add_dataset(inventory)
    r = add_replica(inventory, dataset, add_site(inventory, "T2_US_MIT"), blocks=[])
    r.last_update = NOW - DAY
    assert value("replica.first_block_created", r, threshold="newer_than 2 days ago")
    assert value("replica.last_block_created", r, threshold="older_than 12 hours ago")


def test_common_owner_copies_count_replicas_sharing_a_group(grid: Inventory) -> None:
    mit = replica(grid, "T2_US_MIT")  # AnalysisOps; Dead shares the group but is in the morgue
    assert value("replica.num_full_disk_copy_common_owner", mit, threshold="== 1")
    assert value("replica.num_full_other_copy_common_owner", mit, threshold="== 0")
    fnal = replica(grid, "T1_US_FNAL_MSS")  # DataOps: DESY is incomplete, FNAL itself is tape
    assert value("replica.num_full_disk_copy_common_owner", fnal, threshold="== 0")
    assert value("replica.num_full_other_copy_common_owner", fnal, threshold="== 0")
    desy = replica(grid, "T2_DE_DESY")  # DataOps: FNAL is a complete copy elsewhere
    assert value("replica.num_full_other_copy_common_owner", desy, threshold="== 1")


def test_blockreplica_predicate_on_a_replica_holds_when_any_block_replica_does(
    grid: Inventory,
) -> None:
    inventory = grid
    dataset = inventory.datasets["/A/B-v1/AOD"]
    site = add_site(inventory, "T2_IT_Pisa")
    mixed = add_replica(
        inventory, dataset, site, group="AnalysisOps", block_groups={"b2": "DataOps"}
    )
    assert value("blockreplica.owner", mixed, threshold="== DataOps")
    assert value("blockreplica.owner", mixed, threshold="== AnalysisOps")
    assert not value("blockreplica.owner", mixed, threshold="== local")
    assert value("blockreplica.last_update", mixed, threshold="newer_than 15 days ago")
    assert not value("blockreplica.last_update", mixed, threshold="newer_than 5 days ago")


def test_blockreplica_predicate_on_an_empty_replica_is_false() -> None:
    inventory = make_inventory()
    dataset = add_dataset(inventory)
    r = add_replica(inventory, dataset, add_site(inventory, "T2_US_MIT"), blocks=[])
    assert not value("blockreplica.owner", r, threshold="== *")
    assert not value("not blockreplica.is_locked", r)


def test_block_replica_context_evaluates_each_block_replica(grid: Inventory) -> None:
    block = grid.datasets["/A/B-v1/AOD"].blocks["b2"]
    mit = block.replica_at(grid.sites["T2_US_MIT"])
    assert mit is not None
    assert value("blockreplica.owner", mit, "blockreplica", "== AnalysisOps")
    # FNAL (tape) holds b2 completely; MIT and Dead too but Dead is not ready
    assert value("blockreplica.on_tape", mit, "blockreplica")
    assert value("blockreplica.num_full_disk_copy", mit, "blockreplica", "== 1")
    assert value("dataset.name", mit, "blockreplica", "== /A/*/AOD")
    assert value("site.name", mit, "blockreplica", "== T2_US_MIT")


def test_block_replica_context_reads_replica_variables_of_its_dataset_replica(
    grid: Inventory,
) -> None:
    block = grid.datasets["/A/B-v1/AOD"].blocks["b0"]
    desy = block.replica_at(grid.sites["T2_DE_DESY"])
    assert desy is not None
    assert value("replica.incomplete", desy, "blockreplica")
    assert value("replica.size", desy, "blockreplica", "== 3GB")


def test_age_relative_to_newest_is_seconds_behind_the_newest_block(grid: Inventory) -> None:
    blocks = grid.datasets["/A/B-v1/AOD"].blocks
    site = grid.sites["T2_US_MIT"]
    oldest = blocks["b0"].replica_at(site)
    newest = blocks["b2"].replica_at(site)
    assert value("blockreplica.age_relative_to_newest", oldest, "blockreplica", "== 1728000")
    assert value("blockreplica.age_relative_to_newest", newest, "blockreplica", "== 0")
    mit = replica(grid, "T2_US_MIT")
    assert value("blockreplica.age_relative_to_newest", mit, threshold="> 1000000")
    assert not value("blockreplica.age_relative_to_newest", mit, threshold="> 1728000")


def test_age_relative_to_newest_sees_blocks_added_after_binding(grid: Inventory) -> None:
    dataset = grid.datasets["/A/B-v1/AOD"]
    site = grid.sites["T2_US_MIT"]
    newest = dataset.blocks["b2"].replica_at(site)
    condition = parse_condition(
        "blockreplica.age_relative_to_newest > 0", context="blockreplica", now=NOW
    )
    assert not condition(newest)
    dataset.blocks["b9"] = Block(9, dataset, "b9", GB, 1, False, NOW)
    assert condition(newest)


def test_site_variables_of_a_replica_are_its_sites(grid: Inventory) -> None:
    fnal = replica(grid, "T1_US_FNAL_MSS")
    assert value("site.storage_type", fnal, threshold="== MSS")
    assert value("site.status", replica(grid, "T2_XX_Dead"), threshold="== MORGUE")


# Provider variables


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dataset.last_access older_than 1970-01-02", True),
        ("dataset.tape_copy_requested", False),
        ("dataset.usage_rank == 0", True),
        ("dataset.demand_rank == 0", True),
        ("dataset.is_latest_production_release", False),
        ("dataset.on_protected_site", False),
        ("dataset.unhandled_copy_exists", False),
        ("dataset.unknown_in_all_dbs", False),
        ("replica.num_access == 0", True),
        ("replica.enforcer_protected", False),
        ("blockreplica.is_locked", False),
        ("blockreplica.is_last_transfer_source", False),
        ("replica.is_last_transfer_source", False),
    ],
)
def test_provider_variables_take_their_default_without_a_provider(
    grid: Inventory, text: str, expected: bool
) -> None:
    condition = parse_condition(text, context="replica", now=NOW)
    assert condition(replica(grid, "T2_US_MIT")) is expected
    assert condition.constant is None or condition.constant is expected
    assert condition.missing_providers() == condition.provider_variables


def test_conditions_report_the_provider_variables_they_use() -> None:
    condition = parse_condition(
        "dataset.usage_rank > 100 and dataset.name != /*/*/MINIAOD* and blockreplica.is_locked",
        context="replica",
    )
    assert condition.variables == {"dataset.usage_rank", "dataset.name", "blockreplica.is_locked"}
    assert condition.provider_variables == {"dataset.usage_rank", "blockreplica.is_locked"}
    attributes = Attributes()
    attributes.provide("dataset.usage_rank")
    assert condition.missing_providers(attributes) == {"blockreplica.is_locked"}


def test_provider_tables_key_on_the_model_objects(grid: Inventory) -> None:
    mit = replica(grid, "T2_US_MIT")
    locked = mit.block_replicas["b1"]
    attributes = Attributes()
    attributes.provide("blockreplica.is_locked")[locked] = True
    attributes.provide("replica.enforcer_protected")[mit] = True
    attributes.provide("dataset.last_access")[mit.dataset] = NOW - DAY
    condition = parse_condition(
        "blockreplica.is_locked and replica.enforcer_protected "
        "and dataset.last_access newer_than 1 week ago",
        context="replica",
        now=NOW,
        attributes=attributes,
    )
    assert condition(mit)
    assert condition.missing_providers() == frozenset()
    assert not condition(replica(grid, "T2_XX_Dead"))
    assert parse_condition("blockreplica.is_locked", context="blockreplica", attributes=attributes)(
        locked
    )
    assert not parse_condition(
        "blockreplica.is_locked", context="blockreplica", attributes=attributes
    )(mit.block_replicas["b0"])


def test_legacy_replica_last_transfer_source_reads_the_block_replica_table(
    grid: Inventory,
) -> None:
    mit = replica(grid, "T2_US_MIT")
    attributes = Attributes()
    attributes.provide("blockreplica.is_last_transfer_source")[mit.block_replicas["b2"]] = True
    condition = parse_condition(
        "replica.is_last_transfer_source", context="replica", attributes=attributes
    )
    assert condition(mit)
    assert not condition(replica(grid, "T2_DE_DESY"))


def test_binding_new_attributes_does_not_reparse(grid: Inventory) -> None:
    mit = replica(grid, "T2_US_MIT")
    condition = parse_condition("dataset.usage_rank > 150", context="replica")
    assert not condition(mit)
    attributes = Attributes()
    attributes.provide("dataset.usage_rank")[mit.dataset] = 151
    rebound = condition.bind(attributes=attributes)
    assert rebound.predicates is condition.predicates
    assert rebound(mit)


# Registry


def test_registry_knows_every_variable_of_the_page() -> None:
    page = [
        "dataset.name",
        "dataset.status",
        "dataset.size",
        "dataset.last_update",
        "dataset.last_access",
        "dataset.on_tape",
        "dataset.tape_copy_requested",
        "dataset.num_full_disk_copy",
        "dataset.usage_rank",
        "dataset.demand_rank",
        "dataset.release",
        "dataset.is_latest_production_release",
        "dataset.on_protected_site",
        "dataset.unhandled_copy_exists",
        "dataset.unknown_in_all_dbs",
        "replica.size",
        "replica.incomplete",
        "replica.first_block_created",
        "replica.last_block_created",
        "replica.num_access",
        "replica.num_full_disk_copy_common_owner",
        "replica.num_full_other_copy_common_owner",
        "replica.enforcer_protected",
        "blockreplica.owner",
        "blockreplica.is_locked",
        "blockreplica.is_last_transfer_source",
        "blockreplica.last_update",
        "blockreplica.num_full_disk_copy",
        "blockreplica.on_tape",
        "blockreplica.age_relative_to_newest",
        "site.name",
        "site.status",
        "site.storage_type",
        "site.occupancy",
        "site.quota",
        "always",
        "never",
    ]
    assert set(page) <= set(REGISTRY.names())
    assert set(REGISTRY.names(Context.SITE)) == {
        "site.name",
        "site.status",
        "site.storage_type",
        "site.occupancy",
        "site.quota",
        "always",
        "never",
    }


def test_later_code_registers_variables_without_changing_the_parser(grid: Inventory) -> None:
    registry = REGISTRY.copy()
    registry.register(
        Variable(
            "dataset.tier",
            VarType.TEXT,
            Level.DATASET,
            "last component of the name",
            compute=lambda dataset: dataset.tier,
            default="",
        )
    )
    registry.register(
        Variable(
            "dataset.pileup",
            VarType.BOOL,
            Level.DATASET,
            "used as pileup",
            provider=True,
            default=True,
        )
    )
    condition = parse_condition(
        "dataset.tier == AOD and dataset.pileup", context="replica", registry=registry
    )
    assert condition(replica(grid, "T2_US_MIT"))
    assert condition.missing_providers() == {"dataset.pileup"}
    with pytest.raises(PolicyErrors):
        parse_condition("dataset.tier == AOD", context="replica")


def test_registering_a_name_twice_needs_replace() -> None:
    registry = REGISTRY.copy()
    variable = Variable("dataset.name", VarType.TEXT, Level.DATASET, attr="name")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(variable)
    assert registry.register(variable, replace=True) is variable


def test_a_variable_needs_exactly_one_value_source() -> None:
    with pytest.raises(ValueError, match="exactly one value source"):
        Variable("x.y", VarType.NUMBER, Level.DATASET)
    with pytest.raises(ValueError, match="exactly one value source"):
        Variable("x.y", VarType.NUMBER, Level.DATASET, attr="size", provider=True)
    with pytest.raises(ValueError, match="needs enum_values"):
        Variable("x.y", VarType.ENUM, Level.DATASET, attr="status")


# Compilation


def test_site_predicates_are_decided_once_per_site(grid: Inventory) -> None:
    condition = parse_condition(
        "site.storage_type == DISK and blockreplica.owner == AnalysisOps", context="blockreplica"
    )
    assert condition.specialize(grid.sites["T1_US_FNAL_MSS"]) is False
    specialised = condition.specialize(grid.sites["T2_US_MIT"])
    assert callable(specialised)
    mit = replica(grid, "T2_US_MIT")
    assert specialised(mit.block_replicas["b0"])
    assert (
        parse_condition("site.name == T2_*", context="blockreplica").specialize(
            grid.sites["T2_US_MIT"]
        )
        is True
    )


def test_predicate_order_does_not_change_the_result(grid: Inventory) -> None:
    predicates = [
        "replica.num_full_disk_copy_common_owner < 3",
        "dataset.name == /A/*",
        "blockreplica.owner == AnalysisOps",
        "site.storage_type == DISK",
    ]
    for r in grid.datasets["/A/B-v1/AOD"].replicas.values():
        forward = parse_condition(" and ".join(predicates), context="replica")(r)
        backward = parse_condition(" and ".join(reversed(predicates)), context="replica")(r)
        plain = all(parse_condition(p, context="replica")(r) for p in predicates)
        assert forward == backward == plain


def test_condition_text_and_position_are_kept() -> None:
    condition = parse_condition(
        "  dataset.status == INVALID ", context="replica", line=7, column=8, file="x.txt"
    )
    assert condition.text == "dataset.status == INVALID"
    assert (condition.file, condition.line, condition.column) == ("x.txt", 7, 8)
    assert condition.context is Context.REPLICA
    assert condition.predicates[0].column == 10


def test_dataset_status_is_compared_with_the_model_enum() -> None:
    inventory = make_inventory()
    dataset = add_dataset(inventory, status=DatasetStatus.DEPRECATED)
    r = add_replica(inventory, dataset, add_site(inventory, "T2_US_MIT"))
    assert value("dataset.status", r, threshold="== DEPRECATED")


class LockProvider:
    """A stand-in attribute provider: locks every block replica of one dataset."""

    name = "locks"
    provides = frozenset({"blockreplica.is_locked"})

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset

    def fill(self, inventory: Inventory, attributes: Attributes, now: float) -> None:
        table = attributes.provide("blockreplica.is_locked")
        for dataset_replica in inventory.datasets[self.dataset].replicas.values():
            for block_replica in dataset_replica.block_replicas.values():
                table[block_replica] = True


def test_registered_providers_fill_the_attribute_tables(grid: Inventory) -> None:
    registry = REGISTRY.copy()
    provider = LockProvider("/A/B-v1/AOD")
    assert isinstance(provider, AttributeProvider)
    registry.register_provider(provider)
    assert "blockreplica.is_locked" not in registry.unprovided_variables()
    assert "dataset.usage_rank" in registry.unprovided_variables()
    attributes = registry.fill_attributes(grid, NOW)
    condition = parse_condition(
        "blockreplica.is_locked", context="replica", registry=registry, attributes=attributes
    )
    assert condition(replica(grid, "T2_US_MIT"))
    assert condition.missing_providers() == frozenset()
    assert REGISTRY.providers() == []


def test_a_provider_must_fill_tables_that_variables_read() -> None:
    registry = REGISTRY.copy()
    provider = LockProvider("/x/y/z")
    provider.provides = frozenset({"dataset.is_cursed"})
    with pytest.raises(ValueError, match="no provider variable reads"):
        registry.register_provider(provider)
    registry.register_provider(LockProvider("/x/y/z"))
    with pytest.raises(ValueError, match="already registered"):
        registry.register_provider(LockProvider("/x/y/z"))
