"""Which block replicas at a site a check may judge, and where a lost file can come from.

A file is only ever called missing or orphan when nothing can be moving it. The inventory does
not hold per-file state, so "moving" is read off the block replica that holds the file. A
block replica is **settled** when, in the read model:

1. it is complete (its size and file count reach the block's): an incomplete replica is being
   transferred, or lost files were already reported, and which of its files are on disk is not
   known;
2. it has an owner (group other than ``None``): an unowned replica is one that no one keeps,
   left for deletion, or arriving from outside Dynamo;
3. it was last updated at least the grace period before the check started: a transfer that
   completed or a deletion that began a moment ago may still be settling on the storage;
4. its block was last updated at least the grace period before the check started: files
   added to or removed from an open block reach the sites later than the inventory;
5. it is still there, unchanged, once the storage has been listed (:func:`changed_since`):
   a replica deleted or completed while the check ran changed under it.

Files of a settled replica are *expected* on the storage. Files of every other replica at the
site are *in flight*: never missing, and never orphans either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from dynamo_common.messages.types import NO_GROUP, SiteStatus, StorageType
from dynamo_common.model.objects import Inventory

__all__ = [
    "BlockKey",
    "ReplicaView",
    "Unsettled",
    "changed_since",
    "site_replicas",
    "source_sites",
]


@dataclass(frozen=True, slots=True, order=True)
class BlockKey:
    dataset: str
    block: str

    def __str__(self) -> str:
        return f"{self.dataset}#{self.block}"


class Unsettled(StrEnum):
    INCOMPLETE = "incomplete"
    UNOWNED = "unowned"
    RECENT = "recently updated"
    BLOCK_RECENT = "block recently updated"


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """A block replica at the site as the check saw it."""

    key: BlockKey
    group: str
    size: int
    num_files: int
    last_update: float
    unsettled: Unsettled | None

    @property
    def settled(self) -> bool:
        return self.unsettled is None


def site_replicas(
    model: Inventory, site: str, *, now: float, grace: float
) -> dict[BlockKey, ReplicaView]:
    """Every block replica at ``site``, each marked settled or with the reason it is not."""
    found = model.sites.get(site)
    if found is None:
        return {}
    cutoff = now - grace
    views: dict[BlockKey, ReplicaView] = {}
    for replica in found.dataset_replicas.values():
        for br in replica.block_replicas.values():
            block = br.block
            reason: Unsettled | None = None
            if not br.is_complete:
                reason = Unsettled.INCOMPLETE
            elif br.group.name == NO_GROUP:
                reason = Unsettled.UNOWNED
            elif br.last_update > cutoff:
                reason = Unsettled.RECENT
            elif block.last_update > cutoff:
                reason = Unsettled.BLOCK_RECENT
            key = BlockKey(block.dataset.name, block.name)
            views[key] = ReplicaView(
                key, br.group.name, br.size, br.num_files, br.last_update, reason
            )
    return views


def changed_since(
    before: Mapping[BlockKey, ReplicaView], after: Mapping[BlockKey, ReplicaView]
) -> set[BlockKey]:
    """Block replicas that appeared, vanished or changed between two looks at a site."""
    changed = {key for key in after if key not in before}
    for key, old in before.items():
        new = after.get(key)
        if (
            new is None
            or new.last_update != old.last_update
            or new.size != old.size
            or new.num_files != old.num_files
            or new.group != old.group
        ):
            changed.add(key)
    return changed


def source_sites(model: Inventory, key: BlockKey, site: str) -> list[str]:
    """Sites other than ``site`` with a complete replica of the block that could serve as the
    source of a new copy: disk before tape (tape must be staged first), then by name. Sites in
    the morgue are gone for good and do not count; a site in the waitroom does, since the
    transfer service waits for it to come back."""
    dataset = model.datasets.get(key.dataset)
    block = dataset.blocks.get(key.block) if dataset is not None else None
    if block is None:
        return []
    candidates = [
        r.site
        for r in block.replicas
        if r.site.name != site and r.is_complete and r.site.status is not SiteStatus.MORGUE
    ]
    candidates.sort(key=lambda s: (s.storage_type is StorageType.TAPE, s.name))
    return [s.name for s in candidates]
