from __future__ import annotations

from typing import Literal

from pydantic import Field

from dynamo_common.settings import DynamoSettings


class TransferSettings(DynamoSettings):
    service_name: str = "transfer"
    backend: Literal["direct", "fts3"] = Field(
        default="direct",
        description="fts3: submit jobs to an FTS3 server; direct: copy with gfal2 in-process "
        "(small installations and the standalone mode).",
    )
    fts3_url: str = Field(default="", description="FTS3 REST endpoint, e.g. https://fts:8446")
    fts3_token: str = Field(default="", description="bearer token for FTS3 (or use a cert)")
    fts3_cert: str = Field(default="", description="X.509 proxy/cert file for FTS3")
    max_active_per_link: int = Field(default=50, ge=1, description="submitted files per link")
    max_active_total: int = Field(default=500, ge=1, description="submitted files in total")
    max_batch: int = Field(default=100, ge=1, description="files per backend job")
    direct_parallel_per_link: int = Field(
        default=4, ge=1, description="direct backend: concurrent copies per link"
    )
    direct_parallel_total: int = Field(
        default=16, ge=1, description="direct backend: concurrent copies in total"
    )
    deletion_parallel: int = Field(default=8, ge=1, description="concurrent deletions")
    max_attempts: int = Field(default=5, ge=1, description="attempts before a file is held")
    retry_base_seconds: float = Field(default=60.0, gt=0)
    retry_max_seconds: float = Field(default=6 * 3600.0, gt=0)
    poll_interval: float = Field(default=10.0, gt=0, description="scheduler/FTS poll period")
    progress_interval: float = Field(default=30.0, gt=0, description="inventory report period")
    relay_poll_interval: float = Field(default=1.0, gt=0)
    protocol_preference: list[str] = Field(default_factory=lambda: ["root", "davs", "file"])
    read_model_queue: str = Field(default="transfer.inventory-events")
    command_prefetch: int = Field(default=10, ge=1, le=1000)
    command_reply_timeout: float = Field(default=30.0, gt=0)
    inventory_request_timeout: float = Field(default=30.0, gt=0)
    copy_timeout: float = Field(default=3600.0, gt=0, description="one direct copy, seconds")
    stuck_window: float = Field(
        default=5 * 86400.0, gt=0, description="a replica with <1% progress over this is stuck"
    )
    command_retention_days: int = Field(default=7, ge=1)
    db_pool_size: int = Field(default=8, ge=2)
