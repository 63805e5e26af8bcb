from __future__ import annotations

from fastapi import Request

from dynamo_common.api import Paging as Paging
from dynamo_common.app import ProblemError
from dynamo_transfer.runtime import TransferRuntime


def runtime(request: Request) -> TransferRuntime:
    rt: TransferRuntime | None = getattr(request.app.state, "transfer", None)
    if rt is None:
        raise ProblemError(503, "the transfer service is starting")
    return rt
