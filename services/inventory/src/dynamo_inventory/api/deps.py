from __future__ import annotations

from fastapi import Query, Request

from dynamo_common.app import ProblemError
from dynamo_inventory.runtime import InventoryRuntime


def runtime(request: Request) -> InventoryRuntime:
    rt: InventoryRuntime | None = getattr(request.app.state, "inventory", None)
    if rt is None:
        raise ProblemError(503, "the inventory is still loading")
    return rt


class Paging:
    def __init__(
        self, limit: int = Query(100, ge=1, le=10_000), offset: int = Query(0, ge=0)
    ) -> None:
        self.limit = limit
        self.offset = offset
