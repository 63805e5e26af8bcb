"""Which block replicas are settled (their files judged) and which are in flight."""

from __future__ import annotations

from dynamo_consistency.service.rules import (
    BlockKey,
    Unsettled,
    changed_since,
    site_replicas,
    source_sites,
)
from tests.unit.consistency.model import DAY, NOW, Model

DS = "/A/B-v1/AOD"
GRACE = 2 * DAY


def key(block: str) -> BlockKey:
    return BlockKey(DS, block)


def grid() -> Model:
    m = Model().site("T2_A").site("T1_B_Disk").site("T1_B_MSS", storage_type="tape")
    m.site("T2_Gone", status="morgue").site("T2_Down", status="waitroom")
    for name in ("ok", "partial", "unowned", "fresh", "edge", "newblock"):
        m.block(DS, name, updated=NOW - DAY if name == "newblock" else NOW - 30 * DAY)
    m.replica(DS, "ok", "T2_A")
    m.replica(DS, "partial", "T2_A", size=1000, num_files=1)
    m.replica(DS, "unowned", "T2_A", group="None")
    m.replica(DS, "fresh", "T2_A", updated=NOW - 60)
    m.replica(DS, "edge", "T2_A", updated=NOW - GRACE)
    m.replica(DS, "newblock", "T2_A")
    return m


def test_a_replica_is_settled_only_when_complete_owned_and_old_enough() -> None:
    views = site_replicas(grid().inventory, "T2_A", now=NOW, grace=GRACE)
    reasons = {k.block: v.unsettled for k, v in views.items()}
    assert reasons == {
        "ok": None,
        "partial": Unsettled.INCOMPLETE,
        "unowned": Unsettled.UNOWNED,
        "fresh": Unsettled.RECENT,
        "edge": None,  # exactly the grace period old: old enough
        "newblock": Unsettled.BLOCK_RECENT,
    }
    assert views[key("ok")].settled and not views[key("fresh")].settled


def test_an_unknown_site_has_no_replicas() -> None:
    assert site_replicas(grid().inventory, "T9_Nowhere", now=NOW, grace=GRACE) == {}


def test_changes_between_two_looks_are_found() -> None:
    m = grid()
    before = site_replicas(m.inventory, "T2_A", now=NOW, grace=GRACE)
    assert changed_since(before, before) == set()
    m.delete_replica(DS, "ok", "T2_A")
    m.replica(DS, "partial", "T2_A", updated=NOW)  # completed meanwhile
    m.block(DS, "later")
    m.replica(DS, "later", "T2_A")
    after = site_replicas(m.inventory, "T2_A", now=NOW, grace=GRACE)
    assert changed_since(before, after) == {key("ok"), key("partial"), key("later")}


def test_sources_are_other_complete_replicas_disk_before_tape_never_the_morgue() -> None:
    m = grid()
    for site in ("T1_B_MSS", "T1_B_Disk", "T2_Gone", "T2_Down"):
        m.replica(DS, "ok", site)
    m.replica(DS, "partial", "T1_B_Disk", size=0, num_files=0)
    inventory = m.inventory
    assert source_sites(inventory, key("ok"), "T2_A") == ["T1_B_Disk", "T2_Down", "T1_B_MSS"]
    assert source_sites(inventory, key("partial"), "T2_A") == []
    assert source_sites(inventory, BlockKey(DS, "nope"), "T2_A") == []
    assert source_sites(inventory, BlockKey("/No/Such-v1/X", "b"), "T2_A") == []
