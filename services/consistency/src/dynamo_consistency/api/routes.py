"""The consistency REST API: the summary table, a site's history and lists, and the operator's
levers (trigger a check, approve a flagged one, enable / disable / halt a site)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse

from dynamo_common.app import ProblemError
from dynamo_consistency.api.deps import Paging, RunPath, SitePath, runtime
from dynamo_consistency.repository import store
from dynamo_consistency.repository.store import SiteRow
from dynamo_consistency.runtime import Conflict, ConsistencyRuntime
from dynamo_consistency.schemas import (
    ApproveRequest,
    CheckRequest,
    FileOut,
    Page,
    RunOut,
    SiteStateOut,
    SiteSummary,
    StateRequest,
)
from dynamo_consistency.service.decide import Action, SiteState

router = APIRouter(prefix="/api/v1/consistency", tags=["consistency"])

ListKind = Literal["missing", "orphans", "unrecoverable", "unlisted", "empty"]
# A list of the API -> (kind of run_files row, unrecoverable filter)
_LISTS: dict[str, tuple[str, bool | None]] = {
    "missing": ("missing", None),
    "orphans": ("orphan", None),
    "unrecoverable": ("missing", True),
    "unlisted": ("unlisted", None),
    "empty": ("empty_dir", None),
}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "The site or run is not in a state that allows this."}
}


def _summary(row: asyncpg.Record, running: set[int]) -> SiteSummary:
    has_run = row["id"] is not None
    duration = row["duration"] if has_run else None
    unlisted = row["unlisted_dirs"] if has_run else None
    attention = (
        row["state"] == SiteState.HALTED
        or row["approval_run"] is not None
        or (has_run and (row["status"] == "failed" or row["action"] == Action.FLAGGED))
        # An acted-on check has a reason only when some request was not accepted.
        or (has_run and row["action"] == Action.ACTED and bool(row["reason"]))
        or bool(unlisted)
    )
    return SiteSummary(
        site=row["name"],
        state=row["state"],
        state_reason=row["state_reason"],
        running=row["site_id"] in running,
        check_requested=row["requested"],
        approval_pending=row["approval_run"],
        run_id=row["id"],
        status=row["status"],
        last_update=row["finished"],
        time_minutes=None if duration is None else round(duration / 60, 1),
        files=row["files_listed"],
        nodes=row["dirs_listed"],
        unlisted=unlisted,
        empty_nodes=row["empty_dirs_removed"],
        missing=row["missing_files"],
        missing_blocks=row["missing_blocks"],
        missing_bytes=row["missing_bytes"],
        no_source=row["unrecoverable_files"],
        no_source_bytes=row["unrecoverable_bytes"],
        orphans=row["orphan_files"],
        orphan_bytes=row["orphan_bytes"],
        action=row["action"],
        reason=(row["error"] or row["reason"]) if has_run else None,
        attention=attention,
    )


def _state(row: SiteRow) -> SiteStateOut:
    return SiteStateOut(
        site=row.name,
        state=row.state,
        state_reason=row.state_reason,
        state_changed=row.state_changed,
        check_requested=row.requested,
        dry_run_requested=row.requested_dry_run,
        approval_pending=row.approval_run,
        last_check=row.last_check,
        last_run_id=row.last_run_id,
    )


def _run(row: asyncpg.Record) -> RunOut:
    return RunOut.model_validate(dict(row))


def _known_site(rt: ConsistencyRuntime, name: str) -> None:
    if not rt.readmodel.ready.is_set():
        raise ProblemError(503, "the copy of the inventory is still loading")
    if name not in rt.readmodel.model.sites:
        raise ProblemError(404, f"unknown site {name!r}")


@router.get(
    "/sites",
    response_model=Page[SiteSummary],
    summary="The summary table: every site with its latest check, latest first",
)
async def summary(
    paging: Paging = Depends(),
    attention: bool | None = Query(
        None, description="true: only the sites that need an operator; false: only the others"
    ),
    rt: ConsistencyRuntime = Depends(runtime),
) -> Page[SiteSummary]:
    async with rt.pool.acquire() as conn:
        rows = await store.summary(conn)
        running = await store.locked_sites(conn)
    items = [_summary(r, running) for r in rows]
    if attention is not None:
        items = [i for i in items if i.attention == attention]
    page = items[paging.offset : paging.offset + paging.limit]
    return Page(items=page, total=len(items), limit=paging.limit, offset=paging.offset)


@router.get("/sites/{site}", response_model=SiteStateOut, summary="A site's state")
async def get_site(site: SitePath, rt: ConsistencyRuntime = Depends(runtime)) -> SiteStateOut:
    async with rt.pool.acquire() as conn:
        row = await store.site(conn, site)
    if row is None:
        _known_site(rt, site)
        raise ProblemError(404, f"site {site!r} has not been seen by the consistency service")
    return _state(row)


@router.get(
    "/sites/{site}/runs", response_model=Page[RunOut], summary="A site's checks, latest first"
)
async def site_runs(
    site: SitePath, paging: Paging = Depends(), rt: ConsistencyRuntime = Depends(runtime)
) -> Page[RunOut]:
    async with rt.pool.acquire() as conn:
        total, rows = await store.runs_of_site(conn, site, paging.limit, paging.offset)
    return Page(
        items=[_run(r) for r in rows], total=total, limit=paging.limit, offset=paging.offset
    )


@router.get("/runs/{run_id}", response_model=RunOut, summary="One check")
async def get_run(run_id: RunPath, rt: ConsistencyRuntime = Depends(runtime)) -> RunOut:
    async with rt.pool.acquire() as conn:
        row = await store.run(conn, run_id)
    if row is None:
        raise ProblemError(404, f"no run {run_id}")
    return _run(row)


@router.get(
    "/runs/{run_id}/{kind}",
    response_model=Page[FileOut],
    summary="A list of a check: missing, orphans, unrecoverable (missing with no other copy), "
    "unlisted directories, empty directories removed",
    description="`format=text` downloads the whole list as plain text, one LFN per line.",
    responses={200: {"content": {"text/plain": {}}}},
)
async def run_list(
    run_id: RunPath,
    kind: ListKind = Path(),
    format: Literal["json", "text"] = Query("json"),
    paging: Paging = Depends(),
    rt: ConsistencyRuntime = Depends(runtime),
) -> Page[FileOut] | StreamingResponse:
    row_kind, unrecoverable = _LISTS[kind]
    async with rt.pool.acquire() as conn:
        run = await store.run(conn, run_id)
        if run is None:
            raise ProblemError(404, f"no run {run_id}")
        if format == "json":
            total, rows = await store.run_files(
                conn,
                run_id,
                row_kind,
                unrecoverable=unrecoverable,
                limit=paging.limit,
                offset=paging.offset,
            )
            return Page(
                items=[_file(r) for r in rows],
                total=total,
                limit=paging.limit,
                offset=paging.offset,
            )

    async def lines() -> AsyncIterator[bytes]:
        # A list can run into millions of LFNs: streamed from a cursor, never held whole.
        async with rt.pool.acquire() as conn, conn.transaction():
            async for chunk in store.stream_paths(
                conn, run_id, row_kind, unrecoverable=unrecoverable
            ):
                yield ("\n".join(chunk) + "\n").encode()

    filename = f"{run['site']}-run{run_id}-{kind}.txt"
    return StreamingResponse(
        lines(),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _file(row: asyncpg.Record) -> FileOut:
    return FileOut(
        path=row["path"],
        size=row["size"],
        dataset=row["dataset"],
        block=row["block"],
        listed_size=row["listed_size"],
        strike=row["strike"],
        unrecoverable=row["unrecoverable"],
        source=row["source"],
        acted=row["acted"],
        note=row["note"],
    )


@router.post(
    "/sites/{site}/check",
    response_model=SiteStateOut,
    status_code=202,
    summary="Check a site now (before any scheduled one)",
    responses=_CONFLICT,
)
async def trigger_check(
    site: SitePath, body: CheckRequest | None = None, rt: ConsistencyRuntime = Depends(runtime)
) -> SiteStateOut:
    _known_site(rt, site)
    try:
        row = await rt.request_check(site, dry_run=bool(body and body.dry_run))
    except Conflict as exc:
        raise ProblemError(409, str(exc)) from None
    return _state(row)


@router.post(
    "/sites/{site}/approve",
    response_model=SiteStateOut,
    status_code=202,
    summary="Approve the actions of a flagged check",
    description="A worker carries them out against the inventory as it is then: files no "
    "longer missing or no longer unknown are left alone. The site is enabled again.",
    responses=_CONFLICT,
)
async def approve(
    site: SitePath, body: ApproveRequest, rt: ConsistencyRuntime = Depends(runtime)
) -> SiteStateOut:
    async with rt.pool.acquire() as conn:
        if await store.site(conn, site) is None:
            raise ProblemError(404, f"site {site!r} has not been seen by the consistency service")
    try:
        await rt.approve(site, body.run_id, body.include_first_strike)
    except Conflict as exc:
        raise ProblemError(409, str(exc)) from None
    async with rt.pool.acquire() as conn:
        row = await store.site(conn, site)
    assert row is not None
    return _state(row)


@router.put(
    "/sites/{site}/state",
    response_model=SiteStateOut,
    summary="Enable, disable or halt a site",
    description="enabled: checked on schedule, acted on within the safety valve; disabled: "
    "never checked; halted: checked on request only, nothing acted on until approved.",
)
async def set_state(
    site: SitePath, body: StateRequest, rt: ConsistencyRuntime = Depends(runtime)
) -> SiteStateOut:
    _known_site(rt, site)
    row = await rt.set_state(site, SiteState(body.state), body.reason)
    return _state(row)
