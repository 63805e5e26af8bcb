"""Cycles: run one now, the list, one cycle, its decisions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from dynamo_common.app import ProblemError
from dynamo_dealer.api.deps import Id, Paging, runtime, user
from dynamo_dealer.repository import store
from dynamo_dealer.runtime import CycleBusy, DealerRuntime
from dynamo_dealer.schemas import (
    CommandsOut,
    CycleDetail,
    CycleIn,
    CycleOut,
    CycleSubmitted,
    DecisionName,
    DecisionOut,
    Page,
)

router = APIRouter(prefix="/api/v1/dealer/cycles", tags=["dealer cycles"])


def _decision(row: Any) -> DecisionOut:
    data = dict(row)
    data["index"] = data.pop("idx")
    return DecisionOut(**data)


@router.post("", status_code=202, response_model=CycleSubmitted, summary="Run a cycle now")
async def run_cycle(
    body: CycleIn | None = None, who: str = Depends(user), rt: DealerRuntime = Depends(runtime)
) -> CycleSubmitted:
    body = body or CycleIn()
    if not rt.readmodel.ready.is_set():
        raise ProblemError(503, "the inventory read model is not loaded yet")
    try:
        cycle_id = await rt.submit(dry_run=body.dry_run, requested_by=who, comment=body.comment)
    except CycleBusy as exc:
        raise ProblemError(409, str(exc)) from None
    return CycleSubmitted(id=cycle_id, status="queued", dry_run=body.dry_run)


@router.get("", response_model=Page[CycleOut], summary="Cycles, newest first")
async def list_cycles(
    paging: Paging = Depends(),
    status: str | None = Query(None, pattern="^(queued|running|done|failed)$"),
    rt: DealerRuntime = Depends(runtime),
) -> Page[CycleOut]:
    async with rt.pool.acquire() as conn:
        rows, total = await store.list_cycles(
            conn, status=status, limit=paging.limit, offset=paging.offset
        )
    return Page(
        items=[CycleOut(**dict(r)) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/{cycle_id}", response_model=CycleDetail, summary="One cycle")
async def get_cycle(cycle_id: Id, rt: DealerRuntime = Depends(runtime)) -> CycleDetail:
    async with rt.pool.acquire() as conn:
        row = await store.get_cycle(conn, cycle_id)
        if row is None:
            raise ProblemError(404, f"no cycle {cycle_id}")
        commands = await store.command_summary(conn, cycle_id)
    return CycleDetail(**dict(row), commands=CommandsOut(**dict(commands)))


@router.get(
    "/{cycle_id}/decisions",
    response_model=Page[DecisionOut],
    summary="Every proposal of a cycle with its decision and reason",
)
async def list_decisions(
    cycle_id: Id,
    paging: Paging = Depends(),
    plugin: str | None = Query(None, max_length=50),
    decision: DecisionName | None = None,
    site: str | None = Query(None, max_length=100),
    dataset: str | None = Query(None, max_length=600, description="pattern"),
    reference: str | None = Query(None, max_length=200, description="e.g. a request id"),
    rt: DealerRuntime = Depends(runtime),
) -> Page[DecisionOut]:
    async with rt.pool.acquire() as conn:
        if await store.get_cycle(conn, cycle_id) is None:
            raise ProblemError(404, f"no cycle {cycle_id}")
        rows, total = await store.decisions(
            conn,
            cycle_id,
            plugin=plugin,
            decision=decision,
            site=site,
            dataset=dataset,
            reference=reference,
            limit=paging.limit,
            offset=paging.offset,
        )
    return Page(
        items=[_decision(r) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )
