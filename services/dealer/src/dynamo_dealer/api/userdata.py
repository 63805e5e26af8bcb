"""User data: declare a dataset in one's namespace, inject files, follow their blocks,
complete, consolidate at one site, delete. Owners act on their own data; admins on anyone's
(``X-Dynamo-Roles`` from the gateway naming ``admin``, or a name in ``DYNAMO_ADMINS``)."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from dynamo_common.app import ProblemError
from dynamo_common.bus.base import RequestTimeout
from dynamo_common.messages.types import LFN, NO_GROUP, Adler32, DatasetName, SiteName, Size
from dynamo_dealer.api.deps import Paging, runtime, user
from dynamo_dealer.repository import userdata as db
from dynamo_dealer.runtime import DealerRuntime, NotReady
from dynamo_dealer.schemas import Page
from dynamo_dealer.service import userdata as ud
from dynamo_dealer.userdata.manager import Imported, Injected, UserData

router = APIRouter(prefix="/api/v1/dealer/userdata", tags=["dealer user data"])
T = TypeVar("T")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetIn(_In):
    name: DatasetName = Field(description="/<user>/<name>/USER")


class DatasetRef(_In):
    dataset: DatasetName


class FileIn(_In):
    lfn: LFN
    size: Size
    adler32: Adler32


class InjectIn(_In):
    dataset: DatasetName
    site: SiteName = Field(description="where the job copied the files (the user namespace)")
    files: list[FileIn] = Field(min_length=1, max_length=10_000)


class ImportFileIn(FileIn):
    source: str = Field(
        min_length=8, max_length=2048, description="URL of the file produced elsewhere"
    )


class ImportIn(_In):
    dataset: DatasetName
    site: SiteName = Field(description="where the files are copied to (the user namespace)")
    files: list[ImportFileIn] = Field(min_length=1, max_length=100)


class SubscribeIn(_In):
    dataset: DatasetName
    site: SiteName


class UserDatasetOut(BaseModel):
    name: str
    owner: str
    state: str
    home: str | None
    created: datetime
    updated: datetime
    files: int = 0
    size: int = 0


class FailedFile(BaseModel):
    lfn: str
    reason: str


class RegisteredFile(BaseModel):
    lfn: str
    block: str
    site: str
    size: int


class InjectOut(BaseModel):
    registered: list[RegisteredFile]
    failed: list[FailedFile]


class ReplicaOut(BaseModel):
    site: str
    size: int
    files: int
    complete: bool
    deleting: bool


class BlockOut(BaseModel):
    name: str
    site: str = Field(description="where its files were injected")
    files: int
    size: int
    open: bool
    replicas: list[ReplicaOut]


class StatusOut(UserDatasetOut):
    blocks: list[BlockOut]


class FileOut(BaseModel):
    lfn: str
    dataset: str
    block: str
    site: str
    size: int
    adler32: str
    created: datetime


class QuotaOut(BaseModel):
    user: str
    used: int
    quota: int
    sites: dict[str, tuple[int, int]] = Field(description="site -> (used, quota) of user data")


def _admin(
    request: Request,
    x_dynamo_roles: Annotated[str | None, Header(max_length=200)] = None,
) -> bool:
    who = (request.headers.get("x-dynamo-user") or "").strip()
    roles = {r.strip() for r in (x_dynamo_roles or "").split(",")}
    rt: DealerRuntime | None = getattr(request.app.state, "dealer", None)
    return "admin" in roles or (rt is not None and who in rt.settings.admins)


def _manager(request: Request) -> UserData:
    manager: UserData | None = getattr(request.app.state, "userdata", None)
    if manager is None:
        raise ProblemError(503, "the dealer is starting")
    return manager


async def _answer(call: Awaitable[T]) -> T:
    try:
        return await call
    except ud.Refused as exc:
        raise ProblemError(exc.status, str(exc), extensions=exc.numbers or None) from None
    except NotReady as exc:
        raise ProblemError(503, str(exc)) from None
    except RequestTimeout as exc:
        raise ProblemError(504, f"the inventory did not answer in time: {exc}") from None


def _dataset(row: Any) -> UserDatasetOut:
    return UserDatasetOut(**{k: row[k] for k in UserDatasetOut.model_fields if k in row})


@router.post("/datasets", status_code=201, response_model=UserDatasetOut, summary="Declare")
async def declare(
    body: DatasetIn,
    who: str = Depends(user),
    admin: bool = Depends(_admin),
    manager: UserData = Depends(_manager),
) -> UserDatasetOut:
    return _dataset(await _answer(manager.declare(body.name, who, admin)))


@router.get("/datasets", response_model=Page[UserDatasetOut], summary="User datasets")
async def list_datasets(
    paging: Paging = Depends(),
    owner: str | None = Query(None, max_length=64),
    rt: DealerRuntime = Depends(runtime),
) -> Page[UserDatasetOut]:
    async with rt.pool.acquire() as conn:
        rows, total = await db.list_datasets(conn, owner, paging.limit, paging.offset)
    return Page(
        items=[_dataset(r) for r in rows], total=total, limit=paging.limit, offset=paging.offset
    )


@router.get(
    "/dataset",
    response_model=StatusOut,
    summary="A user dataset: its blocks, where they are, complete or in flight",
)
async def status(
    name: str = Query(max_length=500), rt: DealerRuntime = Depends(runtime)
) -> StatusOut:
    async with rt.pool.acquire() as conn:
        row = await db.get_dataset(conn, name)
        blocks = await db.blocks(conn, name)
    if row is None:
        raise ProblemError(404, f"no user dataset {name}")
    # Caught up with the inventory: a user sees at least what their last write made.
    ds = (await _answer(rt.model())).datasets.get(name)
    out: list[BlockOut] = []
    for b in blocks:
        block = ds.blocks.get(b["name"]) if ds is not None else None
        replicas = [
            ReplicaOut(
                site=r.site.name,
                size=r.size,
                files=r.num_files,
                complete=r.is_complete,
                deleting=r.group.name == NO_GROUP,
            )
            for r in (block.replicas if block is not None else [])
        ]
        out.append(
            BlockOut(
                name=b["name"],
                site=b["site"],
                files=b["num_files"],
                size=b["size"],
                open=b["is_open"],
                replicas=sorted(replicas, key=lambda r: r.site),
            )
        )
    return StatusOut(
        **_dataset(row).model_dump(exclude={"files", "size"}),
        files=sum(b.files for b in out),
        size=sum(b.size for b in out),
        blocks=out,
    )


@router.get("/files", response_model=Page[FileOut], summary="Files of a user dataset")
async def list_files(
    dataset: str = Query(max_length=500),
    block: str | None = Query(None, max_length=128),
    paging: Paging = Depends(),
    rt: DealerRuntime = Depends(runtime),
) -> Page[FileOut]:
    async with rt.pool.acquire() as conn:
        rows, total = await db.files(conn, dataset, block, paging.limit, paging.offset)
    return Page(
        items=[FileOut(**dict(r)) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/quota", response_model=QuotaOut, summary="A user's usage and quotas")
async def quota(
    user_name: str = Query(alias="user", max_length=64),
    manager: UserData = Depends(_manager),
    rt: DealerRuntime = Depends(runtime),
) -> QuotaOut:
    async with rt.pool.acquire() as conn:
        used = await db.user_bytes(conn, user_name)
    model = await _answer(rt.model())
    sites: dict[str, tuple[int, int]] = {}
    for site in sorted(model.sites):
        try:
            figures = manager.site_figures(model, site)
        except ud.Refused:
            break
        if figures[1] > 0:
            sites[site] = figures
    return QuotaOut(user=user_name, used=used, quota=manager.user_quota(), sites=sites)


@router.post(
    "/inject",
    response_model=InjectOut,
    summary="Register files copied into the user namespace at a site (each verified first)",
)
async def inject(
    body: InjectIn,
    who: str = Depends(user),
    admin: bool = Depends(_admin),
    manager: UserData = Depends(_manager),
) -> InjectOut:
    files = [ud.NewFile(f.lfn, f.size, f.adler32.lower()) for f in body.files]
    return _injected(await _answer(manager.inject(body.dataset, body.site, files, who, admin)))


def _injected(result: Injected) -> InjectOut:
    return InjectOut(
        registered=[RegisteredFile(**r) for r in result.registered],
        failed=[FailedFile(lfn=f.lfn, reason=f.reason) for f in result.failed],
    )


@router.post(
    "/import",
    response_model=InjectOut,
    summary="Copy files produced elsewhere into the user namespace at a site, then register",
)
async def import_files(
    body: ImportIn,
    who: str = Depends(user),
    admin: bool = Depends(_admin),
    manager: UserData = Depends(_manager),
) -> InjectOut:
    files = [Imported(f.source, ud.NewFile(f.lfn, f.size, f.adler32.lower())) for f in body.files]
    return _injected(
        await _answer(manager.import_files(body.dataset, body.site, files, who, admin))
    )


@router.post(
    "/complete",
    response_model=UserDatasetOut,
    summary="Production is over: the remaining blocks close",
)
async def complete(
    body: DatasetRef,
    who: str = Depends(user),
    admin: bool = Depends(_admin),
    manager: UserData = Depends(_manager),
) -> UserDatasetOut:
    return _dataset(await _answer(manager.complete(body.dataset, who, admin)))


@router.post(
    "/subscribe",
    response_model=UserDatasetOut,
    summary="Consolidate the dataset at one site (scattered copies are cleaned up)",
)
async def subscribe(
    body: SubscribeIn,
    who: str = Depends(user),
    admin: bool = Depends(_admin),
    manager: UserData = Depends(_manager),
) -> UserDatasetOut:
    return _dataset(await _answer(manager.subscribe(body.dataset, body.site, who, admin)))


@router.post(
    "/delete",
    response_model=UserDatasetOut,
    summary="Delete a user dataset: every replica, then the dataset",
)
async def delete(
    body: DatasetRef,
    who: str = Depends(user),
    admin: bool = Depends(_admin),
    manager: UserData = Depends(_manager),
) -> UserDatasetOut:
    return _dataset(await _answer(manager.delete(body.dataset, who, admin)))
