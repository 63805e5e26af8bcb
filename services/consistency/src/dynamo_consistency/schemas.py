"""Request and response bodies of the consistency REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from dynamo_common.api import Page as Page


class SiteSummary(BaseModel):
    """One row of the operators' summary table: the site's latest finished check."""

    site: str
    state: Literal["enabled", "disabled", "halted"]
    state_reason: str
    running: bool = Field(description="a check (or an approval) of the site is running now")
    check_requested: datetime | None
    approval_pending: int | None = Field(description="run approved, waiting for a worker")
    run_id: int | None
    status: str | None = Field(description="done or failed")
    last_update: datetime | None = Field(description="when the latest check finished")
    time_minutes: float | None
    files: int | None = Field(description="files listed")
    nodes: int | None = Field(description="directories listed")
    unlisted: int | None = Field(description="directories that could not be listed")
    empty_nodes: int | None = Field(description="empty directories removed")
    missing: int | None
    missing_blocks: int | None
    missing_bytes: int | None
    no_source: int | None = Field(description="missing files with no other copy")
    no_source_bytes: int | None
    orphans: int | None
    orphan_bytes: int | None
    action: str | None
    reason: str | None
    attention: bool = Field(
        description="needs an operator: halted, flagged, failed, with unlisted directories, "
        "or with repairs the transfer service or the inventory did not accept"
    )


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    site: str
    worker: str
    started: datetime
    finished: datetime | None
    duration: float | None = Field(description="seconds")
    status: str
    dry_run: bool
    protocol: str | None
    roots: list[str]
    inventory_seq: int | None
    files_listed: int
    dirs_listed: int
    unlisted_dirs: int
    empty_dirs_removed: int
    expected_files: int = Field(description="files of settled replicas the check looked for")
    missing_files: int
    missing_bytes: int
    missing_blocks: int
    missing_confirmed: int = Field(description="also missing in the check before (acted on)")
    unrecoverable_files: int
    unrecoverable_bytes: int
    orphan_files: int
    orphan_bytes: int
    ignored_files: int = Field(description="unknown files under ignored directories")
    ignored_bytes: int
    skipped_recent: int = Field(description="differences within the grace period")
    skipped_in_flight: int = Field(description="files of replicas in flight")
    skipped_unlisted: int = Field(description="expected files in unlisted directories")
    outside_files: int = Field(description="files of the site's replicas outside the listing")
    transfers_requested: int
    deletions_requested: int
    replicas_reported: int = Field(description="block replicas reported incomplete")
    action: str
    reason: str
    action_detail: str
    approved: datetime | None
    error: str | None


class FileOut(BaseModel):
    path: str
    size: int | None
    dataset: str | None
    block: str | None
    listed_size: int | None = Field(description="size found on storage when it differs")
    strike: int | None = Field(description="1: first seen missing; 2: missing twice in a row")
    unrecoverable: bool
    source: str | None = Field(description="where a new copy is expected to come from")
    acted: bool = Field(description="a transfer, deletion or inventory update was requested")
    note: str | None


class SiteStateOut(BaseModel):
    site: str
    state: Literal["enabled", "disabled", "halted"]
    state_reason: str
    state_changed: datetime | None
    check_requested: datetime | None
    dry_run_requested: bool
    approval_pending: int | None
    last_check: datetime | None
    last_run_id: int | None


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: bool = Field(default=False, description="compare and record, act on nothing")


class ApproveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: int = Field(ge=1, le=2**63 - 1, description="the flagged check (the site's latest)")
    include_first_strike: bool = Field(
        default=False,
        description="also re-transfer files missing for the first time (skip the two-strike "
        "rule for this check)",
    )


class StateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Literal["enabled", "disabled", "halted"]
    # Printable text only: it is shown in tables, and PostgreSQL text cannot hold NUL.
    reason: str = Field(default="", max_length=1000, pattern=r"^[^\x00-\x1f\x7f]*$")
