"""Dependencies of the API: the runtime, paging, and who is asking (the ``X-Dynamo-User``
header the gateway sets after authenticating; writes without it are refused)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request

from dynamo_common.api import USER_HEADER, Paging, optional_user, user
from dynamo_common.app import ProblemError
from dynamo_dealer.runtime import DealerRuntime

Id = Annotated[int, Path(ge=1, le=2**63 - 1, description="a record's id")]
"""Ids are PostgreSQL bigints: larger numbers name nothing and get a 422, not a 500."""


def runtime(request: Request) -> DealerRuntime:
    rt: DealerRuntime | None = getattr(request.app.state, "dealer", None)
    if rt is None:
        raise ProblemError(503, "the dealer is starting")
    return rt


def requester_filter(
    mine: bool = Query(False, description="only the caller's (needs X-Dynamo-User)"),
    requester: str | None = Query(None, max_length=200),
    who: str | None = Depends(optional_user),
) -> str | None:
    """Whose requests a listing shows: ``mine`` means the caller's, else ``requester``'s (or
    everyone's)."""
    if not mine:
        return requester
    if who is None:
        raise ProblemError(401, "mine=true needs the X-Dynamo-User header")
    return who


__all__ = ["USER_HEADER", "Id", "Paging", "optional_user", "requester_filter", "runtime", "user"]
