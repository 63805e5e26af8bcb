"""The event outbox's relay. Every instance may relay: rows are claimed with SKIP LOCKED, so
none is published by two at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from dynamo_common.messages.envelope import Envelope
from dynamo_transfer.repository import store
from dynamo_transfer.runtime.support import TRANSIENT, now_utc, within

if TYPE_CHECKING:
    from dynamo_transfer.runtime.core import TransferRuntime

log = logging.getLogger("dynamo.transfer")

_PRUNE_EVERY = 600.0  # seconds


async def relay_loop(rt: TransferRuntime) -> None:
    """Publish committed events as they come (``relay_wakeup``), and prune old command
    records and published events now and then."""
    loop = asyncio.get_running_loop()
    last_prune = loop.time()
    while True:
        try:
            if loop.time() - last_prune > _PRUNE_EVERY:
                last_prune = loop.time()
                await prune(rt)
            published = await relay_once(rt)
            if published:
                continue
        except TRANSIENT as exc:
            log.warning("relay: %r", exc)
        except Exception:
            log.exception("relay failed")
        rt.relay_wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await within(rt.settings.relay_poll_interval, rt.relay_wakeup.wait())


async def prune(rt: TransferRuntime) -> None:
    now = now_utc()
    async with rt.pool.acquire() as conn:
        await store.prune_commands(conn, now - timedelta(days=rt.settings.command_retention_days))
        await store.prune_outbox(conn, now - timedelta(days=1))


async def relay_once(rt: TransferRuntime, limit: int = 500) -> int:
    async with rt.pool.acquire() as conn, conn.transaction():
        rows = await store.claim_unpublished(conn, limit)
        if not rows:
            return 0
        await rt.bus.publish("events", [Envelope.from_json(raw) for _, raw in rows])
        await store.mark_published(conn, [i for i, _ in rows])
    return len(rows)
