"""Deletions, done by the service itself with gfal2 whatever the transfer backend: a file
already gone counts as deleted, and the directories it leaves empty are removed."""

from __future__ import annotations

import posixpath
import time
from datetime import UTC, datetime

from dynamo_common.logging import get_logger
from dynamo_common.storage import (
    NotEmpty,
    PermissionDenied,
    PfnError,
    PfnMapper,
    Storage,
    StorageError,
)
from dynamo_transfer.backends.base import Result
from dynamo_transfer.repository.store import TaskRow
from dynamo_transfer.service.retry import Failure, Severity

log = get_logger("dynamo.transfer.deletion")

# Directories this close to the namespace root (/store, /store/data) are the site's layout,
# not something a deleted file left behind: they stay even when empty.
KEEP_DEPTH = 2


async def delete_file(storage: Storage, task: TaskRow, mapper: PfnMapper | None) -> Result:
    assert task.dest_pfn is not None and task.job_id
    started = datetime.now(UTC)
    t0 = time.monotonic()
    try:
        existed = await storage.unlink(task.dest_pfn)
    except StorageError as exc:
        severity = (
            Severity.DESTINATION if isinstance(exc, PermissionDenied) else Severity.RECOVERABLE
        )
        return Result(
            task_id=task.id,
            job_id=task.job_id,
            ok=False,
            started=started,
            duration=time.monotonic() - t0,
            failure=Failure(f"deleting {task.dest_pfn} at {task.site}: {exc}", severity),
        )
    if mapper is not None and task.protocol is not None:
        await remove_empty_parents(storage, mapper, task.lfn, task.protocol)
    return Result(
        task_id=task.id,
        job_id=task.job_id,
        ok=True,
        moved=(task.size or 0) if existed else 0,
        started=started,
        duration=time.monotonic() - t0,
        note=None if existed else "already gone",
    )


async def remove_empty_parents(
    storage: Storage, mapper: PfnMapper, lfn: str, protocol: str
) -> list[str]:
    """Remove the file's directory and its parents while they are empty."""
    removed: list[str] = []
    directory = posixpath.dirname(lfn)
    while directory.count("/") > KEEP_DEPTH:
        try:
            pfn = mapper.lfn_to_pfn(directory, protocol)
        except PfnError:
            break
        try:
            await storage.rmdir(pfn)
        except NotEmpty:
            break
        except StorageError as exc:
            log.info("deletion.rmdir_failed", pfn=pfn, error=str(exc))
            break
        removed.append(pfn)
        directory = posixpath.dirname(directory)
    return removed
