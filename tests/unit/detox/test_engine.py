"""The detox cycle: evaluation down the rules (dataset- and block-level), Delete everywhere,
the iteration (a site reaches its Until and no further; the most protected site first; copy
counts re-evaluated after each step), ownership hand-off, Algo Static, Order, purity."""

from __future__ import annotations

from collections import Counter

import pytest

from dynamo_common.messages.types import OwnershipLevel, StorageType
from dynamo_common.model.objects import Group, Inventory
from dynamo_common.policy.detox import Action, parse_detox_policy
from dynamo_detox.service.engine import (
    CycleConfig,
    CycleError,
    CycleOutcome,
    Decision,
    ReplicaDecision,
    run_cycle,
)
from tests.unit.policy.factories import (
    DAY,
    NOW,
    TB,
    add_dataset,
    add_group,
    add_partition,
    add_replica,
    add_site,
    make_inventory,
)

HEAD = "Partition Physics\nWhen site.occupancy > 0.9\nUntil site.occupancy < 0.85\n"


def physics(inventory: Inventory) -> None:
    add_partition(inventory, "Physics", "site.storage_type == DISK")


def cycle(
    inventory: Inventory,
    text: str,
    attributes: dict[str, dict[object, object]] | None = None,
    step: float = 0.02,
) -> CycleOutcome:
    policy = parse_detox_policy(text, file="policy.txt")
    return run_cycle(inventory, policy, attributes or {}, NOW, CycleConfig(volume_step=step))


def by_replica(outcome: CycleOutcome) -> dict[tuple[str, str], list[ReplicaDecision]]:
    found: dict[tuple[str, str], list[ReplicaDecision]] = {}
    for decision in outcome.decisions:
        found.setdefault((decision.dataset, decision.site), []).append(decision)
    return found


def decision_of(outcome: CycleOutcome, dataset: str, site: str) -> tuple[Decision, int]:
    (only,) = by_replica(outcome)[(dataset, site)]
    return only.decision, only.line


def site_of(outcome: CycleOutcome, name: str):  # type: ignore[no-untyped-def]
    (found,) = [s for s in outcome.sites if s.site == name]
    return found


def full_site(inventory: Inventory, name: str, sizes: list[int], quota: int) -> list[str]:
    """A disk site holding one single-block dataset per size; returns the dataset names."""
    site = add_site(inventory, name, quotas={"Physics": quota})
    names = []
    for index, size in enumerate(sizes):
        dataset_name = f"/D{index}/{name}-v1/AOD"
        dataset = inventory.datasets.get(dataset_name) or add_dataset(
            inventory, dataset_name, block_sizes=(size,)
        )
        add_replica(inventory, dataset, site)
        names.append(dataset_name)
    return names


# ------------------------------------------------------------------------------ evaluation


def test_first_matching_dataset_rule_decides_and_the_rest_takes_the_default() -> None:
    inv = make_inventory()
    physics(inv)
    site = add_site(inv, "T2_A", quotas={"Physics": 100 * TB})
    raw = add_dataset(inv, "/A/B-v1/RAW")
    aod = add_dataset(inv, "/A/B-v1/AOD")
    mini = add_dataset(inv, "/A/B-v1/MINIAOD")
    for dataset in (raw, aod, mini):
        add_replica(inv, dataset, site)
    outcome = cycle(
        inv,
        HEAD
        + "Protect dataset.name == /*/*/RAW\n"
        + "Dismiss dataset.name == /*/*/AOD\n"
        + "Protect dataset.name == /*/*/AOD\n"
        + "Ignore\n",
    )
    assert decision_of(outcome, "/A/B-v1/RAW", "T2_A") == (Decision.PROTECT, 4)
    assert decision_of(outcome, "/A/B-v1/AOD", "T2_A") == (Decision.KEEP, 5)
    assert decision_of(outcome, "/A/B-v1/MINIAOD", "T2_A") == (Decision.KEEP, 7)
    ignored = by_replica(outcome)[("/A/B-v1/MINIAOD", "T2_A")][0]
    assert ignored.action is Action.IGNORE and ignored.blocks is None
    assert site_of(outcome, "T2_A").protected == raw.size


def test_block_rule_decides_matching_blocks_and_evaluation_continues() -> None:
    inv = make_inventory()
    physics(inv)
    site = add_site(inv, "T2_A", quotas={"Physics": 100 * TB})
    dataset = add_dataset(inv, "/A/B-v1/AOD", block_sizes=(TB, TB, TB))
    replica = add_replica(inv, dataset, site)
    locked = {"blockreplica.is_locked": {replica.block_replicas["b1"]: True}}
    outcome = cycle(
        inv,
        HEAD + "ProtectBlock blockreplica.is_locked\n"
        # Sees only the two blocks left: 2 TB.
        "Dismiss replica.size < 2.5TB\nProtect\n",
        locked,
    )
    decisions = sorted(by_replica(outcome)[("/A/B-v1/AOD", "T2_A")], key=lambda d: d.line)
    assert [(d.decision, d.action, d.line, d.blocks, d.size) for d in decisions] == [
        (Decision.PROTECT, Action.PROTECT_BLOCK, 4, ("b1",), TB),
        (Decision.KEEP, Action.DISMISS, 5, ("b0", "b2"), 2 * TB),
    ]


def test_block_rule_matching_every_block_decides_the_whole_replica() -> None:
    inv = make_inventory()
    physics(inv)
    site = add_site(inv, "T2_A", quotas={"Physics": 100 * TB})
    dataset = add_dataset(inv, "/A/B-v1/AOD", block_sizes=(TB, TB))
    add_replica(inv, dataset, site)
    outcome = cycle(inv, HEAD + "ProtectBlock blockreplica.owner == AnalysisOps\nDismiss\n")
    (decision,) = outcome.decisions
    assert (decision.decision, decision.action, decision.blocks) == (
        Decision.PROTECT,
        Action.PROTECT_BLOCK,
        None,
    )


def test_only_block_replicas_of_the_partition_are_evaluated() -> None:
    inv = make_inventory()
    add_partition(inv, "Physics", "blockreplica.owner == AnalysisOps")
    site = add_site(inv, "T2_A", quotas={"Physics": 100 * TB})
    dataset = add_dataset(inv, "/A/B-v1/AOD", block_sizes=(TB, 2 * TB))
    add_replica(inv, dataset, site, block_groups={"b1": "DataOps"})
    other = add_dataset(inv, "/C/D-v1/AOD")
    add_replica(inv, other, site, group="DataOps")
    outcome = cycle(inv, HEAD + "Protect replica.size > 1.5TB\nDismiss\n")
    (decision,) = outcome.decisions
    assert (decision.dataset, decision.blocks, decision.size, decision.decision) == (
        "/A/B-v1/AOD",
        ("b0",),
        TB,
        Decision.KEEP,
    )
    assert site_of(outcome, "T2_A").used_before == TB


def test_blockreplica_variables_on_a_dataset_rule_mean_any_block() -> None:
    inv = make_inventory()
    physics(inv)
    site = add_site(inv, "T2_A", quotas={"Physics": 100 * TB})
    dataset = add_dataset(inv, "/A/B-v1/AOD", block_sizes=(TB, TB))
    replica = add_replica(inv, dataset, site)
    locks = {"blockreplica.is_locked": {replica.block_replicas["b0"]: True}}
    outcome = cycle(inv, HEAD + "Protect blockreplica.is_locked\nDismiss\n", locks)
    assert decision_of(outcome, "/A/B-v1/AOD", "T2_A") == (Decision.PROTECT, 4)


# ------------------------------------------------------------------- triggers and deletion


def test_a_site_reaches_its_until_and_no_further() -> None:
    inv = make_inventory()
    physics(inv)
    # 95 TB of 100: needs > 10 TB gone to be under 85%.
    names = full_site(inv, "T2_A", [TB * 5] * 19, 100 * TB)
    outcome = cycle(inv, HEAD + "Dismiss\nOrder increasing dataset.name\n", step=1.0)
    deleted = sorted(d.dataset for d in outcome.deletions)
    assert deleted == sorted(names)[:3]
    site = site_of(outcome, "T2_A")
    assert (site.used_before, site.used_after, site.deleted) == (95 * TB, 80 * TB, 15 * TB)
    assert site.triggered and site.stopped
    assert site.candidates_left == 0
    kept = [d for d in outcome.decisions if d.decision is Decision.KEEP]
    assert len(kept) == 16 and all(d.line == 4 for d in kept)


def test_sites_not_triggered_lose_nothing_but_delete_decisions() -> None:
    inv = make_inventory()
    physics(inv)
    full_site(inv, "T2_A", [TB] * 5, 100 * TB)
    invalid = add_dataset(inv, "/X/Y-v1/AOD", block_sizes=(TB,))
    from dynamo_common.messages.types import DatasetStatus

    invalid.status = DatasetStatus.INVALID
    add_replica(inv, invalid, inv.sites["T2_A"])
    outcome = cycle(inv, HEAD + "Delete dataset.status == INVALID\nDismiss\n")
    assert not site_of(outcome, "T2_A").triggered
    assert [(d.dataset, d.line, d.iteration) for d in outcome.deletions] == [("/X/Y-v1/AOD", 4, 0)]
    assert site_of(outcome, "T2_A").used_after == 5 * TB


def test_volume_step_spreads_deletions_over_iterations() -> None:
    inv = make_inventory()
    physics(inv)
    full_site(inv, "T2_A", [TB] * 95, 100 * TB)
    outcome = cycle(inv, HEAD + "Dismiss\n", step=0.02)
    iterations = Counter(d.iteration for d in outcome.deletions)
    # 2 TB per iteration until 84 TB are left: 11 deletions in 6 iterations.
    assert sum(iterations.values()) == 11
    assert outcome.iterations == 6
    assert max(iterations.values()) == 2
    assert site_of(outcome, "T2_A").used_after == 84 * TB


def test_the_site_with_the_most_protected_volume_goes_first() -> None:
    inv = make_inventory()
    physics(inv)
    full_site(inv, "T2_LOW", [TB] * 91, 100 * TB)
    full_site(inv, "T2_HIGH", [TB] * 91, 100 * TB)
    for index in range(30):
        inv.datasets[f"/D{index}/T2_HIGH-v1/AOD"].software_version = "PROTECTED"
    for index in range(10):
        inv.datasets[f"/D{index}/T2_LOW-v1/AOD"].software_version = "PROTECTED"
    outcome = cycle(inv, HEAD + "Protect dataset.release == PROTECTED\nDismiss\n", step=0.03)
    first = {d.site: d.iteration for d in sorted(outcome.deletions, key=lambda d: -d.iteration)}
    last = {d.site: d.iteration for d in sorted(outcome.deletions, key=lambda d: d.iteration)}
    # All of T2_HIGH's iterations come before T2_LOW's.
    assert last["T2_HIGH"] < first["T2_LOW"]
    assert site_of(outcome, "T2_HIGH").protected == 30 * TB
    assert site_of(outcome, "T2_LOW").protected == 10 * TB


def test_copy_counts_are_re_evaluated_so_the_last_copy_stays() -> None:
    inv = make_inventory()
    physics(inv)
    a = add_site(inv, "T2_A", quotas={"Physics": 10 * TB})
    b = add_site(inv, "T2_B", quotas={"Physics": 10 * TB})
    shared = add_dataset(inv, "/Shared/Run-v1/AOD", block_sizes=(5 * TB,))
    add_replica(inv, shared, a)
    add_replica(inv, shared, b)
    for site in (a, b):
        filler = add_dataset(inv, f"/Fill/{site.name}-v1/AOD", block_sizes=(9 * TB // 2,))
        add_replica(inv, filler, site)
    policy = (
        HEAD + "Protect replica.num_full_other_copy_common_owner < 1\n"
        "Dismiss\nOrder decreasing replica.size\n"
    )
    outcome = cycle(inv, policy, step=1.0)
    decisions = by_replica(outcome)
    shared_decisions = [decisions[("/Shared/Run-v1/AOD", s)][0].decision for s in ("T2_A", "T2_B")]
    # One copy went (the larger candidate first); the other became the last one: protected.
    assert sorted(shared_decisions) == [Decision.DELETE, Decision.PROTECT]
    kept_site = "T2_A" if shared_decisions[1] is Decision.DELETE else "T2_B"
    assert decisions[("/Shared/Run-v1/AOD", kept_site)][0].line == 4
    # Equal protected volume (each filler is a last copy): the first site by name went first.
    assert kept_site == "T2_B"
    assert site_of(outcome, "T2_A").stopped
    assert not site_of(outcome, "T2_B").stopped
    assert site_of(outcome, "T2_B").candidates_left == 0


def test_delete_decisions_apply_at_every_target_site() -> None:
    inv = make_inventory()
    physics(inv)
    dataset = add_dataset(inv, "/Old/Run-v1/AOD", last_update=NOW - 30 * DAY)
    for name in ("T2_A", "T2_B", "T1_C_Disk"):
        add_replica(inv, dataset, add_site(inv, name, quotas={"Physics": 100 * TB}))
    outcome = cycle(
        inv,
        "Partition Physics\nOn site.name in [T2_*]\nWhen never\nUntil always\n"
        "Delete dataset.last_update older_than 2 weeks ago\nProtect\n",
    )
    assert sorted(d.site for d in outcome.deletions) == ["T2_A", "T2_B"]
    assert [s.site for s in outcome.sites] == ["T2_A", "T2_B"]


def test_without_on_every_site_of_the_partition_is_a_target() -> None:
    inv = make_inventory()
    physics(inv)
    full_site(inv, "T2_QUOTA", [], 10 * TB)
    add_site(inv, "T2_NOTHING")
    tape = add_site(inv, "T1_X_MSS", storage_type=StorageType.TAPE)
    add_replica(inv, add_dataset(inv, "/T/A-v1/RAW"), tape)
    full_site(inv, "T2_DATA", [TB], 0)
    outcome = cycle(inv, HEAD + "Dismiss\n")
    assert [s.site for s in outcome.sites] == ["T2_DATA", "T2_QUOTA"]
    # No quota and data: infinitely full, triggered; nothing keeps it from deleting.
    assert site_of(outcome, "T2_DATA").triggered
    assert site_of(outcome, "T2_DATA").used_after == 0


def test_when_or_until_lines_are_ored() -> None:
    inv = make_inventory()
    physics(inv)
    full_site(inv, "T2_A", [TB] * 5, 100 * TB)
    outcome = cycle(
        inv,
        "Partition Physics\nWhen site.occupancy > 0.9\nWhen site.name == T2_A\n"
        "Until site.occupancy < 0.01\nUntil site.quota < 1\nDismiss\n",
        step=1.0,
    )
    assert len(outcome.deletions) == 5


# ---------------------------------------------------------------------- ownership hand-off


def _handoff_grid(partition: str) -> Inventory:
    inv = make_inventory()
    add_partition(inv, "Physics", partition)
    inv.groups["FacOps"] = Group(10, "FacOps", OwnershipLevel.BLOCK)
    add_group(inv, "AnalysisOps")
    site = add_site(inv, "T2_A", quotas={"Physics": 10 * TB})
    dataset = add_dataset(inv, "/A/B-v1/AOD", block_sizes=(TB, 2 * TB, 3 * TB))
    add_replica(inv, dataset, site, block_groups={"b1": "FacOps", "b2": "FacOps"})
    return inv


def test_blocks_of_a_block_level_group_pass_to_the_dataset_level_owner() -> None:
    inv = _handoff_grid("site.storage_type == DISK")
    outcome = cycle(
        inv,
        "Partition Physics\nWhen never\nUntil always\n"
        "DeleteBlock blockreplica.owner == FacOps\nProtect\n",
    )
    handed = outcome.hand_offs
    assert [(d.blocks, d.handed_to, d.decision, d.size) for d in handed] == [
        (("b1", "b2"), "AnalysisOps", Decision.KEEP, 5 * TB)
    ]
    assert outcome.deletions == []
    # Still in the partition with the new owner: evaluated again, protected by the default.
    final = [d for d in outcome.decisions if d.handed_to is None]
    assert [(d.blocks, d.decision) for d in final] == [(None, Decision.PROTECT)]
    site = site_of(outcome, "T2_A")
    assert site.used_after == site.used_before == 6 * TB
    # The read model still says FacOps.
    assert inv.datasets["/A/B-v1/AOD"].replicas["T2_A"].block_replicas["b1"].group.name == (
        "FacOps"
    )


def test_blocks_that_are_the_whole_image_of_a_replica_are_deleted_not_handed_over() -> None:
    inv = _handoff_grid("blockreplica.owner == FacOps")
    outcome = cycle(
        inv,
        "Partition Physics\nWhen always\nUntil site.occupancy < 0.01\nDismiss\n",
    )
    # The partition sees only the FacOps blocks (5 of the replica's 6 TB): all its blocks in
    # the image go, so they are deleted, not handed over.
    assert [(d.blocks, d.decision) for d in outcome.deletions] == [(("b1", "b2"), Decision.DELETE)]
    assert outcome.hand_offs == []


def test_hand_off_leaving_the_partition() -> None:
    inv = make_inventory()
    add_partition(inv, "Physics", "blockreplica.owner == FacOps")
    inv.groups["FacOps"] = Group(10, "FacOps", OwnershipLevel.BLOCK)
    add_group(inv, "AnalysisOps")
    site = add_site(inv, "T2_A", quotas={"Physics": 10 * TB})
    dataset = add_dataset(inv, "/A/B-v1/AOD", block_sizes=(TB, 2 * TB, 3 * TB))
    replica = add_replica(inv, dataset, site, block_groups={"b1": "FacOps", "b2": "FacOps"})
    locks = {"blockreplica.is_locked": {replica.block_replicas["b1"]: True}}
    outcome = cycle(
        inv,
        "Partition Physics\nWhen always\nUntil site.occupancy < 0.01\n"
        "ProtectBlock blockreplica.is_locked\nDismiss\n",
        locks,
    )
    # b1 is protected; b2 is a candidate but not the whole image of the replica (b1 stays):
    # it passes to AnalysisOps (the replica's dataset-level owner) and leaves the partition.
    assert [(d.blocks, d.handed_to) for d in outcome.hand_offs] == [(("b2",), "AnalysisOps")]
    assert outcome.deletions == []
    result = site_of(outcome, "T2_A")
    assert (result.used_before, result.used_after, result.handed_over) == (5 * TB, 2 * TB, 3 * TB)


def test_no_hand_off_without_a_dataset_level_owner() -> None:
    inv = make_inventory()
    physics(inv)
    inv.groups["FacOps"] = Group(10, "FacOps", OwnershipLevel.BLOCK)
    site = add_site(inv, "T2_A", quotas={"Physics": 10 * TB})
    dataset = add_dataset(inv, "/A/B-v1/AOD", block_sizes=(TB, TB))
    add_replica(inv, dataset, site, group="FacOps")
    replica = dataset.replicas["T2_A"]
    locks = {"blockreplica.is_locked": {replica.block_replicas["b0"]: True}}
    outcome = cycle(
        inv,
        "Partition Physics\nWhen always\nUntil never\nProtectBlock blockreplica.is_locked\n"
        "Dismiss\n",
        locks,
    )
    assert [(d.blocks, d.decision) for d in outcome.deletions] == [(("b1",), Decision.DELETE)]
    assert outcome.hand_offs == []


# --------------------------------------------------------------------------- Static, Order


def test_algo_static_deletes_every_candidate_in_one_iteration() -> None:
    inv = make_inventory()
    physics(inv)
    full_site(inv, "T2_A", [TB] * 95, 100 * TB)
    full_site(inv, "T2_B", [TB] * 99, 100 * TB)
    outcome = cycle(inv, HEAD + "Algo Static\nDismiss\n", step=0.01)
    assert outcome.iterations == 1
    assert site_of(outcome, "T2_A").used_after == 84 * TB
    assert site_of(outcome, "T2_B").used_after == 84 * TB
    assert {d.iteration for d in outcome.deletions} == {1}


def test_algo_static_with_until_never_deletes_every_candidate() -> None:
    inv = make_inventory()
    physics(inv)
    full_site(inv, "T2_A", [TB] * 10, 100 * TB)
    outcome = cycle(
        inv,
        "Partition Physics\nWhen always\nUntil never\nAlgo Static\n"
        "Dismiss dataset.name == /D1*/*/*\nProtect\n",
    )
    assert sorted(d.dataset for d in outcome.deletions) == ["/D1/T2_A-v1/AOD"]


def test_algo_static_still_keeps_a_last_copy() -> None:
    inv = make_inventory()
    physics(inv)
    shared = add_dataset(inv, "/Shared/Run-v1/AOD", block_sizes=(TB,))
    for name in ("T2_A", "T2_B"):
        add_replica(inv, shared, add_site(inv, name, quotas={"Physics": TB}))
    outcome = cycle(
        inv,
        "Partition Physics\nWhen always\nUntil never\nAlgo Static\n"
        "Protect replica.num_full_other_copy_common_owner < 1\nDismiss\n",
    )
    assert [d.site for d in outcome.deletions] == ["T2_A"]
    assert decision_of(outcome, "/Shared/Run-v1/AOD", "T2_B") == (Decision.PROTECT, 5)


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("Order increasing replica.size", ["/D1/T2_A-v1/AOD", "/D3/T2_A-v1/AOD"]),
        ("Order decreasing replica.size", ["/D0/T2_A-v1/AOD"]),
        ("Order none", ["/D0/T2_A-v1/AOD"]),
        ("Order decreasing dataset.usage_rank", ["/D2/T2_A-v1/AOD"]),
        ("Order increasing dataset.usage_rank", ["/D0/T2_A-v1/AOD"]),
    ],
)
def test_candidates_go_in_the_policy_order(order: str, expected: list[str]) -> None:
    inv = make_inventory()
    physics(inv)
    names = full_site(inv, "T2_A", [10 * TB, 2 * TB, 5 * TB, 3 * TB], 20 * TB)
    ranks = {inv.datasets[n]: rank for n, rank in zip(names, [1, 2, 9, 5], strict=True)}
    outcome = cycle(
        inv,
        "Partition Physics\nWhen always\nUntil site.occupancy < 0.8\nDismiss\n" + order + "\n",
        {"dataset.usage_rank": ranks},
        step=1.0,
    )
    assert sorted(d.dataset for d in outcome.deletions) == sorted(expected)


def test_order_ties_fall_back_to_names() -> None:
    inv = make_inventory()
    physics(inv)
    full_site(inv, "T2_A", [TB] * 4, 4 * TB)
    outcome = cycle(
        inv,
        "Partition Physics\nWhen always\nUntil site.occupancy < 0.6\nDismiss\n"
        "Order increasing replica.size\n",
        step=1.0,
    )
    assert [d.dataset for d in outcome.deletions] == ["/D0/T2_A-v1/AOD", "/D1/T2_A-v1/AOD"]


# ------------------------------------------------------------------------ campaign indexes


def test_literal_name_campaign_rules_keep_first_match_semantics() -> None:
    inv = make_inventory()
    physics(inv)
    site = add_site(inv, "T2_A", quotas={"Physics": 100 * TB})
    for index in range(30):
        add_replica(inv, add_dataset(inv, f"/C{index}/R-v1/AOD"), site)
    lines = [f"Delete dataset.name == /C{i}/R-v1/AOD and site.name == T2_B" for i in range(10)]
    lines += [f"Protect dataset.name == /C{i}/R-v1/AOD" for i in range(0, 20, 2)]
    lines += [f"Delete dataset.name in [/C{i}/R-v1/AOD /C{i + 1}/R-v1/AOD]" for i in range(0, 20)]
    lines += ["Dismiss dataset.name == /C2*/*/*"]
    outcome = cycle(
        inv, "Partition Physics\nWhen never\nUntil always\n" + "\n".join(lines) + "\nProtect\n"
    )
    decided = {d.dataset: (d.decision, d.line) for d in outcome.decisions}
    assert decided["/C0/R-v1/AOD"] == (Decision.PROTECT, 14)
    assert decided["/C1/R-v1/AOD"] == (Decision.DELETE, 24)
    assert decided["/C3/R-v1/AOD"] == (Decision.DELETE, 26)
    assert decided["/C21/R-v1/AOD"] == (Decision.KEEP, 44)
    assert decided["/C29/R-v1/AOD"] == (Decision.KEEP, 44)
    assert decided["/C25/R-v1/AOD"][1] == 44
    assert decided["/C20/R-v1/AOD"] == (Decision.DELETE, 43)


# ------------------------------------------------------------------------------ the cycle


def test_missing_providers_are_reported() -> None:
    inv = make_inventory()
    physics(inv)
    full_site(inv, "T2_A", [TB], 10 * TB)
    outcome = cycle(
        inv,
        HEAD + "Protect blockreplica.is_last_transfer_source\nDismiss dataset.usage_rank > 3\n"
        "Protect\nOrder decreasing dataset.last_access\n",
        {"dataset.usage_rank": {}},
    )
    assert outcome.missing_providers == [
        "blockreplica.is_last_transfer_source",
        "dataset.last_access",
    ]


def test_an_unknown_partition_is_a_cycle_error() -> None:
    inv = make_inventory()
    with pytest.raises(CycleError, match="partition 'Physics' is not defined"):
        cycle(inv, HEAD + "Dismiss\n")


def _fingerprint(inv: Inventory) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for dataset in inv.datasets.values():
        for site, replica in dataset.replicas.items():
            for name, br in replica.block_replicas.items():
                rows.append((dataset.name, site, name, br.group.name, br.size, id(br)))
        for block in dataset.blocks.values():
            rows.append((block.full_name, tuple(id(r) for r in block.replicas)))
    for site in inv.sites.values():
        rows.append((site.name, tuple(site.dataset_replicas)))
    return rows


def test_the_cycle_changes_neither_the_inventory_nor_the_attributes() -> None:
    inv = _handoff_grid("site.storage_type == DISK")
    full_site(inv, "T2_B", [TB] * 20, 10 * TB)
    replica = inv.datasets["/A/B-v1/AOD"].replicas["T2_A"]
    attributes: dict[str, dict[object, object]] = {
        "blockreplica.is_locked": {replica.block_replicas["b0"]: True}
    }
    before = _fingerprint(inv)
    tables = {k: dict(v) for k, v in attributes.items()}
    first = cycle(
        inv,
        "Partition Physics\nWhen always\nUntil site.occupancy < 0.5\n"
        "ProtectBlock blockreplica.is_locked\nDismiss\n",
        attributes,
    )
    assert first.deletions and first.hand_offs
    assert _fingerprint(inv) == before
    assert attributes == tables
    second = cycle(
        inv,
        "Partition Physics\nWhen always\nUntil site.occupancy < 0.5\n"
        "ProtectBlock blockreplica.is_locked\nDismiss\n",
        attributes,
    )
    assert second.decisions == first.decisions


# ------------------------------------------------------------------ on a synthetic grid


def _synthetic() -> Inventory:
    from dynamo_common import gridgen
    from dynamo_common.model.objects import Partition

    inv = gridgen.to_inventory(gridgen.generate("tiny", seed=5))
    for name in ("AnalysisOps", "DataOps"):
        condition = f"blockreplica.owner == {name} and site.storage_type == DISK"
        inv.partitions[name] = Partition(name, condition)
    inv.partitions["Physics"] = Partition("Physics", None, ("AnalysisOps", "DataOps"))
    return inv


def test_usage_before_is_the_partition_usage_of_site_usage() -> None:
    from dynamo_common.policy import site_usage

    inv = _synthetic()
    usage = site_usage(inv)
    for on in ("", "On site.occupancy > -1\n"):
        outcome = cycle(inv, "Partition Physics\n" + on + "When never\nUntil always\nProtect\n")
        assert outcome.sites
        for site in outcome.sites:
            assert (site.used_before, site.quota) == usage[site.site]["Physics"]


def test_on_a_synthetic_grid_triggered_sites_end_under_until_or_out_of_candidates() -> None:
    inv = _synthetic()
    policy = (
        "Partition Physics\nWhen site.occupancy > 0.6\nUntil site.occupancy < 0.5\n"
        "Protect replica.num_full_other_copy_common_owner < 1\nDismiss\n"
        "Order increasing replica.size\n"
    )
    first = cycle(inv, policy)
    assert first.deletions
    for site in first.sites:
        if site.triggered:
            assert site.stopped or site.candidates_left == 0
            assert site.used_after == site.used_before - site.deleted - site.handed_over
    # Never the last copy: every deleted dataset keeps a complete copy somewhere else.
    for deletion in first.deletions:
        survivors = [
            d
            for d in first.decisions
            if d.dataset == deletion.dataset and d.decision is not Decision.DELETE
        ]
        others = set(inv.datasets[deletion.dataset].replicas) - {
            d.site for d in first.decisions if d.dataset == deletion.dataset
        }
        assert survivors or others, deletion.dataset
    assert cycle(inv, policy).decisions == first.decisions
