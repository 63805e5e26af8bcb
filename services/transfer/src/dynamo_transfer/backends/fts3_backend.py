"""The FTS3 backend: one FTS job per link batch, polled over REST.

Every job carries the service's own job id in its ``job_metadata``. The id is written to the
database (as an intent, with the tasks marked submitted) before the job is sent, so after a
crash between the two the job is looked up at FTS by that metadata: found, it is followed;
not found, it is sent now. A job is never submitted twice and never lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from dynamo_common.logging import get_logger
from dynamo_transfer.backends.base import Polled, Result
from dynamo_transfer.backends.fts3 import (
    FINAL_JOB_STATES,
    JOB_ACTIVE_STATES,
    Fts3Client,
    Fts3File,
    Fts3FileStatus,
    Fts3JobParams,
    Outcome,
    explain,
)
from dynamo_transfer.repository.store import JobRow, TaskRow
from dynamo_transfer.service.batching import Link
from dynamo_transfer.service.retry import Failure, Severity

log = get_logger("dynamo.transfer.fts3")

METADATA_KEY = "dynamo_job"
STAGE_PIN_SECONDS = 86400
_SOURCE_RULES = frozenset({"source-checksum-mismatch", "source-missing"})
# How far back FTS is searched for a job we may have submitted before a crash.
_FIND_LIMIT = 1000


class Fts3Backend:
    name = "fts3"
    uses_jobs = True

    def __init__(self, client: Fts3Client, *, activity: str = "Dynamo") -> None:
        self._client = client
        self._activity = activity

    async def submit(self, job_id: str, link: Link, tasks: Sequence[TaskRow]) -> str | None:
        files = [
            Fts3File(
                sources=[t.source_pfn or ""],
                destinations=[t.dest_pfn or ""],
                checksum=f"ADLER32:{t.adler32}" if t.adler32 else None,
                filesize=t.size,
                metadata={"task_id": t.id},
                activity=self._activity,
            )
            for t in tasks
        ]
        params = Fts3JobParams(
            verify_checksum="both" if all(t.adler32 for t in tasks) else "target",
            overwrite=False,
            priority=max(t.priority for t in tasks),
            retry=0,  # retries are ours: with backoff and another source
            bring_online=STAGE_PIN_SECONDS if any(t.tape for t in tasks) else -1,
            job_metadata={METADATA_KEY: job_id},
            # An existing destination is reported with its checksum, so a file that a lost
            # earlier job already copied counts as done instead of failing forever.
            dst_file_report=True,
        )
        return await self._client.submit(files, params)

    async def find(self, job_id: str) -> str | None:
        states = sorted(JOB_ACTIVE_STATES | FINAL_JOB_STATES)
        for job in await self._client.list_jobs(states, limit=_FIND_LIMIT):
            metadata = job.job_metadata
            if isinstance(metadata, dict) and metadata.get(METADATA_KEY) == job_id:
                return job.job_id
        return None

    async def resume(self, tasks: Sequence[TaskRow]) -> None:
        # Every submitted FTS task belongs to a job row, which recovery follows or resubmits.
        return None

    async def poll(self, jobs: Sequence[JobRow], tasks: dict[str, list[TaskRow]]) -> Polled:
        followed = [j for j in jobs if j.external_id]
        if not followed:
            return Polled([], [])
        by_external = {j.external_id: j for j in followed}
        results: list[Result] = []
        finished: list[str] = []
        answers = await self._client.jobs([j.external_id or "" for j in followed])
        for answer in answers:
            job = by_external.get(answer.job_id)
            if job is None:
                continue
            own = {t.id: t for t in tasks.get(job.id, [])}
            if not answer.found:
                # Purged or never known: the files' fate is unknown, so they are retried (and
                # the next attempt finds a finished copy at the destination).
                results.extend(
                    _failed(job.id, t, Failure(f"FTS no longer knows job {answer.job_id}"))
                    for t in own.values()
                )
                finished.append(job.id)
                continue
            for status in answer.files:
                tid = _task_id(status)
                task = own.get(tid) if tid is not None else None
                if task is None:
                    continue
                result = _result(job.id, task, status)
                if result is not None:
                    results.append(result)
            if answer.final:
                finished.append(job.id)
        return Polled(results, finished)

    async def close(self) -> None:
        await self._client.close()


def _task_id(status: Fts3FileStatus) -> int | None:
    metadata = status.file_metadata
    if isinstance(metadata, dict):
        value = metadata.get("task_id")
        if isinstance(value, int):
            return value
    return None


def _failed(job_id: str, task: TaskRow, failure: Failure) -> Result:
    return Result(task_id=task.id, job_id=job_id, ok=False, failure=failure)


def _result(job_id: str, task: TaskRow, status: Fts3FileStatus) -> Result | None:
    outcome, rule = explain(status)
    if outcome is Outcome.IN_PROGRESS:
        return None
    started = status.start_time
    duration = status.tx_duration or 0.0
    if started is None and status.finish_time is not None:
        started = status.finish_time - timedelta(seconds=duration)
    if outcome is Outcome.DONE:
        existed = rule != "finished"
        return Result(
            task_id=task.id,
            job_id=job_id,
            ok=True,
            moved=0 if existed else (status.filesize or task.size or 0),
            started=started or datetime.now(UTC),
            duration=duration,
            note="already at the destination with the right checksum" if existed else None,
        )
    reason = status.reason or f"FTS file state {status.file_state}"
    if outcome is Outcome.UNRECOVERABLE:
        if rule in _SOURCE_RULES or reason.lstrip().upper().startswith("SOURCE"):
            severity = Severity.SOURCE
        else:
            severity = Severity.DESTINATION
    else:
        severity = Severity.RECOVERABLE
    return Result(
        task_id=task.id,
        job_id=job_id,
        ok=False,
        started=started,
        duration=duration,
        failure=Failure(f"FTS ({rule}): {reason}", severity),
    )
