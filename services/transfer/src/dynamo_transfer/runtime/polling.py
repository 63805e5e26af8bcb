"""The leader's FTS poller (backends with jobs): intents are reconciled, the submitted jobs'
results recorded, and a finished job's files without a result failed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dynamo_transfer.backends.base import Result
from dynamo_transfer.repository import store
from dynamo_transfer.repository.store import TaskRow
from dynamo_transfer.runtime.recovery import reconcile_intents
from dynamo_transfer.runtime.support import now_utc
from dynamo_transfer.service.retry import Failure
from dynamo_transfer.service.states import Kind

if TYPE_CHECKING:
    from dynamo_transfer.runtime.core import TransferRuntime


async def poll_once(rt: TransferRuntime) -> float | None:
    backend = rt.backend
    assert backend is not None
    async with rt.pool.acquire() as conn:
        jobs = await store.open_jobs(conn, backend.name)
    await reconcile_intents(rt, [j for j in jobs if j.state == "intent"])
    followed = [j for j in jobs if j.state == "submitted"]
    if not followed:
        return None
    async with rt.pool.acquire() as conn:
        tasks: dict[str, list[TaskRow]] = {}
        for task in await store.submitted(conn, Kind.TRANSFER):
            if task.job_id is not None:
                tasks.setdefault(task.job_id, []).append(task)
    polled = await backend.poll(followed, tasks)
    for result in polled.results:
        await rt.record_result(result)
    settled = {r.task_id for r in polled.results}
    for job_id in polled.finished_jobs:
        for task in tasks.get(job_id, []):
            if task.id not in settled:
                await rt.record_result(
                    Result(
                        task_id=task.id,
                        job_id=job_id,
                        ok=False,
                        failure=Failure("the FTS job ended without a result for this file"),
                    )
                )
        async with rt.pool.acquire() as conn:
            await store.finish_job(conn, job_id, now_utc())
    return None
