"""The storage interface the transfer and consistency services program against, and its errors.

Concrete backends implement a handful of primitives (copy, stat, listdir, unlink, rmdir,
adler32, bring_online); the tree operations (``walk``, ``remove_empty_dirs``) are written once
here on top of ``listdir`` and ``rmdir`` so every backend behaves the same under failures.
"""

from __future__ import annotations

import asyncio
import errno
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

from dynamo_common.logging import get_logger

__all__ = [
    "AlreadyExists",
    "ChecksumMismatch",
    "Entry",
    "FailedDir",
    "Listing",
    "NotEmpty",
    "NotFound",
    "PermissionDenied",
    "SizeMismatch",
    "Stat",
    "Storage",
    "StorageError",
    "Unavailable",
    "UnsupportedProtocol",
    "error_from_code",
    "join_pfn",
]

log = get_logger(__name__)


# ---------------------------------------------------------------------------------------------
# Errors


class StorageError(Exception):
    """A storage operation failed. ``code`` is errno-like (gfal2 and XRootD codes pass through);
    ``retryable`` tells the caller whether trying again later can help."""

    default_retryable = True

    def __init__(self, code: int, message: str, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = self.default_retryable if retryable is None else retryable

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.message!r}, retryable={self.retryable})"


class NotFound(StorageError):
    default_retryable = False


class AlreadyExists(StorageError):
    default_retryable = False


class ChecksumMismatch(StorageError):
    # Not retryable: when the source does not match the catalogue, copying again gives the same
    # result; consistency checking has to look at the source replica.
    default_retryable = False


class SizeMismatch(ChecksumMismatch):
    """The copied file does not have the expected size (a special case of corrupt data)."""


class PermissionDenied(StorageError):
    default_retryable = False


class Unavailable(StorageError):
    """The endpoint could not be reached or did not answer in time."""

    default_retryable = True


class NotEmpty(StorageError):
    default_retryable = False


class UnsupportedProtocol(StorageError):
    default_retryable = False


_NOT_FOUND = {errno.ENOENT, 3011}  # 3011: XRootD kXR_NotFound, passed through by gfal2 as is
_EXISTS = {errno.EEXIST, 3018}  # kXR_ItExists
_PERMISSION = {errno.EACCES, errno.EPERM, 3010}  # kXR_NotAuthorized
_CHECKSUM = {3019}  # kXR_ChkSumErr
_UNAVAILABLE = {
    errno.ETIMEDOUT,
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EHOSTDOWN,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.ETIME,
    errno.EAGAIN,
    3014,  # kXR_noserver
}
_NOT_EMPTY = {errno.ENOTEMPTY}
_UNSUPPORTED = {errno.EPROTONOSUPPORT}

# gfal2 reports a checksum mismatch as EIO (file plugin) or EILSEQ (XRootD plugin), but the same
# codes also mean other things (XRootD's listdir of a file is EILSEQ), so the text decides.
_CHECKSUM_AMBIGUOUS = {errno.EIO, errno.EILSEQ}

_MESSAGE_HINTS: Sequence[tuple[str, type[StorageError]]] = (
    ("no such file or directory", NotFound),
    ("file exists", AlreadyExists),
    ("permission denied", PermissionDenied),
    ("connection refused", Unavailable),
    ("connection error", Unavailable),
    ("operation expired", Unavailable),
    ("timed out", Unavailable),
    ("timeout", Unavailable),
)


def error_from_code(code: int, message: str) -> StorageError:
    """The most specific :class:`StorageError` for an errno-like ``code`` and its message."""
    lowered = message.lower()
    cls: type[StorageError] | None = None
    if code in _NOT_FOUND:
        cls = NotFound
    elif code in _EXISTS:
        cls = AlreadyExists
    elif code in _PERMISSION:
        cls = PermissionDenied
    elif code in _CHECKSUM or (code in _CHECKSUM_AMBIGUOUS and "checksum" in lowered):
        cls = ChecksumMismatch
    elif code in _UNAVAILABLE:
        cls = Unavailable
    elif code in _NOT_EMPTY:
        cls = NotEmpty
    elif code in _UNSUPPORTED:
        cls = UnsupportedProtocol
    else:
        # XRootD sometimes wraps the real condition in its own code (a missing local source
        # comes back as 3011 or with a generic code): fall back on the text.
        for hint, hinted in _MESSAGE_HINTS:
            if hint in lowered:
                cls = hinted
                break
    if cls is None:
        return StorageError(code, message)
    return cls(code, message)


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class Stat:
    size: int
    is_dir: bool
    mtime: float


@dataclass(frozen=True, slots=True)
class Entry:
    """One directory entry. ``pfn`` is the entry's full PFN (directory PFN + name)."""

    name: str
    size: int
    is_dir: bool
    mtime: float
    pfn: str


@dataclass(frozen=True, slots=True)
class FailedDir:
    pfn: str
    error: StorageError | TimeoutError


def join_pfn(directory: str, name: str) -> str:
    # Never strip the directory's slashes: root://host:port//store is not the same string as
    # root://host:port/store, and PFNs are compared as strings by the consistency service.
    return directory + name if directory.endswith("/") else f"{directory}/{name}"


@dataclass
class Listing:
    """The result of :meth:`Storage.walk`.

    Iterate ``files`` (or the listing itself) to get every file below the root; once the
    iteration has finished, ``failed_dirs`` holds the directories that could not be listed,
    whose contents are therefore missing from the files seen. A consistency check must not
    conclude that files are missing from a site when ``failed_dirs`` is not empty.

    A consumer that stops early should call :meth:`aclose` (or use ``async with``) so the
    listings still running are cancelled at once rather than when the generator is collected.
    """

    files: AsyncGenerator[Entry, None]
    failed_dirs: list[FailedDir] = field(default_factory=list)
    dirs_listed: int = 0
    complete: bool = False
    """True once ``files`` has been iterated to its end (not after an early break)."""

    def __aiter__(self) -> AsyncIterator[Entry]:
        return self.files

    async def aclose(self) -> None:
        await self.files.aclose()

    async def __aenter__(self) -> Listing:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


# ---------------------------------------------------------------------------------------------
# The interface


class Storage(ABC):
    """Asynchronous access to grid storage, addressed by PFN (URLs such as ``root://...``)."""

    @abstractmethod
    async def copy(
        self,
        source_pfn: str,
        dest_pfn: str,
        *,
        size: int | None,
        adler32: str | None,
        overwrite: bool = False,
        timeout: float = 3600,  # noqa: ASYNC109 - handed to the storage client
    ) -> None:
        """Copy one file, creating the destination's parent directories.

        With ``adler32``, the checksum of both the source and the destination is checked against
        it (:class:`ChecksumMismatch`); with ``size``, the destination's size
        (:class:`SizeMismatch`). Without ``overwrite``, an existing destination raises
        :class:`AlreadyExists` and is left untouched. After any other failure no partial file is
        left at the destination; with ``overwrite``, the file that was to be replaced may be gone
        too (gfal2 deletes it before copying) or still intact (PosixStorage replaces it only
        once the new copy is verified).
        """

    @abstractmethod
    async def stat(self, pfn: str) -> Stat: ...

    @abstractmethod
    async def listdir(self, pfn: str) -> list[Entry]:
        """The entries of a directory (without ``.`` and ``..``), in no particular order."""

    @abstractmethod
    async def unlink(self, pfn: str) -> bool:
        """Delete a file. False when it was already gone (which counts as deleted)."""

    @abstractmethod
    async def rmdir(self, pfn: str) -> bool:
        """Delete an empty directory. False when it was already gone; :class:`NotEmpty` when
        it is not empty."""

    @abstractmethod
    async def adler32(self, pfn: str) -> str:
        """The ADLER32 checksum of a file as 8 lower-case hexadecimal digits."""

    @abstractmethod
    async def bring_online(
        self,
        pfns: Sequence[str],
        pin_seconds: int,
        timeout: float,  # noqa: ASYNC109 - handed to the storage client
    ) -> Mapping[str, StorageError | None]:
        """Stage files from tape; per PFN, None when it is online, else the error. Disk-only
        protocols (file, root) answer None for every file without doing anything."""

    async def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release the backend's resources (threads); the object is unusable afterwards."""

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- tree operations, shared by every backend --------------------------------------------

    def walk(
        self,
        root_pfn: str,
        *,
        parallelism: int = 8,
        retries: int = 2,
        timeout_per_dir: float = 60,
    ) -> Listing:
        """Every file below ``root_pfn``, listing up to ``parallelism`` directories at once.

        A directory whose listing fails with a retryable error or times out is tried again up
        to ``retries`` times, then recorded in ``Listing.failed_dirs``. A subdirectory that
        vanished between being seen and being listed is skipped (it was deleted meanwhile),
        but a missing root is a failure: "the site has no files" must not be concluded from a
        wrong root.
        """
        if parallelism < 1:
            raise ValueError("parallelism must be at least 1")
        listing = Listing(files=_empty())
        listing.files = self._walk(listing, root_pfn, parallelism, retries, timeout_per_dir)
        return listing

    async def _walk(
        self,
        listing: Listing,
        root_pfn: str,
        parallelism: int,
        retries: int,
        timeout_per_dir: float,
    ) -> AsyncGenerator[Entry, None]:
        pending: deque[str] = deque([root_pfn])
        running: dict[asyncio.Task[list[Entry] | FailedDir | None], str] = {}
        try:
            while pending or running:
                while pending and len(running) < parallelism:
                    pfn = pending.popleft()
                    task = asyncio.create_task(
                        self._list_patiently(pfn, pfn == root_pfn, retries, timeout_per_dir)
                    )
                    running[task] = pfn
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    del running[task]
                    result = task.result()
                    if result is None:
                        continue
                    if isinstance(result, FailedDir):
                        listing.failed_dirs.append(result)
                        continue
                    listing.dirs_listed += 1
                    for entry in result:
                        if entry.is_dir:
                            pending.append(entry.pfn)
                        else:
                            yield entry
            listing.complete = True
        finally:
            # An early break (or cancellation) of the consumer must not leave listings running.
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def _list_patiently(
        self,
        pfn: str,
        is_root: bool,
        retries: int,
        timeout: float,  # noqa: ASYNC109 - per attempt, not for the whole call
    ) -> list[Entry] | FailedDir | None:
        """The entries of ``pfn``; a FailedDir after the retries; None when it vanished."""
        attempt = 0
        while True:
            error: StorageError | TimeoutError
            try:
                return await asyncio.wait_for(self.listdir(pfn), timeout)
            except NotFound as exc:
                if is_root:
                    return FailedDir(pfn, exc)
                return None
            except StorageError as exc:
                if not exc.retryable:
                    return FailedDir(pfn, exc)
                error = exc
            except TimeoutError:
                error = TimeoutError(f"listing {pfn} took more than {timeout:g} s")
            if attempt >= retries:
                log.warning("storage.listdir_failed", pfn=pfn, error=str(error), attempts=attempt)
                return FailedDir(pfn, error)
            attempt += 1
            await asyncio.sleep(min(0.2 * 2**attempt, 5.0))

    async def remove_empty_dirs(
        self, root_pfn: str, older_than: float | None = None, *, parallelism: int = 8
    ) -> list[str]:
        """Delete the directories below ``root_pfn`` that hold no file at any depth.

        ``older_than`` (seconds): only directories whose modification time is at least that old
        are deleted, so a directory just created for a transfer in progress survives. The root
        itself is never deleted. A directory that cannot be listed counts as not empty. Returns
        the PFNs of the deleted directories, deepest first. At most ``parallelism`` storage
        operations run at once.
        """
        if parallelism < 1:
            raise ValueError("parallelism must be at least 1")
        cutoff = None if older_than is None else time.time() - older_than
        removed: list[str] = []
        await self._prune(root_pfn, None, cutoff, removed, asyncio.Semaphore(parallelism))
        return removed

    async def _prune(
        self,
        pfn: str,
        mtime: float | None,
        cutoff: float | None,
        removed: list[str],
        slots: asyncio.Semaphore,
    ) -> bool:
        """Prune below ``pfn``; True when ``pfn`` itself is (now) empty.

        ``mtime`` comes from the parent's listing, taken before any child is deleted: deleting
        a child updates the directory's own mtime, which would make every pruned directory look
        new.
        """
        try:
            async with slots:
                entries = await self.listdir(pfn)
        except NotFound:
            return True
        except StorageError as exc:
            log.warning("storage.prune_listdir_failed", pfn=pfn, error=str(exc))
            return False
        subdirs = [e for e in entries if e.is_dir]
        results = await asyncio.gather(
            *(self._prune(d.pfn, d.mtime, cutoff, removed, slots) for d in subdirs)
        )
        empty = len(subdirs) == len(entries) and all(results)
        if not empty or mtime is None:  # mtime None: the root, which stays
            return empty
        if cutoff is not None and mtime > cutoff:
            return False
        try:
            async with slots:
                await self.rmdir(pfn)
        except (NotEmpty, PermissionDenied):
            # Something was written into it meanwhile, or it is protected: keep it.
            return False
        except StorageError as exc:
            log.warning("storage.prune_rmdir_failed", pfn=pfn, error=str(exc))
            return False
        removed.append(pfn)
        return True


async def _empty() -> AsyncGenerator[Entry, None]:
    return
    yield  # pragma: no cover - makes this an async generator
