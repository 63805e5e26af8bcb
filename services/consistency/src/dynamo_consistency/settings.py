from __future__ import annotations

import os
import socket
from typing import Literal

from pydantic import Field, field_validator

from dynamo_common.settings import DynamoSettings


def _default_worker() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ConsistencySettings(DynamoSettings):
    service_name: str = "consistency"
    worker_id: str = Field(
        default_factory=_default_worker,
        description="Names this worker in the run records (several workers split the sites).",
    )
    read_model_queue: str = Field(
        default="consistency.inventory-events",
        description="This worker's own queue of inventory events: every worker needs its own.",
    )
    storage_backend: Literal["gfal", "posix"] = Field(
        default="gfal", description="gfal: gfal2 (every protocol); posix: file:// only"
    )
    protocol_preference: list[str] = Field(
        default_factory=lambda: ["root", "davs", "file"],
        description="The protocol a site is listed with: the first of these it has.",
    )
    roots: list[str] = Field(
        default_factory=lambda: ["/store"],
        description="LFN directories listed at every site.",
    )
    ignored_dirs: list[str] = Field(
        default_factory=list,
        description="LFN directories whose unknown files are never called orphans nor "
        "deleted (user areas, temporary areas), and whose empty directories stay.",
    )
    grace_period: float = Field(
        default=2 * 86400.0,
        ge=0,
        description="Seconds: files modified, and block replicas updated, more recently than "
        "this before a check are never called missing or orphan.",
    )
    max_missing: int = Field(default=100, ge=0, description="safety valve: missing files")
    max_orphans: int = Field(default=1000, ge=0, description="safety valve: orphan files")
    recheck_interval: float = Field(
        default=12 * 3600.0,
        ge=0,
        description="A site is checked again on schedule at most "
        "this often (seconds); the one checked longest ago goes first.",
    )
    scheduled_checks: bool = Field(
        default=True,
        description="false: sites are checked only when asked through the API",
    )
    schedule_interval: float = Field(
        default=60.0, gt=0, description="Seconds between two looks for a site to check."
    )
    parallel_sites: int = Field(default=2, ge=1, description="checks this worker runs at once")
    listing_parallelism: int = Field(default=8, ge=1, description="directories listed at once")
    listing_retries: int = Field(default=2, ge=0, description="retries of a failed directory")
    listing_timeout: float = Field(
        default=300.0, gt=0, description="seconds for one directory listing attempt"
    )
    view_parallelism: int = Field(
        default=8, ge=1, description="concurrent requests for block files to the inventory"
    )
    remove_empty_dirs: bool = True
    transfer_priority: int = Field(default=3, ge=1, le=5)
    command_timeout: float = Field(
        default=60.0,
        gt=0,
        description="seconds to wait for the transfer service or the inventory to answer a request",
    )
    approval_max_age: float = Field(
        default=7 * 86400.0,
        gt=0,
        description="a flagged check older than this (seconds) "
        "can no longer be approved: check the site again",
    )
    run_files_retention_days: int = Field(
        default=90, ge=1, description="file lists of older runs are pruned (counts stay)"
    )
    relay_poll_interval: float = Field(default=1.0, gt=0)
    db_pool_size: int = Field(default=8, ge=2)

    @field_validator("roots", "ignored_dirs")
    @classmethod
    def _absolute(cls, value: list[str]) -> list[str]:
        cleaned = []
        for item in value:
            if not item.startswith("/") or ".." in item.split("/"):
                raise ValueError(f"{item!r} must be an absolute LFN directory")
            cleaned.append("/" + item.strip("/"))
        return cleaned
