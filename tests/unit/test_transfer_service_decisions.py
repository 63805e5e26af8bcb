"""The transfer runtime's decisions moved into ``service``: what a failure counts against a
source, how many sources a file has left, where a deletion goes, which complete replicas a
transfer request still needs, and what progress is reported to the inventory."""

from __future__ import annotations

import pytest

from dynamo_common.messages import transfer as tr
from dynamo_common.messages.types import SiteStatus
from dynamo_transfer.service import intake
from dynamo_transfer.service.intake import FileInfo, ReplicaTarget, RequestRejected, RowKey
from dynamo_transfer.service.pfns import Pfns
from dynamo_transfer.service.reports import progress, whole
from dynamo_transfer.service.retry import Failure, Severity, tally
from dynamo_transfer.service.sources import NoSource, block_of, deletion_target, sources_left
from dynamo_transfer.service.states import Kind
from tests.unit.test_transfer_domain import DS, LFN, PREF, _grid, _replica, _site


def test_a_source_error_rules_the_source_out_and_every_failure_counts_against_it() -> None:
    failures, ruled = tally({"A": 1}, {}, "A", Failure("missing", Severity.SOURCE))
    assert failures == {"A": 2} and ruled == {"A": "missing"}
    failures, ruled = tally({}, {}, "B", Failure("timeout"))
    assert failures == {"B": 1} and ruled == {}


def test_a_failure_without_a_source_counts_nothing_and_leaves_the_inputs_alone() -> None:
    before_failures, before_ruled = {"A": 1}, {"A": "gone"}
    failures, ruled = tally(before_failures, before_ruled, None, Failure("x", Severity.SOURCE))
    assert (failures, ruled) == (before_failures, before_ruled)
    assert failures is not before_failures and ruled is not before_ruled


def test_sources_left_are_complete_replicas_elsewhere_not_ruled_out() -> None:
    model, block = _grid()
    for name, complete in (("T1_A", True), ("T2_B", True), ("T2_C", False), ("T2_D", True)):
        _replica(model, block, _site(model, name), complete=complete)
    assert sources_left(block, "T2_D", {}) == 2
    assert sources_left(block, "T2_D", {"T1_A": "corrupt"}) == 1
    assert sources_left(None, "T2_D", {}) == 0


def test_block_of_finds_named_blocks_only() -> None:
    model, block = _grid()
    assert block_of(model, DS, "b1") is block
    assert block_of(model, DS, "nope") is None
    assert block_of(model, "/No/Such/DS", "b1") is None
    assert block_of(model, None, None) is None


def test_a_deletion_goes_to_the_first_preferred_protocol_that_maps_the_file() -> None:
    model, _ = _grid()
    site = _site(model, "T2_B", protocols=("davs", "root"))
    assert deletion_target(site, LFN, PREF, Pfns()) == ("root", "root://t2_b/data/data/f1.root")


def test_a_deletion_says_why_it_cannot_go_ahead() -> None:
    model, _ = _grid()
    down = _site(model, "T2_Down", status=SiteStatus.WAITROOM)
    unmapped = _site(model, "T2_Odd", match="/other/(.*)")
    assert deletion_target(down, LFN, PREF, Pfns()) == NoSource(
        "site T2_Down is in waitroom (downtime)"
    )
    assert deletion_target(unmapped, LFN, PREF, Pfns()) == NoSource(
        f"LFN {LFN} maps to no PFN at T2_Odd"
    )


def test_a_complete_replica_is_needed_only_while_its_deletion_is_under_way() -> None:
    def target(site: str, complete: bool) -> ReplicaTarget:
        return ReplicaTarget(RowKey(Kind.TRANSFER, DS, "b1", site), "g", 1, True, complete)

    partial, kept, deleting = target("A", False), target("B", True), target("C", True)
    needed = intake.still_needed([partial, kept, deleting], {(DS, "b1", "C")})
    assert needed == [partial, deleting]


def test_file_deletions_are_one_task_each_and_unmapped_files_refuse_the_request() -> None:
    model, _ = _grid()
    _site(model, "T2_B")
    _site(model, "T2_Odd", match="/other/(.*)")
    spec = {"lfn": LFN, "site": "T2_B"}
    tasks = intake.plan_file_deletions(model, tr.DeleteFiles(files=[spec]), PREF, Pfns())
    assert [(t.kind, t.lfn, t.site, t.priority, t.row) for t in tasks] == [
        (Kind.DELETION, LFN, "T2_B", 3, None)
    ]
    bad = tr.DeleteFiles(files=[spec, {"lfn": LFN, "site": "T2_Odd"}])
    with pytest.raises(RequestRejected, match="maps to no PFN at site T2_Odd"):
        intake.plan_file_deletions(model, bad, PREF, Pfns())


def test_a_block_whose_files_are_not_all_listed_is_refused() -> None:
    _, block = _grid()
    key = RowKey(Kind.TRANSFER, DS, "b1", "T2_B")
    listed = [FileInfo(f"/store/data/f{i}.root", 100) for i in range(3)]
    intake.check_listing(block, key, listed)
    intake.check_listing(None, key, [])
    with pytest.raises(RequestRejected, match="has 3 files but only 2 are registered"):
        intake.check_listing(block, key, listed[:2])


def test_only_the_whole_block_as_the_inventory_knows_it_is_complete() -> None:
    _, block = _grid()
    assert whole(block, 300, 3)
    assert not whole(block, 200, 3), "the block changed while its files were copied"
    assert not whole(None, 300, 3)


def test_progress_is_capped_at_the_block_and_never_shrinks_the_replica() -> None:
    model, block = _grid()
    site = _site(model, "T2_B")
    report = progress(model, DS, "b1", "T2_B", bytes_done=500, files_done=5)
    assert (report.size, report.files, report.news) == (300, 3, True)
    _replica(model, block, site, complete=True)
    report = progress(model, DS, "b1", "T2_B", bytes_done=100, files_done=1)
    assert (report.size, report.files, report.news) == (100, 1, False)
    report = progress(model, DS, "gone", "T2_B", bytes_done=100, files_done=1)
    assert (report.size, report.files, report.news) == (100, 1, True)
