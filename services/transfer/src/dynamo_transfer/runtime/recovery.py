"""What a leader finds on taking over: tasks a previous leader left submitted, and FTS jobs
recorded as intents that the backend may never have received."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dynamo_transfer.backends.base import Result
from dynamo_transfer.repository import store
from dynamo_transfer.runtime.support import TRANSIENT, now_utc
from dynamo_transfer.service.retry import Failure
from dynamo_transfer.service.states import Kind

if TYPE_CHECKING:
    from dynamo_transfer.runtime.core import TransferRuntime

log = logging.getLogger("dynamo.transfer")


async def recover(rt: TransferRuntime) -> None:
    """Carry on with what the previous leader left submitted."""
    backend = rt.backend
    assert backend is not None
    async with rt.pool.acquire() as conn:
        transfers = await store.submitted(conn, Kind.TRANSFER)
        deletions = await store.submitted(conn, Kind.DELETION)
        jobs = await store.open_jobs(conn, backend.name) if backend.uses_jobs else []
    if backend.uses_jobs:
        known = {j.id for j in jobs}
        for task in transfers:
            if task.job_id not in known:
                await rt.record_result(
                    Result(
                        task_id=task.id,
                        job_id=task.job_id or "",
                        ok=False,
                        failure=Failure("interrupted: submitted by another backend"),
                    )
                )
        await reconcile_intents(rt, [j for j in jobs if j.state == "intent"])
    elif transfers:
        log.info("recovery: resuming %d interrupted copies", len(transfers))
        await backend.resume(transfers)
    for task in deletions:
        rt.deletions.start(task)


async def reconcile_intents(rt: TransferRuntime, intents: Sequence[store.JobRow]) -> None:
    """Find each intent's job at the backend, or submit it if the backend never got it (an
    intent with no task still submitted is just finished). At recovery and every poll."""
    backend = rt.backend
    assert backend is not None
    for job in intents:
        if job.id in rt.scheduler.submitting:
            continue
        try:
            external = await backend.find(job.id)
            if external is None:
                async with rt.pool.acquire() as conn:
                    tasks = await store.submitted(conn, Kind.TRANSFER, job.id)
                if not tasks:
                    async with rt.pool.acquire() as conn:
                        await store.finish_job(conn, job.id, now_utc())
                    continue
                log.info("job %s never reached %s; submitting it", job.id, backend.name)
                external = await backend.submit(job.id, tasks[0].link, tasks)
        except TRANSIENT:
            raise
        except Exception as exc:
            # The backend is unreachable or refused: the intent stays, the poller comes
            # back to it.
            log.warning("job %s: cannot reconcile with %s: %r", job.id, backend.name, exc)
            continue
        if external is not None:
            async with rt.pool.acquire() as conn:
                await store.set_job_submitted(conn, job.id, external, now_utc())
