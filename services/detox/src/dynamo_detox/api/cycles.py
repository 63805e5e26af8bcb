"""Cycles: run one, follow it, and read its record (per site, per replica, across cycles);
test runs and their comparison with the last real cycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Literal

import asyncpg
import orjson
from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from dynamo_common.app import ProblemError
from dynamo_common.policy.detox import parse_detox_policy
from dynamo_common.policy.errors import PolicyErrors
from dynamo_detox.api.deps import Paging, runtime, user
from dynamo_detox.repository import store
from dynamo_detox.runtime import CycleBusy, DetoxRuntime
from dynamo_detox.schemas import (
    CommandsOut,
    ComparisonOut,
    ComparisonRow,
    CycleDetail,
    CycleOut,
    CycleRequest,
    CycleSiteOut,
    DecisionOut,
    DecisionSearchOut,
    Page,
    Submitted,
    TestRunRequest,
)

router = APIRouter(prefix="/api/v1", tags=["cycles"])

Kind = Literal["real", "test"]
DecisionName = Literal["delete", "keep", "protect"]
_CYCLE_FIELDS = tuple(CycleOut.model_fields)


def _cycle(row: asyncpg.Record) -> CycleOut:
    return CycleOut(**{name: row[name] for name in _CYCLE_FIELDS})


async def _get_cycle(rt: DetoxRuntime, cycle_id: int) -> asyncpg.Record:
    async with rt.pool.acquire() as conn:
        row = await store.get_cycle(conn, cycle_id)
    if row is None:
        raise ProblemError(404, f"no cycle {cycle_id}")
    return row


class _Lines:
    """Policy line texts by digest, for the ``rule`` of each decision."""

    def __init__(self, rt: DetoxRuntime) -> None:
        self.rt = rt
        self.texts: dict[str, list[str]] = {}

    async def rule(self, conn: asyncpg.Connection, digest: str, line: int) -> str:
        lines = self.texts.get(digest)
        if lines is None:
            text = await store.policy_text(conn, digest) or ""
            lines = self.texts[digest] = text.splitlines()
        return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def _decision(row: asyncpg.Record, rule: str) -> dict[str, Any]:
    return {
        "cycle_id": row["cycle_id"],
        "site": row["site"],
        "dataset": row["dataset"],
        "blocks": row["blocks"],
        "decision": row["decision"],
        "action": row["action"],
        "line": row["line"],
        "rule": rule,
        "size": row["size"],
        "handed_to": row["handed_to"],
        "iteration": row["iteration"],
    }


# ------------------------------------------------------------------------------- running


@router.post(
    "/cycles",
    response_model=Submitted,
    status_code=202,
    summary="Run a real cycle of a configured policy now",
)
async def run_cycle_now(
    body: CycleRequest, who: str = Depends(user), rt: DetoxRuntime = Depends(runtime)
) -> Submitted:
    policy = rt.policies.get(body.partition)
    if policy is None:
        known = ", ".join(sorted(rt.policies)) or "none configured"
        raise ProblemError(404, f"no policy for partition {body.partition!r} (known: {known})")
    try:
        cycle_id = await rt.submit(policy, kind="real", requested_by=who, comment=body.comment)
    except CycleBusy as exc:
        raise ProblemError(409, str(exc)) from None
    return Submitted(
        id=cycle_id, status="queued", partition=policy.partition, policy_digest=policy.digest
    )


@router.post(
    "/test-runs",
    response_model=Submitted,
    status_code=202,
    summary="Run a policy text as a test: the same record, nothing deleted",
    responses={422: {"description": "the policy has errors (all of them, FILE:LINE:COL)"}},
)
async def test_run(
    body: TestRunRequest, who: str = Depends(user), rt: DetoxRuntime = Depends(runtime)
) -> Submitted:
    try:
        policy = parse_detox_policy(body.policy, file="policy")
    except PolicyErrors as exc:
        raise ProblemError(
            422,
            f"the policy has {len(exc)} error{'s' if len(exc) != 1 else ''}",
            title="Invalid policy",
            extensions={
                "errors": [
                    {"line": e.line, "column": e.column, "message": e.message, "text": str(e)}
                    for e in exc
                ]
            },
        ) from None
    cycle_id = await rt.submit(policy, kind="test", requested_by=who, comment=body.comment)
    return Submitted(
        id=cycle_id, status="queued", partition=policy.partition, policy_digest=policy.digest
    )


@router.get("/policies", summary="The policies the schedule runs")
async def policies(rt: DetoxRuntime = Depends(runtime)) -> list[dict[str, Any]]:
    return [
        {
            "partition": p.partition,
            "file": p.file,
            "digest": p.digest,
            "static": p.static,
            "rules": len(p.rules),
            "text": p.text,
        }
        for p in rt.policies.values()
    ]


# ------------------------------------------------------------------------------- records


@router.get("/cycles", response_model=Page[CycleOut], summary="Cycles and test runs, newest first")
async def list_cycles(
    paging: Paging = Depends(),
    kind: Kind | None = None,
    partition: str | None = None,
    status: Literal["queued", "running", "done", "failed"] | None = None,
    rt: DetoxRuntime = Depends(runtime),
) -> Page[CycleOut]:
    async with rt.pool.acquire() as conn:
        rows, total = await store.list_cycles(
            conn,
            kind=kind,
            partition=partition,
            status=status,
            limit=paging.limit,
            offset=paging.offset,
        )
    return Page(
        items=[_cycle(r) for r in rows], total=total, limit=paging.limit, offset=paging.offset
    )


@router.get("/cycles/{cycle_id}", response_model=CycleDetail)
async def get_cycle(cycle_id: int, rt: DetoxRuntime = Depends(runtime)) -> CycleDetail:
    row = await _get_cycle(rt, cycle_id)
    commands = None
    if row["kind"] == "real":
        async with rt.pool.acquire() as conn:
            summary = await store.command_summary(conn, cycle_id)
        commands = CommandsOut(**dict(summary))
    return CycleDetail(
        **_cycle(row).model_dump(), policy_text=row["policy_text"], commands=commands
    )


@router.get(
    "/cycles/{cycle_id}/sites",
    response_model=Page[CycleSiteOut],
    summary="A cycle per site: occupancy and quota before and after, volume deleted",
)
async def cycle_sites(
    cycle_id: int,
    paging: Paging = Depends(),
    triggered: bool | None = None,
    rt: DetoxRuntime = Depends(runtime),
) -> Page[CycleSiteOut]:
    await _get_cycle(rt, cycle_id)
    async with rt.pool.acquire() as conn:
        rows, total = await store.cycle_sites(
            conn, cycle_id, triggered=triggered, limit=paging.limit, offset=paging.offset
        )

    def occupancy(used: int, quota: int) -> float | None:
        return used / quota if quota > 0 else None

    items = [
        CycleSiteOut(
            **{k: v for k, v in dict(r).items() if k != "cycle_id"},
            occupancy_before=occupancy(r["used_before"], r["quota"]),
            occupancy_after=occupancy(r["used_after"], r["quota"]),
        )
        for r in rows
    ]
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.get(
    "/cycles/{cycle_id}/sites/{site}/decisions",
    response_model=Page[DecisionOut],
    summary="Every replica decision of a cycle at one site, with the line that decided it",
)
async def site_decisions(
    cycle_id: int,
    site: str,
    paging: Paging = Depends(),
    decision: DecisionName | None = None,
    dataset: str | None = Query(None, description="pattern"),
    rt: DetoxRuntime = Depends(runtime),
) -> Page[DecisionOut]:
    cycle = await _get_cycle(rt, cycle_id)
    lines = _Lines(rt)
    async with rt.pool.acquire() as conn:
        rows, total = await store.site_decisions(
            conn,
            cycle_id,
            site,
            decision=decision,
            dataset=dataset,
            limit=paging.limit,
            offset=paging.offset,
        )
        items = [
            DecisionOut(**_decision(r, await lines.rule(conn, cycle["policy_digest"], r["line"])))
            for r in rows
        ]
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.get(
    "/decisions",
    response_model=Page[DecisionSearchOut],
    summary="A dataset across cycles: why was it deleted (or kept) at a site on a day",
)
async def search_decisions(
    dataset: str = Query(min_length=1, description="name or pattern"),
    paging: Paging = Depends(),
    site: str | None = Query(None, description="name or pattern"),
    decision: DecisionName | None = None,
    kind: Kind | None = "real",
    since: datetime | None = Query(None, description="cycles started at or after"),
    until: datetime | None = Query(None, description="cycles started before"),
    rt: DetoxRuntime = Depends(runtime),
) -> Page[DecisionSearchOut]:
    lines = _Lines(rt)
    async with rt.pool.acquire() as conn:
        rows, total = await store.search_decisions(
            conn,
            dataset=dataset,
            site=site,
            decision=decision,
            kind=kind,
            since=since,
            until=until,
            limit=paging.limit,
            offset=paging.offset,
        )
        items = [
            DecisionSearchOut(
                **_decision(r, await lines.rule(conn, r["policy_digest"], r["line"])),
                kind=r["kind"],
                partition=r["partition"],
                started=r["started"],
            )
            for r in rows
        ]
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


async def _deletions(rt: DetoxRuntime, cycle_id: int) -> AsyncIterator[asyncpg.Record]:
    async with rt.pool.acquire() as conn:
        async for row in store.deletions(conn, cycle_id):
            yield row


@router.get(
    "/cycles/{cycle_id}/deletions.txt",
    summary="The deletion list: 'site dataset[#block,...] bytes' per deleted replica or blocks",
    response_class=StreamingResponse,
)
async def deletions_text(cycle_id: int, rt: DetoxRuntime = Depends(runtime)) -> StreamingResponse:
    await _get_cycle(rt, cycle_id)

    async def lines() -> AsyncIterator[bytes]:
        async for row in _deletions(rt, cycle_id):
            blocks = row["blocks"]
            name = row["dataset"] if blocks is None else f"{row['dataset']}#{','.join(blocks)}"
            yield f"{row['site']} {name} {row['size']}\n".encode()

    return StreamingResponse(
        lines(),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="detox-{cycle_id}-deletions.txt"'},
    )


@router.get(
    "/cycles/{cycle_id}/deletions.json",
    summary="The deletion list as JSON",
    response_class=StreamingResponse,
)
async def deletions_json(cycle_id: int, rt: DetoxRuntime = Depends(runtime)) -> StreamingResponse:
    await _get_cycle(rt, cycle_id)

    async def body() -> AsyncIterator[bytes]:
        yield b"["
        first = True
        async for row in _deletions(rt, cycle_id):
            yield (b"" if first else b",") + orjson.dumps(dict(row))
            first = False
        yield b"]"

    return StreamingResponse(
        body(),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="detox-{cycle_id}-deletions.json"'},
    )


@router.get(
    "/test-runs/{cycle_id}/compare",
    response_model=ComparisonOut,
    summary="A test run against a real cycle (default: the last one of its partition)",
)
async def compare(
    cycle_id: int,
    paging: Paging = Depends(),
    against: int | None = Query(None, description="a real cycle id"),
    change: Literal["additional", "kept"] | None = None,
    rt: DetoxRuntime = Depends(runtime),
) -> ComparisonOut:
    test = await _get_cycle(rt, cycle_id)
    if test["kind"] != "test":
        raise ProblemError(422, f"cycle {cycle_id} is not a test run")
    if test["status"] != "done":
        raise ProblemError(409, f"test run {cycle_id} is {test['status']}")
    async with rt.pool.acquire() as conn:
        real_id = against or await store.last_real_cycle(conn, test["partition"])
        if real_id is None:
            raise ProblemError(404, f"no real cycle of partition {test['partition']!r} yet")
        real = await store.get_cycle(conn, real_id)
        if real is None or real["kind"] != "real" or real["status"] != "done":
            raise ProblemError(422, f"cycle {real_id} is not a finished real cycle")
        rows, total, totals = await store.compare(
            conn, cycle_id, real_id, change=change, limit=paging.limit, offset=paging.offset
        )
    return ComparisonOut(
        items=[ComparisonRow(**dict(r)) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
        test_run=cycle_id,
        real_cycle=real_id,
        additional=totals["additional"],
        additional_bytes=totals["additional_bytes"],
        kept=totals["kept"],
        kept_bytes=totals["kept_bytes"],
    )
