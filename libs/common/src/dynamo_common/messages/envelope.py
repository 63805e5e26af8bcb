"""The one envelope every message on the bus travels in.

It is a CloudEvents 1.0 structured-mode JSON document, so outside consumers can use standard
CloudEvents tooling. CloudEvents extension attribute names must be lowercase alphanumerics, which
is why the correlation id and sequence number are serialised as ``correlationid`` and ``seq``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True)

    specversion: str = "1.0"
    id: str = Field(default_factory=new_id, description="Unique message id (UUID).")
    type: str = Field(description="The versioned routing key, e.g. inventory.replica.created.v1")
    source: str = Field(description="The service that produced the message, e.g. /dynamo/inventory")
    time: datetime = Field(default_factory=utcnow)
    datacontenttype: str = "application/json"
    seq: int | None = Field(
        default=None, description="Gap-free sequence number; set on inventory events only."
    )
    correlation_id: str | None = Field(default=None, alias="correlationid")
    data: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Envelope:
        return cls.model_validate_json(raw)
