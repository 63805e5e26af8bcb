from dynamo_common.model.apply import ApplyError, SequenceGap, apply_event, apply_sequenced
from dynamo_common.model.objects import (
    Block,
    BlockReplica,
    Container,
    Dataset,
    DatasetReplica,
    Group,
    Inventory,
    Partition,
    Site,
)

__all__ = [
    "ApplyError",
    "Block",
    "BlockReplica",
    "Container",
    "Dataset",
    "DatasetReplica",
    "Group",
    "Inventory",
    "Partition",
    "SequenceGap",
    "Site",
    "apply_event",
    "apply_sequenced",
]
