"""Routing keys and the one pydantic model behind each of them."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel

from dynamo_common.messages import consistency as cons
from dynamo_common.messages import dealer as dl
from dynamo_common.messages import detox as dx
from dynamo_common.messages import inventory as inv
from dynamo_common.messages import transfer as tr


class InventoryCommand(StrEnum):
    UPSERT_SITES = "inventory.site.upsert.v1"
    UPSERT_GROUPS = "inventory.group.upsert.v1"
    UPSERT_DATASETS = "inventory.dataset.upsert.v1"
    DELETE_DATASETS = "inventory.dataset.delete.v1"
    UPSERT_BLOCKS = "inventory.block.upsert.v1"
    ADD_FILES = "inventory.file.add.v1"
    REMOVE_FILES = "inventory.file.remove.v1"
    CREATE_REPLICAS = "inventory.replica.create.v1"
    UPDATE_REPLICAS = "inventory.replica.update.v1"
    DELETE_REPLICAS = "inventory.replica.delete.v1"
    UPSERT_CONTAINERS = "inventory.container.upsert.v1"
    DELETE_CONTAINERS = "inventory.container.delete.v1"
    UPSERT_PARTITIONS = "inventory.partition.upsert.v1"
    DELETE_PARTITIONS = "inventory.partition.delete.v1"


class InventoryEvent(StrEnum):
    SITE_CREATED = "inventory.site.created.v1"
    SITE_UPDATED = "inventory.site.updated.v1"
    GROUP_CREATED = "inventory.group.created.v1"
    GROUP_UPDATED = "inventory.group.updated.v1"
    DATASET_CREATED = "inventory.dataset.created.v1"
    DATASET_UPDATED = "inventory.dataset.updated.v1"
    DATASET_DELETED = "inventory.dataset.deleted.v1"
    BLOCK_CREATED = "inventory.block.created.v1"
    BLOCK_UPDATED = "inventory.block.updated.v1"
    FILE_ADDED = "inventory.file.added.v1"
    FILE_REMOVED = "inventory.file.removed.v1"
    REPLICA_CREATED = "inventory.replica.created.v1"
    REPLICA_UPDATED = "inventory.replica.updated.v1"
    REPLICA_DELETED = "inventory.replica.deleted.v1"
    CONTAINER_UPDATED = "inventory.container.updated.v1"
    CONTAINER_DELETED = "inventory.container.deleted.v1"
    PARTITION_UPDATED = "inventory.partition.updated.v1"
    PARTITION_DELETED = "inventory.partition.deleted.v1"


COMMAND_REPLY = "inventory.command.reply.v1"


class TransferCommand(StrEnum):
    TRANSFER_REPLICAS = "transfer.replica.transfer.v1"
    DELETE_REPLICAS = "transfer.replica.delete.v1"
    TRANSFER_FILES = "transfer.file.transfer.v1"
    DELETE_FILES = "transfer.file.delete.v1"


class TransferEvent(StrEnum):
    FILE_DONE = "transfer.file.done.v1"
    FILE_FAILED = "transfer.file.failed.v1"
    REPLICA_COMPLETED = "transfer.replica.completed.v1"
    REPLICA_PROGRESS = "transfer.replica.progress.v1"
    DELETION_DONE = "transfer.deletion.done.v1"


TRANSFER_REPLY = "transfer.command.reply.v1"


class DetoxEvent(StrEnum):
    CYCLE_STARTED = "detox.cycle.started.v1"
    CYCLE_FINISHED = "detox.cycle.finished.v1"


class ConsistencyEvent(StrEnum):
    RUN_FINISHED = "consistency.run.finished.v1"


class DealerEvent(StrEnum):
    CYCLE_FINISHED = "dealer.cycle.finished.v1"
    REQUEST_UPDATED = "dealer.request.updated.v1"


COMMAND_MODELS: dict[str, type[BaseModel]] = {
    InventoryCommand.UPSERT_SITES: inv.UpsertSites,
    InventoryCommand.UPSERT_GROUPS: inv.UpsertGroups,
    InventoryCommand.UPSERT_DATASETS: inv.UpsertDatasets,
    InventoryCommand.DELETE_DATASETS: inv.DeleteDatasets,
    InventoryCommand.UPSERT_BLOCKS: inv.UpsertBlocks,
    InventoryCommand.ADD_FILES: inv.AddFiles,
    InventoryCommand.REMOVE_FILES: inv.RemoveFiles,
    InventoryCommand.CREATE_REPLICAS: inv.CreateReplicas,
    InventoryCommand.UPDATE_REPLICAS: inv.UpdateReplicas,
    InventoryCommand.DELETE_REPLICAS: inv.DeleteReplicas,
    InventoryCommand.UPSERT_CONTAINERS: inv.UpsertContainers,
    InventoryCommand.DELETE_CONTAINERS: inv.DeleteContainers,
    InventoryCommand.UPSERT_PARTITIONS: inv.UpsertPartitions,
    InventoryCommand.DELETE_PARTITIONS: inv.DeletePartitions,
}

EVENT_MODELS: dict[str, type[BaseModel]] = {
    InventoryEvent.SITE_CREATED: inv.SitesChanged,
    InventoryEvent.SITE_UPDATED: inv.SitesChanged,
    InventoryEvent.GROUP_CREATED: inv.GroupsChanged,
    InventoryEvent.GROUP_UPDATED: inv.GroupsChanged,
    InventoryEvent.DATASET_CREATED: inv.DatasetsChanged,
    InventoryEvent.DATASET_UPDATED: inv.DatasetsChanged,
    InventoryEvent.DATASET_DELETED: inv.DatasetsDeleted,
    InventoryEvent.BLOCK_CREATED: inv.BlocksChanged,
    InventoryEvent.BLOCK_UPDATED: inv.BlocksChanged,
    InventoryEvent.FILE_ADDED: inv.FilesAdded,
    InventoryEvent.FILE_REMOVED: inv.FilesRemoved,
    InventoryEvent.REPLICA_CREATED: inv.ReplicasChanged,
    InventoryEvent.REPLICA_UPDATED: inv.ReplicasChanged,
    InventoryEvent.REPLICA_DELETED: inv.ReplicasDeleted,
    InventoryEvent.CONTAINER_UPDATED: inv.ContainersChanged,
    InventoryEvent.CONTAINER_DELETED: inv.ContainersDeleted,
    InventoryEvent.PARTITION_UPDATED: inv.PartitionsChanged,
    InventoryEvent.PARTITION_DELETED: inv.PartitionsDeleted,
}

_TRANSFER_COMMANDS: dict[str, type[BaseModel]] = {
    TransferCommand.TRANSFER_REPLICAS: tr.TransferReplicas,
    TransferCommand.DELETE_REPLICAS: tr.DeleteReplicaFiles,
    TransferCommand.TRANSFER_FILES: tr.TransferFiles,
    TransferCommand.DELETE_FILES: tr.DeleteFiles,
}

_TRANSFER_EVENTS: dict[str, type[BaseModel]] = {
    TransferEvent.FILE_DONE: tr.FileDone,
    TransferEvent.FILE_FAILED: tr.FileFailed,
    TransferEvent.REPLICA_COMPLETED: tr.ReplicaCompleted,
    TransferEvent.REPLICA_PROGRESS: tr.ReplicaProgress,
    TransferEvent.DELETION_DONE: tr.DeletionDone,
}

COMMAND_MODELS.update(_TRANSFER_COMMANDS)
EVENT_MODELS.update(_TRANSFER_EVENTS)
EVENT_MODELS.update(
    {DetoxEvent.CYCLE_STARTED: dx.CycleStarted, DetoxEvent.CYCLE_FINISHED: dx.CycleFinished}
)
EVENT_MODELS[ConsistencyEvent.RUN_FINISHED] = cons.ConsistencyRunFinished
EVENT_MODELS.update(
    {
        DealerEvent.CYCLE_FINISHED: dl.DealerCycleFinished,
        DealerEvent.REQUEST_UPDATED: dl.RequestUpdated,
    }
)

REPLY_MODELS: dict[str, type[BaseModel]] = {
    COMMAND_REPLY: inv.CommandReply,
    TRANSFER_REPLY: tr.TransferCommandReply,
}


class UnknownMessageType(ValueError):
    pass


def command_model(routing_key: str) -> type[BaseModel]:
    try:
        return COMMAND_MODELS[routing_key]
    except KeyError:
        raise UnknownMessageType(f"unknown command type {routing_key!r}") from None


def event_model(routing_key: str) -> type[BaseModel]:
    try:
        return EVENT_MODELS[routing_key]
    except KeyError:
        raise UnknownMessageType(f"unknown event type {routing_key!r}") from None
