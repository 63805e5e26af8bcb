"""Dealer contracts: what a cycle announces when it is over, and each change of a copy request.

The copies themselves travel as inventory and transfer commands; these events let the web
page, the CLI and requesters follow the dealer without polling its API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from dynamo_common.messages.inventory import Contract
from dynamo_common.messages.types import Size

RequestState = Literal["new", "activated", "completed", "rejected", "cancelled"]


class DealerCycleFinished(Contract):
    cycle_id: int = Field(ge=1)
    status: Literal["done", "failed"]
    dry_run: bool = Field(default=False, description="decided and recorded, nothing sent")
    started: datetime
    finished: datetime
    inventory_seq: int = Field(ge=0, default=0)
    proposals: int = Field(ge=0, default=0)
    accepted: int = Field(ge=0, default=0)
    rejected: int = Field(ge=0, default=0)
    deferred: int = Field(ge=0, default=0, description="valid, left for a later cycle (caps)")
    bytes_placed: Size = 0
    error: str | None = None


class RequestUpdated(Contract):
    kind: Literal["copy", "deletion"] = Field(
        default="copy", description="a copy request or a deletion request (separate ids)"
    )
    request_id: int = Field(ge=1)
    requester: str
    state: RequestState
    previous: RequestState | None = Field(description="None when the request was just created")
    reason: str | None = None
    time: datetime
