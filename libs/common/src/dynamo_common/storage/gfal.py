"""Storage through gfal2 (file, root, davs, ...), run in a bounded pool of worker threads.

gfal2 calls block but release the GIL, so threads give real parallelism. A gfal2 context is not
safe to share between threads: each worker thread creates its own, once. The module is imported
lazily because the XRootD client reads its environment when gfal2 loads the plugin.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import functools
import os
import stat as stat_mod
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from dynamo_common.logging import get_logger
from dynamo_common.storage.base import (
    AlreadyExists,
    Entry,
    NotEmpty,
    NotFound,
    SizeMismatch,
    Stat,
    Storage,
    StorageError,
    error_from_code,
    join_pfn,
)

__all__ = ["GfalStorage", "gfal2_available", "import_gfal2"]

log = get_logger(__name__)

T = TypeVar("T")

# Without these, an operation on a server that is down hangs for about 8 minutes (the XRootD
# client's defaults: 5 connection attempts in 120 s windows). setdefault: an operator's explicit
# choice wins. A server that accepts connections but never answers (frozen) is still only
# detected by the client's stream timeout, about 75 s for the first operation; XRD_STREAMTIMEOUT
# is left alone because lowering it may cut long third-party copies.
_XRD_ENVIRONMENT = {
    "XRD_CONNECTIONRETRY": "1",
    "XRD_CONNECTIONWINDOW": "2",
    # Bounds every request (stat, listdir, ...) on a server that accepted the connection but
    # does not answer; copies are bounded by their own timeout.
    "XRD_REQUESTTIMEOUT": "120",
}

# Schemes with no tape behind them: bring_online answers at once. (gfal2's file plugin does not
# even implement bring_online and would fail with EPROTONOSUPPORT.)
_DISK_ONLY_SCHEMES = frozenset({"file", "root", "xroot"})

_BRING_ONLINE_POLL_INTERVAL = 5.0

_import_lock = threading.Lock()
_gfal2: Any = None


def import_gfal2() -> Any:
    """The gfal2 module, imported once after the XRootD client's environment is set.

    Raises ImportError when gfal2 (Debian's python3-gfal2, linked into the environment by
    scripts/link-gfal2.sh) is not available.
    """
    global _gfal2
    with _import_lock:
        if _gfal2 is None:
            for key, value in _XRD_ENVIRONMENT.items():
                os.environ.setdefault(key, value)
            import gfal2

            _gfal2 = gfal2
        return _gfal2


def gfal2_available() -> bool:
    try:
        import_gfal2()
    except ImportError:
        return False
    return True


class GfalStorage(Storage):
    """:class:`Storage` over gfal2 for any protocol gfal2 has a plugin for.

    At most ``max_parallel`` gfal2 operations run at once (one per worker thread); more calls
    queue. ``bring_online`` polls stage requests every few seconds.
    """

    def __init__(self, max_parallel: int = 16) -> None:
        if max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        self._gfal = import_gfal2()
        self.max_parallel = max_parallel
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_parallel, thread_name_prefix="gfal2"
        )
        self._local = threading.local()
        self._closed = False

    def __repr__(self) -> str:
        return f"GfalStorage(max_parallel={self.max_parallel})"

    # -- plumbing ----------------------------------------------------------------------------

    def _context(self) -> Any:
        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            ctx = self._gfal.creat_context()
            self._local.ctx = ctx
        return ctx

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(context, *args)`` in a worker thread, translating gfal2 errors.

        A dedicated executor rather than asyncio.to_thread: it bounds the number of concurrent
        gfal2 calls, and a call whose awaiting task was cancelled keeps its thread until gfal2
        returns, so the bound holds even then (a semaphore released on cancellation would not).
        """
        if self._closed:
            raise RuntimeError("GfalStorage is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self._call, fn, *args))

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(self._context(), *args)
        except self._gfal.GError as exc:
            raise _translate(exc) from None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # wait=True in a thread: running gfal2 calls finish (they cannot be interrupted) without
        # blocking the event loop.
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)

    # -- operations --------------------------------------------------------------------------

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
        checksum = None if adler32 is None else adler32.lower()
        await self._run(self._copy, source_pfn, dest_pfn, size, checksum, overwrite, timeout)

    def _copy(
        self,
        ctx: Any,
        source: str,
        dest: str,
        size: int | None,
        adler32: str | None,
        overwrite: bool,
        timeout: float,
    ) -> None:
        gfal2 = self._gfal
        if not overwrite:
            # Checked first because the cleanup below deletes whatever is at the destination
            # after a failure: gfal2 reports a missing source before it looks at the
            # destination, so without this check an existing good file would be deleted.
            try:
                ctx.stat(dest)
            except gfal2.GError as exc:
                error = _translate(exc)
                if not isinstance(error, NotFound):
                    raise error from None
            else:
                raise AlreadyExists(errno.EEXIST, f"{dest} exists and overwrite is not set")

        params = ctx.transfer_parameters()
        params.create_parent = True
        params.overwrite = overwrite
        params.timeout = max(1, int(timeout))
        if hasattr(params, "proxy_delegation"):
            # Otherwise XRootD reports a missing source as "destination does not support
            # delegation" instead of ENOENT.
            params.proxy_delegation = False
        if adler32 is not None:
            params.set_checksum(gfal2.checksum_mode.both, "ADLER32", adler32)

        # Per-file filecopy only: the bulk form (lists of sources) with checksum verification
        # and a root:// source crashed the process (SIGSEGV).
        try:
            ctx.filecopy(params, source, dest)
            if size is not None:
                actual = ctx.stat(dest).st_size
                if actual != size:
                    raise _size_mismatch(dest, size, actual)
        except gfal2.GError as exc:
            error = _translate(exc)
            if not isinstance(error, AlreadyExists):
                self._discard(ctx, dest, error)
            raise error from None
        except StorageError as error:
            self._discard(ctx, dest, error)
            raise

    def _discard(self, ctx: Any, dest: str, cause: StorageError) -> None:
        """Delete what a failed copy may have left at ``dest`` (gfal2's file plugin, for one,
        leaves an empty file behind when the source is a directory)."""
        try:
            ctx.unlink(dest)
        except self._gfal.GError as exc:
            error = _translate(exc)
            if not isinstance(error, NotFound):
                # Typically the destination's server is down: nothing more can be done here;
                # the consistency check will find the leftover.
                log.warning(
                    "storage.copy_cleanup_failed", pfn=dest, error=str(error), cause=str(cause)
                )

    async def stat(self, pfn: str) -> Stat:
        return await self._run(_stat, pfn)

    async def listdir(self, pfn: str) -> list[Entry]:
        return await self._run(_listdir, pfn)

    async def unlink(self, pfn: str) -> bool:
        try:
            await self._run(_unlink, pfn)
        except NotFound:
            return False
        return True

    async def rmdir(self, pfn: str) -> bool:
        return await self._run(self._rmdir, pfn)

    def _rmdir(self, ctx: Any, pfn: str) -> bool:
        gfal2 = self._gfal
        # XRootD answers success to rmdir of a directory that does not exist, so ask first.
        try:
            st = ctx.stat(pfn)
        except gfal2.GError as exc:
            error = _translate(exc)
            if isinstance(error, NotFound):
                return False
            raise error from None
        if not stat_mod.S_ISDIR(st.st_mode):
            raise StorageError(errno.ENOTDIR, f"{pfn} is not a directory", retryable=False)
        try:
            ctx.rmdir(pfn)
        except gfal2.GError as exc:
            if exc.code == errno.ENODEV:
                # XRootD's answer to rmdir of a non-empty directory.
                raise NotEmpty(errno.ENOTEMPTY, f"{pfn}: directory not empty") from None
            error = _translate(exc)
            if isinstance(error, NotFound):
                return False
            raise error from None
        return True

    async def adler32(self, pfn: str) -> str:
        value = await self._run(_adler32, pfn)
        return value.lower().rjust(8, "0")

    async def bring_online(
        self,
        pfns: Sequence[str],
        pin_seconds: int,
        timeout: float,  # noqa: ASYNC109 - handed to the storage client
    ) -> Mapping[str, StorageError | None]:
        results: dict[str, StorageError | None] = {}
        tape: list[str] = []
        for pfn in pfns:
            if urlsplit(pfn).scheme in _DISK_ONLY_SCHEMES:
                results[pfn] = None
            else:
                tape.append(pfn)
        if tape:
            staged = await asyncio.gather(
                *(self._bring_online_one(pfn, pin_seconds, timeout) for pfn in tape)
            )
            results.update(zip(tape, staged, strict=True))
        return results

    async def _bring_online_one(
        self,
        pfn: str,
        pin_seconds: int,
        timeout: float,  # noqa: ASYNC109 - handed to the storage client
    ) -> StorageError | None:
        # Asynchronous requests polled from here: a synchronous bring_online would hold a worker
        # thread for as long as the tape takes.
        deadline = time.monotonic() + timeout
        try:
            status, token = await self._run(_bring_online_request, pfn, pin_seconds, timeout)
            while status == 0:
                if time.monotonic() >= deadline:
                    return StorageError(
                        errno.ETIMEDOUT, f"{pfn} not online after {timeout:g} s", retryable=True
                    )
                await asyncio.sleep(_BRING_ONLINE_POLL_INTERVAL)
                status = await self._run(_bring_online_poll, pfn, token)
        except StorageError as exc:
            return exc
        return None


# -- gfal2 calls run in worker threads (first argument: the thread's context) --------------------


def _translate(exc: Any) -> StorageError:
    code = int(getattr(exc, "code", 0) or 0)
    message = str(getattr(exc, "message", "") or exc).strip()
    return error_from_code(code, message)


def _size_mismatch(pfn: str, expected: int, actual: int) -> StorageError:
    return SizeMismatch(errno.EIO, f"{pfn} has {actual} bytes, expected {expected}")


def _to_stat(st: Any) -> Stat:
    is_dir = stat_mod.S_ISDIR(st.st_mode)
    # A directory's "size" differs between protocols (4096, 0, entry count): report 0 everywhere.
    return Stat(size=0 if is_dir else int(st.st_size), is_dir=is_dir, mtime=float(st.st_mtime))


def _stat(ctx: Any, pfn: str) -> Stat:
    return _to_stat(ctx.stat(pfn))


def _listdir(ctx: Any, pfn: str) -> list[Entry]:
    # opendir/readpp returns each entry with its stat in the same listing request; listdir
    # followed by a stat per entry would cost one round trip per file.
    directory = ctx.opendir(pfn)
    entries: list[Entry] = []
    while True:
        dirent, st = directory.readpp()
        if dirent is None:
            break
        name = dirent.d_name
        if name in (".", ".."):
            continue
        info = _to_stat(st)
        entries.append(Entry(name, info.size, info.is_dir, info.mtime, join_pfn(pfn, name)))
    return entries


def _unlink(ctx: Any, pfn: str) -> None:
    ctx.unlink(pfn)


def _adler32(ctx: Any, pfn: str) -> str:
    return str(ctx.checksum(pfn, "ADLER32"))


def _bring_online_request(ctx: Any, pfn: str, pin_seconds: int, timeout: float) -> tuple[int, str]:
    status, token = ctx.bring_online(pfn, int(pin_seconds), max(1, int(timeout)), True)
    return int(status), str(token)


def _bring_online_poll(ctx: Any, pfn: str, token: str) -> int:
    return int(ctx.bring_online_poll(pfn, token))
