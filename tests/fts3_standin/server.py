"""A stand-in for an FTS3 server, for tests: the REST subset Dynamo's client uses, real copies.

No FTS3 server can run on the project's machines (it is not packaged, and there is no Docker), so
this small FastAPI app answers the same calls with the same JSON shapes (see
``dynamo_transfer.backends.fts3`` for the list) and copies every file for real with gfal2, the
library FTS's own ``fts_url_copy`` uses: files really arrive on file:// and root:// storage.

What it does like FTS:

* a file is staged (``bring_online > 0``: STAGING, a no-op for disk-only file:// and root://),
  queued (SUBMITTED, by job priority, then submission order), copied (ACTIVE) and ends FINISHED,
  FAILED or CANCELED; the job's state follows from its files (FINISHED, FAILED, FINISHEDDIRTY,
  CANCELED);
* the copy follows fts_url_copy's steps: stat the source (errors are ``SOURCE [errno] ...``),
  refuse an existing destination unless ``overwrite`` (``DESTINATION [17] Destination file
  exists and overwrite is not enabled``, with the ``dst_file`` report in the file's metadata when
  the job asked for ``dst_file_report``), copy with gfal2 verifying checksums as
  ``verify_checksum`` says (``TRANSFER [errno] <gfal2 message>``), then compare sizes;
* recoverable failures are retried ``retry`` times, ``retry_delay`` seconds apart;
* cancelling a job or some files stops queued files and interrupts running copies;
* with a token configured, requests without ``Authorization: Bearer <token>`` get 401.

What it does not do: delegation, multihop, multiple destinations per file, staging from tape,
session reuse, the optimizer, max_time_in_queue, STOMP messages, and it forgets everything when
it stops. Several sources of one file are tried in order within one file entry (real FTS makes
one entry per source, the unused ones ending NOT_USED).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import heapq
import itertools
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

# XRootD retries a dead server for minutes by default; these must be set before gfal2 (and with
# it XrdCl) is loaded, or a copy to a site that is down hangs the worker for about 8 minutes.
os.environ.setdefault("XRD_CONNECTIONRETRY", "1")
os.environ.setdefault("XRD_CONNECTIONWINDOW", "2")

import gfal2
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

__all__ = ["Fts3StandIn", "create_app", "serve"]

log = logging.getLogger(__name__)

FINAL_JOB_STATES = frozenset({"FINISHED", "FAILED", "FINISHEDDIRTY", "CANCELED"})
FINAL_FILE_STATES = frozenset({"FINISHED", "FAILED", "CANCELED"})
ACTIVE_FILE_STATES = frozenset({"STAGING", "SUBMITTED", "READY", "ACTIVE", "STARTED"})

_CHECKSUM_MODES = {
    "both": gfal2.checksum_mode.both,
    "source": gfal2.checksum_mode.source,
    "target": gfal2.checksum_mode.target,
}
_VERIFY_FLAGS = {"both": "b", "source": "s", "target": "t", "none": "n"}
_FAILED_JOB_REASON = (
    "One or more files failed. Please have a look at the details for more information"
)
_CANCELED_REASON = "Job canceled by the user"
_BASE_ID = uuid.UUID("01874efb-4735-4595-bc9c-591aef8240c9")
_VO = "dynamo"


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _now() -> datetime:
    return datetime.now(UTC)


def _fts_time(value: datetime | None) -> str | None:
    # fts-rest prints naive UTC times with "%Y-%m-%dT%H:%M:%S%z", i.e. without an offset.
    return value.strftime("%Y-%m-%dT%H:%M:%S") if value is not None else None


def _storage_element(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}"


@dataclass
class _Params:
    verify_checksum: str
    overwrite: bool
    priority: int
    retry: int
    retry_delay: int
    bring_online: int
    copy_pin_lifetime: int
    dst_file_report: bool
    max_time_in_queue: int | None
    job_metadata: Any

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> _Params:
        verify = raw.get("verify_checksum", "none")
        if verify is True:
            verify = "both"
        elif verify is False or verify is None:
            verify = "none"
        verify = {"destination": "target", "b": "both", "s": "source", "t": "target"}.get(
            verify, verify
        )
        if verify not in _VERIFY_FLAGS:
            raise _BadRequest(400, f"Invalid value within the request: verify_checksum={verify}")
        try:
            return cls(
                verify_checksum=verify,
                overwrite=bool(raw.get("overwrite", False)),
                priority=max(1, min(5, int(raw.get("priority") or 3))),
                retry=max(0, int(raw.get("retry", 0))),
                retry_delay=max(0, int(raw.get("retry_delay", 0))),
                bring_online=int(raw.get("bring_online", -1)),
                copy_pin_lifetime=int(raw.get("copy_pin_lifetime", -1)),
                dst_file_report=bool(raw.get("dst_file_report", False)),
                max_time_in_queue=raw.get("max_time_in_queue"),
                job_metadata=raw.get("job_metadata"),
            )
        except (TypeError, ValueError) as exc:
            raise _BadRequest(400, f"Invalid value within the request: {exc}") from exc


@dataclass
class _File:
    file_id: int
    job_id: str
    file_index: int
    sources: list[str]
    dest_surl: str
    checksum: str | None
    user_filesize: int | None
    file_metadata: Any
    activity: str
    selection_strategy: str
    priority: int
    file_state: str
    source_surl: str
    reason: str = ""
    filesize: int | None = None
    start_time: datetime | None = None
    finish_time: datetime | None = None
    staging_start: datetime | None = None
    staging_finished: datetime | None = None
    tx_duration: float | None = None
    throughput: float | None = None
    retry: int = 0
    recoverable: bool | None = None
    # gfal2 context of the copy under way, so a cancellation can interrupt it.
    context: Any = None

    def to_json(self, fields: list[str] | None = None) -> dict[str, Any]:
        full = {
            "file_id": self.file_id,
            "job_id": self.job_id,
            "file_index": self.file_index,
            "file_state": self.file_state,
            "source_surl": self.source_surl,
            "dest_surl": self.dest_surl,
            "source_se": _storage_element(self.source_surl),
            "dest_se": _storage_element(self.dest_surl),
            "reason": self.reason,
            "filesize": self.filesize,
            "user_filesize": self.user_filesize,
            "checksum": self.checksum,
            "file_metadata": self.file_metadata,
            "activity": self.activity,
            "selection_strategy": self.selection_strategy,
            "priority": self.priority,
            "retry": self.retry,
            "recoverable": self.recoverable,
            "start_time": _fts_time(self.start_time),
            "finish_time": _fts_time(self.finish_time),
            "staging_start": _fts_time(self.staging_start),
            "staging_finished": _fts_time(self.staging_finished),
            "tx_duration": self.tx_duration,
            "throughput": self.throughput,
            "vo_name": _VO,
            "transfer_host": "fts3-standin",
            "log_file": None,
        }
        if fields is None:
            return full
        return {name: full[name] for name in fields if name in full}


@dataclass
class _Job:
    job_id: str
    params: _Params
    files: list[_File]
    user_dn: str
    job_state: str
    submit_time: datetime
    job_finished: datetime | None = None
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, file_fields: list[str] | None = None) -> dict[str, Any]:
        params = self.params
        first = self.files[0]
        body: dict[str, Any] = {
            "job_id": self.job_id,
            "job_state": self.job_state,
            "job_type": "N",
            "source_se": _storage_element(first.source_surl),
            "dest_se": _storage_element(first.dest_surl),
            "user_dn": self.user_dn,
            "cred_id": hashlib.sha1(self.user_dn.encode()).hexdigest()[:16],
            "vo_name": _VO,
            "reason": self.reason,
            "submit_time": _fts_time(self.submit_time),
            "submit_host": "fts3-standin",
            "job_finished": _fts_time(self.job_finished),
            "priority": params.priority,
            "max_time_in_queue": params.max_time_in_queue,
            "overwrite_flag": params.overwrite,
            "verify_checksum": _VERIFY_FLAGS[params.verify_checksum],
            "bring_online": params.bring_online,
            "copy_pin_lifetime": params.copy_pin_lifetime,
            "retry": params.retry,
            "retry_delay": params.retry_delay,
            "dst_file_report": params.dst_file_report,
            "job_metadata": params.job_metadata,
            "cancel_job": self.job_state == "CANCELED" or None,
            "space_token": None,
            "source_space_token": None,
            "internal_job_params": None,
        }
        if file_fields is not None:
            body["files"] = [f.to_json(file_fields) for f in self.files]
        return body


@dataclass(frozen=True)
class _Failure:
    scope: str
    code: int
    message: str

    @property
    def reason(self) -> str:
        # XrdCl quotes the server's C string with its NUL escaped ("...; file exists\\x00").
        message = self.message.replace("\\x00", "").strip()
        return f"{self.scope} [{self.code}] {message}"

    @property
    def recoverable(self) -> bool:
        # A small copy of fts_url_copy's heuristics, so `recoverable` looks like FTS's.
        if self.code == errno.ETIMEDOUT:
            return True
        if self.code == errno.ECANCELED:
            return False
        permanent = ("File exists", "CHECKSUM MISMATCH", "checksum do not match", "No such file")
        if any(text.lower() in self.message.lower() for text in permanent):
            return False
        if "Permission denied" in self.message:
            return False
        codes = {
            "SOURCE": {errno.ENOENT, errno.EPERM, errno.EACCES, errno.EISDIR},
            "DESTINATION": {errno.EPERM, errno.EACCES, errno.EISDIR, errno.EEXIST},
            "TRANSFER": {errno.ENOSPC, errno.EPERM, errno.EACCES, errno.EEXIST, errno.EROFS},
        }
        return self.code not in codes.get(self.scope, set())


class Fts3StandIn:
    """Jobs in memory, and worker threads copying their files with gfal2."""

    def __init__(
        self,
        max_workers: int = 4,
        *,
        token: str | None = None,
        schedule_delay: float = 0.0,
        x509_dn: str | None = None,
    ) -> None:
        self.token = token
        self.x509_dn = x509_dn
        # Time a queued file waits before a worker takes it: FTS never starts at once, and a
        # test of cancellation needs files that are still queued.
        self.schedule_delay = schedule_delay
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._file_ids = itertools.count(1)
        self._sequence = itertools.count()
        self._queue: list[tuple[int, int, _File]] = []
        self._queue_ready = threading.Condition(self._lock)
        self._stopping = False
        self._workers = [
            threading.Thread(target=self._work, name=f"fts3-standin-{n}", daemon=True)
            for n in range(max_workers)
        ]
        for worker in self._workers:
            worker.start()

    # -- REST operations (called from the event loop; everything here is quick) -------------

    def submit(self, body: Mapping[str, Any], user_dn: str) -> str:
        params = _Params.parse(body.get("params") or {})
        raw_files = body.get("files")
        if not isinstance(raw_files, list) or not raw_files:
            raise _BadRequest(400, "No transfers or namespace operations specified")
        job_id = str(uuid.uuid1())
        staging = params.bring_online > 0
        files: list[_File] = []
        for index, raw in enumerate(raw_files):
            sources = raw.get("sources") or []
            destinations = raw.get("destinations") or []
            if not sources or not destinations:
                raise _BadRequest(400, "Missing source and/or destination")
            if len(destinations) != 1:
                raise _BadRequest(400, "The stand-in supports one destination per file")
            filesize = raw.get("filesize")
            files.append(
                _File(
                    file_id=0,
                    job_id=job_id,
                    file_index=index,
                    sources=[str(s) for s in sources],
                    dest_surl=str(destinations[0]),
                    checksum=raw.get("checksum"),
                    user_filesize=int(filesize) if filesize is not None else None,
                    file_metadata=raw.get("metadata"),
                    activity=raw.get("activity") or "default",
                    selection_strategy=raw.get("selection_strategy") or "auto",
                    priority=params.priority,
                    file_state="STAGING" if staging else "SUBMITTED",
                    source_surl=str(sources[0]),
                )
            )
        with self._lock:
            if self._stopping:
                raise _BadRequest(503, "The server is shutting down")
            for f in files:
                f.file_id = next(self._file_ids)
            job = _Job(
                job_id=job_id,
                params=params,
                files=files,
                user_dn=user_dn,
                job_state="STAGING" if staging else "SUBMITTED",
                submit_time=_now(),
            )
            self._jobs[job_id] = job
            for f in files:
                # FTS runs priority 5 first; equal priorities in submission order.
                heapq.heappush(self._queue, (-params.priority, next(self._sequence), f))
            self._queue_ready.notify_all()
        return job_id

    def get(self, job_id: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise _BadRequest(404, f'No job with the id "{job_id}" has been found')
        return job

    def job_json(self, job_id: str, file_fields: list[str] | None) -> dict[str, Any]:
        with self._lock:
            body = self.get(job_id).to_json(file_fields)
        body["http_status"] = "200 Ok"
        return body

    def files_json(self, job_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_json() for f in self.get(job_id).files]

    def list_jobs(self, states: list[str] | None, limit: int | None) -> list[dict[str, Any]]:
        with self._lock:
            jobs = list(self._jobs.values())
            if states:
                jobs = [job for job in jobs if job.job_state in states]
            # Like fts-rest: without a limit only unfinished jobs are listed, whatever states
            # were asked for.
            if limit is None:
                jobs = [job for job in jobs if job.job_finished is None]
            else:
                jobs = sorted(jobs, key=lambda job: job.submit_time, reverse=True)[:limit]
            return [job.to_json() for job in jobs]

    def cancel(self, job_id: str) -> dict[str, Any]:
        contexts: list[Any] = []
        with self._lock:
            job = self.get(job_id)
            if job.job_state in FINAL_JOB_STATES:
                body = job.to_json()
                body["http_status"] = "304 Not Modified"
                body["http_message"] = "The job is in a terminal state"
                return body
            now = _now()
            for f in job.files:
                if f.file_state in ACTIVE_FILE_STATES:
                    contexts.extend(self._cancel_file(f, now))
            job.job_state = "CANCELED"
            job.reason = _CANCELED_REASON
            job.job_finished = now
            body = job.to_json()
            body["http_status"] = "200 Ok"
            body["http_message"] = None
        for context in contexts:
            context.cancel()
        return body

    def cancel_files(self, job_id: str, file_ids: list[str]) -> list[str]:
        contexts: list[Any] = []
        answers: list[str] = []
        with self._lock:
            job = self.get(job_id)
            by_id = {str(f.file_id): f for f in job.files}
            now = _now()
            for file_id in file_ids:
                f = by_id.get(file_id)
                if f is None:
                    answers.append("File does not belong to the job")
                elif f.file_state not in ACTIVE_FILE_STATES:
                    answers.append(f.file_state)
                else:
                    contexts.extend(self._cancel_file(f, now))
                    answers.append("CANCELED")
            if all(f.file_state not in ACTIVE_FILE_STATES for f in job.files):
                job.job_state = "CANCELED"
                job.reason = _CANCELED_REASON
                job.job_finished = now
        for context in contexts:
            context.cancel()
        return answers

    def stop(self) -> None:
        """Stop the workers: queued files stay queued, running copies are interrupted."""
        contexts: list[Any] = []
        with self._lock:
            self._stopping = True
            self._queue.clear()
            for job in self._jobs.values():
                contexts.extend(f.context for f in job.files if f.context is not None)
            self._queue_ready.notify_all()
        for context in contexts:
            context.cancel()
        for worker in self._workers:
            worker.join(timeout=10)

    # -- workers -----------------------------------------------------------------------------

    @staticmethod
    def _cancel_file(f: _File, now: datetime) -> list[Any]:
        f.file_state = "CANCELED"
        f.reason = _CANCELED_REASON
        f.finish_time = now
        return [f.context] if f.context is not None else []

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._queue_ready.wait()
                if self._stopping:
                    return
                _, _, f = heapq.heappop(self._queue)
            try:
                self._run(f)
            except Exception as exc:  # a bug here must fail the file, not kill the worker
                log.exception("stand-in worker failed on file %s", f.file_id)
                with self._lock:
                    if f.file_state == "ACTIVE":
                        self._finish(f, _Failure("GENERAL_FAILURE", errno.EINVAL, repr(exc)))

    def _run(self, f: _File) -> None:
        if f.file_state not in ("SUBMITTED", "STAGING"):
            return  # canceled while queued: no scheduling delay to wait for
        if self.schedule_delay:
            time.sleep(self.schedule_delay)
        job = self._jobs[f.job_id]
        context = gfal2.creat_context()
        with self._lock:
            if f.file_state not in ("SUBMITTED", "STAGING") or self._stopping:
                return  # canceled while queued
            now = _now()
            if f.file_state == "STAGING":
                # file:// and root:// test storage is disk only: staging has nothing to do.
                f.staging_start = f.staging_finished = now
            f.file_state = "ACTIVE"
            f.start_time = now
            f.context = context
            self._update_job(job)
        failure: _Failure | None = None
        for attempt in range(job.params.retry + 1):
            if attempt:
                time.sleep(job.params.retry_delay)
                with self._lock:
                    if f.file_state != "ACTIVE":
                        break
                    f.retry = attempt
            failure = self._copy(context, job.params, f)
            if failure is None or not failure.recoverable:
                break
        with self._lock:
            f.context = None
            canceled = f.file_state == "CANCELED"
            if not canceled:
                self._finish(f, failure)
        if canceled and (failure is None or failure.code != errno.EEXIST):
            # fts_url_copy removes what an interrupted copy left behind. A fresh context: the
            # copy's own was cancelled, and a cancelled gfal2 context refuses every call.
            _remove(gfal2.creat_context(), f.dest_surl)

    def _finish(self, f: _File, failure: _Failure | None) -> None:
        f.finish_time = _now()
        if failure is None:
            f.file_state = "FINISHED"
            f.reason = ""
        else:
            f.file_state = "FAILED"
            f.reason = failure.reason
            f.recoverable = failure.recoverable
        self._update_job(self._jobs[f.job_id])

    def _update_job(self, job: _Job) -> None:
        if job.job_state in FINAL_JOB_STATES:
            return
        states = [f.file_state for f in job.files]
        if all(state in FINAL_FILE_STATES for state in states):
            if "CANCELED" in states:
                job.job_state = "CANCELED"
            elif all(state == "FINISHED" for state in states):
                job.job_state = "FINISHED"
            elif all(state == "FAILED" for state in states):
                job.job_state = "FAILED"
            else:
                job.job_state = "FINISHEDDIRTY"
            if job.job_state in ("FAILED", "FINISHEDDIRTY"):
                job.reason = _FAILED_JOB_REASON
            job.job_finished = _now()
        elif any(state not in ("SUBMITTED", "STAGING") for state in states):
            job.job_state = "ACTIVE"
        elif "STAGING" in states:
            job.job_state = "STAGING"
        else:
            job.job_state = "SUBMITTED"

    def _copy(self, context: Any, params: _Params, f: _File) -> _Failure | None:
        """fts_url_copy's steps for one file; returns why it failed, or None."""
        algorithm, _, expected = (f.checksum or "").partition(":")
        algorithm = algorithm or "ADLER32"

        source_size: int | None = None
        failure: _Failure | None = None
        for source in f.sources:
            with self._lock:
                f.source_surl = source
            try:
                source_size = int(context.stat(source).st_size)
                break
            except gfal2.GError as exc:
                failure = _Failure("SOURCE", exc.code, exc.message)
        if source_size is None:
            return failure

        if not params.overwrite:
            try:
                context.stat(f.dest_surl)
            except gfal2.GError as exc:
                if exc.code != errno.ENOENT:
                    return _Failure("DESTINATION", exc.code, exc.message)
            else:
                if params.dst_file_report:
                    self._report_destination(context, f, algorithm)
                return _Failure(
                    "DESTINATION",
                    errno.EEXIST,
                    "Destination file exists and overwrite is not enabled",
                )

        if expected and params.verify_checksum in ("both", "source"):
            # fts_url_copy checks the source against the user's checksum before copying, so a
            # bad source is told apart from a copy gone wrong (XRootD's third-party copy only
            # says "CheckSum error" for both).
            try:
                found = context.checksum(f.source_surl, algorithm)
            except gfal2.GError as exc:
                if exc.code not in (errno.ENOSYS, errno.ENOTSUP):
                    return _Failure("TRANSFER", exc.code, exc.message)
            else:
                if found.lstrip("0").lower() != expected.lstrip("0").lower():
                    return _Failure(
                        "TRANSFER",
                        errno.EIO,
                        f"Source and user-defined {expected} checksum do not match "
                        f"({found} != {expected})",
                    )

        transfer = context.transfer_parameters()
        transfer.overwrite = params.overwrite
        transfer.create_parent = True
        if hasattr(transfer, "proxy_delegation"):
            # Without this XRootD reports a missing source as a delegation problem.
            transfer.proxy_delegation = False
        if params.verify_checksum != "none":
            mode = _CHECKSUM_MODES[params.verify_checksum]
            try:
                transfer.set_checksum(mode, algorithm, expected)
            except gfal2.GError as exc:
                # e.g. "target" without a value: gfal2 only compares ends without one ("both").
                scope = {"source": "SOURCE", "target": "DESTINATION"}.get(
                    params.verify_checksum, "TRANSFER"
                )
                return _Failure(scope, exc.code, exc.message)

        started = time.monotonic()
        try:
            context.filecopy(transfer, f.source_surl, f.dest_surl)
        except gfal2.GError as exc:
            if exc.code != errno.EEXIST:
                _remove(context, f.dest_surl)
            return _Failure("TRANSFER", exc.code, exc.message)
        duration = time.monotonic() - started

        try:
            dest_size = int(context.stat(f.dest_surl).st_size)
        except gfal2.GError as exc:
            return _Failure("DESTINATION", exc.code, exc.message)
        if dest_size != source_size:
            _remove(context, f.dest_surl)
            return _Failure(
                "DESTINATION", errno.EINVAL, "Source and destination file size mismatch"
            )
        with self._lock:
            f.filesize = source_size
            f.tx_duration = round(duration, 3)
            f.throughput = source_size / 1048576 / duration if duration > 0 else 0.0
        return None

    def _report_destination(self, context: Any, f: _File, algorithm: str) -> None:
        report: dict[str, Any] = {
            "checksum_type": algorithm.upper(),
            "file_on_disk": True,
            "file_on_tape": False,
        }
        try:
            report["file_size"] = int(context.stat(f.dest_surl).st_size)
            report["checksum_value"] = context.checksum(f.dest_surl, algorithm)
        except gfal2.GError as exc:
            log.warning("no destination report for %s: %s", f.dest_surl, exc.message)
            return
        with self._lock:
            metadata = f.file_metadata
            if not isinstance(metadata, dict):
                metadata = {} if metadata is None else {"file_metadata": metadata}
            f.file_metadata = {**metadata, "dst_file": report}


def _remove(context: Any, url: str) -> None:
    with contextlib.suppress(gfal2.GError):
        context.unlink(url)


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------


def _error(status: int, message: str) -> JSONResponse:
    phrases = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 503: "Unavailable"}
    return JSONResponse(
        {"status": f"{status} {phrases.get(status, 'Error')}", "message": message}, status
    )


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _token_subject(token: str) -> str:
    # A JWT names its holder in "sub"; any other token is identified by its digest.
    parts = token.split(".")
    if len(parts) == 3:
        with contextlib.suppress(ValueError):
            payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
            if isinstance(payload, dict) and payload.get("sub"):
                return str(payload["sub"])
    return "token-" + hashlib.sha256(token.encode()).hexdigest()[:12]


def _identity(standin: Fts3StandIn, request: Request) -> tuple[str, str]:
    token = _bearer(request)
    if token is not None:
        return f"/DC=org/DC=dynamo/OU=tokens/CN={_token_subject(token)}", "oauth2"
    # Set by a TLS-terminating proxy in front (uvicorn does not hand the peer certificate to the
    # app), or configured when the stand-in itself requires client certificates.
    dn = request.headers.get("ssl-client-s-dn") or standin.x509_dn
    if dn:
        return dn, "certificate"
    return "/DC=org/DC=dynamo/CN=anonymous", "unauthenticated"


def create_app(
    max_workers: int = 4,
    *,
    token: str | None = None,
    schedule_delay: float = 0.0,
    x509_dn: str | None = None,
) -> FastAPI:
    """The stand-in as an ASGI app; ``app.state.standin`` is its :class:`Fts3StandIn`."""
    standin = Fts3StandIn(max_workers, token=token, schedule_delay=schedule_delay, x509_dn=x509_dn)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        yield
        standin.stop()

    app = FastAPI(title="FTS3 stand-in", lifespan=lifespan)
    app.state.standin = standin

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Any:
        if standin.token is not None and _bearer(request) != standin.token:
            return _error(401, "Authentication required: no valid bearer token")
        return await call_next(request)

    @app.exception_handler(_BadRequest)
    async def bad_request(_: Request, exc: _BadRequest) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.get("/")
    async def api_version() -> dict[str, Any]:
        version = {"major": 3, "minor": 12, "patch": 0}
        return {
            "api": version,
            "schema": version,
            "delegation": {"major": 1, "minor": 0, "patch": 0},
        }

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        dn, method = _identity(standin, request)
        return {
            "dn": [dn],
            "vos": [_VO],
            "vos_id": [str(uuid.uuid5(_BASE_ID, _VO))],
            "voms_cred": [],
            "user_dn": dn,
            "delegation_id": hashlib.sha1(dn.encode()).hexdigest()[:16],
            "base_id": str(_BASE_ID),
            "method": method,
            "is_root": False,
            "level": {"transfer": "vo"},
        }

    @app.post("/jobs")
    async def submit(request: Request) -> dict[str, str]:
        try:
            body = await request.json()
        except ValueError as exc:
            raise _BadRequest(400, f"Badly formatted JSON request ({exc})") from exc
        if not isinstance(body, dict):
            raise _BadRequest(400, "Badly formatted JSON request")
        dn, _ = _identity(standin, request)
        return {"job_id": standin.submit(body, dn)}

    @app.get("/jobs")
    async def list_jobs(state_in: str | None = None, limit: int | None = None) -> Any:
        states = [s for s in state_in.split(",") if s] if state_in else None
        return standin.list_jobs(states, limit)

    @app.get("/jobs/{job_list}")
    async def get_jobs(job_list: str, files: str | None = None) -> Any:
        job_ids = job_list.split(",")
        fields = [f for f in files.split(",") if f] if files else None
        answers: list[dict[str, Any]] = []
        errors = 0
        for job_id in filter(None, job_ids):
            try:
                answers.append(standin.job_json(job_id, fields))
            except _BadRequest as exc:
                errors += 1
                answers.append(
                    {"job_id": job_id, "http_status": "404 Not Found", "http_message": exc.message}
                )
        if len(job_ids) == 1:
            if errors:
                return JSONResponse(answers[0], 404)
            return answers[0]
        return JSONResponse(answers, 207 if errors else 200)

    @app.get("/jobs/{job_id}/files")
    async def get_files(job_id: str) -> Any:
        return standin.files_json(job_id)

    @app.delete("/jobs/{job_list}")
    async def cancel(job_list: str) -> Any:
        job_ids = [job_id for job_id in job_list.split(",") if job_id]
        answers: list[dict[str, Any]] = []
        for job_id in job_ids:
            try:
                answers.append(standin.cancel(job_id))
            except _BadRequest as exc:
                answers.append(
                    {"job_id": job_id, "http_status": "404 Not Found", "http_message": exc.message}
                )
        if len(job_ids) == 1:
            status = int(answers[0]["http_status"].split()[0])
            return JSONResponse(answers[0], 200 if status == 304 else status)
        failed = any(not a["http_status"].startswith(("2", "304")) for a in answers)
        return JSONResponse(answers, 207 if failed else 200)

    @app.delete("/jobs/{job_id}/files/{file_ids}")
    async def cancel_files(job_id: str, file_ids: str) -> Any:
        answers = standin.cancel_files(job_id, [f for f in file_ids.split(",") if f])
        return answers if len(answers) != 1 else answers[0]

    return app


@contextlib.contextmanager
def serve(
    app: FastAPI | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    **uvicorn_options: Any,
) -> Iterator[str]:
    """Run the stand-in with uvicorn in a background thread; yields its base URL.

    ``port=0`` takes a free port. ``uvicorn_options`` go to ``uvicorn.Config`` (e.g.
    ``ssl_certfile``, ``ssl_keyfile``, ``ssl_ca_certs``, ``ssl_cert_reqs`` for HTTPS).
    """
    config = uvicorn.Config(
        app if app is not None else create_app(),
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        **uvicorn_options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fts3-standin-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the FTS3 stand-in did not start")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    scheme = "https" if uvicorn_options.get("ssl_certfile") else "http"
    try:
        yield f"{scheme}://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
