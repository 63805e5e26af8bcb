"""The leader's scheduler: new tasks get a source and PFNs (or are held with the reason),
then queued ones go out in batches per link: transfers to the backend, deletions to
``Deletions``."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg

from dynamo_common.model.objects import Inventory
from dynamo_transfer.repository import store
from dynamo_transfer.repository.store import TaskRow
from dynamo_transfer.runtime.support import now_utc
from dynamo_transfer.service.batching import Caps, plan_batches
from dynamo_transfer.service.sources import (
    NoSource,
    PfnFunc,
    block_of,
    choose_source,
    deletion_target,
)
from dynamo_transfer.service.states import Kind, State, transition

if TYPE_CHECKING:
    from dynamo_transfer.runtime.core import TransferRuntime

log = logging.getLogger("dynamo.transfer")

_NEW_BATCH = 2000


class Scheduler:
    def __init__(self, rt: TransferRuntime) -> None:
        self._rt = rt
        # Jobs being submitted right now (from before their intent commits until the
        # backend answers): the reconciler leaves them alone, or it would submit them twice.
        self.submitting: set[str] = set()

    async def once(self) -> float | None:
        """One round; the seconds until the next retry falls due, if any."""
        rt = self._rt
        # A full batch of new tasks means more are waiting: they are placed and submitted
        # batch after batch now. Returning instead would leave them until the next wakeup or
        # poll_interval, i.e. a large request handed over _NEW_BATCH files per poll_interval.
        while True:
            now = now_utc()
            model = rt.readmodel.model
            async with rt.pool.acquire() as conn:
                await store.release_due_retries(conn, now)
                fresh = await store.tasks_in_state(conn, State.NEW, limit=_NEW_BATCH)
                if fresh:
                    placed: list[store.Placement] = []
                    async with conn.transaction():
                        for task in fresh:
                            where = placement(model, task, rt.preference, rt.pfns)
                            if isinstance(where, str):
                                await _hold(conn, task, where, now)
                            else:
                                transition(task.state, State.QUEUED)
                                placed.append(where)
                        await store.set_queued(conn, placed, now)
            await self._submit_transfers()
            await rt.deletions.submit()
            if len(fresh) < _NEW_BATCH:
                return await self._next_retry_in()

    async def _next_retry_in(self) -> float | None:
        async with self._rt.pool.acquire() as conn:
            due = await store.next_retry_due(conn)
        if due is None:
            return None
        wait: float = (due - now_utc()).total_seconds()
        return max(0.0, wait)

    async def _submit_transfers(self) -> None:
        rt = self._rt
        backend = rt.backend
        assert backend is not None
        s = rt.settings
        caps = Caps(s.max_active_per_link, s.max_active_total, s.max_batch)
        async with rt.pool.acquire() as conn:
            active = await store.active_counts(conn, Kind.TRANSFER)
            room = caps.total - sum(active.values())
            if room <= 0:
                return
            candidates = await store.queued_candidates(conn, Kind.TRANSFER, caps.per_link)
        for batch in plan_batches(candidates, active, caps):
            job_id = f"dynamo-{uuid.uuid4()}"
            self.submitting.add(job_id)
            try:
                now = now_utc()
                async with rt.pool.acquire() as conn, conn.transaction():
                    rows = await store.mark_submitted(conn, batch.task_ids, job_id, now)
                    if rows and backend.uses_jobs:
                        await store.insert_job(conn, job_id, backend.name, batch.link, now)
                if not rows:
                    continue
                try:
                    external = await backend.submit(job_id, batch.link, rows)
                except Exception as exc:
                    # The intent stays: the poller looks for the job and submits it if the
                    # backend never got it.
                    log.warning("submission of %s failed: %r", job_id, exc)
                    continue
                if external is not None:
                    async with rt.pool.acquire() as conn:
                        await store.set_job_submitted(conn, job_id, external, now_utc())
            finally:
                self.submitting.discard(job_id)


def placement(
    model: Inventory, task: TaskRow, preference: Sequence[str], pfn: PfnFunc
) -> store.Placement | str:
    """The source and PFNs of a new task, or why it must be held."""
    site = model.sites.get(task.site)
    if site is None:
        return f"unknown site {task.site!r}"
    if task.kind is Kind.DELETION:
        target = deletion_target(site, task.lfn, preference, pfn)
        if isinstance(target, NoSource):
            return target.reason
        protocol, dest_pfn = target
        return store.Placement(
            task.id, source=None, protocol=protocol, source_pfn=None, dest_pfn=dest_pfn, tape=False
        )
    block = block_of(model, task.dataset, task.block)
    if block is None:
        return f"block {task.dataset}#{task.block} is not in the inventory"
    choice = choose_source(
        block,
        site,
        task.lfn,
        failures=task.failures,
        ruled_out=task.ruled_out,
        preference=preference,
        pfn=pfn,
    )
    if isinstance(choice, NoSource):
        return choice.reason
    return store.Placement(
        task.id,
        source=choice.site,
        protocol=choice.protocol,
        source_pfn=choice.source_pfn,
        dest_pfn=choice.dest_pfn,
        tape=choice.tape,
    )


async def _hold(conn: asyncpg.Connection, task: TaskRow, reason: str, now: datetime) -> None:
    transition(task.state, State.HELD)
    await store.set_held(conn, task.id, reason, now)
    log.info("task held", extra={"task_id": task.id, "lfn": task.lfn, "reason": reason})
