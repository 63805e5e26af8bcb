from __future__ import annotations

from fastapi import Query, Request

from dynamo_common.app import ProblemError
from dynamo_transfer.runtime import TransferRuntime


def runtime(request: Request) -> TransferRuntime:
    rt: TransferRuntime | None = getattr(request.app.state, "transfer", None)
    if rt is None:
        raise ProblemError(503, "the transfer service is starting")
    return rt


class Paging:
    def __init__(
        self, limit: int = Query(100, ge=1, le=10_000), offset: int = Query(0, ge=0)
    ) -> None:
        self.limit = limit
        self.offset = offset
