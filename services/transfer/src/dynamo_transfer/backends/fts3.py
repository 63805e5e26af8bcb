"""Client of the FTS3 REST API (fts-rest), and what FTS states and failure reasons mean for us.

The calls used (all JSON):

``GET /``                          server and API versions
``GET /whoami``                    the identity FTS sees for our credentials
``POST /jobs``                     submit ``{"files": [...], "params": {...}}``; answers ``job_id``
``GET /jobs/{id}?files=a,b``       one job, with the listed fields of each of its files
``GET /jobs/{id1,id2}?files=a,b``  several jobs in one request (a list; 207 if some are unknown)
``GET /jobs/{id}/files``           every field of every file of a job
``GET /jobs?state_in=A,B``         jobs in the given states
``DELETE /jobs/{id}``              cancel a job; a job already in a final state is left as it is and
                                   reported as ``304 Not Modified`` (in the body, or as the status)
``DELETE /jobs/{id}/files/{ids}``  cancel some files of a job

Authentication is either an X.509 (proxy) certificate presented in the TLS handshake or an OAuth2
bearer token. FTS itself still needs a delegated proxy to submit with a certificate; delegation is
not done here (``fts-rest-delegate`` or the Python ``fts3`` client do it out of band).

FTS reports a failed file with a free-text ``reason`` of the form ``SCOPE [errno] message``
(``SOURCE``, ``DESTINATION``, ``TRANSFER`` or ``GENERAL_FAILURE``). :func:`classify` turns a file's
state and reason into what a caller should do next, from the ordered table :data:`REASON_RULES`.
"""

from __future__ import annotations

import enum
import json
import re
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from os import path as os_path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "FILE_ACTIVE_STATES",
    "FILE_FIELDS",
    "FINAL_FILE_STATES",
    "FINAL_JOB_STATES",
    "JOB_ACTIVE_STATES",
    "REASON_RULES",
    "Fts3AuthError",
    "Fts3Client",
    "Fts3Error",
    "Fts3File",
    "Fts3FileStatus",
    "Fts3Job",
    "Fts3JobParams",
    "Fts3NotFound",
    "Fts3ServerInfo",
    "Fts3Unavailable",
    "Fts3Version",
    "Fts3WhoAmI",
    "Outcome",
    "ReasonRule",
    "checksums_match",
    "classify",
    "explain",
]

# States as fts-rest defines them (fts3rest.model.job / file).
JOB_ACTIVE_STATES = frozenset(
    {
        "SUBMITTED",
        "READY",
        "ACTIVE",
        "STAGING",
        "DELETE",
        "ARCHIVING",
        "QOS_TRANSITION",
        "QOS_REQUEST_SUBMITTED",
    }
)
FINAL_JOB_STATES = frozenset({"FINISHED", "FAILED", "FINISHEDDIRTY", "CANCELED"})
FILE_ACTIVE_STATES = frozenset(
    {
        "SUBMITTED",
        "READY",
        "ACTIVE",
        "STAGING",
        "STARTED",
        "ARCHIVING",
        "QOS_TRANSITION",
        "QOS_REQUEST_SUBMITTED",
        "TOKEN_PREP",
    }
)
FINAL_FILE_STATES = frozenset({"FINISHED", "FAILED", "CANCELED"})

# NOT_USED is an alternative replica FTS did not need (another source of the same file was used
# or the job ended first): it will never be tried, although FTS calls it neither final nor active.
_NOT_USED = "NOT_USED"


def _as_utc(value: datetime) -> datetime:
    # fts-rest formats times with "%Y-%m-%dT%H:%M:%S%z" from naive UTC values, so the offset
    # is usually missing: naive here means UTC, not local time.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------

_CHECKSUM_RE = re.compile(r"^[A-Za-z0-9]+(?::[0-9A-Fa-f]+)?$")


class Fts3File(BaseModel):
    """One file of a submission: FTS tries ``sources`` in turn to produce ``destinations``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: list[str] = Field(min_length=1)
    destinations: list[str] = Field(min_length=1)
    # "ADLER32:1519038c"; the algorithm alone ("ADLER32") makes FTS compare source and
    # destination without a reference value.
    checksum: str | None = None
    filesize: int | None = Field(default=None, ge=0)
    metadata: dict[str, Any] | None = None
    activity: str | None = None
    selection_strategy: str = "auto"

    @field_validator("checksum")
    @classmethod
    def _checksum_form(cls, value: str | None) -> str | None:
        if value is not None and not _CHECKSUM_RE.match(value):
            raise ValueError(f"checksum must look like 'ADLER32:1519038c', not {value!r}")
        return value


class Fts3JobParams(BaseModel):
    """Job parameters (``params`` of a submission); FTS defaults where not given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verify_checksum: Literal["both", "source", "target", "none"] = "both"
    overwrite: bool = False
    priority: int = Field(default=3, ge=1, le=5)
    # -1 lets the FTS server's own retry policy apply.
    retry: int = Field(default=0, ge=-1)
    retry_delay: int = Field(default=0, ge=0)
    bring_online: int = -1
    copy_pin_lifetime: int = -1
    job_metadata: dict[str, Any] = Field(default_factory=dict)
    # Ask FTS to add the existing destination's size and checksum to the file's metadata
    # (file_metadata.dst_file) when it refuses to overwrite it: that is what lets classify()
    # tell a finished earlier copy from a different file in the way.
    dst_file_report: bool = False
    max_time_in_queue: int | None = Field(default=None, ge=0)


# ---------------------------------------------------------------------------------------------
# Responses: real FTS returns many more fields than these; unknown ones are ignored.
# ---------------------------------------------------------------------------------------------


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def _json_object(value: Any) -> Any:
    # Metadata comes back as stored: usually a JSON object, sometimes the JSON text of one.
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class Fts3FileStatus(_Response):
    """One file (one source/destination pair) of a job as FTS reports it."""

    file_id: int
    job_id: str | None = None
    file_state: str
    file_index: int | None = None
    source_surl: str | None = None
    dest_surl: str | None = None
    source_se: str | None = None
    dest_se: str | None = None
    reason: str | None = None
    # Bytes transferred as FTS measured them; user_filesize is what the submission declared.
    filesize: int | None = None
    user_filesize: int | None = None
    checksum: str | None = None
    file_metadata: Any = None
    activity: str | None = None
    selection_strategy: str | None = None
    priority: int | None = None
    retry: int | None = None
    recoverable: bool | None = None
    start_time: UtcDatetime | None = None
    finish_time: UtcDatetime | None = None
    staging_start: UtcDatetime | None = None
    staging_finished: UtcDatetime | None = None
    tx_duration: float | None = None
    throughput: float | None = None  # MiB/s

    @field_validator("file_metadata", mode="before")
    @classmethod
    def _metadata(cls, value: Any) -> Any:
        return _json_object(value)

    @property
    def final(self) -> bool:
        return self.file_state in FINAL_FILE_STATES

    @property
    def destination_report(self) -> Mapping[str, Any] | None:
        """``file_metadata.dst_file``: the existing destination FTS found (dst_file_report)."""
        if isinstance(self.file_metadata, Mapping):
            report = self.file_metadata.get("dst_file")
            if isinstance(report, Mapping):
                return report
        return None


# The file fields asked for with ``?files=``: FTS returns only those listed.
FILE_FIELDS: tuple[str, ...] = tuple(Fts3FileStatus.model_fields)

_HTTP_OK_PREFIXES = ("2", "304")


class Fts3Job(_Response):
    """A job as FTS reports it; ``files`` is filled when asked for."""

    job_id: str
    job_state: str | None = None
    job_type: str | None = None
    source_se: str | None = None
    dest_se: str | None = None
    user_dn: str | None = None
    vo_name: str | None = None
    cred_id: str | None = None
    reason: str | None = None
    submit_time: UtcDatetime | None = None
    job_finished: UtcDatetime | None = None
    priority: int | None = None
    overwrite_flag: bool | str | None = None
    verify_checksum: bool | str | None = None
    bring_online: int | None = None
    copy_pin_lifetime: int | None = None
    retry: int | None = None
    retry_delay: int | None = None
    job_metadata: Any = None
    files: list[Fts3FileStatus] = Field(default_factory=list)
    # Set by FTS in multi-job answers and cancellations, e.g. "200 Ok", "304 Not Modified",
    # "404 Not Found".
    http_status: str | None = None
    http_message: str | None = None

    @field_validator("job_metadata", mode="before")
    @classmethod
    def _metadata(cls, value: Any) -> Any:
        return _json_object(value)

    @property
    def found(self) -> bool:
        """False for the placeholder FTS returns for an unknown or forbidden job id."""
        return self.http_status is None or self.http_status.startswith(_HTTP_OK_PREFIXES)

    @property
    def final(self) -> bool:
        return self.job_state in FINAL_JOB_STATES


class Fts3Version(_Response):
    major: int
    minor: int
    patch: int


class Fts3ServerInfo(_Response):
    api: Fts3Version | None = None
    schema_version: Fts3Version | None = Field(default=None, alias="schema")
    delegation: Fts3Version | None = None


class Fts3WhoAmI(_Response):
    user_dn: str | None = None
    dn: list[str] = Field(default_factory=list)
    vos: list[str] = Field(default_factory=list)
    vos_id: list[str] = Field(default_factory=list)
    voms_cred: list[str] = Field(default_factory=list)
    delegation_id: str | None = None
    base_id: str | None = None
    method: str | None = None
    is_root: bool | None = None
    level: dict[str, Any] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class Fts3Error(Exception):
    """FTS answered with an error (``status`` is the HTTP status, 0 when there was no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"FTS3 error {status}: {message}" if status else f"FTS3: {message}")
        self.status = status
        self.message = message

    @property
    def retryable(self) -> bool:
        # 5xx from fts-rest are mostly database trouble behind it (deadlocks, lost connections).
        return self.status >= 500


class Fts3AuthError(Fts3Error):
    """401/403: the credentials are missing, expired or not allowed; or (status 0) the server's
    certificate is not trusted. Retrying will not help."""

    @property
    def retryable(self) -> bool:
        return False


class Fts3NotFound(Fts3Error):
    """404: no such job (never submitted here, or already purged from the FTS database)."""


class Fts3Unavailable(Fts3Error):
    """FTS could not be reached, timed out, or said it is overloaded: try again later."""

    @property
    def retryable(self) -> bool:
        return True


_UNAVAILABLE_STATUSES = frozenset({408, 429, 502, 503, 504})


# ---------------------------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------------------------


def _ssl_context(verify: bool | str, cert: str | tuple[str, str] | None) -> ssl.SSLContext | bool:
    if cert is None and isinstance(verify, bool):
        return verify
    if isinstance(verify, str):
        # Grid hosts keep their CAs as a hashed directory (/etc/grid-security/certificates).
        if os_path.isdir(verify):
            context = ssl.create_default_context(capath=verify)
        else:
            context = ssl.create_default_context(cafile=verify)
    else:
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    if cert is not None:
        # A proxy file holds certificate, key and chain together: the same file serves as both.
        certfile, keyfile = (cert, cert) if isinstance(cert, str) else cert
        context.load_cert_chain(certfile=certfile, keyfile=keyfile)
    return context


def _ids(values: Iterable[str | int]) -> str:
    return ",".join(quote(str(value), safe="") for value in values)


class Fts3Client:
    """Async client of one FTS3 REST endpoint (e.g. ``https://fts3-cms.cern.ch:8446``).

    ``token`` is sent as ``Authorization: Bearer``; ``cert`` is an X.509 proxy file (certificate
    and key in one file) or a ``(certificate, key)`` pair presented in the TLS handshake. The
    certificate is read once: after renewing a proxy file, make a new client. ``verify`` is a CA
    file or directory, or a boolean. A caller-supplied ``http`` client is used as it is (and not
    closed): its TLS settings, including any client certificate, are then the caller's.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        cert: str | tuple[str, str] | None = None,
        verify: bool | str = True,
        timeout: float = 30,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        if http is not None:
            if cert is not None:
                raise ValueError("with a supplied httpx client, configure its certificate there")
            self._http = http
            self._owns_http = False
        else:
            self._http = httpx.AsyncClient(
                verify=_ssl_context(verify, cert),
                timeout=timeout,
                headers={"User-Agent": "dynamo-transfer-fts3"},
            )
            self._owns_http = True

    @property
    def base_url(self) -> str:
        return self._base_url

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Fts3Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- endpoints ---------------------------------------------------------------------------

    async def server_info(self) -> Fts3ServerInfo:
        response = await self._request("GET", "/")
        return Fts3ServerInfo.model_validate(response.json())

    async def whoami(self) -> Fts3WhoAmI:
        response = await self._request("GET", "/whoami")
        return Fts3WhoAmI.model_validate(response.json())

    async def submit(self, files: Sequence[Fts3File], params: Fts3JobParams) -> str:
        """Submit one job; returns its id."""
        if not files:
            raise ValueError("an FTS job needs at least one file")
        body = {
            "files": [file.model_dump(mode="json", exclude_none=True) for file in files],
            "params": params.model_dump(mode="json", exclude_none=True),
        }
        response = await self._request("POST", "/jobs", body=body, ok=(200, 201, 202))
        job_id = response.json().get("job_id")
        if not isinstance(job_id, str) or not job_id:
            raise Fts3Error(response.status_code, f"submission answered without a job id: {body}")
        return job_id

    async def job(self, job_id: str, with_files: bool = True) -> Fts3Job:
        """One job; raises :class:`Fts3NotFound` if FTS does not know it."""
        params = {"files": ",".join(FILE_FIELDS)} if with_files else None
        response = await self._request("GET", f"/jobs/{_ids([job_id])}", params=params)
        return Fts3Job.model_validate(_single(response.json()))

    async def jobs(
        self, job_ids: Sequence[str], with_files: bool = True, *, chunk: int = 50
    ) -> list[Fts3Job]:
        """Several jobs with one request per ``chunk`` ids, in the order asked.

        A job FTS does not know comes back as a placeholder with ``found`` false (and its
        ``http_status``), so one purged job does not hide the others.
        """
        params = {"files": ",".join(FILE_FIELDS)} if with_files else None
        result: list[Fts3Job] = []
        for start in range(0, len(job_ids), chunk):
            batch = job_ids[start : start + chunk]
            response = await self._request(
                "GET", f"/jobs/{_ids(batch)}", params=params, ok=(200, 207), not_found_ok=True
            )
            if response.status_code == 404:
                # A single unknown id: FTS answers with its error entry alone. Anything else
                # (a wrong base URL behind a proxy, say) must not pass for "job purged".
                try:
                    payload = response.json()
                except ValueError:
                    payload = None
                if not (isinstance(payload, Mapping) and payload.get("job_id") == batch[0]):
                    raise Fts3NotFound(404, f"GET /jobs/{batch[0]}: {_error_message(response)}")
                entries: list[Any] = [{"http_status": "404 Not Found", **payload}]
            else:
                payload = response.json()
                entries = payload if isinstance(payload, list) else [payload]
            result.extend(Fts3Job.model_validate(entry) for entry in entries)
        return result

    async def files(self, job_id: str) -> list[Fts3FileStatus]:
        """Every file of a job with all its fields (``GET /jobs/{id}/files``)."""
        response = await self._request("GET", f"/jobs/{_ids([job_id])}/files")
        return [Fts3FileStatus.model_validate(entry) for entry in response.json()]

    async def cancel(self, job_id: str) -> Fts3Job:
        """Cancel a job; a job already final is returned unchanged (FTS says 304, not an error)."""
        response = await self._request("DELETE", f"/jobs/{_ids([job_id])}", ok=(200, 202, 304))
        if response.status_code == 304 or not response.content:
            return await self.job(job_id, with_files=False)
        return Fts3Job.model_validate(_single(response.json()))

    async def cancel_files(self, job_id: str, file_ids: Sequence[int]) -> list[str]:
        """Cancel some files of a job; returns, per file, its state afterwards as FTS tells it
        (``CANCELED``, the final state it already had, or an explanation)."""
        if not file_ids:
            return []
        response = await self._request(
            "DELETE", f"/jobs/{_ids([job_id])}/files/{_ids(file_ids)}", ok=(200, 207)
        )
        payload = response.json()
        return [str(item) for item in payload] if isinstance(payload, list) else [str(payload)]

    async def list_jobs(
        self, state_in: Sequence[str], *, limit: int | None = None
    ) -> list[Fts3Job]:
        """Jobs in the given states (without their files).

        Without ``limit`` FTS lists only unfinished jobs, whatever states are asked for.
        """
        params: dict[str, str | int] = {"state_in": ",".join(state_in)}
        if limit is not None:
            params["limit"] = limit
        response = await self._request("GET", "/jobs", params=params)
        return [Fts3Job.model_validate(entry) for entry in response.json()]

    # -- plumbing ----------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        ok: Sequence[int] = (200,),
        not_found_ok: bool = False,
    ) -> httpx.Response:
        url = self._base_url + path
        try:
            response = await self._http.request(
                method, url, params=params, json=body, headers=self._headers
            )
        except httpx.TimeoutException as exc:
            raise Fts3Unavailable(0, f"{method} {url} timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            if _untrusted_server(exc):
                # Configuration, not a passing fault: retrying would fail the same way.
                message = f"{method} {url}: server certificate not trusted: {exc}"
                raise Fts3AuthError(0, message) from exc
            raise Fts3Unavailable(0, f"{method} {url} failed: {exc!r}") from exc
        status = response.status_code
        if status in ok or (not_found_ok and status == 404):
            return response
        message = f"{method} {path}: {_error_message(response)}"
        if status in (401, 403):
            raise Fts3AuthError(status, message)
        if status == 404:
            raise Fts3NotFound(status, message)
        if status in _UNAVAILABLE_STATUSES:
            raise Fts3Unavailable(status, message)
        raise Fts3Error(status, message)


def _untrusted_server(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _single(payload: Any) -> Any:
    return payload[0] if isinstance(payload, list) and len(payload) == 1 else payload


def _error_message(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(payload, Mapping):
        for key in ("message", "http_message", "detail", "status"):
            if payload.get(key):
                return str(payload[key])
    return str(payload)[:500]


# ---------------------------------------------------------------------------------------------
# What a file's state and reason mean
# ---------------------------------------------------------------------------------------------


class Outcome(enum.StrEnum):
    DONE = "done"
    RETRYABLE = "retryable"
    UNRECOVERABLE = "unrecoverable"
    CANCELED = "canceled"
    IN_PROGRESS = "in_progress"


@dataclass(frozen=True)
class ReasonRule:
    """A family of FTS failure reasons. ``outcome`` None: the destination already exists, and
    whether that is success depends on its checksum (see :func:`classify`)."""

    name: str
    pattern: re.Pattern[str]
    outcome: Outcome | None


def _rule(name: str, outcome: Outcome | None, *alternatives: str) -> ReasonRule:
    return ReasonRule(name, re.compile("|".join(alternatives), re.IGNORECASE), outcome)


# Scope and errno prefix FTS puts before every reason: "TRANSFER [110] ...".
_SCOPE = r"(?:SOURCE|DESTINATION|TRANSFER|GENERAL_FAILURE)\s*\["

_R, _U = Outcome.RETRYABLE, Outcome.UNRECOVERABLE

# First match wins, so the order matters. It follows fts_url_copy's own heuristics: words that
# imply a passing problem (timeouts, dropped connections) first, then words that imply a
# permanent one, then connection-level failures that may wrap a permanent cause (srm-ifce puts
# "Communication error on send" in front of SRM_INVALID_PATH), then the bare errno.
REASON_RULES: tuple[ReasonRule, ...] = (
    # FTS gives up on a job that waited too long (state CANCELED): worth submitting again.
    _rule("queue-expired", _R, r"stayed in the queue for too long", r"max.time.in.queue"),
    # Not "Transfer canceled" alone: FTS also says "Transfer canceled because the gsiftp
    # performance marker timeout ... has been exceeded", which is a timeout.
    _rule(
        "canceled",
        Outcome.CANCELED,
        r"canceled by the user",
        r"\bECANCELED\b",
        _SCOPE + r"125\]",
    ),
    _rule(
        "destination-exists",
        None,
        r"file exists and overwrite is not (?:enabled|set)",
        r"destination file exists",
        r"\bDESTINATION OVERWRITE\b.*\bexists\b",
        r"\bEEXIST\b",
        r"SRM_DUPLICATION_ERROR",
        r"DESTINATION\s*\[17\]",
        _SCOPE + r"17\]",
        r"\[3018\]",
    ),
    # The source does not have the content the catalogue says: copying again cannot fix that.
    _rule(
        "source-checksum-mismatch",
        _U,
        r"SOURCE CHECKSUM MISMATCH",
        r"USER.DEFINED CHECKSUM MISMATCH",
        r"source and user.defined \S* ?checksum do not match",
        r"source checksum\b.*\b(?:mismatch|do(?:es)? not match)",
    ),
    # The copy differs from a source that verified: corrupted on the way, a new copy may do.
    _rule(
        "destination-checksum-mismatch",
        _R,
        r"DESTINATION CHECKSUM MISMATCH",
        r"source and destination (?:\S+ )?checksums? do not match",
        r"DESTINATION (?:ADLER32|MD5|CRC32C?) checksum mismatch",
        r"checksum mismatch",
        r"checksum error",
        r"checksums? do(?:es)? not match",
        r"size mismatch",
    ),
    _rule(
        "transient",
        _R,
        r"timed? ?out",
        r"\btimeout\b",
        r"\bETIMEDOUT\b",
        _SCOPE + r"110\]",
        r"operation expired",
        r"Name or service not known",
        r"end-of-file was reached",
        r"end of file occurred",
        r"SRM_INTERNAL_ERROR",
        r"SRM_FILE_BUSY",
        r"SRM_TOO_MANY_REQUESTS",
        r"performance marker",
        r"was forcefully killed",
    ),
    _rule(
        "source-missing",
        _U,
        r"\bENOENT\b",
        r"No such file or directory",
        r"\bFile not found\b",
        r"HTTP 404",
        r"SRM_INVALID_PATH",
        r"\[3011\]",
        r"\bdoes not exist\b",
        r"SOURCE\s*\[2\]",
    ),
    _rule(
        "permission",
        _U,
        r"Permission denied",
        r"Permission refused",
        r"Operation not permitted",
        r"\bEACCES\b",
        r"\bEPERM\b",
        r"HTTP 40[13]\b",
        r"SRM_AUTHORIZATION_FAILURE",
        r"SRM_AUTHENTICATION_FAILURE",
        r"Authentication failed",
        r"proxy expired",
        r"certificate has expired",
        r"CRL has expired",
        r"\[3010\]",
        _SCOPE + r"(?:1|13)\]",
    ),
    _rule(
        "no-space",
        _U,
        r"No space left on device",
        r"\bENOSPC\b",
        r"\bEDQUOT\b",
        r"quota exceeded",
        r"SRM_NO_FREE_SPACE",
        r"HTTP 507",
        r"Insufficient Storage",
        r"all pools are full",
        _SCOPE + r"(?:28|122)\]",
    ),
    _rule(
        "invalid-request",
        _U,
        r"Is a directory",
        r"Not a directory",
        r"File name too long",
        r"Protocol not supported",
        r"Read-only file system",
        r"File too large",
        r"Checksum value required",
        r"\b(?:EISDIR|ENOTDIR|ENAMETOOLONG|EPROTONOSUPPORT|EROFS|EFBIG)\b",
        _SCOPE + r"(?:20|21|27|30|36|93)\]",
    ),
    _rule(
        "connection",
        _R,
        r"Communication error on send",
        r"Connection refused",
        r"Connection reset",
        r"Connection error",
        r"\b(?:ECONNREFUSED|ECONNRESET|ECOMM|EHOSTUNREACH|ENETUNREACH|EAGAIN)\b",
        r"No route to host",
        r"Network is unreachable",
        r"Broken pipe",
        r"Socket error",
        r"Resource temporarily unavailable",
        r"curl error \((?:6|7|18|28|35|52|55|56)\)",
        r"Failure when receiving data from the peer",
        r"HTTP 50[0234]\b",
        r"Service Unavailable",
        _SCOPE + r"(?:11|70|101|104|111|112|113)\]",
    ),
)

_SOURCE_ENOENT = re.compile(r"^\s*SOURCE\s*\[2\]")
# A reason that itself states the copies are identical (some storage systems say so when they
# refuse to overwrite).
_SAME_CHECKSUM_RE = re.compile(
    r"\bchecksums? (?:are (?:the )?)?(?:identical|equal|match(?:es|ing)?)\b"
    r"|\b([0-9a-f]{8,})\s*==\s*([0-9a-f]{8,})\b",
    re.IGNORECASE,
)


def checksums_match(expected: str | None, actual: str | None) -> bool:
    """Compare checksums given as ``ALG:value`` or bare values, as FTS does: case and leading
    zeros do not matter, and algorithms must agree when both are named."""
    if not expected or not actual:
        return False
    exp_alg, exp_value = _split_checksum(expected)
    act_alg, act_value = _split_checksum(actual)
    if not exp_value or not act_value:
        return False
    if exp_alg and act_alg and exp_alg != act_alg:
        return False
    return exp_value == act_value


_HEX_RE = re.compile(r"^[0-9a-f]+$")


def _split_checksum(text: str) -> tuple[str | None, str]:
    algorithm, _, value = text.strip().lower().rpartition(":")
    if not _HEX_RE.match(value):
        # "ADLER32" alone names an algorithm, not a value.
        return (algorithm or value or None), ""
    return (algorithm or None), (value.lstrip("0") or "0")


def _destination_matches(
    status: Fts3FileStatus, dest_checksum: str | None, dest_size: int | None
) -> bool:
    expected_size = status.user_filesize or status.filesize
    if dest_checksum is not None:
        if dest_size is not None and expected_size and dest_size != expected_size:
            return False
        return checksums_match(status.checksum, dest_checksum)
    report = status.destination_report
    if report is not None:
        value = report.get("checksum_value")
        kind = report.get("checksum_type")
        if not value:
            return False
        size = report.get("file_size")
        if isinstance(size, int) and expected_size and size != expected_size:
            return False
        found = f"{kind}:{value}" if kind else str(value)
        return checksums_match(status.checksum, found)
    match = _SAME_CHECKSUM_RE.search(status.reason or "")
    if match is None:
        return False
    if match.group(1):
        return checksums_match(match.group(1), match.group(2))
    return True


def explain(
    status: Fts3FileStatus, *, dest_checksum: str | None = None, dest_size: int | None = None
) -> tuple[Outcome, str]:
    """:func:`classify` and the name of the rule that decided (for logs and tests)."""
    state = status.file_state
    if state == "FINISHED":
        return Outcome.DONE, "finished"
    if state == _NOT_USED:
        return Outcome.CANCELED, "not-used"
    if state not in FINAL_FILE_STATES:
        return Outcome.IN_PROGRESS, "in-progress"
    reason = status.reason or ""
    rule = next((r for r in REASON_RULES if r.pattern.search(reason)), None)
    if state == "CANCELED":
        if rule is not None and rule.name == "queue-expired":
            return Outcome.RETRYABLE, rule.name
        return Outcome.CANCELED, "canceled"
    if rule is not None:
        if rule.outcome is not None:
            return rule.outcome, rule.name
        if _destination_matches(status, dest_checksum, dest_size):
            return Outcome.DONE, "destination-exists-same-checksum"
        return Outcome.UNRECOVERABLE, "destination-exists-unverified"
    if _SOURCE_ENOENT.match(reason):
        return Outcome.UNRECOVERABLE, "source-missing"
    # Nothing recognised: trust FTS's own verdict, and like FTS retry when it gives none.
    if status.recoverable is False:
        return Outcome.UNRECOVERABLE, "fts-unrecoverable"
    return Outcome.RETRYABLE, "unrecognised"


def classify(
    status: Fts3FileStatus, *, dest_checksum: str | None = None, dest_size: int | None = None
) -> Outcome:
    """What a file's FTS state means for the transfer it stands for.

    FINISHED is DONE. A FAILED file is matched against :data:`REASON_RULES`. "Destination exists"
    is DONE only with evidence that the existing file is the one wanted: ``dest_checksum`` (and
    ``dest_size``) as the caller found them at the destination, else the ``dst_file`` report FTS
    adds to ``file_metadata`` when the job asked for ``dst_file_report``, else a reason that
    states the checksums are equal; without such evidence it is UNRECOVERABLE (someone has to
    look at, or remove, the file in the way). Unfinished states are IN_PROGRESS.
    """
    return explain(status, dest_checksum=dest_checksum, dest_size=dest_size)[0]
