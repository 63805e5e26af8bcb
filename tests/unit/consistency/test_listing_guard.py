"""The guard against gfal2's silently truncated XRootD listings (see ListingGuard)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from dynamo_common.storage import Entry, PosixStorage, join_pfn
from dynamo_consistency.listing import ListingGuard, list_root
from dynamo_consistency.service.compare import ListedFiles
from dynamo_consistency.service.paths import ListingRoot

XRD = "root://se.example:1094/"


class _LateAndEmpty(PosixStorage):
    """A local tree served under root:// PFNs, which answers one directory the way gfal2's
    XRootD plugin does when the server is slow: late, and empty. (The real thing takes a
    listing of more than 60 s.)"""

    def __init__(self, base: Path, slow: str) -> None:
        self.base = base
        self.slow = slow

    async def listdir(self, pfn: str) -> list[Entry]:
        if pfn.endswith(self.slow):
            await asyncio.sleep(0.05)
            return []
        local = await super().listdir(pfn.replace(XRD, f"file://{self.base}"))
        return [Entry(e.name, e.size, e.is_dir, e.mtime, join_pfn(pfn, e.name)) for e in local]


def _tree(base: Path) -> None:
    for name in ("store/a/f1", "store/b/f2"):
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_bytes(b"x")


async def test_a_late_empty_xrootd_listing_is_an_unlisted_directory(tmp_path: Path) -> None:
    _tree(tmp_path)
    guard = ListingGuard(_LateAndEmpty(tmp_path, "/store/b"), suspicious_after=0.04)
    listed = ListedFiles(cutoff=0)
    root = ListingRoot("/store", f"{XRD}/store")
    result = await list_root(guard, root, listed, parallelism=2, retries=1, timeout=5)
    assert set(listed.sizes) == {"/store/a/f1"}
    assert [u.lfn for u in result.unlisted] == ["/store/b"]
    assert "came back empty" in result.unlisted[0].error
    assert guard.slow_listings == 2  # the first attempt and the retry


async def test_late_listings_with_entries_or_of_other_protocols_pass(tmp_path: Path) -> None:
    _tree(tmp_path)
    guard = ListingGuard(PosixStorage(), suspicious_after=0.0)
    entries = await guard.listdir(f"file://{tmp_path}/store")
    assert sorted(e.name for e in entries) == ["a", "b"]
    (tmp_path / "store/empty").mkdir()
    assert await guard.listdir(f"file://{tmp_path}/store/empty") == []
    assert guard.slow_listings == 2
