"""Storage I/O of a check: the recursive listing of a site, and the removal of its empty
directories. Both go through :class:`dynamo_common.storage.Storage` (gfal2 or POSIX)."""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dynamo_common.storage import (
    Entry,
    NotEmpty,
    NotFound,
    PermissionDenied,
    Stat,
    Storage,
    StorageError,
    Unavailable,
)
from dynamo_consistency.service.compare import ListedFiles
from dynamo_consistency.service.paths import ListingRoot

log = logging.getLogger("dynamo.consistency")


_XROOTD = ("root://", "xroot://")


class ListingGuard(Storage):
    """A :class:`Storage` whose directory listings cannot come back silently truncated.

    gfal2's XRootD plugin (2.21, Debian 12) waits at most 60 s for the answer to a directory
    listing; when the answer comes later it reports the directory as *empty*, without an
    error, and a consistency check would call every file in it missing. The same wait also
    loses a wake-up now and then (about one listing in a thousand takes exactly 60 s although
    the server answered at once). An empty XRootD listing that took that long is therefore
    turned into a retryable error here: the walk tries the directory again, and reports it as
    unlisted if it keeps failing. Every other call goes straight to the wrapped storage.
    """

    def __init__(self, inner: Storage, *, suspicious_after: float = 55.0) -> None:
        self.inner = inner
        self.suspicious_after = suspicious_after
        self.slow_listings = 0
        """Listings that took ``suspicious_after`` or longer (stalled or truncated)."""

    async def listdir(self, pfn: str) -> list[Entry]:
        started = time.monotonic()
        entries = await self.inner.listdir(pfn)
        if time.monotonic() - started >= self.suspicious_after:
            self.slow_listings += 1
            if not entries and pfn.startswith(_XROOTD):
                raise Unavailable(
                    errno.ETIMEDOUT,
                    f"listing {pfn} came back empty after {time.monotonic() - started:.0f} s: "
                    "gfal2 gives up on XRootD listings after 60 s without saying so",
                )
        return entries

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
        await self.inner.copy(
            source_pfn, dest_pfn, size=size, adler32=adler32, overwrite=overwrite, timeout=timeout
        )

    async def stat(self, pfn: str) -> Stat:
        return await self.inner.stat(pfn)

    async def unlink(self, pfn: str) -> bool:
        return await self.inner.unlink(pfn)

    async def rmdir(self, pfn: str) -> bool:
        return await self.inner.rmdir(pfn)

    async def adler32(self, pfn: str) -> str:
        return await self.inner.adler32(pfn)

    async def bring_online(
        self,
        pfns: Sequence[str],
        pin_seconds: int,
        timeout: float,  # noqa: ASYNC109 - handed to the storage client
    ) -> Mapping[str, StorageError | None]:
        return await self.inner.bring_online(pfns, pin_seconds, timeout)

    async def close(self) -> None:
        await self.inner.close()


@dataclass(frozen=True, slots=True)
class Unlisted:
    lfn: str
    error: str


@dataclass(slots=True)
class RootListing:
    unlisted: list[Unlisted]
    root_failed: bool
    stray: int = 0
    """Entries whose PFN did not start with the root's (a storage answering with another
    spelling of its URLs): left out of the comparison."""


async def list_root(
    storage: Storage,
    root: ListingRoot,
    listed: ListedFiles,
    *,
    parallelism: int,
    retries: int,
    timeout: float,  # noqa: ASYNC109 - per directory, handed to the walk
) -> RootListing:
    """Add every file below ``root`` to ``listed``; directories that could not be listed are
    returned (and recorded in ``listed.unlisted``) so nothing in them is judged."""
    walk = storage.walk(root.pfn, parallelism=parallelism, retries=retries, timeout_per_dir=timeout)
    stray = 0
    add = listed.add
    to_lfn = root.to_lfn
    async with walk:
        async for entry in walk:
            lfn = to_lfn(entry.pfn)
            if lfn is None:
                stray += 1
                continue
            add(lfn, entry.size, entry.mtime)
    listed.dirs_listed += walk.dirs_listed
    unlisted: list[Unlisted] = []
    root_failed = False
    for failed in walk.failed_dirs:
        lfn = to_lfn(failed.pfn)
        if failed.pfn == root.pfn:
            root_failed = True
            lfn = root.lfn
        if lfn is None:
            continue
        unlisted.append(Unlisted(lfn, str(failed.error)))
        listed.unlisted.append(lfn)
    if stray:
        log.warning("entries outside the listed root", extra={"root": root.pfn, "count": stray})
    return RootListing(unlisted, root_failed, stray)


async def remove_empty_dirs(
    storage: Storage,
    root: ListingRoot,
    ignored: Sequence[str],
    *,
    older_than: float,
    parallelism: int,
) -> list[str]:
    """Delete the empty directories below ``root`` whose modification time is at least
    ``older_than`` seconds old; returns their LFNs.

    Ignored directories, and the directories on the way to them, are kept: the storage's
    pruning works on whole trees, so the tree is split around them.
    """
    if any(root.lfn == d or root.lfn.startswith(d + "/") for d in ignored):
        return []
    inside = [d for d in ignored if d.startswith(root.lfn + "/")]
    removed: list[str] = []
    await _prune(storage, root, root.lfn, root.pfn, inside, older_than, parallelism, removed)
    return removed


async def _prune(
    storage: Storage,
    root: ListingRoot,
    lfn: str,
    pfn: str,
    ignored: Sequence[str],
    older_than: float,
    parallelism: int,
    removed: list[str],
) -> None:
    if not ignored:
        pfns = await storage.remove_empty_dirs(pfn, older_than, parallelism=parallelism)
        removed.extend(lfn for lfn in map(root.to_lfn, pfns) if lfn is not None)
        return
    try:
        entries = await storage.listdir(pfn)
    except StorageError as exc:
        log.warning("cannot list for pruning", extra={"pfn": pfn, "error": str(exc)})
        return
    cutoff = time.time() - older_than
    for entry in entries:
        if not entry.is_dir:
            continue
        child = f"{lfn}/{entry.name}"
        if child in ignored:
            continue
        below = [d for d in ignored if d.startswith(child + "/")]
        await _prune(storage, root, child, entry.pfn, below, older_than, parallelism, removed)
        if below or entry.mtime > cutoff:
            continue
        # remove_empty_dirs keeps the directory it starts from: this one goes if it is empty
        # now. Its own mtime was read before its children were deleted, as the storage's
        # pruning does.
        try:
            if await storage.rmdir(entry.pfn):
                removed.append(child)
        except (NotEmpty, PermissionDenied, NotFound):
            pass
        except StorageError as exc:
            log.warning("cannot remove directory", extra={"pfn": entry.pfn, "error": str(exc)})
