"""The transfer service at run time.

Every instance takes commands (intake) and serves the API. One instance at a time, the
leader (it holds a PostgreSQL session advisory lock), runs the queue: the scheduler (sources,
batches, submission), the FTS poller, deletions, and the reports to the inventory. The
database is the truth: a leader that dies leaves tasks in states from which the next leader
carries on, without losing any and without doing any twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import asyncpg
from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from dynamo_common.bus.base import Bus, BusError, RequestTimeout
from dynamo_common.messages import inventory as inv
from dynamo_common.messages import transfer as tr
from dynamo_common.messages.envelope import Envelope
from dynamo_common.messages.registry import (
    InventoryCommand,
    TransferCommand,
    TransferEvent,
    UnknownMessageType,
    command_model,
)
from dynamo_common.model.objects import Block, Inventory, Site
from dynamo_common.readmodel import ReadModelClient
from dynamo_common.storage import PfnError, PfnMapper, Storage
from dynamo_transfer.backends.base import Backend, Result
from dynamo_transfer.backends.deletion import delete_file
from dynamo_transfer.inventory import SOURCE, InventoryClient, command_id
from dynamo_transfer.repository import store
from dynamo_transfer.repository.store import TaskRow
from dynamo_transfer.service import intake
from dynamo_transfer.service.batching import Caps, plan_batches
from dynamo_transfer.service.intake import FileInfo, NewTask, ReplicaTarget, RequestRejected
from dynamo_transfer.service.retry import Failure, Severity, after_failure
from dynamo_transfer.service.sources import NoSource, choose_source, destination_problem, map_at
from dynamo_transfer.service.states import Kind, State, transition
from dynamo_transfer.settings import TransferSettings

log = logging.getLogger("dynamo.transfer")

_LEADER_LOCK = 0x7472616E73666C64  # "transfld": one instance runs the queue
_TRANSIENT = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, BusError)
_NEW_BATCH = 2000
_COMMANDS = frozenset(c.value for c in TransferCommand)
T = TypeVar("T")


class Pfns:
    """LFN -> PFN through each site's rules, with the compiled rules cached per site."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, object], PfnMapper] = {}

    def mapper(self, site: Site) -> PfnMapper:
        key = (site.name, site.protocols)
        mapper = self._cache.get(key)
        if mapper is None:
            mapper = self._cache[key] = PfnMapper.from_site(site)
        return mapper

    def __call__(self, site: Site, protocol: str, lfn: str) -> str | None:
        try:
            return self.mapper(site).lfn_to_pfn(lfn, protocol)
        except PfnError:
            return None


def _now() -> datetime:
    return datetime.now(UTC)


async def _within(seconds: float, awaitable: Awaitable[T]) -> T:
    """``asyncio.wait_for`` without its Python 3.11 flaw (CPython gh-86296): there, a
    cancellation that arrives just as the awaited thing completes is swallowed, and a loop
    that swallows its cancellation never stops (the service's shutdown then waits for it
    forever, e.g. a wakeup set by a copy finishing while the leader is being cancelled)."""
    async with asyncio.timeout(seconds):
        return await awaitable


def _block(model: Inventory, dataset: str | None, block: str | None) -> Block | None:
    if dataset is None or block is None:
        return None
    found = model.datasets.get(dataset)
    return found.blocks.get(block) if found is not None else None


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
    _submitting: set[str] = field(default_factory=set)
    _last_progress: float = float("-inf")
    _deleting: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def preference(self) -> list[str]:
        return self.settings.protocol_preference

    # ================================================================== intake (commands)

    async def handle_command(self, envelope: Envelope) -> tr.TransferCommandReply:
        """Accept or refuse one command, exactly once: a command seen before gets the reply
        it got then."""
        async with self.pool.acquire() as conn:
            recorded = await store.recorded_reply(conn, envelope.id)
        if recorded is not None:
            return tr.TransferCommandReply.model_validate_json(recorded)
        if envelope.type not in _COMMANDS:
            return await self._reject(envelope, f"not a transfer command: {envelope.type!r}")
        try:
            command = command_model(envelope.type).model_validate(envelope.data)
        except UnknownMessageType as exc:
            return await self._reject(envelope, str(exc))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return await self._reject(
                envelope, f"the command is malformed: {where}: {first['msg']}"
            )
        try:
            targets, new = await self._plan_with_fresh_model(envelope.type, command)
            await self._create_inventory_replicas(envelope.id, targets)
        except RequestRejected as exc:
            return await self._reject(envelope, exc.reason)
        reply = await self._enqueue(envelope, targets, new)
        self.schedule_wakeup.set()
        return reply

    async def _plan_with_fresh_model(
        self, command_type: str, command: BaseModel
    ) -> tuple[list[ReplicaTarget], list[NewTask]]:
        try:
            return await self._plan(command_type, command)
        except RequestRejected:
            # The caller may have just registered what it names (read-your-writes): if the
            # inventory is ahead of our copy, catch up and look again before refusing.
            seq = self.readmodel.seq
            latest = await self.inventory.last_seq(seq)
            if latest <= seq:
                raise
            await self.readmodel.wait_for_seq(latest, timeout=30.0)
            return await self._plan(command_type, command)

    async def _plan(
        self, command_type: str, command: BaseModel
    ) -> tuple[list[ReplicaTarget], list[NewTask]]:
        model = self.readmodel.model
        pref = self.preference
        if isinstance(command, tr.TransferReplicas):
            targets = intake.plan_replica_transfers(model, command, pref)
            complete = [t.key for t in targets if t.complete]
            if complete:
                async with self.pool.acquire() as conn:
                    deleting = await store.active_rows(conn, Kind.DELETION, complete)
                targets = [
                    t
                    for t in targets
                    if not t.complete or (t.key.dataset, t.key.block, t.key.site) in deleting
                ]
            await self._fill_files(model, targets)
            return targets, intake.expand(targets)
        if isinstance(command, tr.DeleteReplicaFiles):
            targets = intake.plan_replica_deletions(model, command, pref)
            await self._fill_files(model, targets)
            return targets, intake.expand(targets)
        if isinstance(command, tr.TransferFiles):
            sites = intake.check_file_sites(model, (f.site for f in command.files), pref)
            catalogue: dict[tuple[str, str], dict[str, FileInfo]] = {}
            tasks: list[NewTask] = []
            for spec in command.files:
                intake.check_block(model, spec.dataset, spec.block)
                key = (spec.dataset, spec.block)
                if key not in catalogue:
                    files = await self.inventory.block_files(*key)
                    catalogue[key] = {f.lfn: f for f in files}
                info = catalogue[key].get(spec.lfn)
                if info is None:
                    raise RequestRejected(
                        f"LFN {spec.lfn} is not a file of block {spec.dataset}#{spec.block}"
                    )
                intake.check_mappings(sites[spec.site], [spec.lfn], pref, self.pfns)
                tasks.append(
                    NewTask(
                        kind=Kind.TRANSFER,
                        lfn=spec.lfn,
                        site=spec.site,
                        priority=spec.priority,
                        dataset=spec.dataset,
                        block=spec.block,
                        size=info.size,
                        adler32=info.adler32,
                    )
                )
            return [], tasks
        if isinstance(command, tr.DeleteFiles):
            sites = intake.check_file_sites(model, (f.site for f in command.files), pref)
            tasks = []
            for orphan in command.files:
                intake.check_mappings(sites[orphan.site], [orphan.lfn], pref, self.pfns)
                tasks.append(
                    NewTask(kind=Kind.DELETION, lfn=orphan.lfn, site=orphan.site, priority=3)
                )
            return [], tasks
        raise RequestRejected(f"not a transfer command: {command_type!r}")

    async def _fill_files(self, model: Inventory, targets: list[ReplicaTarget]) -> None:
        for target in targets:
            key = target.key
            files = await self.inventory.block_files(key.dataset, key.block)
            block = _block(model, key.dataset, key.block)
            if block is not None and len(files) < block.num_files:
                raise RequestRejected(
                    f"block {key.dataset}#{key.block} has {block.num_files} files but only "
                    f"{len(files)} are registered in the inventory: nothing to copy them from"
                )
            intake.check_mappings(
                model.sites[key.site], (f.lfn for f in files), self.preference, self.pfns
            )
            target.files = files

    async def _create_inventory_replicas(self, cid: str, targets: Sequence[ReplicaTarget]) -> None:
        """Tell the inventory about the block replicas about to be built (empty), before any
        file is queued for them."""
        missing = [t for t in targets if t.key.kind is Kind.TRANSFER and not t.exists]
        if not missing:
            return

        def spec(t: ReplicaTarget) -> inv.BlockReplicaSpec:
            return inv.BlockReplicaSpec(
                dataset=t.key.dataset,
                block=t.key.block,
                site=t.key.site,
                group=t.group,
                size=0,
                num_files=0,
            )

        reply = await self._inventory_command(
            InventoryCommand.CREATE_REPLICAS,
            inv.CreateReplicas(block_replicas=[spec(t) for t in missing]),
            command_id(cid, "create"),
        )
        if reply.status == "accepted":
            return
        # One of them exists after all (our copy of the inventory lagged): create one at a
        # time, so that the others are not refused with it.
        for t in missing:
            reply = await self._inventory_command(
                InventoryCommand.CREATE_REPLICAS,
                inv.CreateReplicas(block_replicas=[spec(t)]),
                command_id(cid, "create", t.key.dataset, t.key.block, t.key.site),
            )
            if reply.status == "rejected" and "already has a replica" not in (reply.reason or ""):
                raise RequestRejected(
                    f"the inventory refused the replica of {t.key.dataset}#{t.key.block} at "
                    f"{t.key.site}: {reply.reason}"
                )

    async def _inventory_command(self, type_: str, body: BaseModel, cid: str) -> inv.CommandReply:
        return await self.inventory.command(type_, body, cid)

    async def _enqueue(
        self, envelope: Envelope, targets: Sequence[ReplicaTarget], new: Sequence[NewTask]
    ) -> tr.TransferCommandReply:
        now = _now()
        pairs = sorted({(t.lfn, t.site) for t in new})
        async with self.pool.acquire() as conn, conn.transaction():
            await store.lock_intake(conn)
            existing = await store.existing_tasks(conn, pairs)
            plan = intake.reconcile(new, existing)
            row_ids = await store.ensure_replica_rows(conn, targets, now)
            inserted = await store.insert_tasks(conn, plan.insert, row_ids, envelope.id, now)
            await store.adopt_tasks(conn, plan.adopt, row_ids)
            kind = new[0].kind.value if new else "request"
            cancelled = await store.cancel_tasks(
                conn, plan.cancel, f"cancelled by a later {kind} request ({envelope.id})", now
            )
            reply = tr.TransferCommandReply(
                command_id=envelope.id, status="accepted", tasks=inserted, cancelled=cancelled
            )
            await store.record_command(
                conn, envelope.id, envelope.type, now, reply.model_dump_json()
            )
        log.info(
            "command accepted",
            extra={"command_id": envelope.id, "tasks": inserted, "cancelled": cancelled},
        )
        self.report_wakeup.set()
        return reply

    async def _reject(self, envelope: Envelope, reason: str) -> tr.TransferCommandReply:
        reply = tr.TransferCommandReply(command_id=envelope.id, status="rejected", reason=reason)
        async with self.pool.acquire() as conn:
            await store.record_command(
                conn, envelope.id, envelope.type, _now(), reply.model_dump_json()
            )
        log.info("command rejected", extra={"command_id": envelope.id, "reason": reason})
        return reply

    # ================================================================== leadership

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
                while not await conn.fetchval(  # noqa: ASYNC110
                    "SELECT pg_try_advisory_lock($1)", _LEADER_LOCK
                ):
                    await asyncio.sleep(self.settings.poll_interval)
                await self._lead(conn)
            except _TRANSIENT as exc:
                log.warning("leader: interrupted: %r", exc)
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("leader: failed; starting over")
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await _within(2.0, conn.close())

    async def _lead(self, lock_conn: asyncpg.Connection) -> None:
        backend = self.make_backend(self)
        self.backend = backend
        self.leader = True
        log.info("leader: running the queue (backend %s)", backend.name)
        try:
            await self.recover()
            async with asyncio.TaskGroup() as group:
                group.create_task(self._watch_lock(lock_conn))
                group.create_task(
                    self._forever(self.schedule_once, self.schedule_wakeup, "scheduler")
                )
                group.create_task(
                    self._forever(
                        self.report_once,
                        self.report_wakeup,
                        "reporter",
                        self.settings.progress_interval,
                    )
                )
                if backend.uses_jobs:
                    group.create_task(self._forever(self.poll_once, None, "poller"))
        finally:
            self.leader = False
            for task in list(self._deleting):
                task.cancel()
            await asyncio.gather(*self._deleting, return_exceptions=True)
            await backend.close()
            self.backend = None

    async def _watch_lock(self, conn: asyncpg.Connection) -> None:
        # Losing the lock's connection means another instance may lead already: stop.
        while True:
            await asyncio.sleep(2.0)
            await _within(10.0, conn.fetchval("SELECT 1"))

    async def _forever(
        self,
        once: Callable[[], Awaitable[float | None]],
        wakeup: asyncio.Event | None,
        name: str,
        interval: float | None = None,
    ) -> None:
        period = interval or self.settings.poll_interval
        while True:
            if wakeup is not None:
                wakeup.clear()
            delay = period
            try:
                sooner = await once()
                if sooner is not None:
                    delay = max(0.05, min(delay, sooner))
            except _TRANSIENT as exc:
                log.warning("%s: %r", name, exc)
            except Exception:
                # A loop that dies silently stops the whole queue: log and go on.
                log.exception("%s failed", name)
            if wakeup is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await _within(delay, wakeup.wait())

    # ================================================================== recovery

    async def recover(self) -> None:
        """Carry on with what the previous leader left submitted."""
        backend = self.backend
        assert backend is not None
        async with self.pool.acquire() as conn:
            transfers = await store.submitted(conn, Kind.TRANSFER)
            deletions = await store.submitted(conn, Kind.DELETION)
            jobs = await store.open_jobs(conn, backend.name) if backend.uses_jobs else []
        if backend.uses_jobs:
            known = {j.id for j in jobs}
            for task in transfers:
                if task.job_id not in known:
                    await self.record_result(
                        Result(
                            task_id=task.id,
                            job_id=task.job_id or "",
                            ok=False,
                            failure=Failure("interrupted: submitted by another backend"),
                        )
                    )
            await self._reconcile_intents([j for j in jobs if j.state == "intent"])
        elif transfers:
            log.info("recovery: resuming %d interrupted copies", len(transfers))
            await backend.resume(transfers)
        for task in deletions:
            self._start_deletion(task)

    async def _reconcile_intents(self, intents: Sequence[store.JobRow]) -> None:
        backend = self.backend
        assert backend is not None
        for job in intents:
            if job.id in self._submitting:
                continue
            try:
                external = await backend.find(job.id)
                if external is None:
                    async with self.pool.acquire() as conn:
                        tasks = await store.submitted(conn, Kind.TRANSFER, job.id)
                    if not tasks:
                        async with self.pool.acquire() as conn:
                            await store.finish_job(conn, job.id, _now())
                        continue
                    log.info("job %s never reached %s; submitting it", job.id, backend.name)
                    external = await backend.submit(job.id, tasks[0].link, tasks)
            except _TRANSIENT:
                raise
            except Exception as exc:
                # The backend is unreachable or refused: the intent stays, the poller comes
                # back to it.
                log.warning("job %s: cannot reconcile with %s: %r", job.id, backend.name, exc)
                continue
            if external is not None:
                async with self.pool.acquire() as conn:
                    await store.set_job_submitted(conn, job.id, external, _now())

    # ================================================================== scheduling

    async def schedule_once(self) -> float | None:
        # A full batch of new tasks means more are waiting: they are placed and submitted
        # batch after batch now. Returning instead would leave them until the next wakeup or
        # poll_interval, i.e. a large request handed over _NEW_BATCH files per poll_interval.
        while True:
            now = _now()
            model = self.readmodel.model
            async with self.pool.acquire() as conn:
                await store.release_due_retries(conn, now)
                fresh = await store.tasks_in_state(conn, State.NEW, limit=_NEW_BATCH)
                if fresh:
                    placed: list[store.Placement] = []
                    async with conn.transaction():
                        for task in fresh:
                            await self._place(conn, model, task, now, placed)
                        await store.set_queued(conn, placed, now)
            await self._submit_transfers()
            await self._submit_deletions()
            if len(fresh) < _NEW_BATCH:
                return await self._next_retry_in()

    async def _next_retry_in(self) -> float | None:
        async with self.pool.acquire() as conn:
            due = await conn.fetchval(
                "SELECT min(not_before) FROM transfer.tasks WHERE state = 'retry'"
            )
        if due is None:
            return None
        wait: float = (due - _now()).total_seconds()
        return max(0.0, wait)

    async def _place(
        self,
        conn: asyncpg.Connection,
        model: Inventory,
        task: TaskRow,
        now: datetime,
        placed: list[store.Placement],
    ) -> None:
        """Choose the source and PFNs of a new task (added to ``placed``, queued by the
        caller in the same transaction), or hold it with the reason."""
        site = model.sites.get(task.site)
        if site is None:
            await self._hold(conn, task, f"unknown site {task.site!r}", now)
            return
        if task.kind is Kind.DELETION:
            problem = destination_problem(site, self.preference)
            mapped = map_at(site, task.lfn, self.preference, self.pfns)
            if problem is not None:
                await self._hold(conn, task, problem, now)
            elif mapped is None:
                await self._hold(conn, task, f"LFN {task.lfn} maps to no PFN at {site.name}", now)
            else:
                transition(task.state, State.QUEUED)
                placed.append(
                    store.Placement(
                        task.id,
                        source=None,
                        protocol=mapped[0],
                        source_pfn=None,
                        dest_pfn=mapped[1],
                        tape=False,
                    )
                )
            return
        block = _block(model, task.dataset, task.block)
        if block is None:
            await self._hold(
                conn, task, f"block {task.dataset}#{task.block} is not in the inventory", now
            )
            return
        choice = choose_source(
            block,
            site,
            task.lfn,
            failures=task.failures,
            ruled_out=task.ruled_out,
            preference=self.preference,
            pfn=self.pfns,
        )
        if isinstance(choice, NoSource):
            await self._hold(conn, task, choice.reason, now)
            return
        transition(task.state, State.QUEUED)
        placed.append(
            store.Placement(
                task.id,
                source=choice.site,
                protocol=choice.protocol,
                source_pfn=choice.source_pfn,
                dest_pfn=choice.dest_pfn,
                tape=choice.tape,
            )
        )

    async def _hold(
        self, conn: asyncpg.Connection, task: TaskRow, reason: str, now: datetime
    ) -> None:
        transition(task.state, State.HELD)
        await store.set_held(conn, task.id, reason, now)
        log.info("task held", extra={"task_id": task.id, "lfn": task.lfn, "reason": reason})

    async def _submit_transfers(self) -> None:
        backend = self.backend
        assert backend is not None
        s = self.settings
        caps = Caps(s.max_active_per_link, s.max_active_total, s.max_batch)
        async with self.pool.acquire() as conn:
            active = await store.active_counts(conn, Kind.TRANSFER)
            room = caps.total - sum(active.values())
            if room <= 0:
                return
            candidates = await store.queued_candidates(conn, Kind.TRANSFER, caps.per_link)
        for batch in plan_batches(candidates, active, caps):
            job_id = f"dynamo-{uuid.uuid4()}"
            self._submitting.add(job_id)
            try:
                now = _now()
                async with self.pool.acquire() as conn, conn.transaction():
                    rows = await store.mark_submitted(conn, batch.task_ids, job_id, now)
                    if rows and backend.uses_jobs:
                        await store.insert_job(conn, job_id, backend.name, batch.link, now)
                if not rows:
                    continue
                try:
                    external = await backend.submit(job_id, batch.link, rows)
                except Exception as exc:
                    # The intent stays: the poller looks for the job and submits it if the
                    # backend never got it.
                    log.warning("submission of %s failed: %r", job_id, exc)
                    continue
                if external is not None:
                    async with self.pool.acquire() as conn:
                        await store.set_job_submitted(conn, job_id, external, _now())
            finally:
                self._submitting.discard(job_id)

    async def _submit_deletions(self) -> None:
        s = self.settings
        caps = Caps(s.max_active_per_link, s.deletion_parallel, s.max_batch)
        async with self.pool.acquire() as conn:
            active = await store.active_counts(conn, Kind.DELETION)
            room = caps.total - sum(active.values())
            if room <= 0:
                return
            candidates = await store.queued_candidates(conn, Kind.DELETION, caps.per_link)
        for batch in plan_batches(candidates, active, caps):
            job_id = f"delete-{uuid.uuid4()}"
            async with self.pool.acquire() as conn:
                rows = await store.mark_submitted(conn, batch.task_ids, job_id, _now())
            for row in rows:
                self._start_deletion(row)

    def _start_deletion(self, task: TaskRow) -> None:
        job = asyncio.create_task(self._delete(task), name=f"delete:{task.id}")
        self._deleting.add(job)
        job.add_done_callback(self._deleting.discard)

    async def _delete(self, task: TaskRow) -> None:
        site = self.readmodel.model.sites.get(task.site)
        mapper = self.pfns.mapper(site) if site is not None else None
        result = await delete_file(self.storage, task, mapper)
        await self.record_result(result)

    # ================================================================== FTS polling

    async def poll_once(self) -> float | None:
        backend = self.backend
        assert backend is not None
        async with self.pool.acquire() as conn:
            jobs = await store.open_jobs(conn, backend.name)
        await self._reconcile_intents([j for j in jobs if j.state == "intent"])
        followed = [j for j in jobs if j.state == "submitted"]
        if not followed:
            return None
        async with self.pool.acquire() as conn:
            tasks: dict[str, list[TaskRow]] = {}
            for task in await store.submitted(conn, Kind.TRANSFER):
                if task.job_id is not None:
                    tasks.setdefault(task.job_id, []).append(task)
        polled = await backend.poll(followed, tasks)
        for result in polled.results:
            await self.record_result(result)
        settled = {r.task_id for r in polled.results}
        for job_id in polled.finished_jobs:
            for task in tasks.get(job_id, []):
                if task.id not in settled:
                    await self.record_result(
                        Result(
                            task_id=task.id,
                            job_id=job_id,
                            ok=False,
                            failure=Failure("the FTS job ended without a result for this file"),
                        )
                    )
            async with self.pool.acquire() as conn:
                await store.finish_job(conn, job_id, _now())
        return None

    # ================================================================== outcomes

    async def record_result(self, result: Result) -> None:
        """Record one attempt's outcome; retried while the database is unreachable, because
        a lost outcome would leave the file submitted until the next leader looks at it."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(_TRANSIENT),
            wait=wait_exponential(multiplier=0.2, max=5),
            stop=stop_after_delay(120),
            reraise=True,
        ):
            with attempt:
                await self._record(result)
        self.relay_wakeup.set()
        self.schedule_wakeup.set()
        if result.ok:
            self.report_wakeup.set()

    async def _record(self, result: Result) -> None:
        now = _now()
        async with self.pool.acquire() as conn, conn.transaction():
            task = await store.task_for_update(conn, result.task_id)
            if task is None or task.state is not State.SUBMITTED or task.job_id != result.job_id:
                # A late or repeated outcome (a second poll, a copy settled by recovery).
                log.info(
                    "outcome ignored",
                    extra={"task_id": result.task_id, "state": task.state if task else None},
                )
                return
            event: tuple[str, BaseModel]
            if result.ok:
                transition(task.state, State.DONE)
                await store.set_done(conn, task.id, result.moved, now, result.note)
                await store.insert_history(
                    conn,
                    task,
                    result="done",
                    error=result.note,
                    started=result.started,
                    finished=now,
                    duration=result.duration,
                    moved=result.moved,
                )
                event = (
                    TransferEvent.FILE_DONE,
                    tr.FileDone(
                        kind=task.kind.value,
                        lfn=task.lfn,
                        source=task.source,
                        site=task.site,
                        bytes=result.moved,
                        duration=result.duration,
                        task_id=task.id,
                    ),
                )
            else:
                failure = result.failure or Failure("the backend reported no reason")
                transition(task.state, State.FAILED)
                attempts = task.attempts + 1
                failures = dict(task.failures)
                ruled_out = dict(task.ruled_out)
                if task.source is not None:
                    failures[task.source] = failures.get(task.source, 0) + 1
                    if failure.severity is Severity.SOURCE:
                        ruled_out[task.source] = failure.error
                left = self._sources_left(task, ruled_out) if task.kind is Kind.TRANSFER else 1
                s = self.settings
                decision = after_failure(
                    failure,
                    attempts,
                    s.max_attempts,
                    left,
                    s.retry_base_seconds,
                    s.retry_max_seconds,
                    task.id,
                )
                transition(State.FAILED, decision.state)
                await store.set_failed(
                    conn,
                    task.id,
                    state=decision.state,
                    reason=decision.reason,
                    attempts=attempts,
                    failures=failures,
                    ruled_out=ruled_out,
                    not_before=now + timedelta(seconds=decision.delay),
                    now=now,
                )
                await store.insert_history(
                    conn,
                    task,
                    result="failed",
                    error=failure.error,
                    started=result.started,
                    finished=now,
                    duration=result.duration,
                    moved=0,
                )
                event = (
                    TransferEvent.FILE_FAILED,
                    tr.FileFailed(
                        kind=task.kind.value,
                        lfn=task.lfn,
                        source=task.source,
                        site=task.site,
                        error=decision.reason,
                        attempts=attempts,
                        state=decision.state.value,
                        task_id=task.id,
                    ),
                )
                log.info(
                    "attempt failed",
                    extra={"task_id": task.id, "state": decision.state, "error": failure.error},
                )
            await store.add_events(conn, [_event(event[0], event[1], task.job_id)], now)

    def _sources_left(self, task: TaskRow, ruled_out: dict[str, str]) -> int:
        model = self.readmodel.model
        block = _block(model, task.dataset, task.block)
        if block is None:
            return 0
        return sum(
            1
            for r in block.replicas
            if r.site.name != task.site and r.is_complete and r.site.name not in ruled_out
        )

    # ================================================================== inventory reports

    async def report_once(self) -> float | None:
        """Tell the inventory what became of block replicas: completion and removal as soon as
        they happen, progress at most every ``progress_interval`` (a finished file wakes this
        loop, and one command per file would flood the inventory)."""
        async with self.pool.acquire() as conn:
            rows = await store.active_replicas(conn)
        model = self.readmodel.model
        clock = asyncio.get_running_loop().time()
        progress_due = clock - self._last_progress >= self.settings.progress_interval
        if progress_due:
            self._last_progress = clock
        for row in rows:
            finished = row.open_tasks == 0 and row.files_done >= row.files_total
            try:
                if row.kind is Kind.DELETION:
                    if finished:
                        await self._report_deleted(row)
                elif finished:
                    await self._report_complete(row, model)
                elif progress_due and row.files_done > row.reported_files:
                    await self._report_progress(row, model)
            except RequestTimeout as exc:
                log.warning("inventory did not answer: %s", exc)
                return None
        if progress_due:
            return None
        return self.settings.progress_interval - (clock - self._last_progress)

    async def _report_complete(self, row: store.ReplicaRow, model: Inventory) -> None:
        block = _block(model, row.dataset, row.block)
        whole = block is not None and (
            block.size == row.bytes_total and block.num_files == row.files_total
        )
        update = inv.BlockReplicaUpdate(
            dataset=row.dataset,
            block=row.block,
            site=row.site,
            complete=whole,
            size=None if whole else row.bytes_done,
            num_files=None if whole else row.files_done,
        )
        reply = await self._inventory_command(
            InventoryCommand.UPDATE_REPLICAS,
            inv.UpdateReplicas(block_replicas=[update]),
            command_id("complete", row.id),
        )
        now = _now()
        async with self.pool.acquire() as conn, conn.transaction():
            if reply.status == "accepted":
                note = None if whole else "the block changed while its files were copied"
                if await store.close_replica(conn, row.id, "complete", note, now):
                    await store.add_events(
                        conn,
                        [
                            _event(
                                TransferEvent.REPLICA_COMPLETED,
                                tr.ReplicaCompleted(
                                    dataset=row.dataset,
                                    block=row.block,
                                    site=row.site,
                                    bytes=row.bytes_done,
                                    files=row.files_done,
                                ),
                            )
                        ],
                        now,
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
        self.relay_wakeup.set()

    async def _report_progress(self, row: store.ReplicaRow, model: Inventory) -> None:
        block = _block(model, row.dataset, row.block)
        size, files = row.bytes_done, row.files_done
        if block is not None:
            size, files = min(size, block.size), min(files, block.num_files)
            site = model.sites.get(row.site)
            current = block.replica_at(site) if site is not None else None
            if current is not None and current.size >= size and current.num_files >= files:
                # The replica already holds at least that much (it was partial before): never
                # report it smaller than it is.
                async with self.pool.acquire() as conn:
                    await store.set_reported(conn, row.id, files, size, _now())
                return
        reply = await self._inventory_command(
            InventoryCommand.UPDATE_REPLICAS,
            inv.UpdateReplicas(
                block_replicas=[
                    inv.BlockReplicaUpdate(
                        dataset=row.dataset,
                        block=row.block,
                        site=row.site,
                        size=size,
                        num_files=files,
                    )
                ]
            ),
            command_id("progress", row.id, files, size),
        )
        now = _now()
        async with self.pool.acquire() as conn, conn.transaction():
            await store.set_reported(conn, row.id, files, size, now)
            if reply.status == "accepted":
                await store.add_events(
                    conn,
                    [
                        _event(
                            TransferEvent.REPLICA_PROGRESS,
                            tr.ReplicaProgress(
                                dataset=row.dataset,
                                block=row.block,
                                site=row.site,
                                bytes_done=row.bytes_done,
                                bytes_total=row.bytes_total,
                                files_done=row.files_done,
                                files_total=row.files_total,
                            ),
                        )
                    ],
                    now,
                )
            else:
                log.warning(
                    "inventory refused progress of %s#%s at %s: %s",
                    row.dataset,
                    row.block,
                    row.site,
                    reply.reason,
                )
        self.relay_wakeup.set()

    async def _report_deleted(self, row: store.ReplicaRow) -> None:
        reply = await self._inventory_command(
            InventoryCommand.DELETE_REPLICAS,
            inv.DeleteReplicas(
                block_replicas=[
                    inv.BlockReplicaKey(dataset=row.dataset, block=row.block, site=row.site)
                ]
            ),
            command_id("delete", row.id),
        )
        note = None
        if reply.status == "rejected":
            # Already gone from the inventory (or its block is): the files are gone either way.
            note = f"the inventory said: {reply.reason}"
        now = _now()
        async with self.pool.acquire() as conn, conn.transaction():
            if await store.close_replica(conn, row.id, "deleted", note, now):
                await store.add_events(
                    conn,
                    [
                        _event(
                            TransferEvent.DELETION_DONE,
                            tr.DeletionDone(
                                dataset=row.dataset,
                                block=row.block,
                                site=row.site,
                                files=row.files_done,
                            ),
                        )
                    ],
                    now,
                )
        self.relay_wakeup.set()

    # ================================================================== relay

    async def relay_loop(self) -> None:
        """Publish committed events (every instance may relay: rows are claimed with SKIP
        LOCKED, so none is published by two at once)."""
        loop = asyncio.get_running_loop()
        last_prune = loop.time()
        while True:
            try:
                if loop.time() - last_prune > 600:
                    last_prune = loop.time()
                    await self.prune()
                published = await self.relay_once()
                if published:
                    continue
            except _TRANSIENT as exc:
                log.warning("relay: %r", exc)
            except Exception:
                log.exception("relay failed")
            self.relay_wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await _within(self.settings.relay_poll_interval, self.relay_wakeup.wait())

    async def prune(self) -> None:
        now = _now()
        async with self.pool.acquire() as conn:
            await store.prune_commands(
                conn, now - timedelta(days=self.settings.command_retention_days)
            )
            await store.prune_outbox(conn, now - timedelta(days=1))

    async def relay_once(self, limit: int = 500) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await store.claim_unpublished(conn, limit)
            if not rows:
                return 0
            await self.bus.publish("events", [Envelope.from_json(raw) for _, raw in rows])
            await store.mark_published(conn, [i for i, _ in rows])
        return len(rows)


def _event(type_: str, data: BaseModel, correlation: str | None = None) -> tuple[str, str]:
    envelope = Envelope(
        type=type_, source=SOURCE, correlation_id=correlation, data=data.model_dump(mode="json")
    )
    return type_, envelope.to_json().decode()
