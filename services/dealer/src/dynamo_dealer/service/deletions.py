"""User deletion requests: a user asks for the replica of a dataset (or one block) at a site
to be deleted. Validated against the inventory (the replica exists, and another complete
copy of the data stays elsewhere: a user never deletes a last copy); carried out like
detox's deletions: the inventory clears the owner, then the transfer service removes the
files and has the inventory delete the replica."""

from __future__ import annotations

from dataclasses import dataclass

from dynamo_common.messages import inventory as inv
from dynamo_common.messages import transfer as tr
from dynamo_common.messages.types import NO_GROUP
from dynamo_common.model.objects import Block, Inventory


@dataclass(frozen=True, slots=True)
class DeletionSpec:
    id: int
    dataset: str
    block: str | None
    site: str


def _other_complete_copy(blocks: list[Block], site: str) -> bool:
    """Whether every block has a complete replica elsewhere that is not itself being
    deleted (owner cleared): two requests must not remove both of the last two copies."""
    return all(
        any(
            r.is_complete and r.site.name != site and r.group.name != NO_GROUP
            for r in block.replicas
        )
        for block in blocks
    )


def validate(inventory: Inventory, spec: DeletionSpec) -> tuple[int, str | None]:
    """(bytes at the site, why the deletion is refused or None)."""
    dataset = inventory.datasets.get(spec.dataset)
    if dataset is None:
        return 0, f"unknown dataset {spec.dataset}"
    if spec.site not in inventory.sites:
        return 0, f"unknown site {spec.site}"
    replica = dataset.replicas.get(spec.site)
    if replica is None:
        return 0, f"no replica of {spec.dataset} at {spec.site}"
    if spec.block is None:
        blocks = list(dataset.blocks.values())
        size = replica.size
    else:
        held = replica.block_replicas.get(spec.block)
        if held is None:
            return 0, f"no replica of block {spec.block} at {spec.site}"
        blocks = [held.block]
        size = held.size
    if replica.group.name == NO_GROUP and all(
        br.group.name == NO_GROUP for br in replica.block_replicas.values()
    ):
        return size, "the replica is already being deleted"
    if not _other_complete_copy(blocks, spec.site):
        return size, "the last complete copy: it stays"
    return size, None


def gone(inventory: Inventory, spec: DeletionSpec) -> bool:
    dataset = inventory.datasets.get(spec.dataset)
    replica = dataset.replicas.get(spec.site) if dataset is not None else None
    if replica is None:
        return True
    return spec.block is not None and spec.block not in replica.block_replicas


def owner_cleared(spec: DeletionSpec) -> inv.UpdateReplicas:
    if spec.block is None:
        return inv.UpdateReplicas(
            dataset_replicas=[
                inv.DatasetReplicaUpdate(dataset=spec.dataset, site=spec.site, group=NO_GROUP)
            ]
        )
    return inv.UpdateReplicas(
        block_replicas=[
            inv.BlockReplicaUpdate(
                dataset=spec.dataset, block=spec.block, site=spec.site, group=NO_GROUP
            )
        ]
    )


def file_deletion(spec: DeletionSpec) -> tr.DeleteReplicaFiles:
    return tr.DeleteReplicaFiles(
        requests=[
            tr.ReplicaDeletionSpec(
                dataset=spec.dataset,
                block=spec.block,
                site=spec.site,
                reference=f"dealer deletion request {spec.id}",
            )
        ]
    )
