"""Bodies of the detox REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dynamo_common.api import Page as Page
from dynamo_common.messages.types import DatasetName, SiteName


class CycleOut(BaseModel):
    id: int
    kind: Literal["real", "test"]
    partition: str
    policy_digest: str
    status: Literal["queued", "running", "done", "failed"]
    requested_by: str | None
    comment: str
    created: datetime
    started: datetime | None
    finished: datetime | None
    inventory_seq: int | None = Field(description="the inventory sequence the cycle saw")
    iterations: int
    sites: int
    sites_triggered: int
    replicas_deleted: int
    bytes_deleted: int
    bytes_handed_over: int
    missing_providers: list[str] = Field(
        description="provider variables the policy uses that no provider filled: their "
        "documented default applied"
    )
    warnings: list[str]
    error: str | None


class CommandsOut(BaseModel):
    batches: int
    pending: int
    accepted: int
    rejected: int


class CycleDetail(CycleOut):
    policy_text: str
    commands: CommandsOut | None = Field(
        default=None, description="real cycles: the deletion commands and their outcome"
    )


class CycleSiteOut(BaseModel):
    site: str
    quota: int
    used_before: int
    used_after: int
    occupancy_before: float | None
    occupancy_after: float | None
    deleted: int
    handed_over: int
    protected: int
    triggered: bool
    stopped: bool = Field(description="its Until held when the cycle ended")
    candidates_left: int


class DecisionOut(BaseModel):
    cycle_id: int
    site: str
    dataset: str
    blocks: list[str] | None = Field(description="null: every block replica at the site")
    decision: Literal["delete", "keep", "protect"]
    action: str = Field(description="the statement that decided: Protect, DismissBlock, ...")
    line: int = Field(description="the policy line that decided")
    rule: str = Field(description="the text of that line")
    size: int
    handed_to: str | None = Field(description="blocks passed to this owner instead of deleted")
    iteration: int


class DecisionSearchOut(DecisionOut):
    kind: Literal["real", "test"]
    partition: str
    started: datetime | None


class CycleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partition: str = Field(description="a partition with a configured policy")
    comment: str = Field(default="", max_length=1000)


class TestRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: str = Field(min_length=1, max_length=10_000_000, description="a detox policy text")
    comment: str = Field(default="", max_length=1000)


class Submitted(BaseModel):
    id: int
    status: str
    partition: str
    policy_digest: str


class ComparisonRow(BaseModel):
    site: str
    dataset: str
    change: Literal["additional", "kept"] = Field(
        description="additional: the test run deletes more; kept: it deletes less"
    )
    test_bytes: int
    real_bytes: int


class ComparisonOut(Page[ComparisonRow]):
    test_run: int
    real_cycle: int
    additional: int
    additional_bytes: int
    kept: int
    kept_bytes: int


class LockRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(min_length=1, max_length=500, description="name or pattern (* ?)")
    block: str | None = Field(default=None, max_length=200, description="name or pattern")
    sites: str = Field(default="*", min_length=1, max_length=200, description="name or pattern")
    until: datetime
    comment: str = Field(default="", max_length=1000)


class LockUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    until: datetime
    comment: str | None = Field(default=None, max_length=1000)


class LockOut(BaseModel):
    id: int
    dataset: str
    block: str | None
    sites: str
    until: datetime
    owner: str
    comment: str
    created: datetime
    released: datetime | None
    active: bool


class AccessRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: DatasetName
    site: SiteName
    time: datetime
    count: int = Field(default=1, ge=1, le=10**9)


class AccessRecords(BaseModel):
    model_config = ConfigDict(extra="forbid")

    records: list[AccessRecord] = Field(min_length=1, max_length=100_000)


class AccessesStored(BaseModel):
    stored: int


class PopularityOut(BaseModel):
    dataset: str
    last_access: datetime
    window_accesses: int
    sites: int


class SimulationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario: str = Field(
        min_length=1, max_length=200, description="a packaged scenario (GET /simulations/scenarios)"
    )
    policy: str | None = Field(
        default=None,
        min_length=1,
        max_length=10_000_000,
        description="a detox policy text replacing the scenario's (the what if); none: its own",
    )
    days: int | None = Field(
        default=None, ge=1, le=14, description="simulated days (default: the scenario's)"
    )
    seed: int | None = Field(
        default=None, ge=0, le=2**31 - 1, description="trace seed (default: the scenario's)"
    )
    comment: str = Field(default="", max_length=1000)


class ScenarioOut(BaseModel):
    name: str = Field(description="what POST /simulations takes")
    title: str
    description: str
    days: float
    warmup_days: float
    seed: int
    grid: str
    strategies: list[str]
    policy: str | None = Field(description="the detox policy text the scenario runs")


class SimulationOut(BaseModel):
    id: int
    scenario: str
    days: float
    seed: int
    policy_changed: bool = Field(description="whether the detox policy was replaced")
    status: Literal["queued", "running", "done", "failed"]
    requested_by: str | None
    comment: str
    created: datetime
    started: datetime | None
    finished: datetime | None
    error: str | None
    progress: str | None = Field(default=None, description="the running simulation's last step")


class SimulationDetail(SimulationOut):
    policy: str | None = Field(description="the detox policy text that ran")
    result: dict[str, Any] | None = Field(
        description="when done: the simulator's result.json (summary and series per strategy)"
    )


class SimulationSubmitted(BaseModel):
    id: int
    status: str
    scenario: str
    days: float
    seed: int
