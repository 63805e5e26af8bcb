"""The dealer at run time: cycles on a schedule and on demand, copy requests, placements.

A cycle fetches what it needs from outside the read model first (requests, subscriptions,
access records, the last detox cycle, the dealer's own placements in flight), then decides
in one synchronous call (``run_cycle``: the read model cannot change under it, since events
are applied by this same event loop), then records, moves requests on, and sends the
commands. Cycles run one at a time. Requests follow the inventory: each batch of events
applied to the read model wakes the progress loop, which completes the requests whose
copies are all there and moves the stuck-detection marks of the placements.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any, ClassVar, Literal

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
from dynamo_common.bus.base import RequestTimeout
from dynamo_common.messages import dealer as dl
from dynamo_common.messages import inventory as inv
from dynamo_common.messages import transfer as tr
from dynamo_common.messages.registry import DealerEvent, InventoryCommand, TransferCommand
from dynamo_common.model.objects import Inventory
from dynamo_dealer.repository import store
from dynamo_dealer.service import deletions as dels
from dynamo_dealer.service import monitoring, states
from dynamo_dealer.service.commands import batches, command_id, replica_creations, transfers
from dynamo_dealer.service.cycle import CycleInputs, CycleOutput, DealerConfig, run_cycle
from dynamo_dealer.service.engine import EngineConfig
from dynamo_dealer.service.plugins import requests as rq
from dynamo_dealer.service.proposals import Decision, Placement
from dynamo_dealer.service.sites import SiteBook
from dynamo_dealer.settings import DealerSettings
from dynamo_dealer.sources import AccessSource, ProtectionSource

log = logging.getLogger("dynamo.dealer")

SOURCE = "/dynamo/dealer"
PROGRESS_GAP = 0.2

__all__ = ["DAY", "SOURCE", "Conflict", "CycleBusy", "DealerRuntime", "NotReady", "build_config"]


class Conflict(Exception):
    """A request cannot make the move asked (its state does not allow it)."""


@dataclass(kw_only=True)
class DealerRuntime(AgentRuntime[DealerSettings]):
    name = "dealer"
    source = SOURCE
    log = log
    records: ClassVar[AgentStore] = store
    cycle_finished = DealerEvent.CYCLE_FINISHED

    config: DealerConfig
    accesses: AccessSource
    protection: ProtectionSource
    progress_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    # ----------------------------------------------------------------------- read model

    def targets(self, model: Inventory) -> set[str]:
        """The sites copies may go to now (ready disk sites the configuration allows, with a
        quota; not being emptied)."""
        evacuating = set(self.settings.evacuate_sites)
        book = SiteBook.build(model, {}, self.config.engine.sites, evacuating)
        return set(book.states)

    # ------------------------------------------------------------------------- requests

    async def create_request(
        self,
        *,
        requester: str,
        items: list[str],
        sites: list[str],
        n_copies: int,
        group: str,
        comment: str,
    ) -> asyncpg.Record:
        model = await self.model()
        resolved, size, reason = rq.validate(
            model, items, sites, group, self.settings.request_max_size, self.targets(model)
        )
        state: states.State = "rejected" if reason else "new"
        now = _dt(self.clock())
        async with self.pool.acquire() as conn:
            row = await store.create_request(
                conn,
                requester=requester,
                state=state,
                items=items,
                resolved=resolved if reason is None else [],
                sites=sites,
                n_copies=n_copies,
                group=group,
                comment=comment,
                size=size,
                reason=reason,
                now=now,
            )
        await self._request_event(row["id"], requester, state, None, reason, now)
        return row

    async def cancel_request(self, request_id: int, who: str) -> asyncpg.Record:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await store.get_request(conn, request_id, lock=True)
            if row is None:
                raise KeyError(request_id)
            if row["requester"] != who and who not in self.settings.admins:
                raise PermissionError(f"request {request_id} belongs to {row['requester']}")
            if not states.allowed(row["state"], "cancelled"):
                raise Conflict(f"request {request_id} is {row['state']}: it cannot be cancelled")
            now = _dt(self.clock())
            await store.set_request_state(
                conn, request_id, row["state"], "cancelled", f"cancelled by {who}", now
            )
            updated = await store.get_request(conn, request_id)
        await self._request_event(
            request_id, row["requester"], "cancelled", row["state"], f"cancelled by {who}", now
        )
        assert updated is not None
        return updated

    async def _move(
        self,
        conn: asyncpg.Connection,
        row: asyncpg.Record,
        target: states.State,
        reason: str | None,
    ) -> None:
        """Move a request on; a move the table does not allow, or that lost a race, is a
        late message and is ignored."""
        current: states.State = row["state"]
        if not states.allowed(current, target):
            return
        now = _dt(self.clock())
        if await store.set_request_state(conn, row["id"], current, target, reason, now):
            await self._request_event(row["id"], row["requester"], target, current, reason, now)

    async def _request_event(
        self,
        request_id: int,
        requester: str,
        state: states.State,
        previous: states.State | None,
        reason: str | None,
        now: datetime,
        kind: Literal["copy", "deletion"] = "copy",
    ) -> None:
        await self._publish(
            DealerEvent.REQUEST_UPDATED,
            dl.RequestUpdated(
                kind=kind,
                request_id=request_id,
                requester=requester,
                state=state,
                previous=previous,
                reason=reason,
                time=now,
            ),
        )

    async def advance_requests(self, model: Inventory, cycle_id: int | None = None) -> None:
        """Complete the open requests whose copies are all there (or, after a cycle,
        activate those whose every proposal was placed, and note why the others wait)."""
        async with self.pool.acquire() as conn:
            rows = await store.open_requests(conn)
            decided = await store.request_decisions(conn, cycle_id) if cycle_id else {}
            for row in rows:
                progress = rq.progress(model, store.request_spec(row))
                mine = decided.get(str(row["id"]), [])
                placed = {Decision.ACCEPTED.value, Decision.MERGED.value}
                if progress.done:
                    await self._move(conn, row, "completed", "every copy is complete")
                elif row["state"] == "new" and (
                    progress.placed or (mine and all(d in placed for d, _ in mine))
                ):
                    await self._move(conn, row, "activated", "every copy is placed")
                else:
                    waiting = [why for d, why in mine if d not in placed]
                    if waiting:
                        await store.note_request(conn, row["id"], f"waiting: {waiting[0]}")

    # ------------------------------------------------------------------ deletion requests

    async def create_deletion(
        self, *, requester: str, dataset: str, block: str | None, site: str, comment: str
    ) -> asyncpg.Record:
        model = await self.model()
        size, reason = dels.validate(model, dels.DeletionSpec(0, dataset, block, site))
        state: states.State = "rejected" if reason else "new"
        now = _dt(self.clock())
        async with self.pool.acquire() as conn:
            row = await store.create_deletion(
                conn,
                requester=requester,
                state=state,
                dataset=dataset,
                block=block,
                site=site,
                comment=comment,
                size=size,
                reason=reason,
                now=now,
            )
        await self._request_event(row["id"], requester, state, None, reason, now, "deletion")
        return row

    async def cancel_deletion(self, request_id: int, who: str) -> asyncpg.Record:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await store.get_deletion(conn, request_id, lock=True)
            if row is None:
                raise KeyError(request_id)
            if row["requester"] != who and who not in self.settings.admins:
                raise PermissionError(f"request {request_id} belongs to {row['requester']}")
            if not states.allowed(row["state"], "cancelled", states.DELETION_TRANSITIONS):
                raise Conflict(f"deletion request {request_id} is {row['state']}: too late")
            now = _dt(self.clock())
            reason = f"cancelled by {who}"
            await store.set_request_state(
                conn, request_id, row["state"], "cancelled", reason, now, table="deletion_requests"
            )
            updated = await store.get_deletion(conn, request_id)
        await self._request_event(
            request_id, row["requester"], "cancelled", row["state"], reason, now, "deletion"
        )
        assert updated is not None
        return updated

    async def _move_deletion(
        self, conn: asyncpg.Connection, row: asyncpg.Record, target: states.State, reason: str
    ) -> None:
        current: states.State = row["state"]
        if not states.allowed(current, target, states.DELETION_TRANSITIONS):
            return
        now = _dt(self.clock())
        if await store.set_request_state(
            conn, row["id"], current, target, reason, now, table="deletion_requests"
        ):
            await self._request_event(
                row["id"], row["requester"], target, current, reason, now, "deletion"
            )

    async def execute_deletions(self) -> None:
        """Carry out the new deletion requests (checked again: the inventory may have moved
        since they were made). Unanswered commands leave a request new: the next cycle sends
        the same commands again under the same ids."""
        async with self.pool.acquire() as conn:
            rows = [r for r in await store.open_deletions(conn) if r["state"] == "new"]
        for row in rows:
            spec = dels.DeletionSpec(row["id"], row["dataset"], row["block"], row["site"])
            _, reason = dels.validate(self.readmodel.model, spec)
            if reason is None:
                try:
                    reason = await self._delete(spec)
                except RequestTimeout as exc:
                    log.warning("deletion request %s not answered yet: %s", spec.id, exc)
                    continue
            async with self.pool.acquire() as conn:
                if reason is None:
                    await self._move_deletion(conn, row, "activated", "deletion under way")
                else:
                    await self._move_deletion(conn, row, "rejected", reason)

    async def _delete(self, spec: dels.DeletionSpec) -> str | None:
        key = f"deletion/{spec.id}"
        reply = inv.CommandReply.model_validate(
            (
                await self._request(
                    InventoryCommand.UPDATE_REPLICAS,
                    dels.owner_cleared(spec),
                    command_id(key, "owner"),
                )
            ).data
        )
        if reply.status != "accepted":
            return reply.reason or "refused by the inventory"
        moved = tr.TransferCommandReply.model_validate(
            (
                await self._request(
                    TransferCommand.DELETE_REPLICAS,
                    dels.file_deletion(spec),
                    command_id(key, "files"),
                )
            ).data
        )
        return None if moved.status == "accepted" else (moved.reason or "refused")

    async def advance_deletions(self, model: Inventory) -> None:
        async with self.pool.acquire() as conn:
            for row in await store.open_deletions(conn):
                if row["state"] != "activated":
                    continue
                spec = dels.DeletionSpec(row["id"], row["dataset"], row["block"], row["site"])
                if dels.gone(model, spec):
                    await self._move_deletion(conn, row, "completed", "the replica is deleted")

    # ----------------------------------------------------------------------------- cycles

    async def submit(
        self, *, dry_run: bool = False, requested_by: str | None = None, comment: str = ""
    ) -> int:
        now = _dt(self.clock())
        async with self.pool.acquire() as conn:
            try:
                cycle_id = await store.create_cycle(
                    conn, dry_run=dry_run, requested_by=requested_by, comment=comment, now=now
                )
            except asyncpg.UniqueViolationError:
                raise CycleBusy("a dealer cycle is already queued or running") from None
        self._spawn(cycle_id, self._execute(cycle_id, dry_run))
        return cycle_id

    async def _inputs(self, now: float) -> tuple[CycleInputs, int | None, list[str]]:
        """The cycle's inputs, the detox cycle the balancer works from, and warnings."""
        warnings: list[str] = []
        async with self.pool.acquire() as conn:
            open_rows = await store.open_requests(conn)
            subs, _ = await store.list_subscriptions(conn)
            placed = await store.placed_keys(conn)
        enabled = self.config.plugins
        accesses = []
        if "popularity" in enabled:
            since = now - self.settings.popularity_window_days * DAY
            accesses = await self.accesses.accesses(since)
        protected: dict[str, tuple[int, int]] = {}
        detox_cycle: int | None = None
        if "balancer" in enabled:
            found = await self.protection.protected()
            detox_cycle = found.cycle_id
            if detox_cycle is None:
                warnings.append("balancer: no finished detox cycle known")
            else:
                async with self.pool.acquire() as conn:
                    done = await store.balanced(conn, detox_cycle)
                # Its protected volumes describe the sites before the copies made from them:
                # balancing twice from one detox cycle would move data for nothing.
                if done:
                    warnings.append(f"balancer: detox cycle {detox_cycle} already balanced")
                else:
                    protected = found.sites
        inputs = CycleInputs(
            requests=[store.request_spec(r) for r in open_rows],
            subscriptions=[store.subscription_spec(r) for r in subs],
            accesses=accesses,
            protected=protected,
            placed=placed,
        )
        return inputs, detox_cycle, warnings

    async def _execute(self, cycle_id: int, dry_run: bool) -> None:
        async with self.cycle_lock:
            started = self.clock()
            try:
                model = await self.model()
                inputs, detox_cycle, warnings = await self._inputs(started)
                async with self.pool.acquire() as conn:
                    await store.start_cycle(conn, cycle_id, _dt(started), model.seq)
                # From here to the record: no await, so the read model stays as it was (taken
                # again: a resync during the awaits above installs a new model object).
                model = self.readmodel.model
                now = self.clock()
                seq = model.seq
                config = replace(self.config, engine=replace(self.config.engine, seed=cycle_id))
                output = run_cycle(model, inputs, config, now)
                placements = output.result.placements
                blocks = [_blocks(model, p) for p in placements]
                finished = self.clock()
                counts = {d.value: output.result.count(d) for d in Decision}
                async with self.pool.acquire() as conn, conn.transaction():
                    await store.record_cycle(
                        conn,
                        cycle_id,
                        outcomes=output.result.outcomes,
                        counts=counts,
                        per_plugin=_per_plugin(output),
                        bytes_placed=output.result.volume,
                        warnings=warnings + _warnings(self, inputs),
                        seq=seq,
                        detox_cycle=None if dry_run or not inputs.protected else detox_cycle,
                        now=_dt(finished),
                    )
                    if not dry_run and placements:
                        await store.add_placements(
                            conn, cycle_id, placements, blocks, _dt(finished)
                        )
                        await store.add_commands(
                            conn,
                            cycle_id,
                            [
                                (command_id(cycle_id, n), [asdict(p) for p in batch])
                                for n, batch in enumerate(batches(placements))
                            ],
                            _dt(finished),
                        )
            except Exception as exc:
                log.exception("dealer cycle %s failed", cycle_id)
                await self._failed(
                    cycle_id,
                    started,
                    exc,
                    lambda error, begun, ended: dl.DealerCycleFinished(
                        cycle_id=cycle_id,
                        status="failed",
                        dry_run=dry_run,
                        started=begun,
                        finished=ended,
                        error=error,
                    ),
                )
                return
            log.info(
                "dealer cycle %s: %d proposals, %d placed, %.1f TB, %.2f s",
                cycle_id,
                len(output.result.outcomes),
                len(placements),
                output.result.volume / 1e12,
                finished - now,
            )
            if not dry_run:
                await self.advance_requests(model, cycle_id)
            await self._publish(
                DealerEvent.CYCLE_FINISHED,
                dl.DealerCycleFinished(
                    cycle_id=cycle_id,
                    status="done",
                    dry_run=dry_run,
                    started=_dt(started),
                    finished=_dt(finished),
                    inventory_seq=seq,
                    proposals=len(output.result.outcomes),
                    accepted=counts["accepted"],
                    rejected=counts["rejected"],
                    deferred=counts["deferred"],
                    bytes_placed=output.result.volume,
                ),
            )
        if not dry_run and placements:
            await self.send_pending(cycle_id)
        if not dry_run:
            await self.execute_deletions()

    # --------------------------------------------------------------------------- commands

    def _command_cycle(self, command: asyncpg.Record) -> int:
        return int(command["cycle_id"])

    async def _send_command(self, command: asyncpg.Record) -> bool:
        """Whether any of the command's placements was refused."""
        placements = [Placement(**p) for p in command["placements"]]
        accepted, rejected = await self._send(command["id"], placements, command["cycle_id"])
        reason = f"{len(rejected)} of {len(placements)} refused" if rejected else None
        async with self.pool.acquire() as conn, conn.transaction():
            await store.finish_command(
                conn,
                command["id"],
                len(accepted),
                [{**asdict(p), "reason": why} for p, why in rejected],
                reason,
                _dt(self.clock()),
            )
            await store.answer_placements(conn, command["cycle_id"], accepted, rejected)
        return bool(rejected)

    async def _commands_sent(self, answers: list[bool]) -> None:
        if any(answers):
            # A refusal brings no inventory event to wake the progress loop: close the
            # refused placements now.
            try:
                await self.check_progress()
            except Exception:
                log.exception("closing the refused placements failed (the progress loop will)")

    async def _send(
        self, key: str, placements: list[Placement], cycle_id: int
    ) -> tuple[list[tuple[Placement, int]], list[tuple[Placement, str]]]:
        """(each placement carried out, with the inventory sequence number that shows its
        replica created; each placement refused, with the reason)."""
        model = self.readmodel.model
        answered: dict[Placement, int] = {}

        async def create(chunk: list[Placement], cid: str) -> str | None:
            refusal, seq = await self._create(chunk, cid, model)
            if refusal is None:
                answered.update((p, seq) for p in chunk)
            return refusal

        recorded, refused = await bisect(placements, f"{key}/replicas", create, command_id)
        reference = f"dealer cycle {cycle_id}"
        moved, refused_moves = await bisect(
            recorded,
            f"{key}/transfers",
            lambda chunk, cid: self._transfer(chunk, cid, reference),
            command_id,
        )
        return [(p, answered[p]) for p in moved], [
            *((p, f"refused by the inventory: {why}") for p, why in refused),
            *((p, f"refused by the transfer service: {why}") for p, why in refused_moves),
        ]

    async def _create(
        self, items: list[Placement], cid: str, model: Inventory
    ) -> tuple[str | None, int]:
        """(why the inventory refused, or None; the sequence number from which the read model
        shows the replicas of ``items``)."""
        # Taken with the command, before any await: the replicas it leaves out are in the
        # read model at this sequence number already.
        seen = model.seq
        command = replica_creations(items, model)
        if command is None:
            return None, seen
        reply = inv.CommandReply.model_validate(
            (await self._request(InventoryCommand.CREATE_REPLICAS, command, cid)).data
        )
        if reply.status != "accepted":
            return reply.reason or "rejected", seen
        # A redelivered command gets its first reply, so last_seq names the events that
        # created the replicas even when the answer comes from the inventory's record.
        return None, max(seen, reply.last_seq or 0)

    async def _transfer(self, items: list[Placement], cid: str, reference: str) -> str | None:
        reply = tr.TransferCommandReply.model_validate(
            (
                await self._request(
                    TransferCommand.TRANSFER_REPLICAS, transfers(items, reference), cid
                )
            ).data
        )
        return None if reply.status == "accepted" else (reply.reason or "rejected")

    # --------------------------------------------------------------------------- progress

    async def in_flight(self, site: str | None = None) -> list[monitoring.InFlight]:
        async with self.pool.acquire() as conn:
            tracked = await store.flying(conn, site)
        flying, _ = monitoring.in_flight(
            self.readmodel.model, tracked, self.clock(), self.settings.stuck_days * DAY
        )
        return flying

    async def check_progress(self) -> None:
        """Move the placements' marks, close the placements that are over, and complete the
        requests whose copies are all there."""
        async with self.progress_lock:
            model = self.readmodel.model
            now = self.clock()
            async with self.pool.acquire() as conn:
                tracked = await store.flying(conn)
                flying, over = monitoring.in_flight(
                    model, tracked, now, self.settings.stuck_days * DAY
                )
                await store.update_marks(
                    conn,
                    [
                        (f.tracked.id, f.mark_bytes, _dt(f.mark_time))
                        for f in flying
                        if f.mark_bytes != f.tracked.mark_bytes
                    ],
                    [t.id for t in over],
                )
            await self.advance_requests(model)
            await self.advance_deletions(model)

    # -------------------------------------------------------------------- background loops

    async def progress_loop(self) -> None:
        """Follows the inventory: wakes on every event applied to the read model (and at
        least every ``progress_interval`` seconds)."""
        await self.readmodel.ready.wait()
        while True:
            with contextlib.suppress(TimeoutError):
                await self.readmodel.wait_for_seq(
                    self.readmodel.seq + 1, timeout=self.settings.progress_interval
                )
            try:
                await self.check_progress()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("checking the progress of requests and placements failed")
                await asyncio.sleep(self.settings.progress_interval)
            # While transfers report progress, events arrive in a stream: one check per gap
            # is enough, and keeps the database out of the event rate.
            await asyncio.sleep(PROGRESS_GAP)

    def _scheduled(self) -> list[Scheduled]:
        return [
            Scheduled(
                "a dealer cycle",
                self._last_cycle,
                partial(self.submit, requested_by="schedule"),
            )
        ]

    async def _last_cycle(self) -> datetime | None:
        async with self.pool.acquire() as conn:
            last: datetime | None = await store.last_cycle_time(conn)
        return last


def _blocks(model: Inventory, placement: Placement) -> list[str]:
    if placement.block is not None:
        return []
    dataset = model.datasets.get(placement.dataset)
    return sorted(dataset.blocks) if dataset is not None else []


def _per_plugin(output: CycleOutput) -> dict[str, Any]:
    per: dict[str, dict[str, int]] = {}
    for name, count in output.proposed.items():
        per[name] = {"proposed": count}
    for outcome in output.result.outcomes:
        entry = per.setdefault(outcome.proposal.plugin, {"proposed": 0})
        entry[outcome.decision.value] = entry.get(outcome.decision.value, 0) + 1
        if outcome.decision is Decision.ACCEPTED:
            entry["bytes"] = entry.get("bytes", 0) + outcome.volume
    return per


def _warnings(rt: DealerRuntime, inputs: CycleInputs) -> list[str]:
    warnings = []
    enabled = rt.config.plugins
    if "popularity" in enabled and not rt.settings.detox_url and not inputs.accesses:
        warnings.append("popularity: no access records (DYNAMO_DETOX_URL is not set)")
    if "enforcer" in enabled and not rt.config.enforcers:
        warnings.append("enforcer: no rule files configured")
    return warnings


def build_config(
    settings: DealerSettings, enforcers: Sequence[Any], vetoes: Sequence[Any]
) -> DealerConfig:
    from dynamo_dealer.service.plugins.balancer import BalancerRules
    from dynamo_dealer.service.plugins.popularity import PopularityRules
    from dynamo_dealer.service.plugins.undertaker import UndertakerRules
    from dynamo_dealer.service.sites import SiteRules

    return DealerConfig(
        engine=EngineConfig(
            sites=SiteRules(
                partition=settings.partition,
                patterns=tuple(settings.target_sites),
                exclusions=tuple(settings.excluded_sites),
                target_occupancy=settings.target_occupancy,
                request_occupancy=settings.request_occupancy,
                max_pending_fraction=settings.max_pending_fraction,
                max_site_volume=settings.max_site_volume,
            ),
            max_cycle_volume=settings.max_cycle_volume,
        ),
        plugins=dict(settings.plugins),
        popularity=PopularityRules(
            group=settings.popularity_group,
            half_life_days=settings.popularity_half_life_days,
            weight_per_copy=settings.popularity_weight_per_copy,
            max_copies=settings.popularity_max_copies,
            max_dataset_size=settings.popularity_max_dataset_size,
        ),
        balancer=BalancerRules(
            threshold=settings.balancer_threshold,
            max_proposals=settings.balancer_max_proposals,
            default_group=settings.default_group,
        ),
        undertaker=UndertakerRules(
            evacuate=frozenset(settings.evacuate_sites), default_group=settings.default_group
        ),
        enforcers=tuple(enforcers),
        vetoes=tuple(vetoes),
    )
