"""What every service's REST API shares: one paging convention, and the requester's identity
as the gateway passes it on."""

from __future__ import annotations

from typing import Final, Generic, TypeVar

from fastapi import Header, Query
from pydantic import BaseModel, Field

from dynamo_common.app import ProblemError

T = TypeVar("T")

MAX_OFFSET: Final = 2**31 - 1
"""The largest offset a query accepts: PostgreSQL's OFFSET is a bigint, but an int4 is more
than any listing holds, and a larger number is a client's mistake, not a 500."""

USER_HEADER: Final = "X-Dynamo-User"
"""Who asks: set by the gateway once it has authenticated the request."""


class Page(BaseModel, Generic[T]):
    """One page of a listing: ``items`` from ``offset``, at most ``limit``, of ``total``."""

    items: list[T]
    total: int = Field(description="how many items match, over all pages")
    limit: int
    offset: int


class Paging:
    """The ``limit`` and ``offset`` query parameters of every listing."""

    def __init__(
        self,
        limit: int = Query(100, ge=1, le=10_000, description="items per page"),
        offset: int = Query(0, ge=0, le=MAX_OFFSET, description="items to skip"),
    ) -> None:
        self.limit = limit
        self.offset = offset


def optional_user(
    x_dynamo_user: str | None = Header(
        None, max_length=200, description="who asks; set by the gateway"
    ),
) -> str | None:
    if x_dynamo_user is None or not x_dynamo_user.strip():
        return None
    return x_dynamo_user.strip()


def user(
    x_dynamo_user: str | None = Header(
        None, max_length=200, description="who asks; set by the gateway"
    ),
) -> str:
    """The requester of a write; a request without one is refused (401)."""
    who = optional_user(x_dynamo_user)
    if who is None:
        raise ProblemError(401, f"this request needs the {USER_HEADER} header")
    return who


def is_admin(
    x_dynamo_roles: str | None = Header(
        None, max_length=200, description="the requester's roles; set by the gateway"
    ),
) -> bool:
    """Whether the gateway vouches that the requester is an admin."""
    return "admin" in {role.strip() for role in (x_dynamo_roles or "").split(",")}
