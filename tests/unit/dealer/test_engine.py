"""The engine's checks and merging: every proposal gets a decision and a reason."""

from __future__ import annotations

from dynamo_common.messages.types import DatasetStatus
from dynamo_dealer.service.engine import merge
from dynamo_dealer.service.proposals import Decision, Proposal
from tests.unit.dealer.factories import GB, TB, add_dataset, add_replica, grid, run


def p(dataset: str, site: str | None = None, **over: object) -> Proposal:
    values: dict[str, object] = {
        "plugin": "test",
        "dataset": dataset,
        "group": "AnalysisOps",
        "site": site,
        "priority": 3.0,
    }
    values.update(over)
    return Proposal(**values)  # type: ignore[arg-type]


def only(result):  # type: ignore[no-untyped-def]
    (outcome,) = result.outcomes
    return outcome.decision, outcome.reason


def test_proposals_that_cannot_be_served_are_rejected_with_their_reason() -> None:
    inventory = grid({"T2_A": 100 * TB}, datasets=[("/A/R-v1/AOD", GB)])
    invalid = add_dataset(inventory, "/Bad/R-v1/AOD", status=DatasetStatus.INVALID)
    add_replica(inventory, invalid, inventory.sites["T1_SOURCE"])
    partial = add_dataset(inventory, "/Half/R-v1/AOD", block_sizes=(GB, GB))
    add_replica(inventory, partial, inventory.sites["T1_SOURCE"], partial=["b1"])
    assert only(run(inventory, [p("/None/R-v1/AOD")])) == (
        Decision.REJECTED,
        "unknown dataset /None/R-v1/AOD",
    )
    assert only(run(inventory, [p("/Bad/R-v1/AOD")])) == (
        Decision.REJECTED,
        "dataset is invalid, not valid or production",
    )
    assert only(run(inventory, [p("/Half/R-v1/AOD")])) == (
        Decision.REJECTED,
        "no complete source of 1 of 2 blocks (first: b1)",
    )
    assert only(run(inventory, [p("/A/R-v1/AOD", group="Nobody")])) == (
        Decision.REJECTED,
        "unknown group Nobody",
    )
    assert only(run(inventory, [p("/A/R-v1/AOD", "T1_SOURCE")])) == (
        Decision.REJECTED,
        "already satisfied: at T1_SOURCE (complete or in flight)",
    )
    assert only(run(inventory, [p("/A/R-v1/AOD", block="b9")])) == (
        Decision.REJECTED,
        "unknown block b9 of /A/R-v1/AOD",
    )
    # A block the dealer already placed there is in flight: satisfied too.
    placed = frozenset({("/Half/R-v1/AOD", "b0", "T2_A")})
    assert only(run(inventory, [p("/Half/R-v1/AOD", "T2_A", block="b0")], placed=placed))[0] is (
        Decision.REJECTED
    )
    accepted = run(inventory, [p("/Half/R-v1/AOD", "T2_A", block="b0")])
    assert [(x.dataset, x.block, x.site, x.volume) for x in accepted.placements] == [
        ("/Half/R-v1/AOD", "b0", "T2_A", GB)
    ]


def test_overlapping_proposals_merge_into_as_many_copies_as_the_largest_asks() -> None:
    three = [p("/A/R-v1/AOD", plugin="popularity", reference="w", priority=2.0)] * 3
    two = [p("/A/R-v1/AOD", plugin="requests", reference="7", priority=5.0)] * 2
    fixed = [p("/A/R-v1/AOD", "T2_A", plugin="subscriptions", reference="1")]
    block = [p("/A/R-v1/AOD", "T2_A", block="b0", plugin="requests", reference="8")]
    merged = merge(three + two + fixed + block)
    kept = [prop for prop, into in merged if into is None]
    assert sorted((k.plugin, k.site) for k in kept) == [
        ("popularity", None),
        ("requests", None),
        ("requests", None),
        ("subscriptions", "T2_A"),
    ]
    # The block joins the whole dataset going to the same site.
    (block_into,) = [into for prop, into in merged if prop.block == "b0"]
    assert block_into is not None and merged[block_into][0].plugin == "subscriptions"


def test_n_copies_go_to_n_different_sites() -> None:
    inventory = grid(
        {"T2_A": 100 * TB, "T2_B": 100 * TB, "T2_C": 100 * TB}, datasets=[("/A/R-v1/AOD", GB)]
    )
    for seed in range(5):
        result = run(inventory, [p("/A/R-v1/AOD", reference="r")] * 3, seed=seed)
        assert sorted(x.site for x in result.placements) == ["T2_A", "T2_B", "T2_C"]
        fourth = run(inventory, [p("/A/R-v1/AOD", reference="r")] * 4, seed=seed)
        assert fourth.count(Decision.REJECTED) == 1


def test_higher_priority_goes_first_when_room_is_short() -> None:
    inventory = grid(
        {"T2_A": 10 * TB}, datasets=[("/Low/R-v1/AOD", 6 * TB), ("/High/R-v1/AOD", 6 * TB)]
    )
    result = run(
        inventory,
        [p("/Low/R-v1/AOD", priority=1.0), p("/High/R-v1/AOD", priority=5.0)],
    )
    assert [x.dataset for x in result.placements] == ["/High/R-v1/AOD"]
    assert [x.priority for x in result.placements] == [5]


def test_every_missing_block_of_a_replica_goes_to_the_site_in_one_cycle() -> None:
    inventory = grid({"T2_A": 100 * TB}, datasets=[("/A/R-v1/AOD", GB)])
    dataset = add_dataset(inventory, "/Three/R-v1/AOD", block_sizes=(GB, GB, GB))
    add_replica(inventory, dataset, inventory.sites["T1_SOURCE"])
    blocks = [p("/Three/R-v1/AOD", "T2_A", block=f"b{i}", reference=f"b{i}") for i in range(3)]
    result = run(inventory, blocks)
    assert sorted(x.block or "" for x in result.placements) == ["b0", "b1", "b2"]
    # The same block twice is still one copy.
    again = run(inventory, [blocks[0], p("/Three/R-v1/AOD", "T2_A", block="b0", reference="x")])
    assert [x.block for x in again.placements] == ["b0"]
