"""From requests to file tasks: validation against the read model, expansion of replicas into
one task per file, and how new tasks meet the ones already queued (duplicates are merged,
opposite pending ones cancelled).

Everything here is pure: the caller fetches the files of the blocks before and writes the
result after.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field

from dynamo_common.messages import transfer as tr
from dynamo_common.model.objects import Block, Inventory, Site
from dynamo_transfer.service.sources import PfnFunc, map_at, protocol_names
from dynamo_transfer.service.states import PENDING, Kind, State, opposite


class RequestRejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FileInfo:
    lfn: str
    size: int
    adler32: str | None = None


@dataclass(frozen=True, slots=True)
class RowKey:
    """A block replica being built or removed: the unit reported to the inventory."""

    kind: Kind
    dataset: str
    block: str
    site: str


@dataclass(slots=True)
class ReplicaTarget:
    key: RowKey
    group: str
    priority: int
    exists: bool  # the inventory already has this block replica (possibly partial)
    complete: bool = False  # ... and it is complete
    files: list[FileInfo] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class NewTask:
    kind: Kind
    lfn: str
    site: str
    priority: int
    dataset: str | None = None
    block: str | None = None
    size: int | None = None
    adler32: str | None = None
    row: RowKey | None = None


@dataclass(frozen=True, slots=True)
class Existing:
    task_id: int
    kind: Kind
    lfn: str
    site: str
    state: State
    row: RowKey | None = None


@dataclass(slots=True)
class IntakePlan:
    insert: list[NewTask] = field(default_factory=list)
    adopt: dict[int, RowKey] = field(default_factory=dict)  # existing task -> its new row
    cancel: list[int] = field(default_factory=list)
    duplicates: int = 0


# ------------------------------------------------------------------------ validation


def _site(model: Inventory, name: str, preference: Sequence[str]) -> Site:
    site = model.sites.get(name)
    if site is None:
        raise RequestRejected(f"unknown site {name!r}")
    if not any(p in protocol_names(site) for p in preference):
        raise RequestRejected(
            f"site {name} has no storage protocol (needs one of {', '.join(preference)})"
        )
    return site


def _blocks(model: Inventory, dataset_name: str, block_name: str | None) -> list[Block]:
    dataset = model.datasets.get(dataset_name)
    if dataset is None:
        raise RequestRejected(f"unknown dataset {dataset_name!r}")
    if block_name is None:
        return sorted(dataset.blocks.values(), key=lambda b: b.name)
    block = dataset.blocks.get(block_name)
    if block is None:
        raise RequestRejected(f"unknown block {dataset_name}#{block_name}")
    return [block]


def plan_replica_transfers(
    model: Inventory, cmd: tr.TransferReplicas, preference: Sequence[str]
) -> list[ReplicaTarget]:
    """The block replicas a transfer request asks for. Complete ones are flagged: they need
    nothing unless a deletion of them is pending (which the request then cancels).

    The same block replica named twice is one target with the higher priority.
    """
    targets: dict[RowKey, ReplicaTarget] = {}
    for spec in cmd.requests:
        site = _site(model, spec.site, preference)
        if spec.group not in model.groups:
            raise RequestRejected(f"unknown group {spec.group!r}")
        for block in _blocks(model, spec.dataset, spec.block):
            existing = block.replica_at(site)
            key = RowKey(Kind.TRANSFER, block.dataset.name, block.name, site.name)
            known = targets.get(key)
            if known is not None:
                known.priority = max(known.priority, spec.priority)
                continue
            targets[key] = ReplicaTarget(
                key,
                spec.group,
                spec.priority,
                exists=existing is not None,
                complete=existing is not None and existing.is_complete,
            )
    return list(targets.values())


def plan_replica_deletions(
    model: Inventory, cmd: tr.DeleteReplicaFiles, preference: Sequence[str]
) -> list[ReplicaTarget]:
    targets: dict[RowKey, ReplicaTarget] = {}
    for spec in cmd.requests:
        site = _site(model, spec.site, preference)
        dataset = model.datasets.get(spec.dataset)
        if dataset is None:
            raise RequestRejected(f"unknown dataset {spec.dataset!r}")
        if spec.block is None:
            replica = dataset.replicas.get(site.name)
            if replica is None:
                raise RequestRejected(f"dataset {dataset.name} has no replica at {site.name}")
            blocks = [br.block for br in replica.block_replicas.values()]
        else:
            block = _blocks(model, spec.dataset, spec.block)[0]
            if block.replica_at(site) is None:
                raise RequestRejected(f"block {block.full_name} has no replica at {site.name}")
            blocks = [block]
        for block in sorted(blocks, key=lambda b: b.name):
            key = RowKey(Kind.DELETION, block.dataset.name, block.name, site.name)
            targets.setdefault(key, ReplicaTarget(key, "", 3, True))
    return list(targets.values())


def still_needed(
    targets: Iterable[ReplicaTarget], deleting: Container[tuple[str, str, str]]
) -> list[ReplicaTarget]:
    """The transfer targets that need files: a complete replica needs none, unless its
    deletion is under way (``deleting``: dataset, block, site), which this request cancels."""
    return [
        t for t in targets if not t.complete or (t.key.dataset, t.key.block, t.key.site) in deleting
    ]


def plan_file_deletions(
    model: Inventory, cmd: tr.DeleteFiles, preference: Sequence[str], pfn: PfnFunc
) -> list[NewTask]:
    """One task per named file (orphans: no block replica to report on)."""
    sites = check_file_sites(model, (f.site for f in cmd.files), preference)
    tasks: list[NewTask] = []
    for orphan in cmd.files:
        check_mappings(sites[orphan.site], [orphan.lfn], preference, pfn)
        tasks.append(NewTask(kind=Kind.DELETION, lfn=orphan.lfn, site=orphan.site, priority=3))
    return tasks


def check_listing(block: Block | None, key: RowKey, files: Sequence[FileInfo]) -> None:
    """Tasks are made from the inventory's file listing: a block with files it does not
    list (yet) could never be completed here."""
    if block is not None and len(files) < block.num_files:
        raise RequestRejected(
            f"block {key.dataset}#{key.block} has {block.num_files} files but only "
            f"{len(files)} are registered in the inventory: nothing to copy them from"
        )


def check_file_sites(
    model: Inventory, sites: Iterable[str], preference: Sequence[str]
) -> dict[str, Site]:
    return {name: _site(model, name, preference) for name in sorted(set(sites))}


def check_block(model: Inventory, dataset: str, block: str) -> Block:
    return _blocks(model, dataset, block)[0]


def check_mappings(
    site: Site, lfns: Iterable[str], preference: Sequence[str], pfn: PfnFunc
) -> None:
    """Every LFN must map to a PFN at ``site`` with one of the preferred protocols; a request
    naming one that does not is refused as a whole, before anything is queued."""
    for lfn in lfns:
        if map_at(site, lfn, preference, pfn) is None:
            names = [p for p in preference if p in protocol_names(site)]
            raise RequestRejected(
                f"LFN {lfn} maps to no PFN at site {site.name} (protocols {', '.join(names)})"
            )


# ------------------------------------------------------------------------ expansion


def expand(targets: Iterable[ReplicaTarget]) -> list[NewTask]:
    """One task per file of every target block replica."""
    tasks: list[NewTask] = []
    for target in targets:
        key = target.key
        for f in target.files:
            tasks.append(
                NewTask(
                    kind=key.kind,
                    lfn=f.lfn,
                    site=key.site,
                    priority=target.priority,
                    dataset=key.dataset,
                    block=key.block,
                    size=f.size,
                    adler32=f.adler32,
                    row=key,
                )
            )
    return tasks


def reconcile(new: Sequence[NewTask], existing: Sequence[Existing]) -> IntakePlan:
    """How ``new`` tasks meet ``existing`` ones for the same (lfn, site).

    * an active task of the same kind already stands for the file: no new task; it joins the
      new task's block replica if it had none (a file-level request that came first);
    * a task of the same kind already done *within the same block replica request*: nothing
      to do again;
    * a pending task of the opposite kind (nothing written or deleted yet) is cancelled: the
      later request wins. An opposite task already submitted is left to finish; the new task
      waits for it (the scheduler never runs both kinds on one file at once).
    """
    plan = IntakePlan()
    same: dict[tuple[Kind, str, str], Existing] = {}
    done_in_row: set[tuple[RowKey, str]] = set()
    pending_opposite: dict[tuple[Kind, str, str], list[Existing]] = {}
    for old in existing:
        key = (old.kind, old.lfn, old.site)
        if old.state is State.DONE:
            if old.row is not None:
                done_in_row.add((old.row, old.lfn))
        elif old.state is not State.CANCELLED:
            same.setdefault(key, old)
            if old.state in PENDING:
                pending_opposite.setdefault(key, []).append(old)
    seen: set[tuple[Kind, str, str]] = set()
    cancelled: set[int] = set()
    for task in new:
        key = (task.kind, task.lfn, task.site)
        if key in seen:
            plan.duplicates += 1
            continue
        seen.add(key)
        if task.row is not None and (task.row, task.lfn) in done_in_row:
            plan.duplicates += 1
            continue
        standing = same.get(key)
        if standing is not None:
            plan.duplicates += 1
            if task.row is not None and standing.row is None:
                plan.adopt[standing.task_id] = task.row
            continue
        for other in pending_opposite.get((opposite(task.kind), task.lfn, task.site), []):
            if other.task_id not in cancelled:
                cancelled.add(other.task_id)
                plan.cancel.append(other.task_id)
        plan.insert.append(task)
    return plan
