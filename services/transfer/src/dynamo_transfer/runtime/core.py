"""The runtime object: what the service's lifespan owns (pool, bus, read model, storage),
the state its parts share, and leadership (who runs the queue, and the leader's loops)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from dynamo_common.bus.base import Bus
from dynamo_common.messages import transfer as tr
from dynamo_common.messages.envelope import Envelope
from dynamo_common.readmodel import ReadModelClient
from dynamo_common.storage import Storage
from dynamo_transfer.backends.base import Backend, Result
from dynamo_transfer.inventory import InventoryClient
from dynamo_transfer.repository import store
from dynamo_transfer.runtime import intake, outcomes, polling, recovery, relay
from dynamo_transfer.runtime.deletions import Deletions
from dynamo_transfer.runtime.reports import Reporter
from dynamo_transfer.runtime.scheduler import Scheduler
from dynamo_transfer.runtime.support import TRANSIENT, run_forever, within
from dynamo_transfer.service.pfns import Pfns
from dynamo_transfer.settings import TransferSettings

log = logging.getLogger("dynamo.transfer")


@dataclass
class TransferRuntime:
    settings: TransferSettings
    pool: asyncpg.Pool
    bus: Bus
    readmodel: ReadModelClient
    inventory: InventoryClient
    storage: Storage
    dsn: str
    make_backend: Callable[[TransferRuntime], Backend]
    pfns: Pfns = field(default_factory=Pfns)
    backend: Backend | None = None
    leader: bool = False
    schedule_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    report_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    relay_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    # The parts that keep state between their rounds.
    scheduler: Scheduler = field(init=False, repr=False)
    deletions: Deletions = field(init=False, repr=False)
    reporter: Reporter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.scheduler = Scheduler(self)
        self.deletions = Deletions(self)
        self.reporter = Reporter(self)

    @property
    def preference(self) -> list[str]:
        return self.settings.protocol_preference

    async def handle_command(self, envelope: Envelope) -> tr.TransferCommandReply:
        return await intake.handle_command(self, envelope)

    async def record_result(self, result: Result) -> None:
        """Where backends and deletions send each attempt's outcome."""
        await outcomes.record_result(self, result)

    async def relay_loop(self) -> None:
        await relay.relay_loop(self)

    async def leader_loop(self) -> None:
        """Compete for the leader lock; while held, run the queue."""
        while True:
            try:
                conn = await asyncpg.connect(self.dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("leader: cannot connect: %s", exc)
                await asyncio.sleep(1.0)
                continue
            try:
                # A standby polls: there is no event to wait on across processes.
                while not await store.try_leader_lock(conn):  # noqa: ASYNC110
                    await asyncio.sleep(self.settings.poll_interval)
                await self._lead(conn)
            except TRANSIENT as exc:
                log.warning("leader: interrupted: %r", exc)
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("leader: failed; starting over")
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await within(2.0, conn.close())

    async def _lead(self, lock_conn: asyncpg.Connection) -> None:
        backend = self.make_backend(self)
        self.backend = backend
        self.leader = True
        log.info("leader: running the queue (backend %s)", backend.name)
        s = self.settings
        try:
            await recovery.recover(self)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._watch_lock(lock_conn))
                group.create_task(
                    run_forever(
                        self.scheduler.once, self.schedule_wakeup, "scheduler", s.poll_interval
                    )
                )
                group.create_task(
                    run_forever(
                        self.reporter.once,
                        self.report_wakeup,
                        "reporter",
                        s.progress_interval or s.poll_interval,
                    )
                )
                if backend.uses_jobs:
                    poll = functools.partial(polling.poll_once, self)
                    group.create_task(run_forever(poll, None, "poller", s.poll_interval))
        finally:
            self.leader = False
            await self.deletions.stop()
            await backend.close()
            self.backend = None

    async def _watch_lock(self, conn: asyncpg.Connection) -> None:
        # Losing the lock's connection means another instance may lead already: stop.
        while True:
            await asyncio.sleep(2.0)
            await within(10.0, store.ping(conn))
