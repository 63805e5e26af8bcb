"""Consistency contracts: what a check of a site's storage against the inventory found.

The consistency service publishes one event per finished check. The lists of files themselves
stay in its REST API (they can run into millions); the event carries the counts an operator's
summary table shows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from dynamo_common.messages.inventory import Contract
from dynamo_common.messages.types import Count, SiteName, Size

__all__ = ["ConsistencyRunFinished"]


class ConsistencyRunFinished(Contract):
    """A consistency check of one site finished (``consistency.run.finished.v1``)."""

    run_id: int = Field(ge=1)
    site: SiteName
    started: datetime
    finished: datetime
    duration: float = Field(ge=0, description="seconds")
    status: Literal["done", "failed"]
    action: Literal["none", "acted", "flagged", "dry_run", "failed"] = Field(
        description="acted: requests were sent automatically; flagged: held for an operator "
        "(safety valve or halted site); dry_run: asked not to act; failed: no comparison."
    )
    reason: str = Field(default="", max_length=2000)
    files_listed: Count = 0
    dirs_listed: Count = 0
    unlisted_dirs: Count = 0
    empty_dirs_removed: Count = 0
    missing_files: Count = 0
    missing_bytes: Size = 0
    unrecoverable_files: Count = 0
    unrecoverable_bytes: Size = 0
    orphan_files: Count = 0
    orphan_bytes: Size = 0
    transfers_requested: Count = 0
    deletions_requested: Count = 0
