"""User deletion requests: create, poll, cancel (before they are carried out), list."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from dynamo_common.app import ProblemError
from dynamo_dealer.api.deps import Id, Paging, requester_filter, runtime, user
from dynamo_dealer.repository import store
from dynamo_dealer.runtime import Conflict, DealerRuntime, NotReady
from dynamo_dealer.schemas import DeletionIn, DeletionOut, Page, RequestState

router = APIRouter(prefix="/api/v1/dealer/deletion-requests", tags=["dealer deletion requests"])


@router.post(
    "",
    status_code=201,
    response_model=DeletionOut,
    summary="Ask for a replica to be deleted (state rejected, with the reason, when it cannot)",
)
async def create_deletion(
    body: DeletionIn, who: str = Depends(user), rt: DealerRuntime = Depends(runtime)
) -> DeletionOut:
    try:
        row = await rt.create_deletion(
            requester=who,
            dataset=body.dataset,
            block=body.block,
            site=body.site,
            comment=body.comment,
        )
    except NotReady as exc:
        raise ProblemError(503, str(exc)) from None
    return DeletionOut(**dict(row))


@router.get("", response_model=Page[DeletionOut], summary="Deletion requests, newest first")
async def list_deletions(
    paging: Paging = Depends(),
    state: RequestState | None = None,
    requester: str | None = Depends(requester_filter),
    rt: DealerRuntime = Depends(runtime),
) -> Page[DeletionOut]:
    async with rt.pool.acquire() as conn:
        rows, total = await store.list_deletions(
            conn, requester=requester, state=state, limit=paging.limit, offset=paging.offset
        )
    return Page(
        items=[DeletionOut(**dict(r)) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/{request_id}", response_model=DeletionOut, summary="Poll one deletion request")
async def get_deletion(request_id: Id, rt: DealerRuntime = Depends(runtime)) -> DeletionOut:
    async with rt.pool.acquire() as conn:
        row = await store.get_deletion(conn, request_id)
    if row is None:
        raise ProblemError(404, f"no deletion request {request_id}")
    return DeletionOut(**dict(row))


@router.post(
    "/{request_id}/cancel",
    response_model=DeletionOut,
    summary="Cancel a deletion request not carried out yet (its requester or an admin)",
)
async def cancel_deletion(
    request_id: Id, who: str = Depends(user), rt: DealerRuntime = Depends(runtime)
) -> DeletionOut:
    try:
        row = await rt.cancel_deletion(request_id, who)
    except KeyError:
        raise ProblemError(404, f"no deletion request {request_id}") from None
    except PermissionError as exc:
        raise ProblemError(403, str(exc)) from None
    except Conflict as exc:
        raise ProblemError(409, str(exc)) from None
    return DeletionOut(**dict(row))
