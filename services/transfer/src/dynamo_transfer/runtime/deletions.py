"""Deletions run in this process whatever the transfer backend (gfal2): one asyncio task
per file, as many at once as the batches allow (``deletion_parallel``)."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

from dynamo_transfer.backends.deletion import delete_file
from dynamo_transfer.repository import store
from dynamo_transfer.repository.store import TaskRow
from dynamo_transfer.runtime.support import now_utc
from dynamo_transfer.service.batching import Caps, plan_batches
from dynamo_transfer.service.states import Kind

if TYPE_CHECKING:
    from dynamo_transfer.runtime.core import TransferRuntime


class Deletions:
    def __init__(self, rt: TransferRuntime) -> None:
        self._rt = rt
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self) -> None:
        """Start the queued deletions there is room for."""
        rt = self._rt
        s = rt.settings
        caps = Caps(s.max_active_per_link, s.deletion_parallel, s.max_batch)
        async with rt.pool.acquire() as conn:
            active = await store.active_counts(conn, Kind.DELETION)
            room = caps.total - sum(active.values())
            if room <= 0:
                return
            candidates = await store.queued_candidates(conn, Kind.DELETION, caps.per_link)
        for batch in plan_batches(candidates, active, caps):
            job_id = f"delete-{uuid.uuid4()}"
            async with rt.pool.acquire() as conn:
                rows = await store.mark_submitted(conn, batch.task_ids, job_id, now_utc())
            for row in rows:
                self.start(row)

    def start(self, task: TaskRow) -> None:
        """Delete the file of a submitted task in the background; its outcome is recorded."""
        job = asyncio.create_task(self._delete(task), name=f"delete:{task.id}")
        self._running.add(job)
        job.add_done_callback(self._running.discard)

    async def _delete(self, task: TaskRow) -> None:
        rt = self._rt
        site = rt.readmodel.model.sites.get(task.site)
        mapper = rt.pfns.mapper(site) if site is not None else None
        result = await delete_file(rt.storage, task, mapper)
        await rt.record_result(result)

    async def stop(self) -> None:
        """Cancel the deletions under way (leadership ends): they stay submitted, and the
        next leader starts them again."""
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
