"""Response bodies of the inventory REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, Field

from dynamo_common.messages.inventory import Protocol

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int
    seq: int = Field(description="The inventory sequence number these results reflect.")


class PartitionUsage(BaseModel):
    partition: str
    used: int
    quota: int
    occupancy: float | None = Field(description="used / quota, null without a quota")


class SiteOut(BaseModel):
    id: int
    name: str
    storage_type: str
    status: str
    host: str
    protocols: list[Protocol]
    quotas: dict[str, int]
    used: int = Field(description="Bytes of block replicas at the site.")
    dataset_replicas: int
    usage: list[PartitionUsage]


class GroupOut(BaseModel):
    id: int
    name: str
    olevel: str


class DatasetOut(BaseModel):
    id: int
    name: str
    status: str
    data_type: str
    software_version: str
    is_open: bool
    last_update: datetime
    size: int
    num_files: int
    num_blocks: int
    num_replicas: int


class BlockOut(BaseModel):
    id: int
    name: str
    size: int
    num_files: int
    is_open: bool
    last_update: datetime
    replicas: list[str] = Field(description="Sites holding a replica of the block.")


class BlockReplicaOut(BaseModel):
    block: str
    group: str
    is_custodial: bool
    size: int
    num_files: int
    is_complete: bool
    last_update: datetime


class DatasetReplicaOut(BaseModel):
    dataset: str
    site: str
    group: str
    growing: bool
    size: int
    is_complete: bool
    num_blocks: int
    last_update: datetime
    block_replicas: list[BlockReplicaOut] | None = None


class DatasetDetail(DatasetOut):
    blocks: list[BlockOut]
    replicas: list[DatasetReplicaOut]


class PartitionOut(BaseModel):
    name: str
    condition: str | None
    subpartitions: list[str]
    description: str


class ContainerOut(BaseModel):
    name: str
    datasets: list[str]


class StatsRow(BaseModel):
    key: dict[str, str]
    replicas: int
    size: int


class StatsOut(BaseModel):
    group_by: list[str]
    rows: list[StatsRow]
    seq: int


class EventsOut(BaseModel):
    events: list[dict[str, object]]
    last_seq: int
    oldest_seq: int | None
