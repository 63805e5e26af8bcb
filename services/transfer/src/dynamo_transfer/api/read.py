"""The queue as operators and the dealer's monitoring see it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import asyncpg
from fastapi import APIRouter, Depends, Query

from dynamo_transfer.api.deps import Paging, runtime
from dynamo_transfer.repository import queries, store
from dynamo_transfer.runtime import TransferRuntime
from dynamo_transfer.schemas import (
    Bucket,
    HistoryOut,
    LinkOut,
    Links,
    Page,
    Released,
    ReleaseHeld,
    ReplicaOut,
    StateTotal,
    Summary,
    SummaryRow,
    TaskOut,
)
from dynamo_transfer.service.states import Kind

router = APIRouter(prefix="/api/v1/transfers", tags=["transfer queue"])

KindParam = Literal["transfer", "deletion"]


def _task(r: asyncpg.Record) -> TaskOut:
    return TaskOut(
        id=r["id"],
        kind=r["kind"],
        state=r["state"],
        lfn=r["lfn"],
        dataset=r["dataset"],
        block=r["block"],
        source=r["source"],
        destination=r["site"],
        size=r["size"],
        priority=r["priority"],
        attempts=r["attempts"],
        reason=r["reason"],
        job_id=r["job_id"],
        created=r["created"],
        updated=r["updated"],
        submitted_at=r["submitted_at"],
        not_before=r["not_before"],
    )


@router.get("/summary", response_model=Summary, summary="Open files per link and state")
async def summary(rt: TransferRuntime = Depends(runtime)) -> Summary:
    async with rt.pool.acquire() as conn:
        rows = await queries.summary(conn)
    totals: dict[str, StateTotal] = {}
    links = []
    for r in rows:
        links.append(
            SummaryRow(
                kind=r["kind"],
                source=r["source"],
                destination=r["site"],
                state=r["state"],
                files=r["files"],
                bytes=r["bytes"],
            )
        )
        total = totals.get(r["state"], StateTotal(files=0, bytes=0))
        totals[r["state"]] = StateTotal(
            files=total.files + r["files"], bytes=total.bytes + r["bytes"]
        )
    return Summary(links=links, totals=totals)


@router.get("/current", response_model=Page[TaskOut], summary="Files queued or being transferred")
async def current(
    paging: Paging = Depends(),
    kind: KindParam | None = None,
    site: str | None = Query(None, description="destination (or site of a deletion)"),
    source: str | None = None,
    rt: TransferRuntime = Depends(runtime),
) -> Page[TaskOut]:
    async with rt.pool.acquire() as conn:
        total, rows = await queries.tasks_page(
            conn,
            ["queued", "submitted"],
            kind=kind,
            site=site,
            source=source,
            limit=paging.limit,
            offset=paging.offset,
        )
    items = [_task(r) for r in rows]
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.get("/held", response_model=Page[TaskOut], summary="Held files with the reason")
async def held(
    paging: Paging = Depends(),
    kind: KindParam | None = None,
    site: str | None = None,
    source: str | None = None,
    rt: TransferRuntime = Depends(runtime),
) -> Page[TaskOut]:
    async with rt.pool.acquire() as conn:
        total, rows = await queries.tasks_page(
            conn,
            ["held"],
            kind=kind,
            site=site,
            source=source,
            limit=paging.limit,
            offset=paging.offset,
        )
    items = [_task(r) for r in rows]
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.post(
    "/held/release",
    response_model=Released,
    summary="Release held files: they are tried again from scratch",
)
async def release(body: ReleaseHeld, rt: TransferRuntime = Depends(runtime)) -> Released:
    async with rt.pool.acquire() as conn:
        count = await store.release_held(
            conn,
            ids=body.ids,
            site=body.site,
            source=body.source,
            kind=Kind(body.kind) if body.kind else None,
            now=datetime.now(UTC),
        )
    rt.schedule_wakeup.set()
    return Released(released=count)


@router.get(
    "/history",
    response_model=Page[HistoryOut],
    summary="Every attempt at a transfer or deletion, newest first",
)
async def history(
    paging: Paging = Depends(),
    kind: KindParam | None = None,
    site: str | None = Query(None, description="destination (or site of a deletion)"),
    source: str | None = None,
    result: Literal["done", "failed"] | None = None,
    lfn: str | None = Query(None, description="wildcards * and ? allowed"),
    since: datetime | None = None,
    rt: TransferRuntime = Depends(runtime),
) -> Page[HistoryOut]:
    async with rt.pool.acquire() as conn:
        total, rows = await queries.history_page(
            conn,
            kind=kind,
            site=site,
            source=source,
            result=result,
            lfn=lfn,
            since=since,
            limit=paging.limit,
            offset=paging.offset,
        )
    items = [
        HistoryOut(
            id=r["id"],
            task_id=r["task_id"],
            kind=r["kind"],
            file=r["lfn"],
            source=r["source"],
            destination=r["site"],
            result=r["result"],
            error=r["error"],
            started=r["started"],
            finished=r["finished"],
            duration=r["duration"],
            bytes=r["bytes"],
        )
        for r in rows
    ]
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.get(
    "/links",
    response_model=Links,
    summary="Per-link rate and success ratio over a time window, with buckets for plots",
)
async def links(
    window: float = Query(3600.0, gt=0, le=90 * 86400.0, description="seconds"),
    buckets: int = Query(12, ge=1, le=500),
    rt: TransferRuntime = Depends(runtime),
) -> Links:
    now = datetime.now(UTC)
    async with rt.pool.acquire() as conn:
        stats = await queries.link_stats(conn, now, window, buckets)
    out = [
        LinkOut(
            kind=s.kind,
            source=s.source,
            destination=s.destination,
            done=s.done,
            failed=s.failed,
            bytes=s.bytes,
            rate=s.bytes / window,
            success_ratio=(s.done / (s.done + s.failed)) if s.done + s.failed else None,
            buckets=[
                Bucket(start=b.start, bytes=b.bytes, done=b.done, failed=b.failed)
                for b in s.buckets
            ],
        )
        for s in stats
    ]
    return Links(window=window, since=stats[0].buckets[0].start if stats else now, links=out)


@router.get(
    "/replicas",
    response_model=Page[ReplicaOut],
    summary="Block replicas in flight: volume copied versus total, stuck ones first",
)
async def replicas(
    paging: Paging = Depends(),
    kind: KindParam | None = None,
    site: str | None = None,
    stuck_only: bool = False,
    stuck_window: float | None = Query(
        None,
        gt=0,
        le=10 * 365 * 86400,  # beyond ten years the date arithmetic overflows
        description="seconds; default the service's stuck_window (5 days)",
    ),
    rt: TransferRuntime = Depends(runtime),
) -> Page[ReplicaOut]:
    async with rt.pool.acquire() as conn:
        total, rows = await queries.replicas_page(
            conn,
            now=datetime.now(UTC),
            stuck_window=stuck_window or rt.settings.stuck_window,
            kind=kind,
            site=site,
            stuck_only=stuck_only,
            limit=paging.limit,
            offset=paging.offset,
        )
    items = [
        ReplicaOut(
            id=r["id"],
            kind=r["kind"],
            dataset=r["dataset"],
            block=r["block"],
            site=r["site"],
            group=r["group_name"],
            files_done=r["files_done"],
            files_total=r["files_total"],
            bytes_done=r["bytes_done"],
            bytes_total=r["bytes_total"],
            files_held=r["files_held"],
            created=r["created"],
            last_progress=r["last_progress"],
            stuck=r["stuck"],
        )
        for r in rows
    ]
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)
