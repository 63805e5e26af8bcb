"""Crash safety of the direct backend: a service stopped in the middle of a transfer and a new
one started on the same database lose nothing, copy nothing twice, and finish the replica.

The first service is stopped while copies are queued and running. What a kill -9 can leave
behind beyond that is then made explicit on disk, for files the database still says are
being copied: one copy that finished but was never recorded, and one cut off half-way.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from dynamo_common.messages.registry import TransferCommand as C
from tests.integration.test_transfer_support import (
    DS,
    Grid,
    eventually,
    replica_complete,
    run_transfer,
    seed_grid,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def grid(tmp_path: Path) -> Grid:
    return Grid(tmp_path / "sites")


SLOW = {"direct_parallel_per_link": 1, "max_active_per_link": 6, "max_batch": 3}
# A local copy takes ~10 ms, so the block must be long enough (and the poll tight enough) that
# the service is always stopped with copies still queued and submitted, however loaded the host.
FILES = 60


async def _first_file_done(transfer: Any) -> None:
    async with transfer.runtime.pool.acquire() as conn:
        for _ in range(6000):
            if await conn.fetchval("SELECT count(*) FROM transfer.tasks WHERE state = 'done'"):
                return
            await asyncio.sleep(0.005)
    raise AssertionError("no file copied within 30 s")


def _identity(path: Any) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns


async def test_a_stopped_service_resumes_without_losing_or_repeating_a_copy(
    inventory: Any, database_url: str, grid: Grid
) -> None:
    files = await seed_grid(
        inventory,
        grid,
        sites=[grid.site("T1_A"), grid.site("T2_B")],
        blocks={"b1": FILES},
        holders=["T1_A"],
        size=500_000,
    )
    data = dict(files["b1"])
    async with run_transfer(inventory, database_url, **SLOW) as transfer:
        reply = await transfer.command(
            C.TRANSFER_REPLICAS, {"requests": [{"dataset": DS, "block": "b1", "site": "T2_B"}]}
        )
        assert reply.tasks == FILES
        await _first_file_done(transfer)
        pool = transfer.runtime.pool
        # Leaving the block stops the service while files are still queued and submitted.
    async with pool_of(database_url) as conn:
        rows = await conn.fetch("SELECT id, lfn, state FROM transfer.tasks ORDER BY id")
    states = {r["lfn"]: r["state"] for r in rows}
    done_before = {lfn for lfn, state in states.items() if state == "done"}
    submitted = sorted(lfn for lfn, state in states.items() if state == "submitted")
    assert done_before and len(done_before) < FILES, states
    assert len(submitted) >= 2, states
    del pool

    # What a kill -9 can leave for files the database says are being copied: a copy that
    # completed without being recorded, and one cut off half-way.
    finished_unrecorded, cut_off = submitted[0], submitted[1]
    for lfn in (finished_unrecorded, cut_off):
        path = grid.path("T2_B", lfn)
        if path.exists():
            path.unlink()
    grid.write("T2_B", finished_unrecorded, data[finished_unrecorded])
    grid.write("T2_B", cut_off, data[cut_off][: len(data[cut_off]) // 3])
    untouched = {
        lfn: _identity(grid.path("T2_B", lfn)) for lfn in [*done_before, finished_unrecorded]
    }

    async with run_transfer(inventory, database_url, **SLOW) as transfer:
        await eventually(lambda: replica_complete(inventory, "b1", "T2_B"), "b1 complete")
        for lfn, content in data.items():
            assert grid.read("T2_B", lfn) == content, lfn
        for lfn, identity in untouched.items():
            assert _identity(grid.path("T2_B", lfn)) == identity, f"{lfn} was written again"
        history = await transfer.get("/api/v1/transfers/history", limit=100)
        done = [h for h in history["items"] if h["result"] == "done"]
        assert sorted(h["file"] for h in done) == sorted(data), "a file done twice or never"
        by_file = {h["file"]: h for h in done}
        assert by_file[finished_unrecorded]["bytes"] == 0
        assert "already at the destination" in by_file[finished_unrecorded]["error"]
        assert by_file[cut_off]["bytes"] == len(data[cut_off])
        async with transfer.runtime.pool.acquire() as conn:
            assert (
                await conn.fetchval("SELECT count(*) FROM transfer.tasks WHERE state <> 'done'")
                == 0
            )
        leftovers = [p.name for p in grid.path("T2_B", submitted[0]).parent.iterdir()]
        assert sorted(leftovers) == sorted(lfn.rsplit("/", 1)[1] for lfn in data), leftovers


def pool_of(database_url: str) -> Any:
    import contextlib

    import asyncpg

    from dynamo_common.settings import to_asyncpg_dsn

    @contextlib.asynccontextmanager
    async def connect() -> Any:
        conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
        try:
            yield conn
        finally:
            await conn.close()

    return connect()
