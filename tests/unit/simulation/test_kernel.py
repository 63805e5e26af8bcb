"""The kernel: copies take the time their size and the link allow, replicas grow only when
their blocks arrive, deletions free space and are counted when they take a last copy, the
books always equal the replicas, and jobs run where a complete disk copy has free slots."""

from __future__ import annotations

import pytest

from dynamo_common.simulation.agent import Copy, Deletion, OwnerChange
from dynamo_common.simulation.kernel import ConservationError
from tests.unit.simulation.support import GB, kernel, world

RATE = 1e9  # 8 Gbit/s: a 10 GB block takes 10 s.


def test_a_copy_creates_empty_replicas_that_complete_when_their_transfer_ends() -> None:
    model = world({"/A/B/AOD": (3, ["T2_A"])})
    k = kernel(model)
    assert k.copy(Copy("/A/B/AOD", None, "T2_B", "AnalysisOps"), by_agent=True)

    replica = model.datasets["/A/B/AOD"].replicas["T2_B"]
    assert sorted(replica.block_replicas) == ["b0", "b1", "b2"]
    assert all(br.size == 0 for br in replica.block_replicas.values())
    assert k.books["T2_B"].pending == 30 * GB and k.books["T2_B"].used == 0
    assert k.placed() == {
        ("/A/B/AOD", None, "T2_B"),
        *(("/A/B/AOD", f"b{i}", "T2_B") for i in range(3)),
    }

    # One block at a time at the link's rate: 10 s each.
    k.advance(0)
    k.advance_to(k.start + 15)
    sizes = sorted(br.size for br in replica.block_replicas.values())
    assert sizes == [0, 0, 10 * GB]
    k.advance(1)
    assert all(br.size == 10 * GB for br in replica.block_replicas.values())
    assert k.books["T2_B"].used == 30 * GB and k.books["T2_B"].pending == 0
    assert k.metrics.bytes_transferred == 30 * GB
    assert k.placed() == frozenset()


def test_a_copy_that_does_not_fit_is_refused_and_changes_nothing() -> None:
    model = world({"/A/B/AOD": (6, ["T2_A"]), "/C/D/AOD": (5, ["T2_B"])}, quota=100 * GB)
    k = kernel(model)
    assert not k.copy(Copy("/A/B/AOD", None, "T2_B", "AnalysisOps"), by_agent=False)
    assert "T2_B" not in model.datasets["/A/B/AOD"].replicas
    assert k.books["T2_B"].pending == 0
    assert k.metrics.copies_refused == 1


def test_copies_come_from_tape_after_the_staging_delay() -> None:
    model = world({"/A/B/RAW": (1, ["T1_X_MSS"])})
    k = kernel(model)
    assert k.copy(Copy("/A/B/RAW", None, "T2_A", "AnalysisOps"), by_agent=True)
    k.advance(1)
    assert model.datasets["/A/B/RAW"].replicas["T2_A"].block_replicas["b0"].size == 0
    k.advance(3)
    assert model.datasets["/A/B/RAW"].replicas["T2_A"].block_replicas["b0"].size == 10 * GB


def test_deleting_a_copy_in_flight_cancels_it_and_releases_its_room() -> None:
    model = world({"/A/B/AOD": (2, ["T2_A"])})
    k = kernel(model)
    k.copy(Copy("/A/B/AOD", None, "T2_B", "AnalysisOps"), by_agent=True)
    assert k.delete(Deletion("/A/B/AOD", None, "T2_B")) == 0
    assert "T2_B" not in model.datasets["/A/B/AOD"].replicas
    assert k.books["T2_B"].pending == 0
    k.advance(1)
    assert k.metrics.bytes_transferred == 0
    assert k.metrics.last_copies_deleted == 0


def test_deleting_the_last_copy_is_carried_out_and_counted() -> None:
    model = world({"/A/B/AOD": (2, ["T2_A"]), "/C/D/AOD": (1, ["T2_A", "T2_B"])})
    k = kernel(model)
    assert k.delete(Deletion("/C/D/AOD", None, "T2_A")) == 10 * GB
    assert k.metrics.last_copies_deleted == 0
    assert k.delete(Deletion("/A/B/AOD", "b0", "T2_A")) == 10 * GB
    assert k.metrics.last_copies_deleted == 1
    assert k.metrics.last_disk_copies_deleted == 1
    assert k.books["T2_A"].used == 10 * GB
    assert sorted(model.datasets["/A/B/AOD"].replicas["T2_A"].block_replicas) == ["b1"]


def test_handing_a_block_to_a_group_outside_the_partition_frees_partition_space() -> None:
    from dynamo_common.messages.types import OwnershipLevel
    from dynamo_common.model.objects import Group

    model = world({"/A/B/AOD": (2, ["T2_A"])})
    model.groups["FacOps"] = Group(2, "FacOps", OwnershipLevel.BLOCK)
    k = kernel(model)
    k.hand_off(OwnerChange("/A/B/AOD", "b0", "T2_A", "FacOps"))
    assert k.books["T2_A"].used == 10 * GB and k.books["T2_A"].total == 20 * GB


def test_the_conservation_check_catches_books_that_disagree_with_the_replicas() -> None:
    model = world({"/A/B/AOD": (2, ["T2_A"])})
    k = kernel(model)
    k.verify()
    k.books["T2_A"].used += 1
    with pytest.raises(ConservationError, match="T2_A"):
        k.verify()


def test_a_site_above_its_capacity_fails_the_check() -> None:
    model = world({"/A/B/AOD": (2, ["T2_A"])}, quota=100 * GB)
    k = kernel(model)
    model.sites["T2_A"].quotas["Physics"] = 10 * GB
    k.books["T2_A"].params = k.books["T2_A"].params.__class__("T2_A", True, 10 * GB, 10, RATE)
    with pytest.raises(ConservationError, match="capacity"):
        k.verify()


def test_jobs_run_where_a_complete_copy_has_free_slots_and_the_rest_miss() -> None:
    model = world({"/A/B/AOD": (1, ["T2_A"]), "/C/D/AOD": (1, ["T1_X_MSS"])})
    # Hour 0: 25 accesses of /A from T2_B's users (copy at T2_A only, 10 slots), 4 of /C.
    k = kernel(model, [(0, 0, 1, 25), (0, 1, 0, 4)], slots=10)
    k.advance(0)
    k.run_jobs()
    m = k.metrics
    assert (m.accesses, m.hits, m.waited, m.no_copy, m.at_home) == (29, 10, 15, 4, 0)
    assert k.last_used == {("/A/B/AOD", "T2_A"): k.start}


def test_users_ask_for_copies_where_their_jobs_could_not_run() -> None:
    model = world({"/A/B/AOD": (1, ["T2_A"])})
    k = kernel(model, [(0, 0, 1, 5)], request_probability=1.0)
    k.advance(0)
    k.run_jobs()
    (request,) = k.open_requests()
    assert (request.dataset, request.site, request.group) == ("/A/B/AOD", "T2_B", "AnalysisOps")
    k.carry_out_requests()
    k.advance(1)
    k.advance(2)
    assert k.open_requests() == []
    assert model.datasets["/A/B/AOD"].replicas["T2_B"].block_replicas["b0"].size == 10 * GB


def _groups_that_asked(requests_per_group: bool, hours: int) -> list[set[str]]:
    """Twenty datasets held at T2_A only and read by T2_B's users every hour; per hour, the
    datasets whose T2_B users have asked for a copy so far (none is carried out)."""
    names = {f"/D{i:02d}/B/AOD": (1, ["T2_A"]) for i in range(20)}
    model = world(names, quota=1000 * GB)
    rows = [(h, d, 1, 1) for h in range(hours) for d in range(20)]
    k = kernel(
        model, rows, slots=100, request_probability=0.3, requests_per_group=requests_per_group
    )
    asked: list[set[str]] = []
    for hour in range(hours):
        k.advance(hour)
        k.run_jobs()
        asked.append({r.dataset for r in k.open_requests()})
    return asked


def test_hourly_users_who_keep_missing_ask_sooner_or_later() -> None:
    asked = _groups_that_asked(requests_per_group=False, hours=24)
    assert 0 < len(asked[0]) < 20
    assert len(asked[-1]) == 20


def test_a_group_decides_once_whether_it_asks_for_copies() -> None:
    asked = _groups_that_asked(requests_per_group=True, hours=24)
    # The same groups asked in the first hour and after a day of missing: the others never do.
    assert 0 < len(asked[0]) < 20
    assert asked[-1] == asked[0]
