"""Inventory contracts: the states of inventory objects, the commands that change them, the
events that announce the changes, and the reply a command gets.

Events carry the full new state of every object they touch (not a diff), so applying an event is
an idempotent upsert and a consumer never needs the previous state to understand one.
Every list is bounded so that one message stays well under RabbitMQ's frame limits.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dynamo_common.messages.types import (
    LFN,
    NO_GROUP,
    Adler32,
    BlockName,
    ContainerName,
    Count,
    Crc32,
    DatasetName,
    DatasetStatus,
    EntityId,
    GroupName,
    OwnershipLevel,
    PartitionName,
    SiteName,
    SiteStatus,
    Size,
    StorageType,
)

MAX_BATCH = 20_000
"""Largest number of items in one command or event list."""


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# Object states (also the records of the snapshot)
# ---------------------------------------------------------------------------------------------


class PfnRule(Contract):
    """One LFN->PFN rule: ``match`` is a regular expression over the whole LFN, ``result`` a
    template where ``$1``..``$9`` are the groups (CMS trivial-file-catalog style)."""

    match: str = Field(min_length=1, max_length=1000)
    result: str = Field(min_length=1, max_length=2000)

    @field_validator("match")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from exc
        return value


class Protocol(Contract):
    name: str = Field(pattern=r"^[a-z][a-z0-9+\-]{0,31}$", description="file, root, davs, ...")
    rules: list[PfnRule] = Field(min_length=1, max_length=100)


class SiteState(Contract):
    id: EntityId
    name: SiteName
    storage_type: StorageType = StorageType.DISK
    status: SiteStatus = SiteStatus.READY
    host: str = Field(default="", max_length=255)
    protocols: list[Protocol] = Field(default_factory=list, max_length=20)
    quotas: dict[PartitionName, Size] = Field(default_factory=dict)


class GroupState(Contract):
    id: EntityId
    name: GroupName
    olevel: OwnershipLevel = OwnershipLevel.DATASET


class DatasetState(Contract):
    id: EntityId
    name: DatasetName
    status: DatasetStatus = DatasetStatus.VALID
    data_type: str = Field(default="", max_length=32)
    software_version: str = Field(default="", max_length=64)
    is_open: bool = True
    last_update: datetime


class BlockState(Contract):
    id: EntityId
    dataset: DatasetName
    name: BlockName
    size: Size = 0
    num_files: Count = 0
    is_open: bool = True
    last_update: datetime


class FileState(Contract):
    dataset: DatasetName
    block: BlockName
    lfn: LFN
    size: Size
    adler32: Adler32 | None = None
    crc32: Crc32 | None = None


class DatasetReplicaState(Contract):
    dataset: DatasetName
    site: SiteName
    group: GroupName = NO_GROUP
    growing: bool = False
    last_update: datetime


class BlockReplicaState(Contract):
    dataset: DatasetName
    block: BlockName
    site: SiteName
    group: GroupName = NO_GROUP
    is_custodial: bool = False
    size: Size = 0
    num_files: Count = 0
    last_update: datetime


class ContainerState(Contract):
    name: ContainerName
    datasets: list[DatasetName] = Field(default_factory=list, max_length=MAX_BATCH)


class PartitionState(Contract):
    """A partition is a condition over block replicas, or a union of other partitions."""

    name: PartitionName
    condition: str | None = Field(default=None, max_length=10_000)
    subpartitions: list[PartitionName] = Field(default_factory=list, max_length=100)
    description: str = Field(default="", max_length=1000)

    @model_validator(mode="after")
    def _one_definition(self) -> PartitionState:
        if (self.condition is None) == (not self.subpartitions):
            raise ValueError("a partition has either a condition or subpartitions, not both")
        return self


# ---------------------------------------------------------------------------------------------
# Commands (exchange dynamo.commands, routing key = the CommandType's value)
# ---------------------------------------------------------------------------------------------


class SiteSpec(Contract):
    name: SiteName
    storage_type: StorageType = StorageType.DISK
    status: SiteStatus = SiteStatus.READY
    host: str = Field(default="", max_length=255)
    protocols: list[Protocol] = Field(default_factory=list, max_length=20)
    quotas: dict[PartitionName, Size] = Field(default_factory=dict)


class UpsertSites(Contract):
    sites: list[SiteSpec] = Field(min_length=1, max_length=1000)


class GroupSpec(Contract):
    name: GroupName
    olevel: OwnershipLevel = OwnershipLevel.DATASET


class UpsertGroups(Contract):
    groups: list[GroupSpec] = Field(min_length=1, max_length=1000)


class DatasetSpec(Contract):
    name: DatasetName
    status: DatasetStatus = DatasetStatus.VALID
    data_type: str = Field(default="", max_length=32)
    software_version: str = Field(default="", max_length=64)
    is_open: bool = True


class UpsertDatasets(Contract):
    datasets: list[DatasetSpec] = Field(min_length=1, max_length=MAX_BATCH)


class DeleteDatasets(Contract):
    """Remove datasets with their blocks and files. Refused while any replica exists."""

    names: list[DatasetName] = Field(min_length=1, max_length=MAX_BATCH)


class BlockSpec(Contract):
    """``size``/``num_files`` declare a block whose files are not registered individually;
    omitted, they keep their current value (0 for a new block) and grow as files are added."""

    dataset: DatasetName
    name: BlockName
    size: Size | None = None
    num_files: Count | None = None
    is_open: bool = True


class UpsertBlocks(Contract):
    """Create blocks or update open ones (a closed block is immutable)."""

    blocks: list[BlockSpec] = Field(min_length=1, max_length=MAX_BATCH)


class FileSpec(Contract):
    dataset: DatasetName
    block: BlockName
    lfn: LFN
    size: Size
    adler32: Adler32 | None = None
    crc32: Crc32 | None = None


class AddFiles(Contract):
    """Register files into open blocks; the blocks' size and file count become the sums of
    their files."""

    files: list[FileSpec] = Field(min_length=1, max_length=MAX_BATCH)


class RemoveFiles(Contract):
    lfns: list[LFN] = Field(min_length=1, max_length=MAX_BATCH)


class DatasetReplicaSpec(Contract):
    """A replica of a whole dataset: a block replica of every block at the site. ``growing``
    replicas also get a block replica of every block created later."""

    dataset: DatasetName
    site: SiteName
    group: GroupName = NO_GROUP
    growing: bool = True
    complete: bool = False
    is_custodial: bool = False


class BlockReplicaSpec(Contract):
    """A replica of one block. ``size``/``num_files`` omitted means complete."""

    dataset: DatasetName
    block: BlockName
    site: SiteName
    group: GroupName = NO_GROUP
    is_custodial: bool = False
    size: Size | None = None
    num_files: Count | None = None


class CreateReplicas(Contract):
    dataset_replicas: list[DatasetReplicaSpec] = Field(default_factory=list, max_length=MAX_BATCH)
    block_replicas: list[BlockReplicaSpec] = Field(default_factory=list, max_length=MAX_BATCH)

    @model_validator(mode="after")
    def _not_empty(self) -> CreateReplicas:
        if not self.dataset_replicas and not self.block_replicas:
            raise ValueError("nothing to create: give dataset_replicas or block_replicas")
        return self


class DatasetReplicaUpdate(Contract):
    """``group`` changes the owner of the dataset replica and all its block replicas;
    ``complete`` marks every block replica as holding all its files."""

    dataset: DatasetName
    site: SiteName
    group: GroupName | None = None
    growing: bool | None = None
    complete: bool = False


class BlockReplicaUpdate(Contract):
    dataset: DatasetName
    block: BlockName
    site: SiteName
    group: GroupName | None = None
    is_custodial: bool | None = None
    size: Size | None = None
    num_files: Count | None = None
    complete: bool = False


class UpdateReplicas(Contract):
    dataset_replicas: list[DatasetReplicaUpdate] = Field(default_factory=list, max_length=MAX_BATCH)
    block_replicas: list[BlockReplicaUpdate] = Field(default_factory=list, max_length=MAX_BATCH)

    @model_validator(mode="after")
    def _not_empty(self) -> UpdateReplicas:
        if not self.dataset_replicas and not self.block_replicas:
            raise ValueError("nothing to update: give dataset_replicas or block_replicas")
        return self


class DatasetReplicaKey(Contract):
    dataset: DatasetName
    site: SiteName


class BlockReplicaKey(Contract):
    dataset: DatasetName
    block: BlockName
    site: SiteName


class DeleteReplicas(Contract):
    """Delete whole dataset replicas, or single block replicas (a dataset replica left without
    blocks goes with its last block replica)."""

    dataset_replicas: list[DatasetReplicaKey] = Field(default_factory=list, max_length=MAX_BATCH)
    block_replicas: list[BlockReplicaKey] = Field(default_factory=list, max_length=MAX_BATCH)

    @model_validator(mode="after")
    def _not_empty(self) -> DeleteReplicas:
        if not self.dataset_replicas and not self.block_replicas:
            raise ValueError("nothing to delete: give dataset_replicas or block_replicas")
        return self


class ContainerSpec(Contract):
    name: ContainerName
    datasets: list[DatasetName] = Field(default_factory=list, max_length=MAX_BATCH)


class UpsertContainers(Contract):
    containers: list[ContainerSpec] = Field(min_length=1, max_length=1000)


class DeleteContainers(Contract):
    names: list[ContainerName] = Field(min_length=1, max_length=1000)


class UpsertPartitions(Contract):
    partitions: list[PartitionState] = Field(min_length=1, max_length=100)


class DeletePartitions(Contract):
    names: list[PartitionName] = Field(min_length=1, max_length=100)


# ---------------------------------------------------------------------------------------------
# Events (exchange dynamo.events, routing key = the event type; every one carries ``seq``)
# ---------------------------------------------------------------------------------------------


class SitesChanged(Contract):
    sites: list[SiteState]


class GroupsChanged(Contract):
    groups: list[GroupState]


class DatasetsChanged(Contract):
    datasets: list[DatasetState]


class DatasetsDeleted(Contract):
    names: list[DatasetName]


class BlocksChanged(Contract):
    blocks: list[BlockState]


class FilesAdded(Contract):
    files: list[FileState]
    blocks: list[BlockState] = Field(description="The new state of every block that grew.")


class FilesRemoved(Contract):
    files: list[FileState]
    blocks: list[BlockState] = Field(description="The new state of every block that shrank.")


class ReplicasChanged(Contract):
    dataset_replicas: list[DatasetReplicaState] = Field(default_factory=list)
    block_replicas: list[BlockReplicaState] = Field(default_factory=list)


class ReplicasDeleted(Contract):
    dataset_replicas: list[DatasetReplicaKey] = Field(default_factory=list)
    block_replicas: list[BlockReplicaKey] = Field(default_factory=list)


class ContainersChanged(Contract):
    containers: list[ContainerState]


class ContainersDeleted(Contract):
    names: list[ContainerName]


class PartitionsChanged(Contract):
    partitions: list[PartitionState]


class PartitionsDeleted(Contract):
    names: list[PartitionName]


# ---------------------------------------------------------------------------------------------
# Replies
# ---------------------------------------------------------------------------------------------


class FieldError(Contract):
    loc: list[str | int] = Field(default_factory=list)
    message: str


class CommandReply(Contract):
    """The answer to every inventory command. A redelivered command gets the same reply."""

    command_id: str
    status: Literal["accepted", "rejected"]
    first_seq: int | None = None
    last_seq: int | None = None
    events: int = 0
    reason: str | None = None
    errors: list[FieldError] = Field(default_factory=list)
