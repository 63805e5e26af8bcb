"""The consistency service at run time: the scheduler that claims sites, the check of a site,
the approval of a flagged check, and the relay that publishes events.

A worker takes a site by taking a PostgreSQL advisory lock keyed by the site's row
(``store.try_lock``) on a connection it keeps for the whole check: any number of workers can
run, none checks a site another one is checking, and a worker that dies releases its sites
with its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import asyncpg
import httpx

from dynamo_common.bus.base import Bus, BusError
from dynamo_common.messages.consistency import ConsistencyRunFinished
from dynamo_common.messages.envelope import Envelope
from dynamo_common.messages.registry import ConsistencyEvent
from dynamo_common.messages.types import SiteStatus
from dynamo_common.model.objects import Site
from dynamo_common.readmodel import ReadModelClient
from dynamo_common.storage import PfnMapper, Storage
from dynamo_consistency.clients import SOURCE, InventoryFiles, Outcome, Requests
from dynamo_consistency.listing import list_root, remove_empty_dirs
from dynamo_consistency.repository import store
from dynamo_consistency.repository.store import SiteRow
from dynamo_consistency.service.compare import (
    Comparison,
    InventoryView,
    ListedFiles,
    Missing,
    Orphan,
    compare,
)
from dynamo_consistency.service.decide import (
    Action,
    Plan,
    SiteState,
    Thresholds,
    decide,
    plan_actions,
    split_strikes,
)
from dynamo_consistency.service.paths import ListingRoot, Namespace, NamespaceError, PrefixSet
from dynamo_consistency.service.rules import (
    BlockKey,
    ReplicaView,
    changed_since,
    site_replicas,
    source_sites,
)
from dynamo_consistency.settings import ConsistencySettings

log = logging.getLogger("dynamo.consistency")

T = TypeVar("T")

# What the background loops survive: a database or broker restart must not end them.
_TRANSIENT = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, BusError)
_FETCH_ATTEMPTS = 4
EventAction = Literal["none", "acted", "flagged", "dry_run", "failed"]
_EVENT_ACTIONS: dict[Action, EventAction] = {
    Action.NONE: "none",
    Action.ACTED: "acted",
    Action.FLAGGED: "flagged",
    Action.DRY_RUN: "dry_run",
    Action.FAILED: "failed",
}


class CheckFailed(Exception):
    """The check cannot compare anything (no usable protocol, storage unreachable, ...)."""


class Conflict(Exception):
    """A request that the state of the site or run does not allow; the message says why."""


@dataclass(slots=True)
class Claim:
    site: SiteRow
    conn: Any  # the pool connection that holds the site's advisory lock
    taken_at: datetime

    @property
    def approval(self) -> bool:
        return self.site.approval_run is not None

    @property
    def requested(self) -> bool:
        return self.site.requested is not None and self.site.requested <= self.taken_at


@dataclass(slots=True)
class Carried:
    """What carrying out a plan achieved."""

    transfers: Outcome = field(default_factory=Outcome)
    deletions: Outcome = field(default_factory=Outcome)
    updates: Outcome = field(default_factory=Outcome)
    empty_dirs: list[str] = field(default_factory=list)

    @property
    def anything(self) -> bool:
        return bool(
            self.transfers.accepted
            or self.deletions.accepted
            or self.updates.accepted
            or self.empty_dirs
        )

    @property
    def errors(self) -> list[str]:
        return self.transfers.errors + self.deletions.errors + self.updates.errors

    def describe(self, plan: Plan) -> str:
        parts = []
        if plan.transfers:
            parts.append(f"re-transfer {self.transfers.accepted}/{len(plan.transfers)} files")
        if plan.replica_updates:
            parts.append(
                f"{len(plan.unrecoverable)} unrecoverable files reported to the inventory "
                f"({self.updates.accepted}/{len(plan.replica_updates)} block replicas)"
            )
        if plan.deletions:
            parts.append(f"delete {self.deletions.accepted}/{len(plan.deletions)} orphans")
        if plan.dropped:
            parts.append(f"{len(plan.dropped)} missing files left: their replica changed")
        if plan.undeletable:
            parts.append(f"{len(plan.undeletable)} orphans with invalid names left to operators")
        if self.empty_dirs:
            parts.append(f"{len(self.empty_dirs)} empty directories removed")
        errors = self.errors
        if errors:
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            parts.append("not accepted: " + "; ".join(errors[:3]) + more)
        return "; ".join(parts)


class ConsistencyRuntime:
    def __init__(
        self,
        *,
        settings: ConsistencySettings,
        pool: asyncpg.Pool,
        bus: Bus,
        readmodel: ReadModelClient,
        files: InventoryFiles,
        requests: Requests,
        storage: Storage,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.bus = bus
        self.readmodel = readmodel
        self.files = files
        self.requests = requests
        self.storage = storage
        self.thresholds = Thresholds(settings.max_missing, settings.max_orphans)
        self.ignored = PrefixSet(settings.ignored_dirs)
        self.wakeup = asyncio.Event()
        self.relay_wakeup = asyncio.Event()
        self.running: dict[str, asyncio.Task[None]] = {}
        self.checks_done = 0

    # =============================================================== the scheduler

    async def scheduler_loop(self) -> None:
        await self.readmodel.ready.wait()
        while True:
            try:
                await self.schedule_once()
            except _TRANSIENT as exc:
                log.warning("scheduler: %r", exc)
            except Exception:
                log.exception("scheduler failed")
            self.wakeup.clear()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns when the event
            # is set as the task is cancelled, losing the cancellation, and the stop that
            # awaits this task waits forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.schedule_interval):
                    await self.wakeup.wait()

    async def schedule_once(self) -> int:
        """Start checks (and approvals) until this worker runs ``parallel_sites`` of them or
        no site is due; returns how many were started."""
        async with self.pool.acquire() as conn:
            abandoned = await store.abandon_runs(conn, _utcnow())
        if abandoned:
            log.warning("runs abandoned by a stopped worker marked failed: %d", abandoned)
        started = 0
        while len(self.running) < self.settings.parallel_sites:
            claim = await self._claim()
            if claim is None:
                break
            name = claim.site.name
            self.running[name] = asyncio.create_task(self._execute(claim), name=f"check:{name}")
            started += 1
        return started

    async def _claim(self) -> Claim | None:
        model = self.readmodel.model
        preference = self.settings.protocol_preference
        eligible = [
            s.name
            for s in model.sites.values()
            if s.status is SiteStatus.READY and any(p in preference for p, _ in s.protocols)
        ]
        if not self.settings.scheduled_checks:
            eligible = []
        now = _utcnow()
        due_before = now - timedelta(seconds=self.settings.recheck_interval)
        async with self.pool.acquire() as conn:
            await store.ensure_sites(conn, sorted(model.sites))
            rows = await store.candidates(
                conn, eligible, due_before, sorted(self.running), self.settings.parallel_sites + 8
            )
        for row in rows:
            conn = await self.pool.acquire()
            try:
                if await store.try_lock(conn, row.id):
                    fresh = await store.site(conn, row.name)
                    if fresh is not None and _still_due(row, fresh, due_before):
                        return Claim(fresh, conn, now)
                    await store.unlock(conn, row.id)
            except BaseException:
                await self.pool.release(conn)
                raise
            await self.pool.release(conn)
        return None

    async def _execute(self, claim: Claim) -> None:
        name = claim.site.name
        try:
            if claim.approval:
                await self._approve(claim)
            else:
                await self._check(claim)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("consistency work on %s failed", name)
        finally:
            try:
                await store.unlock(claim.conn, claim.site.id)
            except Exception as exc:
                # Released with the connection anyway (asyncpg resets sessions on release).
                log.warning("cannot unlock %s: %r", name, exc)
            finally:
                # Also when the stop cancels this task during the unlock (a check that has
                # just finished): a connection never given back holds pool.close(), and the
                # service's stop with it, forever.
                await self.pool.release(claim.conn)
                self.running.pop(name, None)
                self.wakeup.set()

    # =============================================================== the check

    async def _check(self, claim: Claim) -> None:
        site = claim.site
        dry_run = claim.requested and site.requested_dry_run
        started = _utcnow()
        clock = time.monotonic()
        async with self.pool.acquire() as conn:
            run_id = await store.insert_run(
                conn, site.name, self.settings.worker_id, started, dry_run
            )
        log.info("check started", extra={"site": site.name, "run_id": run_id})
        fields: dict[str, Any] = {}
        status: Literal["done", "failed"] = "done"
        error: str | None = None
        try:
            action, reason = await self._compare_and_act(run_id, site, dry_run, fields)
        except Exception as exc:
            if not isinstance(exc, CheckFailed | httpx.HTTPError):
                log.exception("check of %s failed", site.name)
            status, action, reason, error = "failed", Action.FAILED, "", _message(exc)
        finished = _utcnow()
        duration = time.monotonic() - clock
        fields.update(
            status=status,
            action=action.value,
            reason=reason,
            error=error,
            finished=finished,
            duration=duration,
        )
        event = ConsistencyRunFinished(
            run_id=run_id,
            site=site.name,
            started=started,
            finished=finished,
            duration=duration,
            status=status,
            action=_EVENT_ACTIONS[action],
            reason=(error or reason)[:2000],
            files_listed=fields.get("files_listed", 0),
            dirs_listed=fields.get("dirs_listed", 0),
            unlisted_dirs=fields.get("unlisted_dirs", 0),
            empty_dirs_removed=fields.get("empty_dirs_removed", 0),
            missing_files=fields.get("missing_files", 0),
            missing_bytes=fields.get("missing_bytes", 0),
            unrecoverable_files=fields.get("unrecoverable_files", 0),
            unrecoverable_bytes=fields.get("unrecoverable_bytes", 0),
            orphan_files=fields.get("orphan_files", 0),
            orphan_bytes=fields.get("orphan_bytes", 0),
            transfers_requested=fields.get("transfers_requested", 0),
            deletions_requested=fields.get("deletions_requested", 0),
        )
        envelope = Envelope(
            type=ConsistencyEvent.RUN_FINISHED.value,
            source=SOURCE,
            time=finished,
            data=event.model_dump(mode="json"),
        )
        async with self.pool.acquire() as conn, conn.transaction():
            await store.update_run(conn, run_id, fields)
            await store.mark_checked(conn, site.id, run_id, finished)
            if claim.requested:
                await store.clear_request(conn, site.id, claim.taken_at)
            if action is Action.FLAGGED:
                await store.halt_if_enabled(conn, site.name, f"run {run_id}: {reason}", finished)
            await store.add_event(conn, envelope.type, envelope.to_json().decode(), finished)
        self.relay_wakeup.set()
        self.checks_done += 1
        log.info(
            "check finished",
            extra={"site": site.name, "run_id": run_id, "status": status, "action": action.value},
        )

    async def _compare_and_act(
        self, run_id: int, site: SiteRow, dry_run: bool, fields: dict[str, Any]
    ) -> tuple[Action, str]:
        """The check proper; fills ``fields`` (columns of the run) as it goes."""
        settings = self.settings
        name = site.name
        model = self.readmodel.model
        found = model.sites.get(name)
        if found is None:
            raise CheckFailed(f"the inventory does not know site {name}")
        namespace = _namespace(found, settings)
        fields["protocol"] = namespace.protocol
        fields["roots"] = [r.pfn for r in namespace.roots]
        fields["inventory_seq"] = model.seq

        # The inventory first: a file that arrives while the storage is listed is then new
        # on the storage (within the grace period), never missing from it.
        now = time.time()
        at_view = site_replicas(model, name, now=now, grace=settings.grace_period)
        view, gone = await self._fetch_view(name, at_view, namespace)

        listed = ListedFiles(cutoff=now - settings.grace_period)
        unlisted_rows: list[tuple[str, str]] = []
        failed_roots: list[ListingRoot] = []
        for root in namespace.roots:
            result = await list_root(
                self.storage,
                root,
                listed,
                parallelism=settings.listing_parallelism,
                retries=settings.listing_retries,
                timeout=settings.listing_timeout,
            )
            unlisted_rows += [(u.lfn, u.error) for u in result.unlisted]
            if result.root_failed:
                failed_roots.append(root)
        if len(failed_roots) == len(namespace.roots):
            errors = "; ".join(
                err for lfn, err in unlisted_rows if lfn in {r.lfn for r in failed_roots}
            )
            raise CheckFailed(f"the storage of {name} could not be listed: {errors}")
        fields.update(
            files_listed=len(listed.sizes),
            dirs_listed=listed.dirs_listed,
            unlisted_dirs=len(unlisted_rows),
        )

        # Whatever changed at the site while it was listed is in flight now.
        model = self.readmodel.model
        now_replicas = site_replicas(model, name, now=now, grace=settings.grace_period)
        changed = changed_since(at_view, now_replicas) | gone
        view.demote(changed)
        await self._add_new_files(view, changed, now_replicas)

        comparison = await asyncio.to_thread(compare, view, listed, self.ignored)
        async with self.pool.acquire() as conn:
            previous_run = await store.latest_compared_run(conn, name, run_id)
            previous = (
                None if previous_run is None else await store.missing_lfns(conn, previous_run)
            )
        confirmed, _first = split_strikes(comparison.missing, previous)
        confirmed_lfns = {m.lfn for m in confirmed}
        first_source: dict[str, str] = {}
        no_source: list[Missing] = []
        for item in comparison.missing:
            sources = source_sites(model, item.block, name)
            if sources:
                first_source[item.lfn] = sources[0]
            else:
                no_source.append(item)
        no_source_lfns = {m.lfn for m in no_source}
        fields.update(_comparison_fields(comparison, view))
        fields.update(
            missing_confirmed=len(confirmed),
            unrecoverable_files=len(no_source),
            unrecoverable_bytes=sum(m.size for m in no_source),
        )

        rows: list[tuple[Any, ...]] = [
            (
                run_id,
                "missing",
                m.lfn,
                m.size,
                m.block.dataset,
                m.block.block,
                m.listed_size,
                2 if m.lfn in confirmed_lfns else 1,
                m.lfn in no_source_lfns,
                first_source.get(m.lfn),
                False,
                None,
            )
            for m in comparison.missing
        ]
        rows += [_orphan_row(run_id, o) for o in comparison.orphans]
        rows += [
            (run_id, "unlisted", lfn, None, None, None, None, None, False, None, False, error)
            for lfn, error in unlisted_rows
        ]
        async with self.pool.acquire() as conn, conn.transaction():
            await store.save_files(conn, rows)
            await store.update_run(conn, run_id, dict(fields))

        decision = decide(
            len(comparison.missing),
            len(comparison.orphans),
            thresholds=self.thresholds,
            state=SiteState(site.state),
            dry_run=dry_run,
        )
        if not decision.act:
            return decision.action, decision.reason
        plan = plan_actions(
            model,
            name,
            confirmed,
            comparison.orphans,
            now_replicas,
            changed=changed,
            priority=settings.transfer_priority,
        )
        usable_roots = [r for r in namespace.roots if r not in failed_roots]
        carried = await self._carry_out(run_id, f"run/{run_id}", name, plan, usable_roots)
        fields.update(_carried_fields(carried))
        fields["action_detail"] = carried.describe(plan)
        # Acted on even when a request went unanswered: the reason says which, and the
        # summary table asks for an operator.
        acted = not plan.empty or bool(carried.empty_dirs)
        return (Action.ACTED if acted else Action.NONE), _errors(carried)

    async def _fetch_view(
        self, site: str, replicas: Mapping[BlockKey, ReplicaView], namespace: Namespace
    ) -> tuple[InventoryView, set[BlockKey]]:
        """The files of every block replica at the site: one streamed request to the inventory
        for the whole site, then, for the few block replicas the stream did not carry (they
        changed since the read model saw them, or have no files), one request each,
        ``view_parallelism`` at a time. Blocks the inventory no longer knows are returned
        apart (they changed under the check)."""
        view = InventoryView()
        gone: set[BlockKey] = set()

        def visible(lfn: str) -> bool:
            return namespace.root_of(lfn) is not None

        streamed = await self._retrying(lambda: self.files.site_files(site))
        for key in sorted(replicas):
            files = streamed.get((key.dataset, key.block))
            if files is not None:
                view.add_block(key, replicas[key].settled, files, visible)
        absent = [key for key in replicas if (key.dataset, key.block) not in streamed]

        async def one(key: BlockKey) -> None:
            files = await self._block_files(key)
            if files is None:
                gone.add(key)
            else:
                view.add_block(key, replicas[key].settled, files, visible)

        await _bounded(one, sorted(absent), self.settings.view_parallelism)
        return view, gone

    async def _add_new_files(
        self, view: InventoryView, changed: set[BlockKey], now: Mapping[BlockKey, ReplicaView]
    ) -> None:
        """Files of replicas created or changed during the listing: never orphans."""
        fresh = [key for key in changed if key in now]

        async def one(key: BlockKey) -> None:
            files = await self._block_files(key)
            if files:
                view.add_in_flight((lfn, key) for lfn, _ in files)

        await _bounded(one, sorted(fresh), self.settings.view_parallelism)

    async def _block_files(self, key: BlockKey) -> list[tuple[str, int]] | None:
        return await self._retrying(lambda: self.files.block_files(key.dataset, key.block))

    async def _retrying(self, fetch: Callable[[], Awaitable[T]]) -> T:
        """``fetch`` again, with a growing pause, while the inventory answers 5xx or cannot be
        reached; other refusals are raised at once."""
        delay = 0.2
        for attempt in range(_FETCH_ATTEMPTS):
            try:
                return await fetch()
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code < 500 or attempt == _FETCH_ATTEMPTS - 1:
                    raise
            except httpx.TransportError:
                if attempt == _FETCH_ATTEMPTS - 1:
                    raise
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    async def _carry_out(
        self, run_id: int, key: str, site: str, plan: Plan, roots: list[ListingRoot]
    ) -> Carried:
        carried = Carried()
        settings = self.settings
        if plan.transfers:
            carried.transfers = await self.requests.transfer_files(plan.transfers, key)
        if plan.replica_updates:
            carried.updates = await self.requests.update_replicas(plan.replica_updates, key)
        if plan.deletions:
            carried.deletions = await self.requests.delete_files(plan.deletions, key)
        if settings.remove_empty_dirs:
            for root in roots:
                carried.empty_dirs += await remove_empty_dirs(
                    self.storage,
                    root,
                    settings.ignored_dirs,
                    older_than=settings.grace_period,
                    parallelism=settings.listing_parallelism,
                )
        reported = set(carried.updates.accepted_items)
        acted_missing = carried.transfers.accepted_items + [
            m.lfn for m in plan.unrecoverable if str(m.block) in reported
        ]
        async with self.pool.acquire() as conn, conn.transaction():
            await store.set_sources(conn, run_id, plan.sources)
            await store.mark_acted(conn, run_id, "missing", acted_missing)
            await store.mark_acted(conn, run_id, "orphan", carried.deletions.accepted_items)
            await store.save_files(
                conn,
                (
                    (
                        run_id,
                        "empty_dir",
                        lfn,
                        None,
                        None,
                        None,
                        None,
                        None,
                        False,
                        None,
                        True,
                        None,
                    )
                    for lfn in carried.empty_dirs
                ),
            )
        log.info(
            "actions sent",
            extra={"site": site, "run_id": run_id, "detail": carried.describe(plan)},
        )
        return carried

    # =============================================================== approvals

    async def approve(self, site: str, run_id: int, first_strike: bool) -> None:
        """Record an operator's approval of a flagged check; a worker carries it out (under
        the site's lock, with the inventory as it is then)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await store.site(conn, site)
            if row is None:
                raise Conflict(f"unknown site {site!r}")
            run = await store.run(conn, run_id)
            _check_approvable(row, run, self.settings.approval_max_age)
            await store.request_approval(conn, site, run_id, first_strike, _utcnow())
        self.wakeup.set()

    async def _approve(self, claim: Claim) -> None:
        site = claim.site
        run_id = site.approval_run
        assert run_id is not None
        async with self.pool.acquire() as conn:
            run = await store.run(conn, run_id)
            try:
                _check_approvable(site, run, self.settings.approval_max_age)
            except Conflict as exc:
                log.warning("approval of run %d dropped: %s", run_id, exc)
                await store.clear_approval(conn, site.id, run_id)
                return
            strike = None if site.approval_first_strike else 2
            _, missing_rows = await store.run_files(conn, run_id, "missing", strike=strike)
            _, orphan_rows = await store.run_files(conn, run_id, "orphan")

        model = self.readmodel.model
        found = model.sites.get(site.name)
        detail: str
        carried = Carried()
        plan = Plan()
        try:
            if found is None:
                raise CheckFailed(f"the inventory no longer knows site {site.name}")
            namespace = _namespace(found, self.settings)
            replicas = site_replicas(
                model, site.name, now=time.time(), grace=self.settings.grace_period
            )
            # The inventory may have moved on since the check: only what is still missing
            # from a settled replica, and still unknown to the inventory, is acted on.
            view, _gone = await self._fetch_view(site.name, replicas, namespace)
            missing = [
                Missing(
                    r["path"],
                    r["size"],
                    BlockKey(r["dataset"], r["block"]),
                    r["listed_size"],
                )
                for r in missing_rows
                if r["path"] in view.expected
            ]
            orphans = [
                Orphan(r["path"], r["size"]) for r in orphan_rows if r["path"] not in view.block_of
            ]
            plan = plan_actions(
                model,
                site.name,
                missing,
                orphans,
                replicas,
                priority=self.settings.transfer_priority,
            )
            carried = await self._carry_out(
                run_id, f"approval/{run_id}", site.name, plan, namespace.roots
            )
            detail = carried.describe(plan) or "nothing left to act on"
            skipped = len(missing_rows) - len(missing) + len(orphan_rows) - len(orphans)
            if skipped:
                detail += f"; {skipped} files no longer differ from the inventory"
        except (CheckFailed, httpx.HTTPError) as exc:
            detail = f"approval failed: {_message(exc)}"
        now = _utcnow()
        async with self.pool.acquire() as conn, conn.transaction():
            run = await store.run(conn, run_id)
            assert run is not None
            fields: dict[str, Any] = {
                "action": Action.APPROVED.value,
                "approved": now,
                "action_detail": detail,
            }
            for column, value in _carried_fields(carried).items():
                fields[column] = run[column] + value
            await store.update_run(conn, run_id, fields)
            await store.clear_approval(conn, site.id, run_id)
            await store.set_state(
                conn, site.name, SiteState.ENABLED.value, f"run {run_id} approved", now
            )
        log.info("approval carried out", extra={"site": site.name, "run_id": run_id})

    # =============================================================== API helpers

    async def request_check(self, site: str, dry_run: bool) -> SiteRow:
        async with self.pool.acquire() as conn:
            await store.ensure_sites(conn, [site])
            row = await store.site(conn, site)
            assert row is not None
            if row.state == SiteState.DISABLED:
                raise Conflict(f"site {site} is disabled: enable it first")
            updated = await store.request_check(conn, site, _utcnow(), dry_run)
        assert updated is not None
        self.wakeup.set()
        return updated

    async def set_state(self, site: str, state: SiteState, reason: str) -> SiteRow:
        async with self.pool.acquire() as conn:
            await store.ensure_sites(conn, [site])
            row = await store.set_state(conn, site, state.value, reason, _utcnow())
        assert row is not None
        self.wakeup.set()
        return row

    # =============================================================== the relay

    async def relay_loop(self) -> None:
        last_prune = 0.0
        while True:
            try:
                published = await self.relay_once()
                if time.monotonic() - last_prune > 3600:
                    await self._prune()
                    last_prune = time.monotonic()
            except _TRANSIENT as exc:
                log.warning("relay: %r", exc)
                published = 0
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("relay failed")
                published = 0
                await asyncio.sleep(1.0)
            if published:
                continue
            self.relay_wakeup.clear()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns when the event
            # is set as the task is cancelled, losing the cancellation, and the stop that
            # awaits this task waits forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.relay_poll_interval):
                    await self.relay_wakeup.wait()

    async def relay_once(self) -> int:
        # Row locks (SKIP LOCKED) let several workers relay without publishing a row twice.
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await store.unpublished(conn, 200)
            if not rows:
                return 0
            await self.bus.publish("events", [Envelope.from_json(raw) for _, raw in rows])
            await store.mark_published(conn, [row_id for row_id, _ in rows])
        return len(rows)

    async def _prune(self) -> None:
        now = _utcnow()
        async with self.pool.acquire() as conn:
            await store.prune_outbox(conn, now - timedelta(days=7))
            await store.prune_files(
                conn, now - timedelta(days=self.settings.run_files_retention_days)
            )


# ----------------------------------------------------------------------------- helpers


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _still_due(seen: SiteRow, fresh: SiteRow, due_before: datetime) -> bool:
    """Whether a site selected a moment ago is still to be taken, now that its lock is held
    (another worker may have finished it in between)."""
    if fresh.approval_run is not None:
        return True
    if fresh.requested is not None and fresh.state != SiteState.DISABLED:
        return True
    return (
        fresh.state == SiteState.ENABLED
        and fresh.last_check == seen.last_check
        and (fresh.last_check is None or fresh.last_check < due_before)
    )


def _check_approvable(site: SiteRow, run: asyncpg.Record | None, max_age: float) -> None:
    if run is None or run["site"] != site.name:
        raise Conflict(f"site {site.name} has no run {run['id'] if run else ''}".strip())
    if run["action"] != Action.FLAGGED:
        raise Conflict(f"run {run['id']} is not waiting for approval ({run['action']})")
    if site.last_run_id != run["id"]:
        raise Conflict(
            f"run {run['id']} is not the latest check of {site.name}: approve the latest one"
        )
    finished = run["finished"]
    if finished is None or _utcnow() - finished > timedelta(seconds=max_age):
        raise Conflict(f"run {run['id']} is too old to approve: check {site.name} again")


def _namespace(site: Site, settings: ConsistencySettings) -> Namespace:
    try:
        return Namespace.choose(
            PfnMapper.from_site(site), settings.protocol_preference, settings.roots
        )
    except (NamespaceError, ValueError) as exc:
        raise CheckFailed(str(exc)) from None


def _comparison_fields(comparison: Comparison, view: InventoryView) -> dict[str, Any]:
    return {
        "expected_files": comparison.expected,
        "missing_files": len(comparison.missing),
        "missing_bytes": comparison.missing_bytes,
        "missing_blocks": len({m.block for m in comparison.missing}),
        "orphan_files": len(comparison.orphans),
        "orphan_bytes": comparison.orphan_bytes,
        "ignored_files": comparison.ignored,
        "ignored_bytes": comparison.ignored_bytes,
        "skipped_recent": comparison.recent,
        "skipped_in_flight": comparison.in_flight,
        "skipped_unlisted": comparison.unlisted,
        "outside_files": view.outside,
    }


def _carried_fields(carried: Carried) -> dict[str, int]:
    return {
        "transfers_requested": carried.transfers.accepted,
        "deletions_requested": carried.deletions.accepted,
        "replicas_reported": carried.updates.accepted,
        "empty_dirs_removed": len(carried.empty_dirs),
    }


def _orphan_row(run_id: int, orphan: Orphan) -> tuple[Any, ...]:
    return (
        run_id,
        "orphan",
        orphan.lfn,
        orphan.size,
        None,
        None,
        None,
        None,
        False,
        None,
        False,
        None,
    )


def _errors(carried: Carried) -> str:
    errors = carried.errors
    if not errors:
        return ""
    return f"{len(errors)} requests were not accepted: " + "; ".join(errors[:3])


def _message(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.HTTPError):
        return f"inventory: {text}"
    return text


async def _bounded(
    fn: Callable[[T], Awaitable[None]], items: Iterable[T], parallelism: int
) -> None:
    """``fn`` over ``items``, at most ``parallelism`` at once; the first failure cancels the
    rest and is raised."""
    iterator = iter(items)

    async def worker() -> None:
        for item in iterator:
            await fn(item)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(parallelism):
                group.create_task(worker())
    except ExceptionGroup as failed:
        # The callers handle the failure itself (an unreachable inventory), not a group.
        raise failed.exceptions[0] from None
