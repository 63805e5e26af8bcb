"""Monitoring data for the web page: replicas in flight and enforcer compliance."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Query

from dynamo_common.app import ProblemError
from dynamo_common.policy.partitions import site_usage
from dynamo_dealer.api.deps import Paging, runtime
from dynamo_dealer.runtime import DealerRuntime
from dynamo_dealer.schemas import (
    ComplianceOut,
    InFlightOut,
    MonitoringOut,
    Page,
    SiteVolumeOut,
    VolumeOut,
)
from dynamo_dealer.service import monitoring
from dynamo_dealer.service.plugins import enforcer

router = APIRouter(prefix="/api/v1/dealer", tags=["dealer monitoring"])


def _ready(rt: DealerRuntime) -> None:
    if not rt.readmodel.ready.is_set():
        raise ProblemError(503, "the inventory read model is not loaded yet")


@router.get(
    "/monitoring",
    response_model=MonitoringOut,
    summary="Copied versus total volume of the replicas in flight, per site and in total",
)
async def summary(rt: DealerRuntime = Depends(runtime)) -> MonitoringOut:
    _ready(rt)
    total, per_site = monitoring.summarise(await rt.in_flight())
    return MonitoringOut(
        total=_volume(total),
        sites=[SiteVolumeOut(site=s, **_volume(v).model_dump()) for s, v in per_site.items()],
        stuck_days=rt.settings.stuck_days,
    )


def _volume(v: monitoring.Volume) -> VolumeOut:
    return VolumeOut(copied=v.copied, total=v.total, replicas=v.replicas, stuck=v.stuck)


@router.get(
    "/monitoring/replicas",
    response_model=Page[InFlightOut],
    summary="Each replica in flight with its progress; stuck: < 1% over the window",
)
async def replicas(
    paging: Paging = Depends(),
    site: str | None = Query(None, max_length=100),
    stuck: bool | None = None,
    rt: DealerRuntime = Depends(runtime),
) -> Page[InFlightOut]:
    _ready(rt)
    flying = await rt.in_flight(site)
    if stuck is not None:
        flying = [f for f in flying if f.stuck == stuck]
    items = [
        InFlightOut(
            dataset=f.tracked.dataset,
            block=f.tracked.block,
            site=f.tracked.site,
            copied=f.copied,
            total=f.total,
            progress=f.progress,
            placed=datetime.fromtimestamp(f.tracked.placed, UTC),
            last_progress=datetime.fromtimestamp(f.mark_time, UTC),
            stuck=f.stuck,
        )
        for f in flying[paging.offset : paging.offset + paging.limit]
    ]
    return Page(items=items, total=len(flying), limit=paging.limit, offset=paging.offset)


@router.get(
    "/compliance",
    response_model=Page[ComplianceOut],
    summary="Enforcer compliance per rule: already there, in flight, missing",
)
async def compliance(
    paging: Paging = Depends(), rt: DealerRuntime = Depends(runtime)
) -> Page[ComplianceOut]:
    _ready(rt)
    model = rt.readmodel.model
    now = rt.clock()
    evaluated = enforcer.evaluate(rt.config.enforcers, model, site_usage(model, now=now), now)
    rows = [ComplianceOut(**asdict(c)) for c in enforcer.compliance(evaluated)]
    return Page(
        items=rows[paging.offset : paging.offset + paging.limit],
        total=len(rows),
        limit=paging.limit,
        offset=paging.offset,
    )
