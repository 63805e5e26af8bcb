from __future__ import annotations

from typing import Annotated

from fastapi import Path, Request

from dynamo_common.api import Paging as Paging
from dynamo_common.app import ProblemError
from dynamo_common.messages.types import SITE_NAME_RE
from dynamo_consistency.runtime import ConsistencyRuntime


def runtime(request: Request) -> ConsistencyRuntime:
    rt: ConsistencyRuntime | None = getattr(request.app.state, "consistency", None)
    if rt is None:
        raise ProblemError(503, "the consistency service is starting")
    return rt


MAX_ID = 2**63 - 1
"""Ids and offsets are PostgreSQL bigints: anything larger is refused up front (422)."""

SitePath = Annotated[
    str, Path(pattern=SITE_NAME_RE, description="site name", examples=["T2_US_MIT"])
]
RunPath = Annotated[int, Path(ge=1, le=MAX_ID)]
