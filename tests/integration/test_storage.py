"""Storage backends against real storage: local directories and XRootD servers on loopback.

Every test that is not about one protocol runs on three backends: gfal2 with file://, gfal2 with
root:// (a real xrootd), and the pure-Python PosixStorage with file://. Nothing is skipped: a
missing gfal2 or xrootd fails the test with the reason.

Files are put in place and inspected behind the backend's back (directly in the directories),
so a test never relies on the code it checks to set itself up.
"""

from __future__ import annotations

import asyncio
import os
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from dynamo_common.storage import (
    AlreadyExists,
    ChecksumMismatch,
    Entry,
    NotEmpty,
    NotFound,
    PermissionDenied,
    PosixStorage,
    SizeMismatch,
    Storage,
    StorageError,
    Unavailable,
    UnsupportedProtocol,
    adler32_of_file,
    open_storage,
)
from dynamo_common.storage.gfal import GfalStorage
from dynamo_common.testing.xrootd import XrootdServer

pytestmark = pytest.mark.integration


def adler(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def payload(seed: int, size: int = 3000) -> bytes:
    return bytes((seed * 31 + i * 7) % 251 for i in range(size))


@dataclass
class Backend:
    """A storage backend and a directory it can reach, with out-of-band access to that directory.

    ``pfn(rel)`` is the backend's PFN of ``rel`` in the test directory; ``local(rel)`` is the
    same file as a local path (for xrootd: inside the server's data directory).
    """

    name: str
    storage: Storage
    base: str
    root_dir: Path
    chown: Callable[[Path], None]
    sources: Path

    def pfn(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    def local(self, rel: str) -> Path:
        return self.root_dir / rel

    def put(self, rel: str, data: bytes) -> str:
        target = self.local(rel)
        missing = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        for path in [target, *missing]:
            self.chown(path)
        return self.pfn(rel)

    def mkdir(self, rel: str) -> str:
        target = self.local(rel)
        missing = [p for p in [target, *target.parents] if not p.exists()]
        target.mkdir(parents=True, exist_ok=True)
        for path in missing:
            self.chown(path)
        return self.pfn(rel)

    def source(self, name: str, data: bytes) -> str:
        """A local file:// source the backend can copy from (an upload for root://)."""
        path = self.sources / name
        path.write_bytes(data)
        return f"file://{path}"

    def leftovers(self, rel_dir: str) -> list[str]:
        directory = self.local(rel_dir)
        return sorted(os.listdir(directory)) if directory.exists() else []


def _no_chown(path: Path) -> None:
    return None


@pytest.fixture(params=["gfal-file", "gfal-root", "posix-file"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    sources = tmp_path / "sources"
    sources.mkdir()
    storage: Storage
    if request.param == "gfal-root":
        server: XrootdServer = request.getfixturevalue("xrootd_site")
        server.write("/test/.keep", b"")
        storage = GfalStorage(max_parallel=8)
        result = Backend(
            request.param,
            storage,
            server.pfn("/test"),
            server.path("/test"),
            server.give_to_server,
            sources,
        )
        result.local(".keep").unlink()
    else:
        site = tmp_path / "site"
        site.mkdir()
        storage = GfalStorage(max_parallel=8) if request.param == "gfal-file" else PosixStorage()
        result = Backend(request.param, storage, f"file://{site}", site, _no_chown, sources)
    try:
        yield result
    finally:
        await storage.close()


@pytest.fixture
async def gfal() -> AsyncIterator[GfalStorage]:
    storage = GfalStorage(max_parallel=8)
    try:
        yield storage
    finally:
        await storage.close()


# -- copy --------------------------------------------------------------------------------------


async def test_copy_verifies_checksum_and_creates_parents(backend: Backend) -> None:
    data = payload(1, 100_000)
    source = backend.source("a", data)
    dest = backend.pfn("deep/er/still/a.root")
    await backend.storage.copy(source, dest, size=len(data), adler32=adler(data).upper())
    assert backend.local("deep/er/still/a.root").read_bytes() == data
    assert await backend.storage.adler32(dest) == adler(data)
    st = await backend.storage.stat(dest)
    assert st.size == len(data) and not st.is_dir
    # Nothing but the file itself: no temporary names left next to it.
    assert backend.leftovers("deep/er/still") == ["a.root"]


async def test_copy_without_checksum_and_empty_file(backend: Backend) -> None:
    source = backend.source("empty", b"")
    await backend.storage.copy(source, backend.pfn("e/empty"), size=0, adler32=None)
    assert backend.local("e/empty").read_bytes() == b""
    assert await backend.storage.adler32(backend.pfn("e/empty")) == "00000001"


async def test_existing_destination_is_refused_and_untouched(backend: Backend) -> None:
    old, new = b"old content", payload(2)
    dest = backend.put("d/f", old)
    source = backend.source("new", new)
    with pytest.raises(AlreadyExists) as info:
        await backend.storage.copy(source, dest, size=len(new), adler32=adler(new))
    assert not info.value.retryable
    assert backend.local("d/f").read_bytes() == old
    # Even when the copy would fail anyway (missing source): the existing file stays.
    with pytest.raises(AlreadyExists):
        await backend.storage.copy(backend.pfn("nope"), dest, size=None, adler32=None)
    assert backend.local("d/f").read_bytes() == old
    await backend.storage.copy(source, dest, size=len(new), adler32=adler(new), overwrite=True)
    assert backend.local("d/f").read_bytes() == new


async def test_wrong_checksum_leaves_no_file(backend: Backend) -> None:
    data = payload(3)
    source = backend.source("c", data)
    with pytest.raises(ChecksumMismatch) as info:
        await backend.storage.copy(source, backend.pfn("c/f"), size=len(data), adler32="deadbeef")
    assert not info.value.retryable
    assert not backend.local("c/f").exists()
    assert backend.leftovers("c") == []
    with pytest.raises(NotFound):
        await backend.storage.stat(backend.pfn("c/f"))


async def test_wrong_size_leaves_no_file(backend: Backend) -> None:
    data = payload(4)
    source = backend.source("s", data)
    with pytest.raises(SizeMismatch):
        await backend.storage.copy(source, backend.pfn("s/f"), size=len(data) + 1, adler32=None)
    assert backend.leftovers("s") == []


async def test_missing_source(backend: Backend) -> None:
    for source in (backend.pfn("missing/file"), backend.source("x", b"x") + "-missing"):
        with pytest.raises(NotFound) as info:
            await backend.storage.copy(source, backend.pfn("m/f"), size=None, adler32=None)
        assert not info.value.retryable
        assert backend.leftovers("m") == []


async def test_directory_as_source_leaves_no_file(backend: Backend) -> None:
    # gfal2's file plugin creates the destination before it notices: the cleanup must remove it.
    backend.put("srcdir/f", b"x")
    with pytest.raises(StorageError):
        await backend.storage.copy(
            f"file://{backend.local('srcdir')}",
            backend.pfn("dd/f"),
            size=None,
            adler32=None,
        )
    assert backend.leftovers("dd") == []


# -- namespace ---------------------------------------------------------------------------------


def _tree(backend: Backend) -> dict[str, int]:
    """A few dozen files in nested directories; returns {pfn: size}."""
    files: dict[str, int] = {}
    for i in range(36):
        rel = f"tree/d{i % 3}/e{i % 4}/f{i:02d}" if i % 5 else f"tree/d{i % 3}/f{i:02d}"
        size = 100 + 37 * i
        files[backend.put(rel, payload(i, size))] = size
    backend.put("tree/top", b"t")
    files[backend.pfn("tree/top")] = 1
    backend.mkdir("tree/d0/empty/empty2")
    return files


async def test_stat_listdir_walk(backend: Backend) -> None:
    files = _tree(backend)
    storage = backend.storage

    directory = await storage.stat(backend.pfn("tree/d1"))
    assert directory.is_dir and directory.size == 0
    assert abs(directory.mtime - time.time()) < 120
    with pytest.raises(NotFound):
        await storage.stat(backend.pfn("tree/none"))

    entries = {e.name: e for e in await storage.listdir(backend.pfn("tree"))}
    assert set(entries) == {"d0", "d1", "d2", "top"}
    assert entries["top"].size == 1 and not entries["top"].is_dir
    assert entries["top"].pfn == backend.pfn("tree/top")
    assert entries["d0"].is_dir and entries["d0"].pfn == backend.pfn("tree/d0")
    with pytest.raises(NotFound):
        await storage.listdir(backend.pfn("tree/none"))

    listing = storage.walk(backend.pfn("tree"), parallelism=4)
    seen = {entry.pfn: entry.size async for entry in listing}
    assert seen == files
    assert listing.failed_dirs == []
    assert listing.complete
    assert listing.dirs_listed == 1 + 3 + 12 + 2  # tree, d*, d*/e*, empty, empty2

    # Stopping early is allowed and cancels the listings still running.
    async with storage.walk(backend.pfn("tree"), parallelism=2) as listing:
        async for _ in listing:
            break
    assert not listing.complete


async def test_walk_of_a_missing_root_is_a_failure(backend: Backend) -> None:
    listing = backend.storage.walk(backend.pfn("no/such/root"))
    assert [entry async for entry in listing] == []
    assert [f.pfn for f in listing.failed_dirs] == [backend.pfn("no/such/root")]
    assert isinstance(listing.failed_dirs[0].error, NotFound)


async def test_unlink_and_rmdir(backend: Backend) -> None:
    storage = backend.storage
    file_pfn = backend.put("u/a/f", b"data")
    with pytest.raises(NotEmpty):
        await storage.rmdir(backend.pfn("u/a"))
    with pytest.raises(StorageError):
        await storage.rmdir(file_pfn)  # not a directory
    assert backend.local("u/a/f").exists()

    assert await storage.unlink(file_pfn) is True
    assert await storage.unlink(file_pfn) is False  # already gone counts as deleted
    assert not backend.local("u/a/f").exists()

    assert await storage.rmdir(backend.pfn("u/a")) is True
    assert await storage.rmdir(backend.pfn("u/a")) is False
    assert not backend.local("u/a").exists()


async def test_remove_empty_dirs(backend: Backend) -> None:
    backend.put("r/keep/f", b"x")
    backend.put("r/mixed/f", b"x")
    backend.mkdir("r/mixed/fresh")
    backend.mkdir("r/old/e2/e3")
    backend.mkdir("r/old2")
    long_ago = time.time() - 7200
    for rel in ("r/old", "r/old/e2", "r/old/e2/e3", "r/old2"):
        os.utime(backend.local(rel), (long_ago, long_ago))

    storage = backend.storage
    # Only the old ones: r/old itself counts as old although deleting e2 touches its mtime.
    removed = await storage.remove_empty_dirs(backend.pfn("r"), older_than=3600)
    assert removed.index(backend.pfn("r/old/e2/e3")) < removed.index(backend.pfn("r/old/e2"))
    assert removed.index(backend.pfn("r/old/e2")) < removed.index(backend.pfn("r/old"))
    assert set(removed) == {backend.pfn(p) for p in ("r/old", "r/old/e2", "r/old/e2/e3", "r/old2")}
    assert sorted(backend.leftovers("r")) == ["keep", "mixed"]
    assert backend.leftovers("r/mixed") == ["f", "fresh"]

    removed = await storage.remove_empty_dirs(backend.pfn("r"))
    assert removed == [backend.pfn("r/mixed/fresh")]
    assert backend.local("r").is_dir()  # the root stays, even when empty
    assert await storage.remove_empty_dirs(backend.pfn("r")) == []


async def test_adler32_matches_zlib(backend: Backend) -> None:
    for i, data in enumerate([b"", b"a", payload(5, 70_000), bytes(1 << 20) + b"tail"]):
        pfn = backend.put(f"ck/f{i}", data)
        assert await backend.storage.adler32(pfn) == adler(data)
        assert adler32_of_file(backend.local(f"ck/f{i}")) == adler(data)
    with pytest.raises(NotFound):
        await backend.storage.adler32(backend.pfn("ck/none"))


async def test_bring_online_is_a_no_op_on_disk(backend: Backend) -> None:
    pfns = [backend.put("b/f1", b"1"), backend.pfn("b/not-even-there")]
    assert dict(await backend.storage.bring_online(pfns, 3600, 60)) == dict.fromkeys(pfns)


# -- between protocols and sites (gfal2) -------------------------------------------------------


async def test_copies_between_sites_and_protocols(
    gfal: GfalStorage, xrootd_pair: tuple[XrootdServer, XrootdServer], tmp_path: Path
) -> None:
    one, two = xrootd_pair
    data = payload(6, 50_000)
    checksum = adler(data)
    source = one.write("/store/src/f", data)
    local_source = tmp_path / "local"
    local_source.write_bytes(data)
    existing = two.write("/store/exists", b"keep me")

    async def expect(error: type[StorageError], copying: asyncio.Future[None]) -> None:
        with pytest.raises(error):
            await copying

    started = time.monotonic()
    # Third-party root->root copies cost about 2.5 s each whatever the size: all at once.
    await asyncio.gather(
        gfal.copy(source, two.pfn("/store/tpc/f"), size=len(data), adler32=checksum),
        expect(
            ChecksumMismatch,
            asyncio.ensure_future(
                gfal.copy(source, two.pfn("/store/tpc/bad"), size=len(data), adler32="0badc0de")
            ),
        ),
        gfal.copy(source, f"file://{tmp_path}/down/f", size=len(data), adler32=checksum),
        gfal.copy(f"file://{local_source}", two.pfn("/store/up/f"), size=None, adler32=checksum),
        expect(
            AlreadyExists,
            asyncio.ensure_future(gfal.copy(source, existing, size=len(data), adler32=checksum)),
        ),
    )
    elapsed = time.monotonic() - started
    assert two.path("/store/tpc/f").read_bytes() == data
    assert not two.path("/store/tpc/bad").exists()
    assert (tmp_path / "down/f").read_bytes() == data
    assert two.path("/store/up/f").read_bytes() == data
    assert two.path("/store/exists").read_bytes() == b"keep me"
    assert await gfal.adler32(two.pfn("/store/tpc/f")) == checksum
    assert elapsed < 15, f"parallel copies took {elapsed:.1f} s"


async def test_server_down_is_unavailable_quickly(
    gfal: GfalStorage, xrootd_site: XrootdServer, tmp_path: Path
) -> None:
    pfn = xrootd_site.write("/store/f", b"data")
    local = tmp_path / "f"
    local.write_bytes(b"data")
    xrootd_site.stop()

    operations = {
        "stat": gfal.stat(pfn),
        "listdir": gfal.listdir(xrootd_site.pfn("/store")),
        "adler32": gfal.adler32(pfn),
        "unlink": gfal.unlink(pfn),
        "download": gfal.copy(pfn, f"file://{tmp_path}/g", size=None, adler32=None),
        "upload": gfal.copy(f"file://{local}", pfn + "2", size=None, adler32=None),
    }
    for name, operation in operations.items():
        started = time.monotonic()
        with pytest.raises(Unavailable) as info:
            await asyncio.wait_for(operation, 30)
        assert info.value.retryable, name
        assert time.monotonic() - started < 10, name
    assert not (tmp_path / "g").exists()

    listing = gfal.walk(xrootd_site.pfn("/store"), retries=1)
    assert [e async for e in listing] == []
    assert len(listing.failed_dirs) == 1
    assert isinstance(listing.failed_dirs[0].error, Unavailable)


# -- choosing a backend ------------------------------------------------------------------------


async def test_open_storage() -> None:
    storage = open_storage()
    assert isinstance(storage, GfalStorage)  # gfal2 is installed by scripts/test.sh
    await storage.close()
    storage = open_storage(prefer="posix")
    assert isinstance(storage, PosixStorage)
    with pytest.raises(ValueError):
        open_storage(prefer="ftp")  # type: ignore[arg-type]


async def test_posix_refuses_other_protocols(xrootd_site: XrootdServer) -> None:
    storage = PosixStorage()
    with pytest.raises(UnsupportedProtocol):
        await storage.stat(xrootd_site.pfn("/store"))
    result = await storage.bring_online([xrootd_site.pfn("/store/f")], 10, 10)
    assert isinstance(result[xrootd_site.pfn("/store/f")], UnsupportedProtocol)


# -- walk under failures -----------------------------------------------------------------------


class FaultyStorage(PosixStorage):
    """Real local storage whose listdir fails on chosen directories, as a flaky site would."""

    def __init__(self, faults: dict[str, list[BaseException | None]]) -> None:
        self.faults = faults
        self.calls: dict[str, int] = {}

    async def listdir(self, pfn: str) -> list[Entry]:
        self.calls[pfn] = self.calls.get(pfn, 0) + 1
        plan = self.faults.get(pfn)
        if plan:
            fault = plan.pop(0)
            if isinstance(fault, TimeoutError):
                await asyncio.sleep(3600)  # a server that never answers
            elif fault is not None:
                raise fault
        return await super().listdir(pfn)


async def test_walk_retries_and_reports_failed_dirs(tmp_path: Path) -> None:
    base = f"file://{tmp_path}"
    for name in ("flaky", "down", "frozen", "denied", "vanished", "fine"):
        (tmp_path / name / "sub").mkdir(parents=True)
        (tmp_path / name / "sub" / "f").write_bytes(b"12345")
        (tmp_path / name / "g").write_bytes(b"1")

    def pfn(name: str) -> str:
        return f"{base}/{name}"

    refused = Unavailable(111, "connection refused")
    storage = FaultyStorage(
        {
            pfn("flaky"): [refused],  # recovers on the first retry
            pfn("down"): [refused] * 5,  # never recovers
            pfn("frozen"): [TimeoutError(), TimeoutError()],
            pfn("denied"): [PermissionDenied(13, "permission denied")],
            pfn("vanished"): [NotFound(2, "deleted meanwhile")],
        }
    )
    started = time.monotonic()
    listing = storage.walk(base, parallelism=3, retries=1, timeout_per_dir=0.3)
    seen = sorted([entry.pfn async for entry in listing])
    assert time.monotonic() - started < 10
    assert seen == sorted(
        pfn(f"{name}/{rel}") for name in ("flaky", "fine") for rel in ("g", "sub/f")
    )
    failed = {f.pfn: f.error for f in listing.failed_dirs}
    assert set(failed) == {pfn("down"), pfn("frozen"), pfn("denied")}
    assert isinstance(failed[pfn("down")], Unavailable)
    assert isinstance(failed[pfn("frozen")], TimeoutError)
    assert isinstance(failed[pfn("denied")], PermissionDenied)
    assert storage.calls[pfn("flaky")] == 2
    assert storage.calls[pfn("down")] == 2  # retries=1: two attempts
    assert storage.calls[pfn("denied")] == 1  # not retryable: no second attempt
    assert pfn("vanished") not in failed  # deleted during the walk: not a failure
    assert listing.complete
