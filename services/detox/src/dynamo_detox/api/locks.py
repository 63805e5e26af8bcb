"""Locks: keep datasets or blocks (patterns allowed) at sites (patterns allowed) until a date.

Anyone identified may lock, except other users' data (``/<user>/<name>/USER``: the
user-data namespace is its owner's, so a pattern that can match user data must name the
caller's own namespace, decided from the pattern alone, not from today's datasets); only
the owner of a lock or an admin may extend or release it. Released locks are kept (with who
released them) for the record.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Query

from dynamo_common.api import is_admin
from dynamo_common.app import ProblemError
from dynamo_common.userdata import namespace_refusal
from dynamo_detox.api.deps import Paging, runtime, user
from dynamo_detox.repository import store
from dynamo_detox.runtime import DetoxRuntime
from dynamo_detox.schemas import LockOut, LockRequest, LockUpdate, Page
from dynamo_detox.service.locks import Lock

router = APIRouter(prefix="/api/v1/locks", tags=["locks"])


def _now(rt: DetoxRuntime) -> datetime:
    return datetime.fromtimestamp(rt.clock(), UTC)


def _out(lock: Lock, now: datetime) -> LockOut:
    return LockOut(
        id=lock.id,
        dataset=lock.dataset,
        block=lock.block,
        sites=lock.sites,
        until=lock.until,
        owner=lock.owner,
        comment=lock.comment,
        created=lock.created,
        released=lock.released,
        active=lock.active(now),
    )


def _future(until: datetime, now: datetime) -> datetime:
    if until.tzinfo is None:
        raise ProblemError(422, "'until' needs a time zone (e.g. 2026-12-31T00:00:00Z)")
    if until <= now:
        raise ProblemError(422, "'until' must be in the future")
    return until


@router.post("", response_model=LockOut, status_code=201, summary="Lock data at sites")
async def create_lock(
    body: LockRequest,
    who: str = Depends(user),
    admin: bool = Depends(is_admin),
    rt: DetoxRuntime = Depends(runtime),
) -> LockOut:
    now = _now(rt)
    if not admin and who not in rt.settings.admins:
        refusal = namespace_refusal(body.dataset, who)
        if refusal is not None:
            raise ProblemError(403, f"{refusal} (or ask an admin)")
    async with rt.pool.acquire() as conn:
        lock = await store.add_lock(
            conn,
            dataset=body.dataset,
            block=body.block,
            sites=body.sites,
            until=_future(body.until, now),
            owner=who,
            comment=body.comment,
            now=now,
        )
    return _out(lock, now)


@router.get("", response_model=Page[LockOut], summary="Locks, newest last")
async def list_locks(
    paging: Paging = Depends(),
    owner: str | None = None,
    active: bool = Query(True, description="only locks that hold now"),
    dataset: str | None = Query(None, description="pattern on the lock's dataset field"),
    rt: DetoxRuntime = Depends(runtime),
) -> Page[LockOut]:
    now = _now(rt)
    async with rt.pool.acquire() as conn:
        locks, total = await store.list_locks(
            conn,
            owner=owner,
            active_at=now if active else None,
            dataset=dataset,
            limit=paging.limit,
            offset=paging.offset,
        )
    return Page(
        items=[_out(lock, now) for lock in locks],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


async def _owned(rt: DetoxRuntime, lock_id: int, who: str) -> Lock:
    async with rt.pool.acquire() as conn:
        lock = await store.get_lock(conn, lock_id)
    if lock is None:
        raise ProblemError(404, f"no lock {lock_id}")
    if lock.owner != who and who not in rt.settings.admins:
        raise ProblemError(403, f"lock {lock_id} belongs to {lock.owner}; only they or an admin")
    if lock.released is not None:
        raise ProblemError(409, f"lock {lock_id} was released")
    return lock


@router.get("/{lock_id}", response_model=LockOut)
async def get_lock(lock_id: int, rt: DetoxRuntime = Depends(runtime)) -> LockOut:
    async with rt.pool.acquire() as conn:
        lock = await store.get_lock(conn, lock_id)
    if lock is None:
        raise ProblemError(404, f"no lock {lock_id}")
    return _out(lock, _now(rt))


@router.patch("/{lock_id}", response_model=LockOut, summary="Extend a lock (owner or admin)")
async def extend_lock(
    lock_id: int,
    body: LockUpdate,
    who: str = Depends(user),
    rt: DetoxRuntime = Depends(runtime),
) -> LockOut:
    await _owned(rt, lock_id, who)
    now = _now(rt)
    async with rt.pool.acquire() as conn:
        lock = await store.update_lock(conn, lock_id, _future(body.until, now), body.comment, now)
    if lock is None:
        raise ProblemError(409, f"lock {lock_id} was released")
    return _out(lock, now)


@router.delete("/{lock_id}", response_model=LockOut, summary="Release a lock (owner or admin)")
async def release_lock(
    lock_id: int, who: str = Depends(user), rt: DetoxRuntime = Depends(runtime)
) -> LockOut:
    await _owned(rt, lock_id, who)
    now = _now(rt)
    async with rt.pool.acquire() as conn:
        lock = await store.release_lock(conn, lock_id, who, now)
    if lock is None:
        raise ProblemError(409, f"lock {lock_id} was released")
    return _out(lock, now)
