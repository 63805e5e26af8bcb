"""Turning placements into commands.

Each placement goes in two steps: the inventory records the new replica (a whole dataset as
a growing dataset replica whose block replicas start empty; a block as an empty block
replica), then the transfer service moves the files and reports progress to the inventory.
Command ids derive from what a command is about, so a batch sent again after a crash is
answered from the receiver's record instead of being applied twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence

from dynamo_common.messages import inventory as inv
from dynamo_common.messages import transfer as tr
from dynamo_common.model.objects import Inventory
from dynamo_dealer.service.proposals import Placement

BATCH = 2000
_NAMESPACE = uuid.UUID("0c6f8e4e-3a51-4d52-9e0f-6465616c6572")


def command_id(*parts: object) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(str(p) for p in parts)))


def replica_creations(
    placements: Sequence[Placement], inventory: Inventory
) -> inv.CreateReplicas | None:
    """The inventory command for the placements whose replica is not recorded yet (a block
    of a growing replica already has its empty block replica)."""
    datasets: list[inv.DatasetReplicaSpec] = []
    blocks: list[inv.BlockReplicaSpec] = []
    for p in placements:
        dataset = inventory.datasets.get(p.dataset)
        replica = dataset.replicas.get(p.site) if dataset is not None else None
        if p.block is None:
            if replica is None:
                datasets.append(
                    inv.DatasetReplicaSpec(
                        dataset=p.dataset, site=p.site, group=p.group, growing=True
                    )
                )
        elif replica is None or p.block not in replica.block_replicas:
            blocks.append(
                inv.BlockReplicaSpec(
                    dataset=p.dataset,
                    block=p.block,
                    site=p.site,
                    group=p.group,
                    size=0,
                    num_files=0,
                )
            )
    if not datasets and not blocks:
        return None
    return inv.CreateReplicas(dataset_replicas=datasets, block_replicas=blocks)


def transfers(placements: Sequence[Placement], reference: str) -> tr.TransferReplicas:
    return tr.TransferReplicas(
        requests=[
            tr.ReplicaTransferSpec(
                dataset=p.dataset,
                block=p.block,
                site=p.site,
                group=p.group,
                priority=p.priority,
                reference=f"{reference} {p.reference}"[:200],
            )
            for p in placements
        ]
    )


def batches(items: Sequence[Placement], size: int = BATCH) -> Iterator[list[Placement]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
