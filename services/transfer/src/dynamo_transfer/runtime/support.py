"""What the runtime's parts share: the clock, a timeout that honours cancellation, the
errors a loop survives, the loop itself, and outbox events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import asyncpg
from pydantic import BaseModel

from dynamo_common.bus.base import BusError
from dynamo_common.messages.envelope import Envelope
from dynamo_transfer.inventory import SOURCE

log = logging.getLogger("dynamo.transfer")

TRANSIENT = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, BusError)
T = TypeVar("T")


def now_utc() -> datetime:
    return datetime.now(UTC)


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """``asyncio.wait_for`` without its Python 3.11 flaw (CPython gh-86296): there, a
    cancellation that arrives just as the awaited thing completes is swallowed, and a loop
    that swallows its cancellation never stops (the service's shutdown then waits for it
    forever, e.g. a wakeup set by a copy finishing while the leader is being cancelled)."""
    async with asyncio.timeout(seconds):
        return await awaitable


async def run_forever(
    once: Callable[[], Awaitable[float | None]],
    wakeup: asyncio.Event | None,
    name: str,
    period: float,
) -> None:
    """Run ``once`` every ``period`` seconds, sooner when it asks (it returns the seconds
    until it has work again) or when ``wakeup`` is set."""
    while True:
        if wakeup is not None:
            wakeup.clear()
        delay = period
        try:
            sooner = await once()
            if sooner is not None:
                delay = max(0.05, min(delay, sooner))
        except TRANSIENT as exc:
            log.warning("%s: %r", name, exc)
        except Exception:
            # A loop that dies silently stops the whole queue: log and go on.
            log.exception("%s failed", name)
        if wakeup is None:
            await asyncio.sleep(delay)
        else:
            with contextlib.suppress(TimeoutError):
                await within(delay, wakeup.wait())


def outbox_event(type_: str, data: BaseModel, correlation: str | None = None) -> tuple[str, str]:
    """(type, envelope JSON) as ``store.add_events`` writes it to the outbox."""
    envelope = Envelope(
        type=type_, source=SOURCE, correlation_id=correlation, data=data.model_dump(mode="json")
    )
    return type_, envelope.to_json().decode()
