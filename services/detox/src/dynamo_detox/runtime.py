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

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import partial
from typing import Any, ClassVar

import asyncpg

from dynamo_common.agent_runtime import (
    DAY,
    AgentRuntime,
    AgentStore,
    CycleBusy,
    NotReady,
    Scheduled,
    bisect,
)
from dynamo_common.agent_runtime import utc as _dt
from dynamo_common.messages import detox as dx
from dynamo_common.messages import inventory as inv
from dynamo_common.messages import transfer as tr
from dynamo_common.messages.registry import DetoxEvent, InventoryCommand, TransferCommand
from dynamo_common.policy.detox import DetoxPolicy
from dynamo_common.policy.enforcer import EnforcerPolicy
from dynamo_common.policy.variables import AttributeProvider
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

__all__ = ["DAY", "SOURCE", "CycleBusy", "DetoxRuntime", "NotReady"]


@dataclass(kw_only=True)
class DetoxRuntime(AgentRuntime[DetoxSettings]):
    name = "detox"
    source = SOURCE
    log = log
    records: ClassVar[AgentStore] = store
    cycle_finished = DetoxEvent.CYCLE_FINISHED

    policies: dict[str, DetoxPolicy]
    """The configured policies, by partition: what the schedule runs."""
    enforcers: list[EnforcerPolicy]
    popularity: PopularitySource

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
        self._spawn(cycle_id, self._execute(cycle_id, policy, kind))
        return cycle_id

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
                model = await self.model()
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
                await self._failed(
                    cycle_id,
                    started,
                    exc,
                    lambda error, begun, ended: dx.CycleFinished(
                        cycle_id=cycle_id,
                        partition=policy.partition,
                        kind=kind,
                        status="failed",
                        started=begun,
                        finished=ended,
                        sites=0,
                        sites_triggered=0,
                        replicas_deleted=0,
                        error=error,
                    ),
                )
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

    # ------------------------------------------------------------------------ commands

    def _command_cycle(self, command: store.CommandRow) -> int:
        return command.cycle_id

    async def _send_command(self, command: store.CommandRow) -> None:
        items = [Item(**item) for item in command.items]
        accepted, rejected, reason = await self._send(command.id, items, command.cycle_id)
        async with self.pool.acquire() as conn:
            await store.finish_command(
                conn,
                command.id,
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
        owned, refused = await bisect(present, f"{key}/owner", self._update_owners, command_id)
        rejected += refused
        deletions = [item for item in owned if item.handed_to is None]
        reference = f"detox cycle {cycle_id}"
        deleted, refused = await bisect(
            deletions,
            f"{key}/files",
            lambda chunk, cid: self._delete_files(chunk, cid, reference),
            command_id,
        )
        rejected += refused
        accepted = [item for item in owned if item.handed_to is not None] + deleted
        reason = None
        if rejected:
            reason = f"{len(rejected)} of {len(items)} items refused or gone"
        return accepted, rejected, reason

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

    def _scheduled(self) -> list[Scheduled]:
        """Each configured policy, every ``cycle_interval`` seconds."""
        return [
            Scheduled(
                f"a cycle of {policy.partition}",
                partial(self._last_real, policy.partition),
                partial(self.submit, policy, kind="real", requested_by="schedule"),
            )
            for policy in self.policies.values()
        ]

    async def _last_real(self, partition: str) -> datetime | None:
        async with self.pool.acquire() as conn:
            last: datetime | None = await conn.fetchval(
                f"SELECT max(created) FROM {store.S}.cycles WHERE kind = 'real' AND partition = $1",
                partition,
            )
        return last

    async def _maintain(self) -> None:
        """Drop records past their retention."""
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
