"""Dependencies of the API: the runtime, paging, and who is asking.

Until the gateway authenticates requests (its own issue), the requester is the
``X-Dynamo-User`` header the gateway will set; writes without it are refused. Admins are
``DYNAMO_ADMINS``.
"""

from __future__ import annotations

from fastapi import Header, Query, Request

from dynamo_common.app import ProblemError
from dynamo_detox.runtime import DetoxRuntime

USER_HEADER = "X-Dynamo-User"


def runtime(request: Request) -> DetoxRuntime:
    rt: DetoxRuntime | None = getattr(request.app.state, "detox", None)
    if rt is None:
        raise ProblemError(503, "detox is starting")
    return rt


class Paging:
    def __init__(
        self, limit: int = Query(100, ge=1, le=10_000), offset: int = Query(0, ge=0)
    ) -> None:
        self.limit = limit
        self.offset = offset


def user(
    x_dynamo_user: str | None = Header(
        None,
        max_length=200,
        description="who asks; set by the gateway (until it authenticates, any client can)",
    ),
) -> str:
    if not x_dynamo_user or not x_dynamo_user.strip():
        raise ProblemError(401, f"this request needs the {USER_HEADER} header")
    return x_dynamo_user.strip()
