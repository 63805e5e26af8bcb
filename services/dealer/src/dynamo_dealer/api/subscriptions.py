"""Subscriptions: a site follows a dataset or a container."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Query, Response

from dynamo_common.app import ProblemError
from dynamo_dealer.api.deps import Id, Paging, runtime, user
from dynamo_dealer.repository import store
from dynamo_dealer.runtime import DealerRuntime
from dynamo_dealer.schemas import Page, SubscriptionIn, SubscriptionOut

router = APIRouter(prefix="/api/v1/dealer/subscriptions", tags=["dealer subscriptions"])


@router.post("", status_code=201, response_model=SubscriptionOut, summary="Subscribe a site")
async def create_subscription(
    body: SubscriptionIn, who: str = Depends(user), rt: DealerRuntime = Depends(runtime)
) -> SubscriptionOut:
    if not rt.readmodel.ready.is_set():
        raise ProblemError(503, "the inventory read model is not loaded yet")
    model = rt.readmodel.model
    if body.item not in model.datasets and body.item not in model.containers:
        raise ProblemError(422, f"{body.item} is neither a dataset nor a container")
    if body.site not in model.sites:
        raise ProblemError(422, f"unknown site {body.site}")
    if body.group not in model.groups:
        raise ProblemError(422, f"invalid group {body.group}")
    async with rt.pool.acquire() as conn:
        row = await store.add_subscription(
            conn, body.item, body.site, body.group, who, datetime.fromtimestamp(rt.clock(), UTC)
        )
    if row is None:
        raise ProblemError(409, f"{body.site} already subscribes to {body.item}")
    return SubscriptionOut(**dict(row))


@router.get("", response_model=Page[SubscriptionOut], summary="Subscriptions")
async def list_subscriptions(
    paging: Paging = Depends(),
    site: str | None = Query(None, max_length=100),
    item: str | None = Query(None, max_length=600, description="pattern"),
    rt: DealerRuntime = Depends(runtime),
) -> Page[SubscriptionOut]:
    async with rt.pool.acquire() as conn:
        rows, total = await store.list_subscriptions(
            conn, site=site, item=item, limit=paging.limit, offset=paging.offset
        )
    return Page(
        items=[SubscriptionOut(**dict(r)) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.delete("/{subscription_id}", status_code=204, summary="End a subscription")
async def delete_subscription(
    subscription_id: Id, who: str = Depends(user), rt: DealerRuntime = Depends(runtime)
) -> Response:
    async with rt.pool.acquire() as conn:
        if not await store.delete_subscription(conn, subscription_id):
            raise ProblemError(404, f"no subscription {subscription_id}")
    return Response(status_code=204)
