"""Popularity: access records in (dataset, site, time, count), summaries out."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Query

from dynamo_detox.api.deps import Paging, runtime, user
from dynamo_detox.repository import store
from dynamo_detox.runtime import DAY, DetoxRuntime
from dynamo_detox.schemas import (
    AccessesStored,
    AccessRecord,
    AccessRecords,
    Page,
    PopularityOut,
)

router = APIRouter(prefix="/api/v1/popularity", tags=["popularity"])


@router.post(
    "/accesses",
    response_model=AccessesStored,
    summary="Record dataset accesses (dataset, site, time, count)",
)
async def add_accesses(
    body: AccessRecords, who: str = Depends(user), rt: DetoxRuntime = Depends(runtime)
) -> AccessesStored:
    rows = [
        (r.dataset, r.site, r.time if r.time.tzinfo else r.time.replace(tzinfo=UTC), r.count)
        for r in body.records
    ]
    async with rt.pool.acquire() as conn:
        stored = await store.add_accesses(conn, rows)
    return AccessesStored(stored=stored)


@router.get(
    "",
    response_model=Page[PopularityOut],
    summary="Accesses per dataset: the last one, and how many in the window",
)
async def list_popularity(
    paging: Paging = Depends(),
    dataset: str | None = Query(None, description="pattern"),
    rt: DetoxRuntime = Depends(runtime),
) -> Page[PopularityOut]:
    window = datetime.fromtimestamp(rt.clock() - rt.settings.popularity_window_days * DAY, UTC)
    async with rt.pool.acquire() as conn:
        rows, total = await store.popularity(
            conn, window_start=window, dataset=dataset, limit=paging.limit, offset=paging.offset
        )
    return Page(
        items=[PopularityOut(**dict(r)) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get(
    "/accesses",
    response_model=Page[AccessRecord],
    summary="The raw access records since a time (oldest first)",
)
async def list_accesses(
    since: datetime = Query(..., description="records at or after this time"),
    paging: Paging = Depends(),
    rt: DetoxRuntime = Depends(runtime),
) -> Page[AccessRecord]:
    when = since if since.tzinfo else since.replace(tzinfo=UTC)
    async with rt.pool.acquire() as conn:
        rows, total = await store.accesses_since(
            conn, since=when, limit=paging.limit, offset=paging.offset
        )
    return Page(
        items=[AccessRecord(**dict(r)) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )
