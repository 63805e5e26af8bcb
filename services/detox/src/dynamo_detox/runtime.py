"""Detox at run time: cycles on a schedule and on demand, test runs, the record of each
cycle, and the commands that carry out a real cycle's deletions.

A cycle fetches what it needs from outside the read model first (locks, access records),
then decides in one synchronous call (``run_cycle``: the read model cannot change under it,
since events are applied by this same event loop), then records and sends. Cycles run one at
a time: they are CPU-bound and a second one would only make both slower.

One detox instance runs cycles (the scheduler looks at the database, so a restarted instance
does not run a cycle it has just run, and a partition never has two real cycles at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from pydantic import BaseModel

from dynamo_common.bus.announce import announce
from dynamo_common.bus.base import Bus, RequestTimeout
from dynamo_common.messages import detox as dx
from dynamo_common.messages import inventory as inv
from dynamo_common.messages import transfer as tr
from dynamo_common.messages.envelope import Envelope
from dynamo_common.messages.registry import DetoxEvent, InventoryCommand, TransferCommand
from dynamo_common.model.objects import Inventory
from dynamo_common.policy.detox import DetoxPolicy
from dynamo_common.policy.enforcer import EnforcerPolicy
from dynamo_common.policy.variables import AttributeProvider
from dynamo_common.readmodel import ReadModelClient
from dynamo_detox.repository import store
from dynamo_detox.service.commands import (
    Item,
    batches,
    command_id,
    file_deletions,
    owner_updates,
    plan_items,
    still_there,
)
from dynamo_detox.service.engine import CycleConfig, CycleOutcome, run_cycle
from dynamo_detox.service.popularity import PopularitySource
from dynamo_detox.service.providers import (
    EnforcerProvider,
    LockProvider,
    PopularityProvider,
    ProtectedSitesProvider,
    fill_attributes,
)
from dynamo_detox.settings import DetoxSettings

log = logging.getLogger("dynamo.detox")

SOURCE = "/dynamo/detox"
DAY = 86400.0


class CycleBusy(Exception):
    """A real cycle of the partition is already queued or running."""


class NotReady(Exception):
    """The read model is not loaded (or cannot catch up with the inventory)."""


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@dataclass
class DetoxRuntime:
    settings: DetoxSettings
    pool: asyncpg.Pool
    bus: Bus
    readmodel: ReadModelClient
    http: httpx.AsyncClient
    policies: dict[str, DetoxPolicy]
    """The configured policies, by partition: what the schedule runs."""
    enforcers: list[EnforcerPolicy]
    popularity: PopularitySource
    clock: Callable[[], float] = time.time
    cycle_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when no cycle is queued or running (tests and shutdown wait on it)."""

    def __post_init__(self) -> None:
        self.idle.set()

    # ------------------------------------------------------------------ submitting cycles

    async def submit(
        self,
        policy: DetoxPolicy,
        *,
        kind: dx.CycleKind,
        requested_by: str | None = None,
        comment: str = "",
    ) -> int:
        """Queue a cycle (``kind`` real or test) and start it in the background; its id."""
        now = _dt(self.clock())
        async with self.pool.acquire() as conn, conn.transaction():
            await store.ensure_policy(conn, policy.digest, policy.partition, policy.text, now)
            try:
                cycle_id = await store.create_cycle(
                    conn,
                    kind=kind,
                    partition=policy.partition,
                    digest=policy.digest,
                    requested_by=requested_by,
                    comment=comment,
                    now=now,
                )
            except asyncpg.UniqueViolationError:
                raise CycleBusy(
                    f"a real cycle of partition {policy.partition!r} is already queued or running"
                ) from None
        self._spawn(self._execute(cycle_id, policy, kind), f"detox-cycle-{cycle_id}")
        return cycle_id

    def _spawn(self, work: Awaitable[None], name: str) -> None:
        async def run() -> None:
            await work

        task = asyncio.create_task(run(), name=name)
        self.tasks.add(task)
        self.idle.clear()

        def done(finished: asyncio.Task[None]) -> None:
            self.tasks.discard(finished)
            if not any(t.get_name().startswith("detox-cycle-") for t in self.tasks):
                self.idle.set()

        task.add_done_callback(done)

    async def wait_idle(self) -> None:
        """Until every queued cycle has been decided, recorded and its commands sent."""
        while not self.idle.is_set():
            await self.idle.wait()
            await asyncio.sleep(0)

    async def _model(self) -> Inventory:
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
            log.warning("cannot ask the inventory for its sequence: %s", exc)
            last = seq
        try:
            await self.readmodel.wait_for_seq(last, timeout=self.settings.read_model_timeout)
        except TimeoutError as exc:
            raise NotReady(str(exc)) from None
        return self.readmodel.model

    # --------------------------------------------------------------------- one cycle

    def _providers(self, locks: Sequence[Any], summaries: Sequence[Any]) -> list[AttributeProvider]:
        # Enforcer rules may name provider variables: they run last, over the others' tables.
        providers: list[AttributeProvider] = [
            LockProvider(locks),
            PopularityProvider(summaries),
        ]
        if self.settings.protected_sites:
            providers.append(ProtectedSitesProvider(self.settings.protected_sites))
        if self.enforcers:
            providers.append(EnforcerProvider(self.enforcers))
        return providers

    async def _execute(self, cycle_id: int, policy: DetoxPolicy, kind: dx.CycleKind) -> None:
        items: list[Item] = []
        async with self.cycle_lock:
            started = self.clock()
            try:
                model = await self._model()
                now = self.clock()
                window = now - self.settings.popularity_window_days * DAY
                summaries = await self.popularity.summaries(window)
                async with self.pool.acquire() as conn:
                    locks = await store.active_locks(conn, _dt(now))
                    await store.start_cycle(conn, cycle_id, _dt(now), model.seq)
                await self._publish(
                    DetoxEvent.CYCLE_STARTED,
                    dx.CycleStarted(
                        cycle_id=cycle_id,
                        partition=policy.partition,
                        kind=kind,
                        policy_digest=policy.digest,
                        started=_dt(now),
                        inventory_seq=model.seq,
                    ),
                )
                # From here to the record: no await, so the read model stays as it was.
                attributes = fill_attributes(model, self._providers(locks, summaries), now)
                outcome = run_cycle(
                    model,
                    policy,
                    attributes,
                    now,
                    CycleConfig(volume_step=self.settings.volume_step),
                )
                if kind == "real":
                    items = plan_items(outcome.decisions, model)
                finished = self.clock()
                async with self.pool.acquire() as conn, conn.transaction():
                    await store.record_outcome(conn, cycle_id, outcome, _dt(finished))
                    if items:
                        await store.add_commands(
                            conn,
                            cycle_id,
                            [
                                (command_id(cycle_id, seq), [asdict(i) for i in batch])
                                for seq, batch in enumerate(batches(items))
                            ],
                            _dt(finished),
                        )
            except Exception as exc:
                log.exception("detox cycle %s (%s) failed", cycle_id, policy.partition)
                await self._failed(cycle_id, policy, kind, started, exc)
                return
            log.info(
                "detox cycle %s (%s, %s): %d deletions, %.1f TB, %d iterations, %.2f s",
                cycle_id,
                policy.partition,
                kind,
                len(outcome.deletions),
                outcome.deleted_bytes / 1e12,
                outcome.iterations,
                finished - now,
                extra={"missing_providers": outcome.missing_providers},
            )
            await self._publish(
                DetoxEvent.CYCLE_FINISHED, _finished(cycle_id, kind, outcome, started, finished)
            )
        if items:
            await self.send_pending(cycle_id)

    async def _failed(
        self,
        cycle_id: int,
        policy: DetoxPolicy,
        kind: dx.CycleKind,
        started: float,
        exc: Exception,
    ) -> None:
        finished = self.clock()
        error = f"{type(exc).__name__}: {exc}"
        try:
            async with self.pool.acquire() as conn:
                await store.fail_cycle(conn, cycle_id, error, _dt(finished))
            await self._publish(
                DetoxEvent.CYCLE_FINISHED,
                dx.CycleFinished(
                    cycle_id=cycle_id,
                    partition=policy.partition,
                    kind=kind,
                    status="failed",
                    started=_dt(started),
                    finished=_dt(finished),
                    sites=0,
                    sites_triggered=0,
                    replicas_deleted=0,
                    error=error[:2000],
                ),
            )
        except Exception:
            log.exception("could not record the failure of cycle %s", cycle_id)

    async def _publish(self, event: DetoxEvent, body: BaseModel) -> None:
        await announce(self.bus, SOURCE, event.value, body)

    # ------------------------------------------------------------------------ commands

    async def send_pending(self, cycle_id: int | None = None) -> None:
        """Send the commands of real cycles that have not been sent (all cycles, or one)."""
        async with self.send_lock:
            async with self.pool.acquire() as conn:
                rows = await store.pending_commands(conn, cycle_id)
            for row in rows:
                items = [Item(**item) for item in row.items]
                try:
                    accepted, rejected, reason = await self._send(row.id, items, row.cycle_id)
                except RequestTimeout as exc:
                    # Left pending: the retry loop sends it again under the same ids.
                    log.warning("commands of cycle %s not answered yet: %s", row.cycle_id, exc)
                    return
                async with self.pool.acquire() as conn:
                    await store.finish_command(
                        conn,
                        row.id,
                        [asdict(i) for i in accepted],
                        [{**asdict(i), "reason": why} for i, why in rejected],
                        reason,
                        _dt(self.clock()),
                    )

    async def _send(
        self, key: str, items: list[Item], cycle_id: int
    ) -> tuple[list[Item], list[tuple[Item, str]], str | None]:
        present, gone = still_there(items, self.readmodel.model)
        rejected = [(item, "no longer in the inventory when the command was sent") for item in gone]
        owned, refused = await self._bisect(present, f"{key}/owner", self._update_owners)
        rejected += refused
        deletions = [item for item in owned if item.handed_to is None]
        reference = f"detox cycle {cycle_id}"
        deleted, refused = await self._bisect(
            deletions, f"{key}/files", lambda chunk, cid: self._delete_files(chunk, cid, reference)
        )
        rejected += refused
        accepted = [item for item in owned if item.handed_to is not None] + deleted
        reason = None
        if rejected:
            reason = f"{len(rejected)} of {len(items)} items refused or gone"
        return accepted, rejected, reason

    async def _bisect(
        self,
        items: list[Item],
        key: str,
        send: Callable[[list[Item], str], Awaitable[str | None]],
    ) -> tuple[list[Item], list[tuple[Item, str]]]:
        """Send ``items``; when refused, halves are sent apart until the refused items are
        isolated (one stale replica must not hold back a batch of thousands)."""
        if not items:
            return [], []
        refusal = await send(items, command_id(key))
        if refusal is None:
            return items, []
        if len(items) == 1:
            return [], [(items[0], refusal)]
        middle = len(items) // 2
        first = await self._bisect(items[:middle], f"{key}/0", send)
        second = await self._bisect(items[middle:], f"{key}/1", send)
        return first[0] + second[0], first[1] + second[1]

    async def _request(self, type_: str, body: BaseModel, cid: str) -> Envelope:
        envelope = Envelope(
            id=cid,
            type=type_,
            source=SOURCE,
            data=body.model_dump(mode="json", exclude_none=True),
        )
        return await self.bus.request(envelope, timeout=self.settings.command_reply_timeout)

    async def _update_owners(self, items: list[Item], cid: str) -> str | None:
        reply = inv.CommandReply.model_validate(
            (await self._request(InventoryCommand.UPDATE_REPLICAS, owner_updates(items), cid)).data
        )
        return None if reply.status == "accepted" else (reply.reason or "rejected")

    async def _delete_files(self, items: list[Item], cid: str, reference: str) -> str | None:
        command = file_deletions(items, reference)
        if command is None:
            return None
        reply = tr.TransferCommandReply.model_validate(
            (await self._request(TransferCommand.DELETE_REPLICAS, command, cid)).data
        )
        return None if reply.status == "accepted" else (reply.reason or "rejected")

    # ----------------------------------------------------------------- background loops

    async def schedule_loop(self) -> None:
        """Run each configured policy every ``cycle_interval`` seconds."""
        interval = self.settings.cycle_interval
        if interval <= 0 or not self.policies:
            return
        await self.readmodel.ready.wait()
        while True:
            for policy in self.policies.values():
                try:
                    if await self._due(policy.partition, interval):
                        await self.submit(policy, kind="real", requested_by="schedule")
                except CycleBusy:
                    pass
                except Exception:
                    log.exception("scheduling a cycle of %s failed", policy.partition)
            await asyncio.sleep(min(interval, 60.0))

    async def _due(self, partition: str, interval: float) -> bool:
        async with self.pool.acquire() as conn:
            last: datetime | None = await conn.fetchval(
                f"SELECT max(created) FROM {store.S}.cycles WHERE kind = 'real' AND partition = $1",
                partition,
            )
        return last is None or (self.clock() - last.timestamp()) >= interval

    async def maintenance_loop(self) -> None:
        """Resend commands left unsent; drop records past their retention."""
        while True:
            with contextlib.suppress(Exception):
                if self.readmodel.ready.is_set():
                    await self.send_pending()
            try:
                now = self.clock()
                async with self.pool.acquire() as conn:
                    await store.prune_cycles(
                        conn, "test", _dt(now - self.settings.test_run_retention_days * DAY)
                    )
                    await store.prune_cycles(
                        conn, "real", _dt(now - self.settings.real_cycle_retention_days * DAY)
                    )
                    await store.prune_accesses(
                        conn, _dt(now - self.settings.popularity_retention_days * DAY)
                    )
            except Exception:
                log.exception("detox maintenance failed")
            await asyncio.sleep(self.settings.command_retry_interval)

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _finished(
    cycle_id: int, kind: dx.CycleKind, outcome: CycleOutcome, started: float, finished: float
) -> dx.CycleFinished:
    return dx.CycleFinished(
        cycle_id=cycle_id,
        partition=outcome.partition,
        kind=kind,
        status="done",
        started=_dt(started),
        finished=_dt(finished),
        sites=len(outcome.sites),
        sites_triggered=sum(1 for s in outcome.sites if s.triggered),
        replicas_deleted=len(outcome.deletions),
        bytes_deleted=outcome.deleted_bytes,
        bytes_handed_over=sum(s.handed_over for s in outcome.sites),
        iterations=outcome.iterations,
    )
