"""Detox contracts: what a cycle announces when it starts and when it is over.

Deletions themselves travel as inventory and transfer commands; these events let monitoring,
the web page and other agents follow cycles without polling detox's API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from dynamo_common.messages.inventory import Contract
from dynamo_common.messages.types import Size

CycleKind = Literal["real", "test"]


class CycleStarted(Contract):
    cycle_id: int = Field(ge=1)
    partition: str
    kind: CycleKind = Field(description="test: a test run, nothing is deleted")
    policy_digest: str = Field(description="sha256 of the policy text the cycle runs")
    started: datetime
    inventory_seq: int = Field(ge=0, description="the inventory sequence the cycle sees")


class CycleFinished(Contract):
    cycle_id: int = Field(ge=1)
    partition: str
    kind: CycleKind
    status: Literal["done", "failed"]
    started: datetime
    finished: datetime
    sites: int = Field(ge=0, description="target sites")
    sites_triggered: int = Field(ge=0)
    replicas_deleted: int = Field(ge=0, description="dataset and block replicas to delete")
    bytes_deleted: Size = 0
    bytes_handed_over: Size = Field(
        default=0, description="bytes that left the partition by passing to another owner"
    )
    iterations: int = Field(ge=0, default=0)
    error: str | None = None
