"""Turning a real cycle's decisions into commands.

Each deletion goes in two steps: the inventory marks the replica as being deleted (its owner
cleared: group ``None``, so no partition counts it and no agent plans with it), then the
transfer service removes the files and, once they are gone, has the inventory delete the
replica. Hand-offs only change the owner. A replica whose every block replica goes is named
as a dataset replica; otherwise each block replica is named.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from dynamo_common.messages import inventory as inv
from dynamo_common.messages import transfer as tr
from dynamo_common.messages.types import NO_GROUP
from dynamo_common.model.objects import Inventory
from dynamo_detox.service.engine import Decision, ReplicaDecision

BATCH = 5000
"""Items per command: well under the contracts' limits (10,000 and 20,000)."""
_NAMESPACE = uuid.UUID("6b1d8c2e-4f0a-4e4b-9d6e-646574f78a01")


def command_id(*parts: object) -> str:
    """Ids derive from what a command is about, so a command sent again after a crash is
    answered from the receiver's record instead of being applied twice."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(str(p) for p in parts)))


@dataclass(frozen=True, slots=True)
class Item:
    """One replica to delete (``block`` None: the whole dataset replica) or, with
    ``handed_to``, block replicas to give to another owner."""

    dataset: str
    site: str
    block: str | None
    size: int
    handed_to: str | None = None


def plan_items(decisions: Iterable[ReplicaDecision], inventory: Inventory) -> list[Item]:
    """Deletions merged per dataset replica (parts deleted in different iterations of one
    replica are one deletion when together they are the whole replica), then hand-offs."""
    deleted: dict[tuple[str, str], dict[str | None, int]] = {}
    handed: list[Item] = []
    for decision in decisions:
        if decision.handed_to is not None:
            for block in decision.blocks or _all_blocks(inventory, decision):
                handed.append(Item(decision.dataset, decision.site, block, 0, decision.handed_to))
            continue
        if decision.decision is not Decision.DELETE:
            continue
        blocks = deleted.setdefault((decision.dataset, decision.site), {})
        if decision.blocks is None:
            blocks[None] = decision.size
        else:
            replica = _replica_blocks(inventory, decision.dataset, decision.site)
            for block in decision.blocks:
                blocks[block] = replica.get(block, 0)
    items: list[Item] = []
    for (dataset, site), blocks in sorted(deleted.items()):
        if None in blocks:
            items.append(Item(dataset, site, None, blocks[None]))
            continue
        replica = _replica_blocks(inventory, dataset, site)
        if replica and set(blocks) == set(replica):
            items.append(Item(dataset, site, None, sum(blocks.values())))
        else:
            items.extend(
                Item(dataset, site, block, size)
                for block, size in sorted(blocks.items(), key=lambda kv: kv[0] or "")
            )
    return items + handed


def _replica_blocks(inventory: Inventory, dataset: str, site: str) -> dict[str | None, int]:
    found = inventory.datasets.get(dataset)
    replica = found.replicas.get(site) if found is not None else None
    if replica is None:
        return {}
    return {name: br.size for name, br in replica.block_replicas.items()}


def _all_blocks(inventory: Inventory, decision: ReplicaDecision) -> list[str]:
    return sorted(b for b in _replica_blocks(inventory, decision.dataset, decision.site) if b)


def still_there(items: Iterable[Item], inventory: Inventory) -> tuple[list[Item], list[Item]]:
    """(items whose replica the read model still holds, the others): a replica deleted or
    emptied since the cycle decided is not named in a command."""
    present: list[Item] = []
    gone: list[Item] = []
    for item in items:
        blocks = _replica_blocks(inventory, item.dataset, item.site)
        ok = bool(blocks) and (item.block is None or item.block in blocks)
        (present if ok else gone).append(item)
    return present, gone


def owner_updates(items: Sequence[Item]) -> inv.UpdateReplicas:
    """The inventory command: owner cleared for deletions, changed for hand-offs."""
    dataset_replicas = [
        inv.DatasetReplicaUpdate(dataset=i.dataset, site=i.site, group=NO_GROUP)
        for i in items
        if i.block is None and i.handed_to is None
    ]
    block_replicas = [
        inv.BlockReplicaUpdate(
            dataset=i.dataset,
            block=i.block,
            site=i.site,
            group=i.handed_to or NO_GROUP,
        )
        for i in items
        if i.block is not None
    ]
    return inv.UpdateReplicas(dataset_replicas=dataset_replicas, block_replicas=block_replicas)


def file_deletions(items: Sequence[Item], reference: str) -> tr.DeleteReplicaFiles | None:
    """The transfer command for the deletions among ``items`` (None when there are none)."""
    requests = [
        tr.ReplicaDeletionSpec(dataset=i.dataset, block=i.block, site=i.site, reference=reference)
        for i in items
        if i.handed_to is None
    ]
    return tr.DeleteReplicaFiles(requests=requests) if requests else None


def batches(items: Sequence[Item], size: int = BATCH) -> Iterator[list[Item]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
