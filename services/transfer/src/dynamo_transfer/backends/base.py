"""What the runtime needs from a transfer backend, and what a backend reports back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from dynamo_transfer.repository.store import JobRow, TaskRow
from dynamo_transfer.service.batching import Link
from dynamo_transfer.service.retry import Failure


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one attempt at one task (a copy or a deletion)."""

    task_id: int
    job_id: str
    ok: bool
    moved: int = 0  # bytes written by this attempt (0 when the file was already there)
    started: datetime | None = None
    duration: float = 0.0
    note: str | None = None
    failure: Failure | None = None


Sink = Callable[[Result], Awaitable[None]]
"""Where results go: the runtime records each one in its own transaction."""


@dataclass(frozen=True, slots=True)
class Polled:
    results: list[Result]
    finished_jobs: list[str]


class Backend(Protocol):
    name: str
    uses_jobs: bool
    """True when submissions are remote jobs recorded as intents (FTS); False when the
    service does the work itself (direct)."""

    async def submit(self, job_id: str, link: Link, tasks: Sequence[TaskRow]) -> str | None:
        """Start the copies of one link batch; the external job id, if there is one.

        Called only after the tasks are marked submitted (with ``job_id``) and committed."""
        ...

    async def find(self, job_id: str) -> str | None:
        """The external id of a job submitted with ``job_id`` in its metadata, or None if the
        backend never received it (the submission was cut short)."""
        ...

    async def resume(self, tasks: Sequence[TaskRow]) -> None:
        """Take over tasks left submitted by a previous run whose work this process does not
        hold (direct copies interrupted by a crash)."""
        ...

    async def poll(self, jobs: Sequence[JobRow], tasks: dict[str, list[TaskRow]]) -> Polled:
        """Results of submitted jobs (remote backends); ``tasks`` are the submitted tasks of
        each job."""
        ...

    async def close(self) -> None: ...
