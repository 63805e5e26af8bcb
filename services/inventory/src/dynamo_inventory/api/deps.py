from __future__ import annotations

from fastapi import Request

from dynamo_common.api import Paging as Paging
from dynamo_common.app import ProblemError
from dynamo_inventory.runtime import InventoryRuntime


def runtime(request: Request) -> InventoryRuntime:
    rt: InventoryRuntime | None = getattr(request.app.state, "inventory", None)
    if rt is None:
        raise ProblemError(503, "the inventory is still loading")
    return rt
