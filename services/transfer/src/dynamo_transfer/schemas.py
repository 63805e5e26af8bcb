"""Response bodies of the transfer REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from dynamo_common.api import Page as Page


class SummaryRow(BaseModel):
    kind: str
    source: str | None = Field(description="null for deletions and files without a source yet")
    destination: str
    state: str
    files: int
    bytes: int


class StateTotal(BaseModel):
    files: int
    bytes: int


class Summary(BaseModel):
    links: list[SummaryRow]
    totals: dict[str, StateTotal] = Field(description="per state, over every link")


class TaskOut(BaseModel):
    id: int
    kind: str
    state: str
    lfn: str
    dataset: str | None
    block: str | None
    source: str | None
    destination: str
    size: int | None
    priority: int
    attempts: int
    reason: str | None = Field(description="why it is held, or the last error")
    job_id: str | None
    created: datetime
    updated: datetime
    submitted_at: datetime | None
    not_before: datetime | None


class ReleaseHeld(BaseModel):
    """Which held files to release: by id, or every one of a site (destination), a source,
    a link (both), a kind; at least one selector."""

    # Task ids are PostgreSQL bigints: a larger number is refused here, not overflowed in SQL.
    ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] | None = Field(
        default=None, max_length=100_000
    )
    site: str | None = None
    source: str | None = None
    kind: Literal["transfer", "deletion"] | None = None

    @model_validator(mode="after")
    def _selects_something(self) -> ReleaseHeld:
        if self.ids is None and self.site is None and self.source is None and self.kind is None:
            raise ValueError("give ids, site, source or kind: releasing everything needs a choice")
        return self


class Released(BaseModel):
    released: int


class HistoryOut(BaseModel):
    id: int
    task_id: int
    kind: str
    file: str
    source: str | None
    destination: str
    result: str
    error: str | None
    started: datetime | None
    finished: datetime
    duration: float
    bytes: int


class Bucket(BaseModel):
    start: datetime
    bytes: int
    done: int
    failed: int


class LinkOut(BaseModel):
    kind: str
    source: str | None
    destination: str
    done: int
    failed: int
    bytes: int
    rate: float = Field(description="bytes per second over the window")
    success_ratio: float | None = Field(description="done / (done + failed); null without any")
    buckets: list[Bucket]


class Links(BaseModel):
    window: float
    since: datetime
    links: list[LinkOut]


class ReplicaOut(BaseModel):
    id: int
    kind: str
    dataset: str
    block: str
    site: str
    group: str
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    files_held: int
    created: datetime
    last_progress: datetime | None
    stuck: bool = Field(description="less than 1% of the volume done over the stuck window")
