"""The direct backend: the service copies files itself through ``dynamo_common.storage``
(gfal2, or plain file:// without it), for small installations and the standalone mode.

Copies run with a bounded number in parallel per link and in total. Each copy first looks at
the destination: a file already there with the catalogue's size and checksum is done without
copying (a copy that finished just before a crash, or a partial replica being completed), and
anything else there is a leftover to remove. That check is what makes resuming after a crash
safe: nothing is copied twice, and no partial file survives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from dynamo_common.logging import get_logger
from dynamo_common.storage import (
    AlreadyExists,
    ChecksumMismatch,
    NotFound,
    PermissionDenied,
    Storage,
    StorageError,
    UnsupportedProtocol,
)
from dynamo_transfer.backends.base import Polled, Result, Sink
from dynamo_transfer.repository.store import JobRow, TaskRow
from dynamo_transfer.service.batching import Link
from dynamo_transfer.service.retry import Failure, Severity

log = get_logger("dynamo.transfer.direct")

STAGE_PIN_SECONDS = 86400
STAGE_TIMEOUT = 6 * 3600.0


class DirectBackend:
    name = "direct"
    uses_jobs = False

    def __init__(
        self,
        storage: Storage,
        sink: Sink,
        *,
        per_link: int,
        total: int,
        copy_timeout: float,
    ) -> None:
        self._storage = storage
        self._sink = sink
        self._per_link = per_link
        self._total = asyncio.Semaphore(total)
        self._links: dict[Link, asyncio.Semaphore] = {}
        self._copy_timeout = copy_timeout
        self._running: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def running(self) -> int:
        return len(self._running)

    async def submit(self, job_id: str, link: Link, tasks: Sequence[TaskRow]) -> str | None:
        for task in tasks:
            self._start(task)
        return None

    async def find(self, job_id: str) -> str | None:
        return None

    async def resume(self, tasks: Sequence[TaskRow]) -> None:
        for task in tasks:
            self._start(task)

    async def poll(self, jobs: Sequence[JobRow], tasks: dict[str, list[TaskRow]]) -> Polled:
        return Polled([], [])

    async def close(self) -> None:
        """Stop taking work and wait for the copies in flight: a copy runs in a storage
        thread that cannot be interrupted, and must not go on writing once the service is
        down (a new instance would take the file over). Their results are not recorded: the
        next run finds the files and settles them by looking at the destination."""
        self._closed = True
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    # -------------------------------------------------------------------------------------

    def _start(self, task: TaskRow) -> None:
        if self._closed:
            return
        job = asyncio.create_task(self._run(task), name=f"copy:{task.id}")
        self._running.add(job)
        job.add_done_callback(self._running.discard)

    def _link(self, link: Link) -> asyncio.Semaphore:
        sem = self._links.get(link)
        if sem is None:
            sem = self._links[link] = asyncio.Semaphore(self._per_link)
        return sem

    async def _run(self, task: TaskRow) -> None:
        async with self._total, self._link(task.link):
            # Shielded: once the storage thread runs, cancelling the coroutine would only stop
            # us from waiting for it, and close() must be able to wait for the write to end.
            copy = asyncio.ensure_future(self.copy(task))
            try:
                result = await asyncio.shield(copy)
            except asyncio.CancelledError:
                await asyncio.gather(copy, return_exceptions=True)
                raise
        await self._sink(result)

    async def copy(self, task: TaskRow) -> Result:
        assert task.source_pfn is not None and task.dest_pfn is not None and task.job_id
        started = datetime.now(UTC)
        t0 = time.monotonic()

        def result(
            ok: bool, moved: int = 0, note: str | None = None, failure: Failure | None = None
        ) -> Result:
            return Result(
                task_id=task.id,
                job_id=task.job_id or "",
                ok=ok,
                moved=moved,
                started=started,
                duration=time.monotonic() - t0,
                note=note,
                failure=failure,
            )

        try:
            present = await self._destination_state(task)
            if present == "match":
                return result(True, note="already at the destination with the right checksum")
            if present == "other":
                # A leftover of an interrupted copy (or a wrong file): never kept.
                await self._storage.unlink(task.dest_pfn)
            if task.tape:
                staged = await self._storage.bring_online(
                    [task.source_pfn], STAGE_PIN_SECONDS, STAGE_TIMEOUT
                )
                error = staged.get(task.source_pfn)
                if error is not None:
                    return result(False, failure=await self._classify(task, error, "staging"))
            await self._storage.copy(
                task.source_pfn,
                task.dest_pfn,
                size=task.size,
                adler32=task.adler32,
                overwrite=False,
                timeout=self._copy_timeout,
            )
        except StorageError as exc:
            return result(False, failure=await self._classify(task, exc, "copy"))
        except Exception as exc:
            log.exception("direct.copy_crashed", task_id=task.id)
            return result(False, failure=Failure(f"copy failed unexpectedly: {exc!r}"))
        return result(True, moved=task.size or 0)

    async def _destination_state(self, task: TaskRow) -> str:
        """ "absent", "match" (size and checksum as catalogued) or "other"."""
        assert task.dest_pfn is not None
        try:
            stat = await self._storage.stat(task.dest_pfn)
        except NotFound:
            return "absent"
        if stat.is_dir:
            return "other"
        if task.size is not None and stat.size != task.size:
            return "other"
        if task.adler32 is not None:
            found = await self._storage.adler32(task.dest_pfn)
            if found.lower() != task.adler32.lower():
                return "other"
        return "match"

    async def _classify(self, task: TaskRow, exc: StorageError, step: str) -> Failure:
        where = f"{step} {task.lfn} from {task.source} to {task.site}"
        if isinstance(exc, NotFound):
            return Failure(
                f"source file missing at {task.source} ({task.source_pfn}): {exc}",
                Severity.SOURCE,
            )
        if isinstance(exc, ChecksumMismatch):
            source_sum = await self._source_checksum(task)
            if task.adler32 is not None and source_sum is not None and source_sum != task.adler32:
                return Failure(
                    f"checksum mismatch at source {task.source}: the catalogue says adler32 "
                    f"{task.adler32}, the file has {source_sum}",
                    Severity.SOURCE,
                )
            return Failure(f"{where}: corrupted on the way ({exc})")
        if isinstance(exc, PermissionDenied):
            if await self._source_readable(task):
                return Failure(
                    f"permission denied writing {task.dest_pfn} at {task.site}: {exc}",
                    Severity.DESTINATION,
                )
            return Failure(
                f"permission denied reading {task.source_pfn} at {task.source}: {exc}",
                Severity.SOURCE,
            )
        if isinstance(exc, AlreadyExists):
            # Someone wrote the file between our look and the copy: the next attempt looks again.
            return Failure(f"{where}: the destination appeared meanwhile ({exc})")
        if isinstance(exc, UnsupportedProtocol):
            return Failure(f"{where}: {exc}", Severity.DESTINATION)
        return Failure(f"{where}: {exc}")

    async def _source_checksum(self, task: TaskRow) -> str | None:
        assert task.source_pfn is not None
        try:
            return (await self._storage.adler32(task.source_pfn)).lower()
        except StorageError:
            return None

    async def _source_readable(self, task: TaskRow) -> bool:
        assert task.source_pfn is not None
        try:
            await self._storage.stat(task.source_pfn)
        except StorageError:
            return False
        return True
