"""The transfer service's domain rules, as pure functions: the state table, retries and
backoff, batching under caps and priorities, source selection, and request intake (validation,
expansion into file tasks, duplicates and opposite requests)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from dynamo_common.messages import transfer as tr
from dynamo_common.messages.types import NO_GROUP, SiteStatus, StorageType
from dynamo_common.model.objects import (
    Block,
    BlockReplica,
    Dataset,
    DatasetReplica,
    Inventory,
    Site,
)
from dynamo_transfer.service import intake
from dynamo_transfer.service.batching import Candidate, Caps, Link, plan_batches
from dynamo_transfer.service.intake import (
    Existing,
    FileInfo,
    NewTask,
    ReplicaTarget,
    RequestRejected,
    RowKey,
    reconcile,
)
from dynamo_transfer.service.pfns import Pfns
from dynamo_transfer.service.retry import Failure, Severity, after_failure, backoff
from dynamo_transfer.service.sources import NoSource, SourceChoice, choose_source
from dynamo_transfer.service.states import (
    ACTIVE,
    PENDING,
    TRANSITIONS,
    ForbiddenTransition,
    Kind,
    State,
    allowed,
    opposite,
    sources_of,
    transition,
)

DS = "/Prim/Proc-v1/AOD"
PREF = ["root", "davs", "file"]

# ------------------------------------------------------------------------------ state table


def test_every_move_in_the_table_is_allowed_and_nothing_else() -> None:
    for current in State:
        for new in State:
            if new in TRANSITIONS[current]:
                assert transition(current, new) is new
            else:
                with pytest.raises(ForbiddenTransition):
                    transition(current, new)


@pytest.mark.parametrize(
    ("current", "late"),
    [
        (State.DONE, State.DONE),  # a duplicate "done" from a second poll
        (State.DONE, State.FAILED),  # a late failure for a file already done
        (State.RETRY, State.DONE),  # an outcome after the task was already settled
        (State.CANCELLED, State.QUEUED),
        (State.SUBMITTED, State.CANCELLED),  # never cancel what a backend may be writing
        (State.HELD, State.SUBMITTED),  # held files go nowhere without a release
    ],
)
def test_late_or_duplicate_updates_are_recognised(current: State, late: State) -> None:
    assert not allowed(current, late)
    with pytest.raises(ForbiddenTransition, match=f"from {current.value} to {late.value}"):
        transition(current, late)


def test_the_life_of_a_file() -> None:
    path = [State.NEW, State.QUEUED, State.SUBMITTED, State.FAILED, State.RETRY, State.NEW]
    path += [State.QUEUED, State.SUBMITTED, State.FAILED, State.HELD, State.NEW, State.QUEUED]
    path += [State.SUBMITTED, State.DONE]
    for a, b in itertools.pairwise(path):
        transition(a, b)
    assert TRANSITIONS[State.DONE] == frozenset() and TRANSITIONS[State.CANCELLED] == frozenset()


def test_state_groups() -> None:
    assert PENDING <= ACTIVE and State.SUBMITTED not in PENDING
    assert State.DONE not in ACTIVE and State.CANCELLED not in ACTIVE
    assert sources_of(State.HELD) == {State.NEW, State.QUEUED, State.FAILED}
    assert opposite(Kind.TRANSFER) is Kind.DELETION and opposite("deletion") is Kind.TRANSFER


# ------------------------------------------------------------------------------ retries


def test_backoff_doubles_up_to_the_cap_with_a_bounded_spread() -> None:
    assert backoff(0, 10, 1000) == 0
    assert [backoff(n, 10, 1000) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert backoff(30, 10, 1000) == 1000
    spread = [backoff(3, 10, 1000, spread_key=k) for k in range(200)]
    assert min(spread) >= 40 and max(spread) <= 44
    assert len(set(spread)) > 50, "files that failed together must not retry in lockstep"


def test_decisions_after_a_failure() -> None:
    def decide(severity: Severity, attempts: int = 1, left: int = 1) -> Any:
        return after_failure(Failure("boom", severity), attempts, 5, left, 10, 1000)

    d = decide(Severity.RECOVERABLE, attempts=2)
    assert (d.state, d.delay, d.reason) == (State.RETRY, 20, "boom")
    assert decide(Severity.RECOVERABLE, attempts=5).state is State.HELD
    assert decide(Severity.RECOVERABLE, attempts=5).reason == "gave up after 5 attempts: boom"
    d = decide(Severity.SOURCE, left=1)
    assert (d.state, d.delay) == (State.RETRY, 0), "another source: no reason to wait"
    d = decide(Severity.SOURCE, left=0)
    assert (d.state, d.reason) == (State.HELD, "all sources failed: boom")
    d = decide(Severity.DESTINATION, attempts=1)
    assert (d.state, d.reason) == (State.HELD, "boom"), "no source can fix the destination"


# ------------------------------------------------------------------------------ batching


def _cand(
    task_id: int, src: str, dst: str = "D", priority: int = 3, created: float = 0
) -> Candidate:
    return Candidate(task_id, Link(src, dst), priority, created or float(task_id), 10)


def test_batches_follow_priority_then_age() -> None:
    cands = [_cand(1, "A"), _cand(2, "A", priority=5), _cand(3, "A", created=0.5), _cand(4, "A")]
    (batch,) = plan_batches(cands, {}, Caps(per_link=10, total=10, batch_size=10))
    assert batch.task_ids == [2, 3, 1, 4]
    assert batch.bytes == 40 and batch.link == Link("A", "D")


def test_caps_per_link_and_in_total_count_what_is_already_submitted() -> None:
    cands = [_cand(i, "A") for i in range(1, 6)] + [_cand(i, "B") for i in range(6, 11)]
    batches = plan_batches(cands, {Link("A", "D"): 2}, Caps(per_link=3, total=6, batch_size=10))
    by_link = {b.link.source: b.task_ids for b in batches}
    assert by_link == {"A": [1], "B": [6, 7, 8]}, "A has 2 running: 1 more; total 6 - 2 = 4"
    assert plan_batches(cands, {Link("C", "D"): 6}, Caps(3, 6, 10)) == []


def test_high_priority_goes_first_under_the_total_cap_and_batches_are_cut() -> None:
    cands = [_cand(i, "A", priority=1) for i in range(1, 5)]
    cands += [_cand(i, "B", priority=5) for i in range(5, 10)]
    batches = plan_batches(cands, {}, Caps(per_link=10, total=5, batch_size=2))
    assert [(b.link.source, b.task_ids) for b in batches] == [
        ("B", [5, 6]),
        ("B", [7, 8]),
        ("B", [9]),
    ]


def test_caps_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Caps(0, 1, 1)


# ------------------------------------------------------------------------------ a small grid


def _site(
    model: Inventory,
    name: str,
    *,
    tape: bool = False,
    status: SiteStatus = SiteStatus.READY,
    protocols: tuple[str, ...] = ("file",),
    match: str = "/store/(.*)",
) -> Site:
    site = Site(
        len(model.sites) + 1,
        name,
        StorageType.TAPE if tape else StorageType.DISK,
        status,
        protocols=tuple((p, ((match, f"{p}://{name.lower()}/data/$1"),)) for p in protocols),
    )
    model.sites[name] = site
    return site


def _replica(model: Inventory, block: Block, site: Site, complete: bool = True) -> None:
    dataset = block.dataset
    group = model.groups[NO_GROUP]
    dr = dataset.replicas.get(site.name)
    if dr is None:
        dr = dataset.replicas[site.name] = DatasetReplica(dataset, site, group)
        site.dataset_replicas[dataset.name] = dr
    br = BlockReplica(
        block,
        site,
        group,
        size=block.size if complete else 0,
        num_files=block.num_files if complete else 0,
    )
    block.replicas.append(br)
    dr.block_replicas[block.name] = br


def _grid() -> tuple[Inventory, Block]:
    model = Inventory()
    dataset = Dataset(1, DS)
    model.datasets[DS] = dataset
    block = Block(1, dataset, "b1", size=300, num_files=3, is_open=False)
    dataset.blocks["b1"] = block
    dataset.blocks["b2"] = Block(2, dataset, "b2", size=10, num_files=1, is_open=False)
    return model, block


LFN = "/store/data/f1.root"


def _choose(model: Inventory, block: Block, dest: str, **kw: Any) -> SourceChoice | NoSource:
    args: dict[str, Any] = {"failures": {}, "ruled_out": {}, "preference": PREF, "pfn": Pfns()}
    args.update(kw)
    return choose_source(block, model.sites[dest], LFN, **args)


def test_disk_before_tape_and_complete_ready_replicas_only() -> None:
    model, block = _grid()
    _replica(model, block, _site(model, "T0_Tape", tape=True))
    _replica(model, block, _site(model, "T1_Partial"), complete=False)
    _replica(model, block, _site(model, "T1_Down", status=SiteStatus.WAITROOM))
    _replica(model, block, _site(model, "T2_Disk"))
    _site(model, "T2_Dest")
    choice = _choose(model, block, "T2_Dest")
    assert isinstance(choice, SourceChoice)
    assert (choice.site, choice.protocol, choice.tape) == ("T2_Disk", "file", False)
    assert choice.source_pfn == "file://t2_disk/data/data/f1.root"
    assert choice.dest_pfn == "file://t2_dest/data/data/f1.root"
    tape = _choose(model, block, "T2_Dest", ruled_out={"T2_Disk": "missing"})
    assert isinstance(tape, SourceChoice) and tape.site == "T0_Tape" and tape.tape


def test_untried_sources_first_then_the_least_failed() -> None:
    model, block = _grid()
    for name in ("T1_A", "T1_B", "T1_C"):
        _replica(model, block, _site(model, name))
    _site(model, "T2_Dest")
    pick = _choose(model, block, "T2_Dest", failures={"T1_A": 1})
    assert isinstance(pick, SourceChoice) and pick.site == "T1_B"
    pick = _choose(model, block, "T2_Dest", failures={"T1_A": 2, "T1_B": 1, "T1_C": 3})
    assert isinstance(pick, SourceChoice) and pick.site == "T1_B"


def test_the_first_preferred_protocol_both_ends_speak() -> None:
    model, block = _grid()
    _replica(model, block, _site(model, "T1_A", protocols=("davs", "root")))
    _site(model, "T2_Dest", protocols=("file", "davs"))
    pick = _choose(model, block, "T2_Dest")
    assert isinstance(pick, SourceChoice) and pick.protocol == "davs"


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("nothing", "no source: no complete replica of /Prim/Proc-v1/AOD#b1 on another site"),
        ("down", "no site with a complete replica is ready: T1_A (morgue)"),
        ("ruled_out", "all sources failed: T1_A: checksum mismatch"),
        ("no_protocol", "no protocol that maps /store/data/f1.root"),
        ("dest_down", "site T2_Dest is in waitroom (downtime)"),
    ],
)
def test_no_source_says_why(setup: str, reason: str) -> None:
    model, block = _grid()
    dest = _site(
        model,
        "T2_Dest",
        status=SiteStatus.WAITROOM if setup == "dest_down" else SiteStatus.READY,
    )
    if setup != "nothing":
        source = _site(
            model,
            "T1_A",
            status=SiteStatus.MORGUE if setup == "down" else SiteStatus.READY,
            protocols=("root",) if setup == "no_protocol" else ("file",),
        )
        _replica(model, block, source)
    _replica(model, block, dest)  # the destination's own (complete) replica is no source
    ruled = {"T1_A": "checksum mismatch"} if setup == "ruled_out" else {}
    result = _choose(model, block, "T2_Dest", ruled_out=ruled)
    assert isinstance(result, NoSource) and reason in result.reason, result


# ------------------------------------------------------------------------------ intake


def _intake_grid() -> Inventory:
    model, block = _grid()
    _replica(model, block, _site(model, "T1_A"))
    _replica(model, model.datasets[DS].blocks["b2"], model.sites["T1_A"])
    _site(model, "T2_B")
    _site(model, "T2_NoProto", protocols=())
    _site(model, "T2_Mc", match="/store/mc/(.*)")
    return model


def _transfer(**spec: Any) -> tr.TransferReplicas:
    return tr.TransferReplicas(requests=[tr.ReplicaTransferSpec(**spec)])


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"dataset": DS, "site": "T2_Nowhere"}, "unknown site 'T2_Nowhere'"),
        ({"dataset": "/No/Such-v1/AOD", "site": "T2_B"}, "unknown dataset"),
        ({"dataset": DS, "block": "b9", "site": "T2_B"}, "unknown block /Prim/Proc-v1/AOD#b9"),
        ({"dataset": DS, "site": "T2_B", "group": "Nobody"}, "unknown group 'Nobody'"),
        ({"dataset": DS, "site": "T2_NoProto"}, "site T2_NoProto has no storage protocol"),
    ],
)
def test_transfer_requests_naming_what_does_not_exist_are_refused(
    spec: dict[str, Any], reason: str
) -> None:
    with pytest.raises(RequestRejected, match=reason):
        intake.plan_replica_transfers(_intake_grid(), _transfer(**spec), PREF)


def test_a_dataset_request_becomes_its_blocks_and_complete_ones_are_flagged() -> None:
    model = _intake_grid()
    cmd = tr.TransferReplicas(
        requests=[
            tr.ReplicaTransferSpec(dataset=DS, site="T2_B", priority=2),
            tr.ReplicaTransferSpec(dataset=DS, block="b1", site="T2_B", priority=5),
            tr.ReplicaTransferSpec(dataset=DS, site="T1_A"),
        ]
    )
    targets = intake.plan_replica_transfers(model, cmd, PREF)
    got = {(t.key.block, t.key.site): (t.priority, t.exists, t.complete) for t in targets}
    assert got == {
        ("b1", "T2_B"): (5, False, False),
        ("b2", "T2_B"): (2, False, False),
        ("b1", "T1_A"): (3, True, True),
        ("b2", "T1_A"): (3, True, True),
    }


def test_deleting_a_replica_that_is_not_there_is_refused() -> None:
    model = _intake_grid()
    cmd = tr.DeleteReplicaFiles(requests=[tr.ReplicaDeletionSpec(dataset=DS, site="T2_B")])
    with pytest.raises(RequestRejected, match="has no replica at T2_B"):
        intake.plan_replica_deletions(model, cmd, PREF)
    cmd = tr.DeleteReplicaFiles(requests=[tr.ReplicaDeletionSpec(dataset=DS, site="T1_A")])
    targets = intake.plan_replica_deletions(model, cmd, PREF)
    assert sorted(t.key.block for t in targets) == ["b1", "b2"]
    assert {t.key.kind for t in targets} == {Kind.DELETION}


def test_an_lfn_that_maps_to_nothing_refuses_the_request() -> None:
    model = _intake_grid()
    intake.check_mappings(model.sites["T2_B"], [LFN], PREF, Pfns())
    with pytest.raises(RequestRejected, match=f"LFN {LFN} maps to no PFN at site T2_Mc"):
        intake.check_mappings(model.sites["T2_Mc"], [LFN], PREF, Pfns())


def test_expansion_is_one_task_per_file() -> None:
    key = RowKey(Kind.TRANSFER, DS, "b1", "T2_B")
    target = ReplicaTarget(key, "AnalysisOps", 4, exists=False)
    target.files = [FileInfo(f"/store/f{i}", 100 + i, f"{i:08x}") for i in range(3)]
    tasks = intake.expand([target])
    assert [(t.lfn, t.size, t.adler32, t.priority, t.row) for t in tasks] == [
        (f"/store/f{i}", 100 + i, f"{i:08x}", 4, key) for i in range(3)
    ]
    assert {(t.kind, t.site, t.dataset, t.block) for t in tasks} == {
        (Kind.TRANSFER, "T2_B", DS, "b1")
    }


def _new(kind: Kind, lfn: str, row: RowKey | None = None) -> NewTask:
    return NewTask(kind=kind, lfn=lfn, site="S", priority=3, row=row)


def _old(task_id: int, kind: Kind, lfn: str, state: State, row: RowKey | None = None) -> Existing:
    return Existing(task_id, kind, lfn, "S", state, row)


def test_opposite_pending_requests_cancel_each_other() -> None:
    new = [_new(Kind.DELETION, f"/f{i}") for i in range(5)]
    existing = [
        _old(1, Kind.TRANSFER, "/f0", State.NEW),
        _old(2, Kind.TRANSFER, "/f1", State.QUEUED),
        _old(3, Kind.TRANSFER, "/f2", State.HELD),
        _old(4, Kind.TRANSFER, "/f3", State.SUBMITTED),  # being written: left to finish
        _old(5, Kind.TRANSFER, "/f4", State.DONE),
    ]
    plan = reconcile(new, existing)
    assert plan.cancel == [1, 2, 3]
    assert [t.lfn for t in plan.insert] == [f"/f{i}" for i in range(5)]
    assert plan.duplicates == 0


def test_duplicates_join_the_standing_task() -> None:
    row = RowKey(Kind.TRANSFER, DS, "b1", "S")
    new = [_new(Kind.TRANSFER, f"/f{i}", row) for i in range(4)] + [_new(Kind.TRANSFER, "/f0", row)]
    existing = [
        _old(1, Kind.TRANSFER, "/f0", State.RETRY, row),  # already queued for this replica
        _old(2, Kind.TRANSFER, "/f1", State.QUEUED),  # a file-level request: joins the replica
        _old(3, Kind.TRANSFER, "/f2", State.DONE, row),  # done within this replica request
        _old(4, Kind.TRANSFER, "/f3", State.CANCELLED, row),
    ]
    plan = reconcile(new, existing)
    assert [t.lfn for t in plan.insert] == ["/f3"]
    assert plan.adopt == {2: row}
    assert plan.cancel == [] and plan.duplicates == 4
