"""Read endpoints. They answer from memory; only files and the event log come from PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from dynamo_common.app import ProblemError
from dynamo_common.messages.inventory import FileState
from dynamo_common.model.objects import Dataset, DatasetReplica, Inventory, Site
from dynamo_inventory.api.deps import Paging, runtime
from dynamo_inventory.repository import reader
from dynamo_inventory.runtime import InventoryRuntime
from dynamo_inventory.schemas import (
    BlockOut,
    BlockReplicaOut,
    ContainerOut,
    DatasetDetail,
    DatasetOut,
    DatasetReplicaOut,
    EventsOut,
    GroupOut,
    Page,
    PartitionOut,
    PartitionUsage,
    SiteOut,
    StatsOut,
    StatsRow,
)
from dynamo_inventory.service import views

router = APIRouter(prefix="/api/v1", tags=["inventory"])


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _site_out(rt: InventoryRuntime, site: Site, used: int) -> SiteOut:
    usage = rt.usage.get(rt.model).get(site.name, {})
    return SiteOut(
        id=site.id,
        name=site.name,
        storage_type=site.storage_type.value,
        status=site.status.value,
        host=site.host,
        protocols=[
            {"name": n, "rules": [{"match": m, "result": r} for m, r in rules]}
            for n, rules in site.protocols
        ],
        quotas=site.quotas,
        used=used,
        dataset_replicas=len(site.dataset_replicas),
        usage=[
            PartitionUsage(partition=p, used=u, quota=q, occupancy=(u / q) if q else None)
            for p, (u, q) in usage.items()
        ],
    )


def _site(model: Inventory, name: str) -> Site:
    site = model.sites.get(name)
    if site is None:
        raise ProblemError(404, f"unknown site {name!r}")
    return site


@router.get("/sites", response_model=Page[SiteOut], summary="Sites with usage per partition")
async def list_sites(
    paging: Paging = Depends(), name: str | None = None, rt: InventoryRuntime = Depends(runtime)
) -> Page[SiteOut]:
    model = rt.model
    sites = sorted(model.sites.values(), key=lambda s: s.name)
    if name:
        match = views.wildcard(name).match
        sites = [s for s in sites if match(s.name)]
    used = views.site_used(model)
    items = [_site_out(rt, s, used[s.name]) for s in views.page(sites, paging.limit, paging.offset)]
    return Page(
        items=items, total=len(sites), limit=paging.limit, offset=paging.offset, seq=model.seq
    )


@router.get("/sites/{name}", response_model=SiteOut)
async def get_site(name: str, rt: InventoryRuntime = Depends(runtime)) -> SiteOut:
    site = _site(rt.model, name)
    return _site_out(rt, site, views.site_used(rt.model)[site.name])


def _replica_out(replica: DatasetReplica, with_blocks: bool) -> DatasetReplicaOut:
    blocks = None
    if with_blocks:
        blocks = [
            BlockReplicaOut(
                block=br.block.name,
                group=br.group.name,
                is_custodial=br.is_custodial,
                size=br.size,
                num_files=br.num_files,
                is_complete=br.is_complete,
                last_update=_dt(br.last_update),
            )
            for br in sorted(replica.block_replicas.values(), key=lambda b: b.block.name)
        ]
    return DatasetReplicaOut(
        dataset=replica.dataset.name,
        site=replica.site.name,
        group=replica.group.name,
        growing=replica.growing,
        size=replica.size,
        is_complete=replica.is_complete,
        num_blocks=len(replica.block_replicas),
        last_update=_dt(replica.last_update),
        block_replicas=blocks,
    )


@router.get(
    "/sites/{name}/replicas",
    response_model=Page[DatasetReplicaOut],
    summary="Dataset replicas at a site",
)
async def site_replicas(
    name: str,
    paging: Paging = Depends(),
    dataset: str | None = Query(None, description="wildcard pattern"),
    rt: InventoryRuntime = Depends(runtime),
) -> Page[DatasetReplicaOut]:
    _site(rt.model, name)
    replicas = views.site_replicas(rt.model, name, dataset)
    return Page(
        items=[_replica_out(r, False) for r in views.page(replicas, paging.limit, paging.offset)],
        total=len(replicas),
        limit=paging.limit,
        offset=paging.offset,
        seq=rt.model.seq,
    )


@router.get("/groups", response_model=Page[GroupOut])
async def list_groups(
    paging: Paging = Depends(), rt: InventoryRuntime = Depends(runtime)
) -> Page[GroupOut]:
    groups = sorted(rt.model.groups.values(), key=lambda g: g.name)
    return Page(
        items=[
            GroupOut(id=g.id, name=g.name, olevel=g.olevel.value)
            for g in views.page(groups, paging.limit, paging.offset)
        ],
        total=len(groups),
        limit=paging.limit,
        offset=paging.offset,
        seq=rt.model.seq,
    )


def _dataset_out(d: Dataset) -> dict[str, object]:
    return dict(
        id=d.id,
        name=d.name,
        status=d.status.value,
        data_type=d.data_type,
        software_version=d.software_version,
        is_open=d.is_open,
        last_update=_dt(d.last_update),
        size=d.size,
        num_files=d.num_files,
        num_blocks=len(d.blocks),
        num_replicas=len(d.replicas),
    )


@router.get(
    "/datasets",
    response_model=Page[DatasetOut],
    summary="Datasets by name (wildcards * ? allowed) and status",
)
async def list_datasets(
    paging: Paging = Depends(),
    name: str | None = Query(None, description="e.g. /SingleMuon/*/AOD"),
    status: str | None = None,
    rt: InventoryRuntime = Depends(runtime),
) -> Page[DatasetOut]:
    found = views.find_datasets(rt.model, name, status)
    return Page(
        items=[
            DatasetOut(**_dataset_out(d)) for d in views.page(found, paging.limit, paging.offset)
        ],
        total=len(found),
        limit=paging.limit,
        offset=paging.offset,
        seq=rt.model.seq,
    )


def _dataset(model: Inventory, name: str) -> Dataset:
    dataset = model.datasets.get(name)
    if dataset is None:
        raise ProblemError(404, f"unknown dataset {name!r}")
    return dataset


@router.get(
    "/dataset",
    response_model=DatasetDetail,
    summary="One dataset with its blocks and replicas (name as a query parameter, "
    "since dataset names contain slashes)",
)
async def get_dataset(name: str, rt: InventoryRuntime = Depends(runtime)) -> DatasetDetail:
    d = _dataset(rt.model, name)
    blocks = [
        BlockOut(
            id=b.id,
            name=b.name,
            size=b.size,
            num_files=b.num_files,
            is_open=b.is_open,
            last_update=_dt(b.last_update),
            replicas=sorted(r.site.name for r in b.replicas),
        )
        for b in sorted(d.blocks.values(), key=lambda b: b.name)
    ]
    replicas = [
        _replica_out(r, True) for r in sorted(d.replicas.values(), key=lambda r: r.site.name)
    ]
    return DatasetDetail(**_dataset_out(d), blocks=blocks, replicas=replicas)


@router.get("/files", response_model=Page[FileState], summary="Files of a block")
async def block_files(
    dataset: str, block: str, paging: Paging = Depends(), rt: InventoryRuntime = Depends(runtime)
) -> Page[FileState]:
    b = _dataset(rt.model, dataset).blocks.get(block)
    if b is None:
        raise ProblemError(404, f"unknown block {dataset}#{block}")
    async with rt.pool.acquire() as conn:
        total, files = await reader.files_of_block(conn, b.id, paging.limit, paging.offset)
    return Page(
        items=files, total=total, limit=paging.limit, offset=paging.offset, seq=rt.model.seq
    )


@router.get("/partitions", response_model=Page[PartitionOut])
async def list_partitions(
    paging: Paging = Depends(), rt: InventoryRuntime = Depends(runtime)
) -> Page[PartitionOut]:
    parts = sorted(rt.model.partitions.values(), key=lambda p: p.name)
    return Page(
        items=[
            PartitionOut(
                name=p.name,
                condition=p.condition,
                subpartitions=list(p.subpartitions),
                description=p.description,
            )
            for p in views.page(parts, paging.limit, paging.offset)
        ],
        total=len(parts),
        limit=paging.limit,
        offset=paging.offset,
        seq=rt.model.seq,
    )


@router.get("/containers", response_model=Page[ContainerOut])
async def list_containers(
    paging: Paging = Depends(), name: str | None = None, rt: InventoryRuntime = Depends(runtime)
) -> Page[ContainerOut]:
    items = sorted(rt.model.containers.values(), key=lambda c: c.name)
    if name:
        match = views.wildcard(name).match
        items = [c for c in items if match(c.name)]
    return Page(
        items=[
            ContainerOut(name=c.name, datasets=list(c.datasets))
            for c in views.page(items, paging.limit, paging.offset)
        ],
        total=len(items),
        limit=paging.limit,
        offset=paging.offset,
        seq=rt.model.seq,
    )


@router.get(
    "/stats",
    response_model=StatsOut,
    summary="Replica volume grouped by site, group, tier, storage_type or status",
)
async def get_stats(
    group_by: str = Query("site", description="comma-separated keys"),
    rt: InventoryRuntime = Depends(runtime),
) -> StatsOut:
    keys = [k.strip() for k in group_by.split(",") if k.strip()]
    try:
        rows = views.stats(rt.model, keys)
    except ValueError as exc:
        raise ProblemError(400, str(exc)) from None
    return StatsOut(
        group_by=keys,
        rows=[StatsRow(key=k, replicas=n, size=s) for k, n, s in rows],
        seq=rt.model.seq,
    )


@router.get(
    "/sites/{name}/files",
    summary="Every file of every block replica at a site, as NDJSON (for consistency checks)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "one JSON object per line: dataset, block, lfn, size, adler32; "
            "ordered by dataset, block and LFN",
            "content": {"application/x-ndjson": {}},
        }
    },
)
async def site_files(name: str, rt: InventoryRuntime = Depends(runtime)) -> StreamingResponse:
    site = _site(rt.model, name)
    seq = rt.model.seq

    async def stream() -> AsyncIterator[bytes]:
        async with rt.pool.acquire() as conn, conn.transaction(readonly=True):
            async for chunk in reader.site_files(conn, site.id):
                yield chunk

    return StreamingResponse(
        stream(), media_type="application/x-ndjson", headers={"X-Dynamo-Seq": str(seq)}
    )


@router.get(
    "/snapshot",
    summary="The whole inventory (no files) as NDJSON, tagged with its seq",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def snapshot(rt: InventoryRuntime = Depends(runtime)) -> StreamingResponse:
    seq, chunks = await rt.snapshot_chunks()

    async def stream() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    return StreamingResponse(
        stream(), media_type="application/x-ndjson", headers={"X-Dynamo-Seq": str(seq)}
    )


@router.get(
    "/events",
    response_model=EventsOut,
    summary="Events after a sequence number, for consumers that fell behind",
)
async def events(
    after: int = Query(0, ge=0),
    limit: int = Query(1000, ge=1, le=10_000),
    rt: InventoryRuntime = Depends(runtime),
) -> EventsOut:
    async with rt.pool.acquire() as conn:
        oldest = await reader.oldest_retained_seq(conn)
        last = await reader.current_seq(conn)
        if after < last and (oldest is None or after + 1 < oldest):
            raise ProblemError(
                410,
                f"events after {after} are no longer retained (oldest "
                f"is {oldest}); take a new snapshot",
                extensions={"oldest_seq": oldest, "last_seq": last},
            )
        rows = await reader.events_after(conn, after, limit)
    return EventsOut(
        events=[orjson.loads(raw) for _, raw in rows], last_seq=last, oldest_seq=oldest
    )
