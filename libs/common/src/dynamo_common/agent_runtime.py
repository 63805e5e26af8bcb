"""What the agents that decide in cycles (the dealer, detox) share at run time.

An agent queues cycles (on a schedule and on demand), runs them one at a time against a read
model caught up with the inventory, records each cycle in its own database and announces it,
then sends the commands the cycle decided. A command that is not answered stays pending and
the maintenance loop sends it again under the same id, so a receiver that already applied it
answers from its record.

``AgentRuntime`` holds that machinery; a service's runtime adds its own cycle (the domain
call, its tables, its commands) through a few hooks. The pieces that need no service
(``bisect``, ``due``, ``send_in_order``, ``CycleTasks``) are plain functions and classes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import asyncpg
import httpx
from pydantic import BaseModel

from dynamo_common.bus.announce import announce
from dynamo_common.bus.base import Bus, RequestTimeout
from dynamo_common.messages.envelope import Envelope
from dynamo_common.model.objects import Inventory
from dynamo_common.readmodel import ReadModelClient

DAY = 86400.0
SCHEDULE_TICK = 60.0
"""The longest the schedule sleeps between looks at the database."""
ERROR_LENGTH = 2000
"""The most of a failure's message a cycle's announcement carries."""

T = TypeVar("T")
C = TypeVar("C")
A = TypeVar("A")


class CycleBusy(Exception):
    """A cycle that may not run twice at once is already queued or running."""


class NotReady(Exception):
    """The read model is not loaded (or cannot catch up with the inventory)."""


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def due(last: datetime | None, now: float, interval: float) -> bool:
    """Whether a scheduled cycle last queued at ``last`` (None: never) is due at ``now``."""
    return last is None or (now - last.timestamp()) >= interval


def failure_text(exc: BaseException) -> str:
    """A failed cycle's error as recorded and announced."""
    return f"{type(exc).__name__}: {exc}"


async def bisect(
    items: list[T],
    key: str,
    send: Callable[[list[T], str], Awaitable[str | None]],
    command_id: Callable[[str], str],
) -> tuple[list[T], list[tuple[T, str]]]:
    """Send ``items`` as one command (``send`` answers why it was refused, or None); when
    refused, halves are sent apart until the refused items are isolated (one stale item must
    not hold back a batch of thousands). (the items sent, the items refused with the reason).

    Every command's id derives from ``key`` and its place in the halving, so a round sent
    again after a crash asks the same questions under the same ids."""
    if not items:
        return [], []
    refusal = await send(items, command_id(key))
    if refusal is None:
        return items, []
    if len(items) == 1:
        return [], [(items[0], refusal)]
    middle = len(items) // 2
    first = await bisect(items[:middle], f"{key}/0", send, command_id)
    second = await bisect(items[middle:], f"{key}/1", send, command_id)
    return first[0] + second[0], first[1] + second[1]


async def send_in_order(
    commands: Sequence[C],
    send: Callable[[C], Awaitable[A]],
    cycle_of: Callable[[C], object],
    log: logging.Logger,
) -> list[A]:
    """Send ``commands`` one after the other; the answers of those answered. The first one not
    answered in time ends the round: it and the ones after it stay pending, in their order,
    for the next round."""
    answers: list[A] = []
    for command in commands:
        try:
            answers.append(await send(command))
        except RequestTimeout as exc:
            # Left pending: the retry loop sends it again under the same ids.
            log.warning("commands of cycle %s not answered yet: %s", cycle_of(command), exc)
            break
    return answers


class CycleTasks:
    """The cycles running in the background, and whether none is (tests and shutdown wait
    until then)."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()
        self.idle = asyncio.Event()
        self.idle.set()

    def spawn(self, work: Awaitable[None], name: str) -> None:
        async def run() -> None:
            await work

        task = asyncio.create_task(run(), name=name)
        self.tasks.add(task)
        self.idle.clear()

        def done(finished: asyncio.Task[None]) -> None:
            self.tasks.discard(finished)
            if not self.tasks:
                self.idle.set()

        task.add_done_callback(done)

    async def wait_idle(self) -> None:
        # A cycle queued meanwhile clears the event again before this wakes: look again.
        while not self.idle.is_set():
            await self.idle.wait()
            await asyncio.sleep(0)

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass(frozen=True)
class Scheduled:
    """One kind of cycle the schedule runs: ``last`` says when it was last queued, ``start``
    queues one (raising ``CycleBusy`` when one is queued or running already)."""

    name: str
    last: Callable[[], Awaitable[datetime | None]]
    start: Callable[[], Awaitable[object]]


async def start_due(
    cycles: Sequence[Scheduled],
    interval: float,
    clock: Callable[[], float],
    log: logging.Logger,
) -> None:
    """Queue each of ``cycles`` that is due. One already queued or running is no error; one
    that cannot be looked at or queued is logged and does not keep the others from theirs."""
    for cycle in cycles:
        try:
            if due(await cycle.last(), clock(), interval):
                await cycle.start()
        except CycleBusy:
            pass
        except Exception:
            log.exception("scheduling %s failed", cycle.name)


class AgentSettings(Protocol):
    @property
    def inventory_url(self) -> str: ...
    @property
    def read_model_timeout(self) -> float: ...
    @property
    def command_reply_timeout(self) -> float: ...
    @property
    def command_retry_interval(self) -> float: ...
    @property
    def cycle_interval(self) -> float: ...


S = TypeVar("S", bound=AgentSettings)


class AgentStore(Protocol):
    """What the shared machinery needs of an agent's repository (its module fits)."""

    async def fail_cycle(
        self, conn: Any, cycle_id: int, error: str, finished: datetime, /
    ) -> None: ...

    async def pending_commands(self, conn: Any, cycle_id: int | None, /) -> Sequence[Any]: ...


@dataclass(kw_only=True)
class AgentRuntime(Generic[S]):
    """The shared part of an agent's runtime. A subclass names itself (``name``, ``source``,
    ``log``, ``cycle_finished``, ``records``) and fills the hooks: ``_scheduled`` (what the
    schedule runs), ``_command_cycle`` and ``_send_command`` (its commands); ``_commands_sent``
    and ``_maintain`` may add work after a round of commands and to the maintenance loop."""

    name: ClassVar[str]
    """Names the cycles' tasks (``<name>-cycle-<id>``)."""
    source: ClassVar[str]
    """The source of the agent's commands and events."""
    log: ClassVar[logging.Logger]
    cycle_finished: ClassVar[StrEnum]
    """The event that announces a finished (or failed) cycle."""
    records: ClassVar[AgentStore]
    """Its cycles' and commands' records."""

    settings: S
    pool: asyncpg.Pool
    bus: Bus
    readmodel: ReadModelClient
    http: httpx.AsyncClient
    clock: Callable[[], float] = time.time
    cycle_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    cycles: CycleTasks = field(default_factory=CycleTasks)

    # ----------------------------------------------------------------------- read model

    async def model(self) -> Inventory:
        """The read model, caught up with what the inventory has committed so far."""
        if not self.readmodel.ready.is_set():
            raise NotReady("the inventory read model is not loaded yet")
        seq = self.readmodel.seq
        try:
            response = await self.http.get(
                f"{self.settings.inventory_url}/api/v1/events", params={"after": seq, "limit": 1}
            )
            body = response.json()
            last = int(body.get("last_seq", seq)) if isinstance(body, dict) else seq
        except (httpx.HTTPError, ValueError) as exc:
            self.log.warning("cannot ask the inventory for its sequence: %s", exc)
            last = seq
        try:
            await self.readmodel.wait_for_seq(last, timeout=self.settings.read_model_timeout)
        except TimeoutError as exc:
            raise NotReady(str(exc)) from None
        return self.readmodel.model

    # ------------------------------------------------------------------------- cycles

    def _spawn(self, cycle_id: int, work: Awaitable[None]) -> None:
        self.cycles.spawn(work, f"{self.name}-cycle-{cycle_id}")

    async def wait_idle(self) -> None:
        """Until every queued cycle has been decided, recorded and its commands sent."""
        await self.cycles.wait_idle()

    async def _failed(
        self,
        cycle_id: int,
        started: float,
        exc: Exception,
        report: Callable[[str, datetime, datetime], BaseModel],
    ) -> None:
        """Record and announce a failed cycle; ``report`` makes the announcement from the
        error, the start and the end."""
        finished = self.clock()
        error = failure_text(exc)
        try:
            async with self.pool.acquire() as conn:
                await self.records.fail_cycle(conn, cycle_id, error, utc(finished))
            await self._publish(
                self.cycle_finished, report(error[:ERROR_LENGTH], utc(started), utc(finished))
            )
        except Exception:
            self.log.exception("could not record the failure of cycle %s", cycle_id)

    async def _publish(self, event: StrEnum, body: BaseModel) -> None:
        await announce(self.bus, self.source, event.value, body)

    # ----------------------------------------------------------------------- commands

    async def send_pending(self, cycle_id: int | None = None) -> None:
        """Send the commands of cycles that have not been sent (all cycles, or one)."""
        async with self.send_lock:
            async with self.pool.acquire() as conn:
                pending = await self.records.pending_commands(conn, cycle_id)
            answers = await send_in_order(
                pending, self._send_command, self._command_cycle, self.log
            )
        await self._commands_sent(answers)

    def _command_cycle(self, command: Any) -> object:
        raise NotImplementedError

    async def _send_command(self, command: Any) -> Any:
        """Send one pending command and record its answer (raising ``RequestTimeout``, with
        nothing recorded, when it is not answered in time)."""
        raise NotImplementedError

    async def _commands_sent(self, answers: list[Any]) -> None:
        """After a round of commands (outside the send lock)."""

    async def _request(self, type_: str, body: BaseModel, cid: str) -> Envelope:
        envelope = Envelope(
            id=cid,
            type=type_,
            source=self.source,
            data=body.model_dump(mode="json", exclude_none=True),
        )
        return await self.bus.request(envelope, timeout=self.settings.command_reply_timeout)

    # --------------------------------------------------------------- background loops

    def _scheduled(self) -> Sequence[Scheduled]:
        raise NotImplementedError

    async def schedule_loop(self) -> None:
        """Queue each scheduled cycle when ``cycle_interval`` seconds have passed since the
        last one was queued (0: on demand only)."""
        interval = self.settings.cycle_interval
        if interval <= 0 or not self._scheduled():
            return
        await self.readmodel.ready.wait()
        while True:
            await start_due(self._scheduled(), interval, self.clock, self.log)
            await asyncio.sleep(min(interval, SCHEDULE_TICK))

    async def maintenance_loop(self) -> None:
        """Resend commands left unsent (and whatever ``_maintain`` adds)."""
        while True:
            with contextlib.suppress(Exception):
                if self.readmodel.ready.is_set():
                    await self.send_pending()
            await self._maintain()
            await asyncio.sleep(self.settings.command_retry_interval)

    async def _maintain(self) -> None:
        """More upkeep for the maintenance loop; it must not raise."""

    async def stop(self) -> None:
        await self.cycles.stop()
