"""A stopping consistency service gives every connection back and ends its loops: the races
behind `dynamo up`'s rare stop hang, each forced to happen. The check and the scheduler are
the service's own methods, on a real PostgreSQL pool; only the moment of the stop is chosen
(the site's unlock is slowed so the stop lands in it)."""

from __future__ import annotations

import asyncio
import contextlib
import types
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from dynamo_consistency.repository import store
from dynamo_consistency.runtime import Claim, ConsistencyRuntime

pytestmark = pytest.mark.integration


def _runtime(pool: asyncpg.Pool) -> Any:
    """The state the check's and the scheduler's own code reads, without the rest of the
    service (bus, read model of the inventory, storage)."""
    ready = asyncio.Event()
    ready.set()
    rt = types.SimpleNamespace(
        pool=pool,
        running={},
        wakeup=asyncio.Event(),
        readmodel=types.SimpleNamespace(ready=ready),
        settings=types.SimpleNamespace(schedule_interval=60.0),
    )
    return rt


async def test_a_check_stopped_while_it_unlocks_its_site_gives_its_connection_back(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    rt = _runtime(pool)

    async def finished_at_once(claim: Claim) -> None:
        return None

    rt._check = finished_at_once
    unlocking = asyncio.Event()
    real_unlock = store.unlock

    async def slow_unlock(conn: asyncpg.Connection, site_id: int) -> None:
        unlocking.set()
        await asyncio.sleep(0.5)
        await real_unlock(conn, site_id)

    monkeypatch.setattr(store, "unlock", slow_unlock)
    site = types.SimpleNamespace(name="T2_X", id=1, approval_run=None)
    claim = Claim(site, await pool.acquire(), datetime.now(UTC))  # type: ignore[arg-type]
    rt.running["T2_X"] = task = asyncio.create_task(ConsistencyRuntime._execute(rt, claim))
    await asyncio.wait_for(unlocking.wait(), 30)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    try:
        # Before the fix, the connection was never released and this waited forever.
        await asyncio.wait_for(pool.close(), 30)
    finally:
        pool.terminate()
    assert rt.running == {}
    assert rt.wakeup.is_set()


async def test_the_scheduler_stops_when_the_stop_comes_as_a_check_wakes_it(
    database_url: str,
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    rt = _runtime(pool)
    scheduled = asyncio.Event()

    async def nothing_to_start() -> int:
        scheduled.set()
        return 0

    rt.schedule_once = nothing_to_start
    loop = asyncio.create_task(ConsistencyRuntime.scheduler_loop(rt))
    try:
        await asyncio.wait_for(scheduled.wait(), 30)
        await asyncio.sleep(0.05)  # the loop is now waiting for its wakeup
        # A check ending (it sets the wakeup) in the same step as the stop (the cancel):
        # asyncio.wait_for on Python 3.11 dropped that cancellation and looped on.
        rt.wakeup.set()
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(loop), 10)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await pool.close()
