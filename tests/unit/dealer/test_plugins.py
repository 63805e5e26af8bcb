"""Each plugin on its own: what it proposes from the read model and its inputs."""

from __future__ import annotations

import json

from dynamo_common.messages.types import SiteStatus, StorageType
from dynamo_common.model.objects import Container
from dynamo_common.policy.enforcer import parse_enforcer_rules
from dynamo_common.policy.partitions import site_usage
from dynamo_dealer.service import monitoring, states
from dynamo_dealer.service.plugins import (
    balancer,
    enforcer,
    popularity,
    requests,
    subscriptions,
    undertaker,
)
from tests.unit.dealer.factories import GB, NOW, TB, add_dataset, add_replica, add_site, grid

DAY = 86400.0


# ----------------------------------------------------------------------------- requests


def test_request_items_resolve_patterns_blocks_and_containers() -> None:
    inventory = grid(
        {"T2_A": TB},
        datasets=[("/A/R1-v1/AOD", GB), ("/A/R2-v1/AOD", GB), ("/B/R1-v1/MINIAOD", GB)],
    )
    inventory.containers["Box"] = Container("Box", ("/B/R1-v1/MINIAOD",))
    found, unknown = requests.resolve(
        inventory, ["/A/*/AOD", "/B/R1-v1/MINIAOD#b0", "Box", "/A/R1-v1/AOD#b0", "/Z/*/*", "No"]
    )
    assert found == [("/A/R1-v1/AOD", None), ("/A/R2-v1/AOD", None), ("/B/R1-v1/MINIAOD", None)]
    assert unknown == ["/Z/*/*", "No"]


def test_a_request_is_validated_against_the_inventory_and_the_targets() -> None:
    inventory = grid({"T2_A": TB, "T2_B": TB}, datasets=[("/A/R-v1/AOD", 2 * GB)])
    ok = requests.validate(inventory, ["/A/R-v1/AOD"], ["T2_*"], "AnalysisOps", GB * 10, {"T2_A"})
    assert ok == ([("/A/R-v1/AOD", None)], 2 * GB, None)
    assert requests.validate(inventory, ["/A/R-v1/AOD"], ["T2_*"], "X", GB * 10, {"T2_A"})[2] == (
        "invalid group X"
    )
    too_big = requests.validate(inventory, ["/A/R-v1/AOD"], ["T2_*"], "AnalysisOps", GB, {"T2_A"})
    assert too_big[2] == f"too large: {2 * GB} bytes, the limit is {GB}"
    nowhere = requests.validate(inventory, ["/A/R-v1/AOD"], ["T2_B"], "AnalysisOps", TB, {"T2_A"})
    assert nowhere[2] == "no matching site: T2_B names no target site"


def test_a_request_proposes_only_the_copies_still_missing() -> None:
    inventory = grid({"T2_A": TB, "T2_B": TB, "T2_C": TB}, datasets=[("/A/R-v1/AOD", GB)])
    add_replica(inventory, inventory.datasets["/A/R-v1/AOD"], inventory.sites["T2_A"])
    spec = requests.RequestSpec(4, "AnalysisOps", (("/A/R-v1/AOD", None),), ("T2_*",), 2)
    (proposal,) = requests.proposals(inventory, [spec], 5.0)
    assert proposal.allowed == frozenset({"T2_A", "T2_B", "T2_C"}) and proposal.site is None
    assert requests.progress(inventory, spec) == requests.Progress(2, 1, 1)
    fixed = requests.RequestSpec(5, "AnalysisOps", (("/A/R-v1/AOD", None),), ("T2_B",), 1)
    (at_b,) = requests.proposals(inventory, [fixed], 5.0)
    assert (at_b.site, at_b.reference) == ("T2_B", "5")


def test_request_states_follow_the_table_and_refuse_late_moves() -> None:
    assert states.allowed("new", "activated") and states.allowed("activated", "completed")
    assert states.allowed("new", "cancelled") and states.allowed("activated", "cancelled")
    assert not states.allowed("completed", "cancelled")
    assert not states.allowed("cancelled", "activated")
    assert not states.allowed("activated", "new")
    assert not states.allowed("rejected", "activated")


# ------------------------------------------------------------------------ subscriptions


def test_a_subscription_asks_for_the_dataset_then_for_each_new_block() -> None:
    inventory = grid({"T2_A": TB}, datasets=[])
    dataset = add_dataset(inventory, "/A/R-v1/AOD", block_sizes=(GB, GB, GB))
    add_replica(inventory, dataset, inventory.sites["T1_SOURCE"])
    sub = subscriptions.SubscriptionSpec(1, "/A/R-v1/AOD", "T2_A", "AnalysisOps")
    (whole,) = subscriptions.proposals(inventory, [sub], 4.0, set())
    assert (whole.dataset, whole.block, whole.site) == ("/A/R-v1/AOD", None, "T2_A")
    add_replica(inventory, dataset, inventory.sites["T2_A"], blocks=["b0"])
    placed = {("/A/R-v1/AOD", "b1", "T2_A")}
    blocks = subscriptions.proposals(inventory, [sub], 4.0, placed)
    assert [b.block for b in blocks] == ["b2"]


# --------------------------------------------------------------------------- popularity


def test_accesses_lose_half_their_weight_every_half_life() -> None:
    accesses = [
        popularity.Access("/A/R-v1/AOD", NOW, 100),
        popularity.Access("/B/R-v1/AOD", NOW - 7 * DAY, 100),
        popularity.Access("/B/R-v1/AOD", NOW - 14 * DAY, 100),
    ]
    weights = popularity.decayed_weights(accesses, NOW, half_life_days=7)
    assert weights["/A/R-v1/AOD"] == 100
    assert abs(weights["/B/R-v1/AOD"] - 75) < 1e-9


def test_popular_datasets_get_copies_up_to_the_cap_the_most_wanted_first() -> None:
    inventory = grid(
        {"T2_A": TB, "T2_B": TB},
        datasets=[("/Hot/R-v1/AOD", GB), ("/Warm/R-v1/AOD", GB), ("/Huge/R-v1/AOD", 10 * TB)],
    )
    rules = popularity.PopularityRules(
        "AnalysisOps", weight_per_copy=100, max_copies=3, max_dataset_size=TB
    )
    weights = {"/Hot/R-v1/AOD": 1000.0, "/Warm/R-v1/AOD": 150.0, "/Huge/R-v1/AOD": 5000.0}
    targets = {"T1_SOURCE", "T2_A", "T2_B"}
    proposals = popularity.proposals(inventory, weights, rules, targets, 2.0)
    # Hot wants 3 (capped) and has 1; Warm wants 2 and has 1; Huge is over the size limit.
    assert [p.dataset for p in proposals] == ["/Hot/R-v1/AOD", "/Hot/R-v1/AOD", "/Warm/R-v1/AOD"]
    assert proposals[0].weight == 1000.0


# ----------------------------------------------------------------------------- enforcer


def test_enforcer_rules_propose_missing_copies_and_report_compliance() -> None:
    inventory = grid(
        {"T2_US_A": 100 * TB, "T2_DE_B": 100 * TB},
        datasets=[("/A/R-v1/MINIAOD", GB), ("/B/R-v1/MINIAOD", GB), ("/C/R-v1/AOD", GB)],
    )
    add_replica(inventory, inventory.datasets["/B/R-v1/MINIAOD"], inventory.sites["T2_US_A"])
    policy = parse_enforcer_rules(
        json.dumps(
            {
                "partition": "Physics",
                "default_destination_group": "AnalysisOps",
                "rules": {
                    "us": {
                        "replicas": ["dataset.name == /*/*/MINIAOD"],
                        "num_copies": 1,
                        "destinations": ["site.name == T2_US_*"],
                        "protect": True,
                    }
                },
            }
        )
    )
    usage = site_usage(inventory, now=NOW)
    evaluated = enforcer.evaluate([policy], inventory, usage, NOW)
    (report,) = enforcer.compliance(evaluated)
    assert (report.rule, report.datasets, report.there, report.missing) == ("us", 2, 1, 1)
    (proposal,) = enforcer.proposals(evaluated, inventory, usage, NOW, 3.0)
    assert (proposal.dataset, proposal.allowed, proposal.reference) == (
        "/A/R-v1/MINIAOD",
        frozenset({"T2_US_A"}),
        "us",
    )


# ----------------------------------------------------------------------------- balancer


def test_the_balancer_moves_last_copies_off_the_most_protected_site_until_balanced() -> None:
    inventory = grid({"T2_A": 100 * TB, "T2_B": 100 * TB}, datasets=[])
    site_a = inventory.sites["T2_A"]
    for index, size in enumerate((30 * TB, 20 * TB, 10 * TB)):
        add_replica(
            inventory, add_dataset(inventory, f"/L{index}/R-v1/AOD", block_sizes=(size,)), site_a
        )
    shared = add_dataset(inventory, "/Shared/R-v1/AOD", block_sizes=(40 * TB,))
    add_replica(inventory, shared, site_a)
    add_replica(inventory, shared, inventory.sites["T2_B"])
    protected = {"T2_A": (60 * TB, 100 * TB), "T2_B": (5 * TB, 100 * TB)}
    rules = balancer.BalancerRules(threshold=0.1)
    proposals = balancer.proposals(inventory, protected, rules, 1.0)
    # 0.60 - 0.05 -> move 30 TB (0.25 spread) -> move 20 TB (0.05): balanced. Shared is not
    # a last copy.
    assert [(p.dataset, p.reference) for p in proposals] == [
        ("/L0/R-v1/AOD", "T2_A"),
        ("/L1/R-v1/AOD", "T2_A"),
    ]
    assert (
        balancer.proposals(
            inventory, {"T2_A": (10 * TB, 100 * TB), "T2_B": (5 * TB, 100 * TB)}, rules, 1.0
        )
        == []
    )


# --------------------------------------------------------------------------- undertaker


def test_the_undertaker_rescues_only_copies_that_exist_nowhere_else() -> None:
    inventory = grid(
        {"T2_DYING": 100 * TB, "T2_LEAVING": 100 * TB, "T2_OK": 100 * TB},
        datasets=[],
        statuses={"T2_DYING": SiteStatus.MORGUE},
    )
    dying, leaving, ok = (inventory.sites[n] for n in ("T2_DYING", "T2_LEAVING", "T2_OK"))
    only_there = add_dataset(inventory, "/Only/R-v1/AOD")
    add_replica(inventory, only_there, dying)
    elsewhere = add_dataset(inventory, "/Safe/R-v1/AOD")
    add_replica(inventory, elsewhere, dying)
    add_replica(inventory, elsewhere, ok)
    evacuated = add_dataset(inventory, "/Evac/R-v1/AOD")
    add_replica(inventory, evacuated, leaving)
    add_replica(inventory, evacuated, dying)
    tape = add_site(inventory, "T1_TAPE", StorageType.TAPE)
    assert tape.status is SiteStatus.READY
    rules = undertaker.UndertakerRules(evacuate=frozenset({"T2_LEAVING"}))
    proposals = undertaker.proposals(inventory, rules, 4.0)
    assert sorted(p.dataset for p in proposals) == ["/Evac/R-v1/AOD", "/Only/R-v1/AOD"]
    assert undertaker.leaving_sites(inventory, rules.evacuate) == {"T2_DYING", "T2_LEAVING"}


# --------------------------------------------------------------------------- monitoring


def test_a_replica_is_stuck_when_less_than_one_percent_arrived_within_the_window() -> None:
    inventory = grid({"T2_A": 100 * TB}, datasets=[("/A/R-v1/AOD", 100 * GB)])
    dataset = inventory.datasets["/A/R-v1/AOD"]
    add_replica(inventory, dataset, inventory.sites["T2_A"], partial=["b0"])
    tracked = monitoring.Tracked(1, "/A/R-v1/AOD", None, "T2_A", NOW, 0, NOW)
    window = 5 * DAY
    (fresh,), _ = monitoring.in_flight(inventory, [tracked], NOW + DAY, window)
    # Half arrived since the mark: the mark moves and the replica is not stuck.
    assert (fresh.copied, fresh.mark_bytes, fresh.mark_time, fresh.stuck) == (
        50 * GB,
        50 * GB,
        NOW + DAY,
        False,
    )
    moved = monitoring.Tracked(1, "/A/R-v1/AOD", None, "T2_A", NOW, 50 * GB, NOW + DAY)
    (later,), _ = monitoring.in_flight(inventory, [moved], NOW + 7 * DAY, window)
    assert later.stuck and later.progress == 0.5
    total, per_site = monitoring.summarise([later])
    assert (total.copied, total.total, total.stuck) == (50 * GB, 100 * GB, 1)
    assert list(per_site) == ["T2_A"]
    gone = monitoring.Tracked(2, "/A/R-v1/AOD", None, "T2_NONE", NOW, 0, NOW, inventory.seq)
    flying, over = monitoring.in_flight(inventory, [gone], NOW + 60, window)
    assert flying == [] and over == [gone]


def test_a_placement_whose_replica_is_not_created_yet_is_in_flight_with_nothing_copied() -> None:
    # The cycle records the placement; the command that creates its replica follows.
    inventory = grid({"T2_A": 100 * TB}, datasets=[("/A/R-v1/AOD", 100 * GB)])
    waiting = monitoring.Tracked(3, "/A/R-v1/AOD", None, "T2_A", NOW, 0, NOW)
    (flying,), over = monitoring.in_flight(inventory, [waiting], NOW + 60, 5 * DAY)
    assert over == [] and (flying.copied, flying.total, flying.stuck) == (0, 100 * GB, False)


# ---------------------------------------------------------------------- deletion requests


def test_a_deletion_request_never_removes_a_last_copy() -> None:
    from dynamo_dealer.service import deletions

    inventory = grid({"T2_A": TB, "T2_B": TB}, datasets=[("/A/R-v1/AOD", GB)])
    dataset = inventory.datasets["/A/R-v1/AOD"]
    add_replica(inventory, dataset, inventory.sites["T2_A"])
    at_a = deletions.DeletionSpec(1, "/A/R-v1/AOD", None, "T2_A")
    assert deletions.validate(inventory, at_a) == (GB, None)
    assert deletions.validate(inventory, deletions.DeletionSpec(2, "/A/R-v1/AOD", None, "T2_B"))[
        1
    ] == ("no replica of /A/R-v1/AOD at T2_B")
    # A partial copy elsewhere is no copy: the source's replica is the last complete one.
    add_replica(inventory, dataset, inventory.sites["T2_B"], partial=["b0"])
    source = deletions.DeletionSpec(3, "/A/R-v1/AOD", None, "T1_SOURCE")
    assert deletions.validate(inventory, source) == (GB, None)
    # Once the replica at T2_A is being deleted (owner cleared), the source's is the last.
    owner = inventory.groups["None"]
    replica = dataset.replicas["T2_A"]
    replica.group = owner
    for block_replica in replica.block_replicas.values():
        block_replica.group = owner
    assert deletions.validate(inventory, source)[1] == "the last complete copy: it stays"
    assert deletions.validate(inventory, at_a)[1] == "the replica is already being deleted"
    assert not deletions.gone(inventory, at_a)
    assert deletions.owner_cleared(at_a).dataset_replicas[0].group == "None"
    assert deletions.file_deletion(at_a).requests[0].reference == "dealer deletion request 1"
