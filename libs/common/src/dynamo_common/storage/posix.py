"""Storage for ``file://`` PFNs in pure Python, for machines without gfal2 (standalone mode).

A copy is written to a temporary name next to the destination and renamed into place only after
it has been verified, so a reader never sees a partial file under the real name. The temporary
name starts with ``.`` and contains ``.dynamo-part-``; a crash can leave one behind, and it stays
visible to listings on purpose, so the consistency check can find and delete it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat as stat_mod
import time
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import BinaryIO, TypeVar
from urllib.parse import urlsplit

from dynamo_common.storage.base import (
    AlreadyExists,
    ChecksumMismatch,
    Entry,
    NotEmpty,
    SizeMismatch,
    Stat,
    Storage,
    StorageError,
    UnsupportedProtocol,
    error_from_code,
    join_pfn,
)

__all__ = ["PART_MARKER", "PosixStorage", "adler32_of_file", "pfn_to_path"]

T = TypeVar("T")

CHUNK = 1 << 20
PART_MARKER = ".dynamo-part-"


def pfn_to_path(pfn: str) -> str:
    """The local path of a ``file://`` PFN (``file:///abs/path`` or ``file://localhost/...``)."""
    parts = urlsplit(pfn)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise UnsupportedProtocol(
            errno.EPROTONOSUPPORT, f"PosixStorage only handles local file:// PFNs, not {pfn!r}"
        )
    if not parts.path.startswith("/"):
        raise UnsupportedProtocol(errno.EINVAL, f"{pfn!r} is not an absolute file:// PFN")
    # Taken literally, like gfal2's file plugin: no percent-decoding.
    return parts.path


def adler32_of_file(path: str | os.PathLike[str]) -> str:
    """The ADLER32 checksum of a local file as 8 lower-case hexadecimal digits."""
    with open(path, "rb") as stream:
        return _format_adler(_adler_stream(stream))


def _adler_stream(stream: BinaryIO, deadline: float | None = None) -> int:
    value = 1
    while chunk := stream.read(CHUNK):
        value = zlib.adler32(chunk, value)
        _check_deadline(deadline)
    return value


def _format_adler(value: int) -> str:
    return f"{value & 0xFFFFFFFF:08x}"


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise error_from_code(errno.ETIMEDOUT, "copy did not finish within its timeout")


def _os_error(exc: OSError, what: str) -> StorageError:
    code = exc.errno or errno.EIO
    return error_from_code(code, f"{what}: {exc.strerror or exc}")


class PosixStorage(Storage):
    """:class:`Storage` for ``file://`` PFNs; the blocking calls run in threads."""

    def __repr__(self) -> str:
        return "PosixStorage()"

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.to_thread(fn, *args)

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
        source = pfn_to_path(source_pfn)
        dest = pfn_to_path(dest_pfn)
        expected = None if adler32 is None else adler32.lower()
        await self._run(_copy, source, dest, size, expected, overwrite, timeout)

    async def stat(self, pfn: str) -> Stat:
        return await self._run(_stat, pfn_to_path(pfn))

    async def listdir(self, pfn: str) -> list[Entry]:
        return await self._run(_listdir, pfn, pfn_to_path(pfn))

    async def unlink(self, pfn: str) -> bool:
        return await self._run(_unlink, pfn_to_path(pfn))

    async def rmdir(self, pfn: str) -> bool:
        return await self._run(_rmdir, pfn_to_path(pfn))

    async def adler32(self, pfn: str) -> str:
        path = pfn_to_path(pfn)
        return await self._run(_adler32, path)

    async def bring_online(
        self,
        pfns: Sequence[str],
        pin_seconds: int,
        timeout: float,  # noqa: ASYNC109 - handed to the storage client
    ) -> Mapping[str, StorageError | None]:
        results: dict[str, StorageError | None] = {}
        for pfn in pfns:
            try:
                pfn_to_path(pfn)
            except StorageError as exc:
                results[pfn] = exc
            else:
                results[pfn] = None
        return results


# -- blocking implementations (run in threads) -------------------------------------------------


def _copy(
    source: str,
    dest: str,
    size: int | None,
    adler32: str | None,
    overwrite: bool,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    # Early, so a copy that cannot succeed does not read the whole source first; the final
    # link() below is what really guarantees an existing file is never replaced.
    if not overwrite and os.path.lexists(dest):
        raise AlreadyExists(errno.EEXIST, f"{dest} exists and overwrite is not set")
    try:
        src = open(source, "rb")  # noqa: SIM115 - closed in the finally below
    except OSError as exc:
        raise _os_error(exc, f"open source {source}") from None
    temp: str | None = None
    try:
        if not stat_mod.S_ISREG(os.fstat(src.fileno()).st_mode):
            raise StorageError(errno.EISDIR, f"source {source} is not a regular file", False)
        directory, name = os.path.split(dest)
        try:
            os.makedirs(directory, exist_ok=True)
            temp = os.path.join(directory, f".{name}{PART_MARKER}{uuid.uuid4().hex[:12]}")
            with open(temp, "xb") as out:
                source_adler, copied = _stream(src, out, deadline)
                out.flush()
                # Durable before it gets its real name: after a crash the name must not point
                # at a file whose data never reached the disk.
                os.fsync(out.fileno())
        except OSError as exc:
            raise _os_error(exc, f"write {dest}") from None

        if size is not None and copied != size:
            raise SizeMismatch(errno.EIO, f"{source} has {copied} bytes, expected {size}")
        if adler32 is not None:
            got = _format_adler(source_adler)
            if got != adler32:
                raise ChecksumMismatch(
                    errno.EIO, f"source checksum mismatch: {source} has {got}, expected {adler32}"
                )
            got = _adler32(temp)
            if got != adler32:
                raise ChecksumMismatch(
                    errno.EIO,
                    f"destination checksum mismatch: {dest} has {got}, expected {adler32}",
                )
        _publish(temp, dest, overwrite)
        temp = None
    finally:
        src.close()
        if temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)


def _stream(src: BinaryIO, out: BinaryIO, deadline: float) -> tuple[int, int]:
    value = 1
    copied = 0
    while chunk := src.read(CHUNK):
        value = zlib.adler32(chunk, value)
        out.write(chunk)
        copied += len(chunk)
        _check_deadline(deadline)
    return value, copied


def _publish(temp: str, dest: str, overwrite: bool) -> None:
    if overwrite:
        try:
            os.replace(temp, dest)
        except OSError as exc:
            raise _os_error(exc, f"rename to {dest}") from None
        return
    # link() fails if the name exists: an atomic "rename unless it exists" (rename() would
    # silently replace a file written meanwhile by someone else).
    try:
        os.link(temp, dest)
    except FileExistsError:
        raise AlreadyExists(errno.EEXIST, f"{dest} exists and overwrite is not set") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise _os_error(exc, f"link to {dest}") from None
        # A file system without hard links: check-then-rename is the best left.
        if os.path.lexists(dest):
            raise AlreadyExists(errno.EEXIST, f"{dest} exists and overwrite is not set") from None
        try:
            os.rename(temp, dest)
        except OSError as rename_exc:
            raise _os_error(rename_exc, f"rename to {dest}") from None
        return
    os.unlink(temp)


def _stat(path: str) -> Stat:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _os_error(exc, f"stat {path}") from None
    is_dir = stat_mod.S_ISDIR(st.st_mode)
    return Stat(size=0 if is_dir else st.st_size, is_dir=is_dir, mtime=st.st_mtime)


def _listdir(pfn: str, path: str) -> list[Entry]:
    entries: list[Entry] = []
    try:
        with os.scandir(path) as iterator:
            for item in iterator:
                try:
                    st = item.stat()
                except FileNotFoundError:
                    continue  # deleted since readdir, or a dangling symlink
                is_dir = stat_mod.S_ISDIR(st.st_mode)
                entries.append(
                    Entry(
                        item.name,
                        0 if is_dir else st.st_size,
                        is_dir,
                        st.st_mtime,
                        join_pfn(pfn, item.name),
                    )
                )
    except OSError as exc:
        raise _os_error(exc, f"list {path}") from None
    return entries


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise _os_error(exc, f"unlink {path}") from None
    return True


def _rmdir(path: str) -> bool:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise NotEmpty(errno.ENOTEMPTY, f"{path}: directory not empty") from None
        raise _os_error(exc, f"rmdir {path}") from None
    return True


def _adler32(path: str) -> str:
    try:
        return adler32_of_file(path)
    except OSError as exc:
        raise _os_error(exc, f"checksum {path}") from None
