"""The two-strike rule, the safety valve and the plan of repairs."""

from __future__ import annotations

import pytest

from dynamo_consistency.service.compare import Missing, Orphan
from dynamo_consistency.service.decide import (
    Action,
    SiteState,
    Thresholds,
    decide,
    plan_actions,
    split_strikes,
)
from dynamo_consistency.service.rules import BlockKey, site_replicas
from tests.unit.consistency.model import DAY, NOW, Model

DS = "/A/B-v1/AOD"


def missing(block: str, i: int, size: int = 1000) -> Missing:
    return Missing(f"/store/data/A/{block}/f{i}.root", size, BlockKey(DS, block))


def test_a_file_missing_for_the_first_time_waits_for_the_next_check() -> None:
    now = [missing("b1", 0), missing("b1", 1), missing("b1", 2)]
    assert split_strikes(now, None) == ([], now)
    assert split_strikes(now, set()) == ([], now)
    previous = {now[1].lfn, "/store/fixed/meanwhile.root"}
    confirmed, first = split_strikes(now, previous)
    assert confirmed == [now[1]]
    assert first == [now[0], now[2]]


@pytest.mark.parametrize(
    ("missing_count", "orphan_count", "action"),
    [
        (0, 0, Action.NONE),
        (100, 1000, Action.NONE),  # at the thresholds: still acted on
        (101, 0, Action.FLAGGED),
        (0, 1001, Action.FLAGGED),
    ],
)
def test_the_safety_valve(missing_count: int, orphan_count: int, action: Action) -> None:
    decision = decide(
        missing_count, orphan_count, thresholds=Thresholds(100, 1000), state=SiteState.ENABLED
    )
    assert decision.action is action
    assert decision.act is (action is Action.NONE)
    if action is Action.FLAGGED:
        assert "safety valve" in decision.reason


def test_a_halted_site_and_a_dry_run_act_on_nothing() -> None:
    t = Thresholds()
    assert decide(1, 0, thresholds=t, state=SiteState.HALTED).action is Action.FLAGGED
    halted_clean = decide(0, 0, thresholds=t, state=SiteState.HALTED)
    assert (halted_clean.act, halted_clean.action) == (False, Action.NONE)
    dry = decide(500, 5000, thresholds=t, state=SiteState.ENABLED, dry_run=True)
    assert (dry.act, dry.action) == (False, Action.DRY_RUN)


def test_thresholds_of_zero_flag_any_difference() -> None:
    t = Thresholds(0, 0)
    assert decide(0, 0, thresholds=t, state=SiteState.ENABLED).act
    assert decide(1, 0, thresholds=t, state=SiteState.ENABLED).action is Action.FLAGGED


def grid() -> Model:
    m = Model().site("T2_A").site("T1_B_Disk").site("T1_B_MSS", storage_type="tape")
    for name in ("b1", "b2", "b3", "b4"):
        m.block(DS, name)
        m.replica(DS, name, "T2_A")
    m.replica(DS, "b1", "T1_B_MSS").replica(DS, "b1", "T1_B_Disk")
    m.replica(DS, "b2", "T1_B_MSS")
    m.replica(DS, "b4", "T1_B_Disk")
    return m


def test_recoverable_files_are_transferred_and_the_rest_reported_to_the_inventory() -> None:
    m = grid()
    replicas = site_replicas(m.inventory, "T2_A", now=NOW, grace=DAY)
    confirmed = [missing("b1", 0), missing("b2", 0), missing("b3", 0), missing("b3", 1, 500)]
    orphans = [Orphan("/store/old/x.root", 7)]
    plan = plan_actions(m.inventory, "T2_A", confirmed, orphans, replicas, priority=4)

    assert [(t.lfn, t.site, t.priority) for t in plan.transfers] == [
        (confirmed[0].lfn, "T2_A", 4),
        (confirmed[1].lfn, "T2_A", 4),
    ]
    assert plan.sources == {confirmed[0].lfn: "T1_B_Disk", confirmed[1].lfn: "T1_B_MSS"}
    assert plan.unrecoverable == confirmed[2:]
    (update,) = plan.replica_updates
    # b3 holds 3 files of 3000 bytes; two files (1500 bytes) are lost for good.
    assert (update.block, update.site, update.size, update.num_files) == ("b3", "T2_A", 1500, 1)
    assert [(d.lfn, d.site) for d in plan.deletions] == [("/store/old/x.root", "T2_A")]
    assert plan.dropped == []
    assert not plan.empty


def test_files_of_replicas_that_changed_since_the_check_are_left_alone() -> None:
    m = grid()
    replicas = site_replicas(m.inventory, "T2_A", now=NOW, grace=DAY)
    m.delete_replica(DS, "b2", "T2_A")
    m.replica(DS, "b4", "T2_A", updated=NOW)
    later = site_replicas(m.inventory, "T2_A", now=NOW, grace=DAY)
    confirmed = [missing("b1", 0), missing("b2", 0), missing("b4", 0)]
    plan = plan_actions(m.inventory, "T2_A", confirmed, [], later, changed={BlockKey(DS, "b1")})
    assert plan.transfers == [] and plan.replica_updates == []
    assert plan.dropped == confirmed
    assert plan.empty
    assert replicas.keys() >= later.keys()


def test_orphans_that_no_request_can_name_are_left_to_operators() -> None:
    m = grid()
    replicas = site_replicas(m.inventory, "T2_A", now=NOW, grace=DAY)
    orphans = [Orphan("/store/ok.root", 1), Orphan("/store/with space.root", 2)]
    plan = plan_actions(m.inventory, "T2_A", [], orphans, replicas)
    assert [d.lfn for d in plan.deletions] == ["/store/ok.root"]
    assert plan.undeletable == [orphans[1]]
