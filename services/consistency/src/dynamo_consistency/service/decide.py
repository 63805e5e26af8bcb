"""What a check does about what it found: the two-strike rule, the safety valve, and the plan
of transfers, deletions and inventory updates. Pure functions of the comparison, the previous
check and the read model; the runtime carries the plan out.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import ValidationError

from dynamo_common.messages import inventory as inv
from dynamo_common.messages import transfer as tr
from dynamo_common.model.objects import Inventory
from dynamo_consistency.service.compare import Missing, Orphan
from dynamo_consistency.service.rules import BlockKey, ReplicaView, source_sites

__all__ = [
    "Action",
    "Decision",
    "Plan",
    "SiteState",
    "Thresholds",
    "decide",
    "plan_actions",
    "split_strikes",
]


class SiteState(StrEnum):
    ENABLED = "enabled"
    """Checked on schedule; what a check finds is acted on within the safety valve."""
    DISABLED = "disabled"
    """Never checked."""
    HALTED = "halted"
    """Checked on request only, and nothing is acted on until an operator approves a check
    (or enables the site again). The safety valve puts a site here."""


class Action(StrEnum):
    NONE = "none"  # nothing to act on
    ACTED = "acted"  # requests sent automatically
    FLAGGED = "flagged"  # held for an operator
    APPROVED = "approved"  # held, then approved and carried out
    DRY_RUN = "dry_run"  # a check asked not to act
    FAILED = "failed"  # the check did not get as far as a comparison


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The safety valve: more missing or orphan files than this in one check and nothing is
    acted on automatically. A site that suddenly shows thousands of differences has more
    likely a broken mount, a wrong PFN rule or a half-migrated storage than lost data."""

    max_missing: int = 100
    max_orphans: int = 1000


@dataclass(frozen=True, slots=True)
class Decision:
    act: bool
    action: Action
    reason: str = ""


def split_strikes(
    missing: Sequence[Missing], previous: Collection[str] | None
) -> tuple[list[Missing], list[Missing]]:
    """(confirmed, first seen): a missing file is acted on only when the previous check of the
    site found it missing too, so a file that was moving between the two looks (or a storage
    that answered wrong once) is never re-transferred. ``previous`` None: no earlier check."""
    if not previous:
        return [], list(missing)
    confirmed = [m for m in missing if m.lfn in previous]
    first = [m for m in missing if m.lfn not in previous]
    return confirmed, first


def decide(
    missing: int,
    orphans: int,
    *,
    thresholds: Thresholds,
    state: SiteState,
    dry_run: bool = False,
) -> Decision:
    """Whether the findings of a check (``missing`` counts both strikes) may be acted on."""
    if dry_run:
        return Decision(False, Action.DRY_RUN, "dry run: nothing is acted on")
    over: list[str] = []
    if missing > thresholds.max_missing:
        over.append(f"{missing} missing files (more than {thresholds.max_missing})")
    if orphans > thresholds.max_orphans:
        over.append(f"{orphans} orphan files (more than {thresholds.max_orphans})")
    if over:
        return Decision(False, Action.FLAGGED, "safety valve: " + " and ".join(over))
    if state is SiteState.HALTED:
        if missing or orphans:
            return Decision(False, Action.FLAGGED, "the site is halted: an operator approves")
        return Decision(False, Action.NONE, "the site is halted")
    return Decision(True, Action.NONE)


@dataclass(slots=True)
class Plan:
    transfers: list[tr.FileTransferSpec] = field(default_factory=list)
    deletions: list[tr.FileDeletionSpec] = field(default_factory=list)
    unrecoverable: list[Missing] = field(default_factory=list)
    replica_updates: list[inv.BlockReplicaUpdate] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    """LFN -> the site a new copy is expected to come from (the transfer service chooses;
    this is its first candidate, kept for the record)."""
    dropped: list[Missing] = field(default_factory=list)
    """Confirmed missing files whose replica is no longer settled: not acted on."""
    undeletable: list[Orphan] = field(default_factory=list)
    """Orphans whose name is not a valid LFN (whitespace, ``..``): no request can name them,
    an operator removes them by hand."""

    @property
    def empty(self) -> bool:
        return not (self.transfers or self.deletions or self.replica_updates)


def plan_actions(
    model: Inventory,
    site: str,
    confirmed: Sequence[Missing],
    orphans: Sequence[Orphan],
    replicas: Mapping[BlockKey, ReplicaView],
    *,
    changed: Collection[BlockKey] = (),
    priority: int = 3,
) -> Plan:
    """Transfers of the confirmed missing files that have another complete copy, inventory
    updates for those that have none, and deletions of the orphans.

    ``replicas`` is the site as the read model shows it now: a missing file is acted on only
    while its replica is still settled and not in ``changed`` (a deletion or a transfer may
    have started since the check looked).

    A file with no other copy is *unrecoverable*: the inventory is told by lowering its block
    replica's size and file count by what was lost (``UpdateReplicas``), which makes the
    replica incomplete, as it now is. The inventory holds no per-file list for a replica, so
    this is how a partial replica is written down; the lost files stay listed in the check's
    record, and later checks treat the now incomplete replica as in flight.
    """
    plan = Plan()
    lost: dict[BlockKey, list[Missing]] = {}
    for item in confirmed:
        replica = replicas.get(item.block)
        if replica is None or not replica.settled or item.block in changed:
            plan.dropped.append(item)
            continue
        sources = source_sites(model, item.block, site)
        if not sources:
            plan.unrecoverable.append(item)
            lost.setdefault(item.block, []).append(item)
            continue
        plan.sources[item.lfn] = sources[0]
        plan.transfers.append(
            tr.FileTransferSpec(
                dataset=item.block.dataset,
                block=item.block.block,
                lfn=item.lfn,
                site=site,
                priority=priority,
            )
        )
    for key in sorted(lost):
        files = lost[key]
        replica = replicas[key]
        plan.replica_updates.append(
            inv.BlockReplicaUpdate(
                dataset=key.dataset,
                block=key.block,
                site=site,
                size=max(0, replica.size - sum(m.size for m in files)),
                num_files=max(0, replica.num_files - len(files)),
            )
        )
    for orphan in orphans:
        try:
            plan.deletions.append(tr.FileDeletionSpec(lfn=orphan.lfn, site=site))
        except ValidationError:
            plan.undeletable.append(orphan)
    return plan
