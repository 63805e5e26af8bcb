"""Transfer contracts: requests to move or delete the files of replicas, and what became of them.

The dealer, detox and consistency ask for file movements with these commands; the transfer
service answers with events, and tells the inventory through inventory commands.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dynamo_common.messages.inventory import Contract
from dynamo_common.messages.types import (
    LFN,
    NO_GROUP,
    Adler32,
    BlockName,
    DatasetName,
    GroupName,
    SiteName,
    Size,
)

Priority = int  # 1 (lowest) .. 5 (highest), FTS's scale


class ReplicaTransferSpec(Contract):
    """Make the replica of a dataset (every block, when ``block`` is omitted) or of one block
    complete at ``site``."""

    dataset: DatasetName
    block: BlockName | None = None
    site: SiteName
    group: GroupName = NO_GROUP
    priority: int = Field(default=3, ge=1, le=5)
    reference: str = Field(default="", max_length=200, description="the caller's request id")


class ReplicaDeletionSpec(Contract):
    """Remove the files of a dataset or block replica from ``site``."""

    dataset: DatasetName
    block: BlockName | None = None
    site: SiteName
    reference: str = Field(default="", max_length=200)


class FileTransferSpec(Contract):
    """Copy one registered file to a site again (consistency repairs)."""

    dataset: DatasetName
    block: BlockName
    lfn: LFN
    site: SiteName
    priority: int = Field(default=3, ge=1, le=5)


class FileDeletionSpec(Contract):
    """Delete one file from a site's storage (orphans need not be in the inventory)."""

    lfn: LFN
    site: SiteName


class TransferReplicas(Contract):
    requests: list[ReplicaTransferSpec] = Field(min_length=1, max_length=10_000)


class DeleteReplicaFiles(Contract):
    requests: list[ReplicaDeletionSpec] = Field(min_length=1, max_length=10_000)


class TransferFiles(Contract):
    files: list[FileTransferSpec] = Field(min_length=1, max_length=10_000)


class DeleteFiles(Contract):
    files: list[FileDeletionSpec] = Field(min_length=1, max_length=10_000)


class TransferCommandReply(Contract):
    command_id: str
    status: Literal["accepted", "rejected"]
    tasks: int = 0
    cancelled: int = Field(default=0, description="opposite pending tasks this one cancelled")
    reason: str | None = None


class FileDone(Contract):
    kind: Literal["transfer", "deletion"]
    lfn: LFN
    source: SiteName | None = None
    site: SiteName
    bytes: Size = 0
    duration: float = 0.0
    task_id: int


class FileFailed(Contract):
    kind: Literal["transfer", "deletion"]
    lfn: LFN
    source: SiteName | None = None
    site: SiteName
    error: str
    attempts: int
    state: Literal["retry", "held", "failed"]
    task_id: int


class ReplicaCompleted(Contract):
    dataset: DatasetName
    block: BlockName
    site: SiteName
    bytes: Size
    files: int


class ReplicaProgress(Contract):
    dataset: DatasetName
    block: BlockName
    site: SiteName
    bytes_done: Size
    bytes_total: Size
    files_done: int
    files_total: int


class DeletionDone(Contract):
    dataset: DatasetName
    block: BlockName
    site: SiteName
    files: int


class FileRef(Contract):
    """Referenced by consumers that need the checksum of what moved."""

    lfn: LFN
    size: Size
    adler32: Adler32 | None = None
