from __future__ import annotations

from pathlib import Path

from pydantic import Field

from dynamo_common.settings import DynamoSettings


class DetoxSettings(DynamoSettings):
    service_name: str = "detox"
    policy_files: list[Path] = Field(
        default_factory=list,
        description="Detox policy files run on the schedule, one partition each.",
    )
    enforcer_files: list[Path] = Field(
        default_factory=list,
        description="Enforcer rule files: their protect rules make replica.enforcer_protected.",
    )
    cycle_interval: float = Field(
        default=6 * 3600.0,
        ge=0,
        description="Seconds between scheduled cycles of each policy; 0: on demand only.",
    )
    volume_step: float = Field(
        default=0.02,
        gt=0,
        le=1,
        description="Bytes a site deletes per iteration, as a fraction of its quota.",
    )
    popularity_window_days: float = Field(
        default=30.0, gt=0, description="Accesses in this window count for replica.num_access."
    )
    popularity_retention_days: float = Field(
        default=400.0, gt=0, description="Access records older than this are dropped."
    )
    protected_sites: list[str] = Field(
        default_factory=list,
        description="Site patterns that make dataset.on_protected_site true.",
    )
    admins: list[str] = Field(
        default_factory=list,
        description="Users who may extend and release anyone's locks.",
    )
    real_cycle_retention_days: float = Field(default=400.0, gt=0)
    test_run_retention_days: float = Field(default=30.0, gt=0)
    read_model_queue: str = Field(default="detox.inventory-events")
    read_model_timeout: float = Field(
        default=60.0, gt=0, description="How long a cycle waits for the read model to catch up."
    )
    command_reply_timeout: float = Field(default=60.0, gt=0)
    command_retry_interval: float = Field(
        default=60.0, gt=0, description="Seconds between attempts to send unsent commands."
    )
    db_pool_size: int = Field(default=6, ge=2)
