"""The FTS3 backend against the FTS3 stand-in (real REST, real gfal2 copies): link batches
become FTS jobs, outcomes are polled and classified, and a crash around a submission neither
loses the job nor submits it twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dynamo_common.messages.registry import TransferCommand as C
from tests.integration.test_transfer_recovery import pool_of
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


ALL_STATES = "SUBMITTED,READY,ACTIVE,STAGING,FINISHED,FAILED,FINISHEDDIRTY,CANCELED"


@pytest.fixture
def fts3() -> Iterator[str]:
    from tests.fts3_standin.server import create_app, serve

    with serve(create_app(max_workers=4)) as url:
        yield url


def _fts(url: str, **over: Any) -> dict[str, Any]:
    return {"backend": "fts3", "fts3_url": url, **over}


def _jobs(url: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/jobs", params={"state_in": ALL_STATES, "limit": 1000})
    response.raise_for_status()
    return list(response.json())


async def _held(transfer: Any, count: int) -> list[dict[str, Any]] | None:
    page = await transfer.get("/api/v1/transfers/held")
    return page["items"] if page["total"] == count else None


async def test_replicas_are_copied_through_fts_and_a_corrupt_source_is_held(
    inventory: Any, database_url: str, grid: Grid, fts3: str
) -> None:
    files = await seed_grid(
        inventory,
        grid,
        sites=[grid.site("T1_A"), grid.site("T2_B")],
        blocks={"b1": 3, "b2": 2},
        holders=["T1_A"],
    )
    bad, data = files["b2"][0]
    grid.write("T1_A", bad, bytes(reversed(data)))
    async with run_transfer(inventory, database_url, **_fts(fts3)) as transfer:
        reply = await transfer.command(
            C.TRANSFER_REPLICAS, {"requests": [{"dataset": DS, "site": "T2_B"}]}
        )
        assert reply.tasks == 5
        await eventually(lambda: replica_complete(inventory, "b1", "T2_B"), "b1 complete")
        (held,) = await eventually(lambda: _held(transfer, 1), "the corrupt file held")
        assert held["lfn"] == bad and "all sources failed" in held["reason"]
        assert "checksum" in held["reason"].lower()
        assert not grid.path("T2_B", bad).exists()
        for name, content in files["b1"]:
            assert grid.read("T2_B", name) == content
        jobs = _jobs(fts3)
        # One job per link batch: everything went T1_A -> T2_B in one submission.
        assert len(jobs) == 1 and jobs[0]["job_metadata"]["dynamo_job"].startswith("dynamo-")
        history = await transfer.get("/api/v1/transfers/history", result="done")
        assert history["total"] == 4


async def test_a_crash_around_a_submission_neither_loses_nor_repeats_the_job(
    inventory: Any, database_url: str, grid: Grid, fts3: str
) -> None:
    files = await seed_grid(
        inventory,
        grid,
        sites=[grid.site("T1_A"), grid.site("T2_B"), grid.site("T2_C")],
        blocks={"b1": 2},
        holders=["T1_A"],
    )
    # To B: FTS received the job but the service died before recording its answer.
    async with run_transfer(inventory, database_url, **_fts(fts3)) as transfer:
        await transfer.command(
            C.TRANSFER_REPLICAS, {"requests": [{"dataset": DS, "block": "b1", "site": "T2_B"}]}
        )
        await eventually(lambda: _job_states(database_url, "submitted"), "job recorded")
    async with pool_of(database_url) as conn:
        await conn.execute("UPDATE transfer.jobs SET state = 'intent', external_id = NULL")
    # To C: the submission never reached FTS (it was unreachable).
    async with run_transfer(
        inventory, database_url, **_fts("http://127.0.0.1:9", poll_interval=60)
    ) as transfer:
        await transfer.command(
            C.TRANSFER_REPLICAS, {"requests": [{"dataset": DS, "block": "b1", "site": "T2_C"}]}
        )
        await eventually(lambda: _job_states(database_url, "intent", 2), "two intents")
    assert len(_jobs(fts3)) == 1

    async with run_transfer(inventory, database_url, **_fts(fts3)):
        await eventually(lambda: replica_complete(inventory, "b1", "T2_B"), "b1 complete at B")
        await eventually(lambda: replica_complete(inventory, "b1", "T2_C"), "b1 complete at C")
    jobs = _jobs(fts3)
    assert len(jobs) == 2, "a job was submitted twice"
    for name, content in files["b1"]:
        assert grid.read("T2_B", name) == content and grid.read("T2_C", name) == content


async def _job_states(database_url: str, state: str, count: int = 1) -> bool:
    async with pool_of(database_url) as conn:
        rows = await conn.fetch("SELECT state FROM transfer.jobs")
    return len(rows) == count and all(r["state"] == state for r in rows)
