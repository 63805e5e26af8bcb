"""The leader's reports to the inventory on the block replicas being built or removed:
completion and removal as soon as they happen, progress at most every
``progress_interval``."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from dynamo_common.bus.base import RequestTimeout
from dynamo_common.messages import inventory as inv
from dynamo_common.messages import transfer as tr
from dynamo_common.messages.registry import InventoryCommand, TransferEvent
from dynamo_common.model.objects import Inventory
from dynamo_transfer.inventory import command_id
from dynamo_transfer.repository import store
from dynamo_transfer.runtime.support import now_utc, outbox_event
from dynamo_transfer.service.reports import progress, whole
from dynamo_transfer.service.sources import block_of
from dynamo_transfer.service.states import Kind

if TYPE_CHECKING:
    from dynamo_transfer.runtime.core import TransferRuntime

log = logging.getLogger("dynamo.transfer")


class Reporter:
    def __init__(self, rt: TransferRuntime) -> None:
        self._rt = rt
        self._last_progress = float("-inf")

    async def once(self) -> float | None:
        """Report what became of the active replicas; the seconds until progress is due
        again. A finished file wakes this loop, and one command per file would flood the
        inventory: hence the interval for progress."""
        rt = self._rt
        async with rt.pool.acquire() as conn:
            rows = await store.active_replicas(conn)
        model = rt.readmodel.model
        clock = asyncio.get_running_loop().time()
        progress_due = clock - self._last_progress >= rt.settings.progress_interval
        if progress_due:
            self._last_progress = clock
        for row in rows:
            finished = row.open_tasks == 0 and row.files_done >= row.files_total
            try:
                if row.kind is Kind.DELETION:
                    if finished:
                        await self._deleted(row)
                elif finished:
                    await self._complete(row, model)
                elif progress_due and row.files_done > row.reported_files:
                    await self._progress(row, model)
            except RequestTimeout as exc:
                log.warning("inventory did not answer: %s", exc)
                return None
        if progress_due:
            return None
        return rt.settings.progress_interval - (clock - self._last_progress)

    async def _complete(self, row: store.ReplicaRow, model: Inventory) -> None:
        rt = self._rt
        is_whole = whole(block_of(model, row.dataset, row.block), row.bytes_total, row.files_total)
        update = inv.BlockReplicaUpdate(
            dataset=row.dataset,
            block=row.block,
            site=row.site,
            complete=is_whole,
            size=None if is_whole else row.bytes_done,
            num_files=None if is_whole else row.files_done,
        )
        reply = await rt.inventory.command(
            InventoryCommand.UPDATE_REPLICAS,
            inv.UpdateReplicas(block_replicas=[update]),
            command_id("complete", row.id),
        )
        now = now_utc()
        async with rt.pool.acquire() as conn, conn.transaction():
            if reply.status == "accepted":
                note = None if is_whole else "the block changed while its files were copied"
                if await store.close_replica(conn, row.id, "complete", note, now):
                    completed = tr.ReplicaCompleted(
                        dataset=row.dataset,
                        block=row.block,
                        site=row.site,
                        bytes=row.bytes_done,
                        files=row.files_done,
                    )
                    await store.add_events(
                        conn, [outbox_event(TransferEvent.REPLICA_COMPLETED, completed)], now
                    )
            else:
                log.warning(
                    "inventory refused completion of %s#%s at %s: %s",
                    row.dataset,
                    row.block,
                    row.site,
                    reply.reason,
                )
                await store.close_replica(
                    conn, row.id, "cancelled", f"the inventory refused: {reply.reason}", now
                )
        rt.relay_wakeup.set()

    async def _progress(self, row: store.ReplicaRow, model: Inventory) -> None:
        rt = self._rt
        report = progress(model, row.dataset, row.block, row.site, row.bytes_done, row.files_done)
        size, files = report.size, report.files
        if not report.news:
            async with rt.pool.acquire() as conn:
                await store.set_reported(conn, row.id, files, size, now_utc())
            return
        update = inv.BlockReplicaUpdate(
            dataset=row.dataset, block=row.block, site=row.site, size=size, num_files=files
        )
        reply = await rt.inventory.command(
            InventoryCommand.UPDATE_REPLICAS,
            inv.UpdateReplicas(block_replicas=[update]),
            command_id("progress", row.id, files, size),
        )
        now = now_utc()
        async with rt.pool.acquire() as conn, conn.transaction():
            await store.set_reported(conn, row.id, files, size, now)
            if reply.status == "accepted":
                advanced = tr.ReplicaProgress(
                    dataset=row.dataset,
                    block=row.block,
                    site=row.site,
                    bytes_done=row.bytes_done,
                    bytes_total=row.bytes_total,
                    files_done=row.files_done,
                    files_total=row.files_total,
                )
                await store.add_events(
                    conn, [outbox_event(TransferEvent.REPLICA_PROGRESS, advanced)], now
                )
            else:
                log.warning(
                    "inventory refused progress of %s#%s at %s: %s",
                    row.dataset,
                    row.block,
                    row.site,
                    reply.reason,
                )
        rt.relay_wakeup.set()

    async def _deleted(self, row: store.ReplicaRow) -> None:
        rt = self._rt
        key = inv.BlockReplicaKey(dataset=row.dataset, block=row.block, site=row.site)
        reply = await rt.inventory.command(
            InventoryCommand.DELETE_REPLICAS,
            inv.DeleteReplicas(block_replicas=[key]),
            command_id("delete", row.id),
        )
        note = None
        if reply.status == "rejected":
            # Already gone from the inventory (or its block is): the files are gone either way.
            note = f"the inventory said: {reply.reason}"
        now = now_utc()
        async with rt.pool.acquire() as conn, conn.transaction():
            if await store.close_replica(conn, row.id, "deleted", note, now):
                done = tr.DeletionDone(
                    dataset=row.dataset, block=row.block, site=row.site, files=row.files_done
                )
                await store.add_events(conn, [outbox_event(TransferEvent.DELETION_DONE, done)], now)
        rt.relay_wakeup.set()
