"""The inventory's moving parts at run time: the writer (one command at a time, one
transaction each), the outbox relay, and the catch-up that keeps a standby's memory current."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
from pydantic import ValidationError

from dynamo_common.bus.base import Bus, BusError
from dynamo_common.messages import inventory as inv
from dynamo_common.messages.envelope import Envelope
from dynamo_common.messages.registry import UnknownMessageType, command_model
from dynamo_common.model.apply import apply_event
from dynamo_common.model.objects import Inventory
from dynamo_common.model.snapshot import dump_lines
from dynamo_inventory.repository import reader, writer
from dynamo_inventory.service.planner import (
    CommandRejected,
    IdCounters,
    PlanContext,
    PlannedEvent,
    lfns_referenced,
    plan,
)
from dynamo_inventory.service.usage import UsageCache
from dynamo_inventory.settings import InventorySettings

log = logging.getLogger("dynamo.inventory")
SOURCE = "/dynamo/inventory"
_RELAY_LOCK_KEY = 0x64796E616D6F  # "dynamo": one relay publishes at a time
# What the background loops survive. asyncpg.InterfaceError ("connection is closed") is what a
# connection dropped while idle (database restart) raises on its next query; BusError is what a
# publish raises while RabbitMQ is away. Either one escaping would end the loop silently.
_TRANSIENT = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, BusError)


@dataclass
class InventoryRuntime:
    settings: InventorySettings
    pool: asyncpg.Pool
    bus: Bus
    model: Inventory
    ids: IdCounters
    dsn: str
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    relay_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    recent_replies: collections.OrderedDict[str, str] = field(
        default_factory=collections.OrderedDict
    )
    check_condition: Callable[[str], str | None] | None = None
    usage: UsageCache = field(default_factory=UsageCache)
    commands_applied: int = 0

    # ------------------------------------------------------------------------ commands

    async def handle_command(self, envelope: Envelope) -> inv.CommandReply:
        """Apply one command exactly once and return its reply (the recorded one for a
        command seen before)."""
        async with self.write_lock:
            cached = self.recent_replies.get(envelope.id)
            if cached is not None:
                return inv.CommandReply.model_validate_json(cached)
            async with self.pool.acquire() as conn:
                recorded = await writer.recorded_reply(conn, envelope.id)
            if recorded is not None:
                self._remember(envelope.id, recorded)
                return inv.CommandReply.model_validate_json(recorded)
            try:
                command = command_model(envelope.type).model_validate(envelope.data)
            except UnknownMessageType as exc:
                return await self._reject(envelope, str(exc), [])
            except ValidationError as exc:
                errors = [
                    inv.FieldError(loc=list(e["loc"]), message=e["msg"]) for e in exc.errors()
                ]
                return await self._reject(envelope, "the command is malformed", errors)
            try:
                return await self._apply(envelope, command)
            except CommandRejected as exc:
                return await self._reject(envelope, exc.reason, exc.errors)
            except asyncpg.DataError as exc:
                # Values the contract let through but PostgreSQL cannot hold (a NUL character
                # in a name, a number out of range): refused like any other bad input, instead
                # of failing on every redelivery until the command is dead-lettered.
                return await self._reject(envelope, f"invalid value: {exc}", [])
            except asyncpg.IntegrityConstraintViolationError as exc:
                # The planner cannot see files (not in memory): the database's constraints
                # catch what it cannot, and the transaction left nothing behind.
                detail = getattr(exc, "detail", None) or str(exc)
                return await self._reject(envelope, f"conflict: {detail}", [])

    async def _apply(self, envelope: Envelope, command: object) -> inv.CommandReply:
        from pydantic import BaseModel

        assert isinstance(command, BaseModel)
        now = datetime.now(UTC)
        async with self.pool.acquire() as conn, conn.transaction():
            last_seq = await writer.locked_seq(conn)
            if last_seq != self.model.seq:
                # Another instance wrote since we last looked (we were a standby).
                await self._catch_up_on(conn)
            files = await reader.files_by_lfn(conn, lfns_referenced(envelope.type, command))
            ctx = PlanContext(
                model=self.model,
                now=now,
                ids=self.ids,
                files=files,
                check_condition=self.check_condition,
            )
            events = plan(envelope.type, command, ctx)
            first = self.model.seq + 1
            rows = []
            for offset, event in enumerate(events):
                out = Envelope(
                    type=event.type.value,
                    source=SOURCE,
                    seq=first + offset,
                    time=now,
                    correlation_id=envelope.id,
                    data=event.data.model_dump(mode="json"),
                )
                rows.append((out.seq or 0, out.type, now, out.to_json().decode()))
            last = first + len(events) - 1
            reply = inv.CommandReply(
                command_id=envelope.id,
                status="accepted",
                first_seq=first if events else None,
                last_seq=last if events else None,
                events=len(events),
            )
            if events:
                await writer.persist(conn, events, self.model)
                await writer.append_events(conn, rows, last)
            reply_json = reply.model_dump_json()
            await writer.record_command(conn, envelope.id, envelope.type, now, reply_json)
        self._apply_to_memory(events, last)
        self._remember(envelope.id, reply_json)
        self.commands_applied += 1
        if events:
            self.relay_wakeup.set()
        return reply

    def _apply_to_memory(self, events: list[PlannedEvent], last: int) -> None:
        for event in events:
            apply_event(self.model, event.type, event.data)
        if events:
            self.model.seq = last

    async def _reject(
        self, envelope: Envelope, reason: str, errors: list[inv.FieldError]
    ) -> inv.CommandReply:
        reply = inv.CommandReply(
            command_id=envelope.id, status="rejected", reason=reason, errors=errors
        )
        reply_json = reply.model_dump_json()
        async with self.pool.acquire() as conn:
            await writer.record_command(
                conn, envelope.id, envelope.type, datetime.now(UTC), reply_json
            )
        self._remember(envelope.id, reply_json)
        log.info("command rejected", extra={"command_id": envelope.id, "reason": reason})
        return reply

    def _remember(self, command_id: str, reply_json: str) -> None:
        self.recent_replies[command_id] = reply_json
        while len(self.recent_replies) > 10_000:
            self.recent_replies.popitem(last=False)

    # ------------------------------------------------------------------------ snapshot

    async def snapshot_chunks(self, lines_per_chunk: int = 2000) -> tuple[int, list[bytes]]:
        """The whole model as NDJSON chunks, exactly at one sequence number.

        The write lock keeps commands from changing memory while the records are written, and
        yielding between chunks keeps the other requests (and health probes) answered while a
        large inventory is serialised. The chunks are built before streaming, so a slow client
        never holds the lock."""
        chunks: list[bytes] = []
        buffer: list[bytes] = []
        async with self.write_lock:
            seq = self.model.seq
            for line in dump_lines(self.model):
                buffer.append(line)
                if len(buffer) >= lines_per_chunk:
                    chunks.append(b"".join(buffer))
                    buffer.clear()
                    await asyncio.sleep(0)
        if buffer:
            chunks.append(b"".join(buffer))
        return seq, chunks

    # ------------------------------------------------------------------------ catch-up

    async def catch_up(self) -> int:
        """Apply committed events this instance has not applied yet (a standby follows the
        active writer through the shared event log)."""
        async with self.write_lock, self.pool.acquire() as conn:
            return await self._catch_up_on(conn)

    async def _catch_up_on(self, conn: asyncpg.Connection) -> int:
        applied = 0
        while True:
            rows = await reader.events_after(conn, self.model.seq, 5000)
            if not rows:
                break
            for seq, raw in rows:
                event = Envelope.from_json(raw)
                apply_event(self.model, event.type, event.data)
                self.model.seq = seq
                applied += 1
        if applied:
            self.ids = IdCounters.from_model(self.model)
        return applied

    async def catch_up_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.catch_up_interval)
            try:
                async with self.pool.acquire() as conn:
                    behind = await reader.current_seq(conn) != self.model.seq
                if behind:
                    await self.catch_up()
            except _TRANSIENT as exc:
                log.warning("catch-up failed: %s", exc)
            except Exception:
                log.exception("catch-up failed")

    # ---------------------------------------------------------------------------- relay

    async def relay_loop(self) -> None:
        """Publish committed events in sequence order, with confirms, then mark them.

        One relay runs at a time across instances (a session advisory lock on a dedicated
        connection); after a crash between the broker's confirm and the mark, the same events
        are published again: consumers recognise them by ``seq``."""
        while True:
            try:
                conn = await asyncpg.connect(self.dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("relay cannot connect: %s", exc)
                await asyncio.sleep(1.0)
                continue
            try:
                # A standby polls for the lock: there is no event to wait on across processes.
                while not await conn.fetchval(  # noqa: ASYNC110
                    "SELECT pg_try_advisory_lock($1)", _RELAY_LOCK_KEY
                ):
                    await asyncio.sleep(self.settings.relay_poll_interval)
                await self._relay_with(conn)
            except _TRANSIENT as exc:
                log.warning("relay interrupted: %r", exc)
                await asyncio.sleep(0.5)
            except Exception:
                # The relay must outlive any bug in one batch: a dead relay silently stops
                # every event while commands keep being accepted.
                log.exception("relay failed; restarting it")
                await asyncio.sleep(1.0)
            finally:
                await _close_quietly(conn)

    async def _relay_with(self, conn: asyncpg.Connection) -> None:
        last_prune = 0.0
        loop = asyncio.get_running_loop()
        while True:
            published = await self.relay_once(conn)
            if loop.time() - last_prune > 600:
                await self._prune(conn)
                last_prune = loop.time()
            if published:
                continue
            self.relay_wakeup.clear()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns when the event
            # is set as the task is cancelled, losing the cancellation, and the stop that
            # awaits this task waits forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.relay_poll_interval):
                    await self.relay_wakeup.wait()

    async def relay_once(self, conn: asyncpg.Connection) -> int:
        rows = await reader.unpublished_events(conn, self.settings.relay_batch)
        if not rows:
            return 0
        await self.bus.publish("events", [Envelope.from_json(raw) for _, raw in rows])
        await reader.mark_published(conn, [seq for seq, _ in rows])
        return len(rows)

    async def _prune(self, conn: asyncpg.Connection) -> None:
        now = datetime.now(UTC)
        await reader.prune_events(conn, now - timedelta(days=self.settings.event_retention_days))
        await reader.prune_commands(
            conn, now - timedelta(days=self.settings.command_retention_days)
        )


async def _close_quietly(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 2.0)
    except Exception:
        conn.terminate()
