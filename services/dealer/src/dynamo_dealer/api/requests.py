"""Copy requests: create, poll, cancel, list."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from dynamo_common.app import ProblemError
from dynamo_dealer.api.deps import Id, Paging, requester_filter, runtime, user
from dynamo_dealer.repository import store
from dynamo_dealer.runtime import Conflict, DealerRuntime, NotReady
from dynamo_dealer.schemas import (
    DestinationOut,
    Page,
    RequestDetail,
    RequestIn,
    RequestOut,
    RequestState,
)
from dynamo_dealer.service import monitoring

router = APIRouter(prefix="/api/v1/dealer/requests", tags=["dealer requests"])


def _out(row: Any) -> dict[str, Any]:
    data = dict(row)
    data["resolved"] = [tuple(item) for item in data["resolved"]]
    return data


async def _detail(rt: DealerRuntime, row: Any) -> RequestDetail:
    async with rt.pool.acquire() as conn:
        placements = await store.request_placements(conn, row["id"])
    destinations = []
    model = rt.readmodel.model if rt.readmodel.ready.is_set() else None
    for p in placements:
        found = None
        if model is not None:
            tracked = monitoring.Tracked(0, p["dataset"], p["block"], p["site"], 0.0, 0, 0.0)
            found = monitoring.state(model, tracked)
        copied, total, complete = found if found is not None else (0, p["volume"], False)
        destinations.append(
            DestinationOut(
                dataset=p["dataset"],
                block=p["block"],
                site=p["site"],
                copied=copied,
                total=total,
                complete=complete,
            )
        )
    return RequestDetail(**_out(row), destinations=destinations)


@router.post(
    "",
    status_code=201,
    response_model=RequestDetail,
    summary="Ask for copies (state rejected, with the reason, when it cannot be served)",
)
async def create_request(
    body: RequestIn, who: str = Depends(user), rt: DealerRuntime = Depends(runtime)
) -> RequestDetail:
    try:
        row = await rt.create_request(
            requester=who,
            items=body.items,
            sites=body.sites,
            n_copies=body.n_copies,
            group=body.group,
            comment=body.comment,
        )
    except NotReady as exc:
        raise ProblemError(503, str(exc)) from None
    return RequestDetail(**_out(row), destinations=[])


@router.get("", response_model=Page[RequestOut], summary="Requests, newest first")
async def list_requests(
    paging: Paging = Depends(),
    state: RequestState | None = None,
    requester: str | None = Depends(requester_filter),
    rt: DealerRuntime = Depends(runtime),
) -> Page[RequestOut]:
    async with rt.pool.acquire() as conn:
        rows, total = await store.list_requests(
            conn, requester=requester, state=state, limit=paging.limit, offset=paging.offset
        )
    return Page(
        items=[RequestOut(**_out(r)) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/{request_id}", response_model=RequestDetail, summary="Poll one request")
async def get_request(request_id: Id, rt: DealerRuntime = Depends(runtime)) -> RequestDetail:
    async with rt.pool.acquire() as conn:
        row = await store.get_request(conn, request_id)
    if row is None:
        raise ProblemError(404, f"no request {request_id}")
    return await _detail(rt, row)


@router.post(
    "/{request_id}/cancel",
    response_model=RequestDetail,
    summary="Cancel a new or activated request (its requester or an admin)",
)
async def cancel_request(
    request_id: Id, who: str = Depends(user), rt: DealerRuntime = Depends(runtime)
) -> RequestDetail:
    try:
        row = await rt.cancel_request(request_id, who)
    except KeyError:
        raise ProblemError(404, f"no request {request_id}") from None
    except PermissionError as exc:
        raise ProblemError(403, str(exc)) from None
    except Conflict as exc:
        raise ProblemError(409, str(exc)) from None
    return await _detail(rt, row)
