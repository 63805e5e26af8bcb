"""Dependencies of the API: the runtime, paging, and who is asking (the ``X-Dynamo-User``
header the gateway sets after authenticating; writes without it are refused). Admins are
``DYNAMO_ADMINS``."""

from __future__ import annotations

from fastapi import Request

from dynamo_common.api import USER_HEADER, Paging, user
from dynamo_common.app import ProblemError
from dynamo_detox.runtime import DetoxRuntime


def runtime(request: Request) -> DetoxRuntime:
    rt: DetoxRuntime | None = getattr(request.app.state, "detox", None)
    if rt is None:
        raise ProblemError(503, "detox is starting")
    return rt


__all__ = ["USER_HEADER", "Paging", "runtime", "user"]
