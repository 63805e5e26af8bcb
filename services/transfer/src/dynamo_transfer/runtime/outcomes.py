"""Each attempt's outcome (a copy or a deletion, from any backend), recorded once: the task
moves on (done, retry later, or held), its history and event are written in the same
transaction."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from dynamo_common.messages import transfer as tr
from dynamo_common.messages.registry import TransferEvent
from dynamo_transfer.backends.base import Result
from dynamo_transfer.repository import store
from dynamo_transfer.runtime.support import TRANSIENT, now_utc, outbox_event
from dynamo_transfer.service.retry import Failure, after_failure, tally
from dynamo_transfer.service.sources import block_of, sources_left
from dynamo_transfer.service.states import Kind, State, transition

if TYPE_CHECKING:
    from dynamo_transfer.runtime.core import TransferRuntime

log = logging.getLogger("dynamo.transfer")


async def record_result(rt: TransferRuntime, result: Result) -> None:
    """Record one attempt's outcome; retried while the database is unreachable, because
    a lost outcome would leave the file submitted until the next leader looks at it."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(TRANSIENT),
        wait=wait_exponential(multiplier=0.2, max=5),
        stop=stop_after_delay(120),
        reraise=True,
    ):
        with attempt:
            await _record(rt, result)
    rt.relay_wakeup.set()
    rt.schedule_wakeup.set()
    if result.ok:
        rt.report_wakeup.set()


async def _record(rt: TransferRuntime, result: Result) -> None:
    now = now_utc()
    async with rt.pool.acquire() as conn, conn.transaction():
        task = await store.task_for_update(conn, result.task_id)
        if task is None or task.state is not State.SUBMITTED or task.job_id != result.job_id:
            # A late or repeated outcome (a second poll, a copy settled by recovery).
            log.info(
                "outcome ignored",
                extra={"task_id": result.task_id, "state": task.state if task else None},
            )
            return
        event: tuple[str, BaseModel]
        if result.ok:
            transition(task.state, State.DONE)
            await store.set_done(conn, task.id, result.moved, now, result.note)
            await store.insert_history(
                conn,
                task,
                result="done",
                error=result.note,
                started=result.started,
                finished=now,
                duration=result.duration,
                moved=result.moved,
            )
            event = (
                TransferEvent.FILE_DONE,
                tr.FileDone(
                    kind=task.kind.value,
                    lfn=task.lfn,
                    source=task.source,
                    site=task.site,
                    bytes=result.moved,
                    duration=result.duration,
                    task_id=task.id,
                ),
            )
        else:
            failure = result.failure or Failure("the backend reported no reason")
            transition(task.state, State.FAILED)
            attempts = task.attempts + 1
            failures, ruled_out = tally(task.failures, task.ruled_out, task.source, failure)
            if task.kind is Kind.TRANSFER:
                block = block_of(rt.readmodel.model, task.dataset, task.block)
                left = sources_left(block, task.site, ruled_out)
            else:
                left = 1
            s = rt.settings
            decision = after_failure(
                failure,
                attempts,
                s.max_attempts,
                left,
                s.retry_base_seconds,
                s.retry_max_seconds,
                task.id,
            )
            transition(State.FAILED, decision.state)
            await store.set_failed(
                conn,
                task.id,
                state=decision.state,
                reason=decision.reason,
                attempts=attempts,
                failures=failures,
                ruled_out=ruled_out,
                not_before=now + timedelta(seconds=decision.delay),
                now=now,
            )
            await store.insert_history(
                conn,
                task,
                result="failed",
                error=failure.error,
                started=result.started,
                finished=now,
                duration=result.duration,
                moved=0,
            )
            event = (
                TransferEvent.FILE_FAILED,
                tr.FileFailed(
                    kind=task.kind.value,
                    lfn=task.lfn,
                    source=task.source,
                    site=task.site,
                    error=decision.reason,
                    attempts=attempts,
                    state=decision.state.value,
                    task_id=task.id,
                ),
            )
            log.info(
                "attempt failed",
                extra={"task_id": task.id, "state": decision.state, "error": failure.error},
            )
        await store.add_events(conn, [outbox_event(event[0], event[1], task.job_id)], now)
