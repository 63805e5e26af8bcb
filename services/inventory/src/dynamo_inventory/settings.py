from __future__ import annotations

from pydantic import Field

from dynamo_common.settings import DynamoSettings


class InventorySettings(DynamoSettings):
    service_name: str = "inventory"
    command_prefetch: int = Field(default=20, ge=1, le=1000)
    command_reply_timeout: float = Field(default=30.0, gt=0)
    relay_batch: int = Field(default=2000, ge=1)
    relay_poll_interval: float = Field(default=1.0, gt=0)
    catch_up_interval: float = Field(default=1.0, gt=0)
    command_retention_days: int = Field(default=7, ge=1)
    db_pool_size: int = Field(default=8, ge=2)
