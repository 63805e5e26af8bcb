"""Bodies of the dealer REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dynamo_common.api import Page as Page
from dynamo_common.messages.types import BlockName, DatasetName, GroupName, SiteName

RequestState = Literal["new", "activated", "completed", "rejected", "cancelled"]
DecisionName = Literal["accepted", "rejected", "deferred", "merged"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


_ITEM = r"^[A-Za-z0-9/*?\[\]][A-Za-z0-9_\-./*?#:\[\]]{0,599}$"
_SITE_PATTERN = r"^[A-Za-z0-9_\-*?\[\]]{1,100}$"


class RequestIn(_Body):
    items: list[str] = Field(
        min_length=1,
        max_length=1000,
        description="dataset names or patterns (/A/B/C), blocks (/A/B/C#block), containers",
    )
    sites: list[str] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        max_length=100,
        description="site name patterns the copies may go to",
    )
    n_copies: int = Field(default=1, ge=1, le=10, description="copies of each item among sites")
    group: GroupName
    comment: str = Field(default="", max_length=2000)

    @field_validator("items")
    @classmethod
    def _items(cls, value: list[str]) -> list[str]:
        import re

        for item in value:
            if not re.fullmatch(_ITEM, item) or ".." in item:
                raise ValueError(f"not a dataset, block or container name or pattern: {item!r}")
        return value

    @field_validator("sites")
    @classmethod
    def _sites(cls, value: list[str]) -> list[str]:
        import re

        for site in value:
            if not re.fullmatch(_SITE_PATTERN, site):
                raise ValueError(f"not a site name or pattern: {site!r}")
        return value


class DestinationOut(BaseModel):
    dataset: str
    block: str | None
    site: str
    copied: int
    total: int
    complete: bool


class RequestOut(BaseModel):
    id: int
    requester: str
    state: RequestState
    items: list[str]
    resolved: list[tuple[str, str | None]] = Field(description="(dataset, block or null)")
    sites: list[str]
    n_copies: int
    group: str
    comment: str
    size: int
    reason: str | None
    created: datetime
    updated: datetime


class RequestDetail(RequestOut):
    destinations: list[DestinationOut] = Field(
        description="the copies placed for the request and how far they got"
    )


class SubscriptionIn(_Body):
    item: str = Field(min_length=1, max_length=600, description="a dataset or container name")
    site: SiteName
    group: GroupName


class SubscriptionOut(BaseModel):
    id: int
    item: str
    site: str
    group: str
    created_by: str
    created: datetime


class CycleIn(_Body):
    comment: str = Field(default="", max_length=2000)
    dry_run: bool = Field(default=False, description="decide and record, send nothing")


class CycleSubmitted(BaseModel):
    id: int
    status: Literal["queued"]
    dry_run: bool


class CommandsOut(BaseModel):
    batches: int
    pending: int
    accepted: int
    rejected: int


class CycleOut(BaseModel):
    id: int
    status: Literal["queued", "running", "done", "failed"]
    dry_run: bool
    requested_by: str | None
    comment: str
    created: datetime
    started: datetime | None
    finished: datetime | None
    inventory_seq: int | None
    proposals: int
    accepted: int
    rejected: int
    deferred: int
    merged: int
    bytes_placed: int
    per_plugin: dict[str, dict[str, int]]
    warnings: list[str]
    error: str | None


class CycleDetail(CycleOut):
    commands: CommandsOut


class DecisionOut(BaseModel):
    index: int
    plugin: str
    reference: str
    dataset: str
    block: str | None
    requested_site: str | None = Field(description="the destination the proposal fixed")
    site: str | None = Field(description="the destination chosen")
    group: str
    priority: float
    weight: float
    decision: DecisionName
    reason: str
    proposal_reason: str
    volume: int
    merged_into: int | None


class VolumeOut(BaseModel):
    copied: int
    total: int
    replicas: int
    stuck: int


class SiteVolumeOut(VolumeOut):
    site: str


class MonitoringOut(BaseModel):
    total: VolumeOut
    sites: list[SiteVolumeOut]
    stuck_days: float


class InFlightOut(BaseModel):
    dataset: str
    block: str | None
    site: str
    copied: int
    total: int
    progress: float
    placed: datetime
    last_progress: datetime = Field(description="when the last 1% step arrived")
    stuck: bool


class ComplianceOut(BaseModel):
    file: str
    rule: str
    protect: bool
    num_copies: int
    datasets: int
    there: int
    in_flight: int
    missing: int


def row_dict(row: Any) -> dict[str, Any]:
    return dict(row)


class DeletionIn(_Body):
    dataset: DatasetName
    block: BlockName | None = Field(default=None, description="one block; omitted: the whole")
    site: SiteName
    comment: str = Field(default="", max_length=2000)


class DeletionOut(BaseModel):
    id: int
    requester: str
    state: RequestState
    dataset: str
    block: str | None
    site: str
    comment: str
    size: int
    reason: str | None
    created: datetime
    updated: datetime
