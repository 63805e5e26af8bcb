"""The storage side of a check on real directories: the listing turned back into LFNs, and the
removal of empty directories around ignored ones, through gfal2 and through plain POSIX."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dynamo_common.storage import Storage, open_storage
from dynamo_consistency.listing import list_root, remove_empty_dirs
from dynamo_consistency.service.compare import ListedFiles
from dynamo_consistency.service.paths import ListingRoot

OLD = time.time() - 86400


@pytest.fixture(params=["gfal", "posix"])
async def storage(request: pytest.FixtureRequest) -> AsyncIterator[Storage]:
    async with open_storage(request.param) as opened:
        yield opened


def tree(base: Path, files: dict[str, bytes], dirs: list[str] = ()) -> ListingRoot:  # type: ignore[assignment]
    for name, data in files.items():
        path = base / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for name in dirs:
        (base / name.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for directory, subdirs, names in os.walk(base):
        for name in [*subdirs, *names]:
            os.utime(os.path.join(directory, name), (OLD, OLD))
    return ListingRoot("/store", f"file://{base}/store")


async def test_the_listing_gives_every_file_by_lfn(storage: Storage, tmp_path: Path) -> None:
    files = {f"/store/d{i % 3}/sub/f{i}.root": b"x" * i for i in range(10)}
    root = tree(tmp_path, files, ["/store/empty/a"])
    new = tmp_path / "store/d0/new.root"
    new.write_bytes(b"new")
    listed = ListedFiles(cutoff=time.time() - 3600)
    result = await list_root(storage, root, listed, parallelism=3, retries=0, timeout=10)
    assert not result.root_failed and result.unlisted == []
    assert listed.sizes == {**{k: len(v) for k, v in files.items()}, "/store/d0/new.root": 3}
    assert set(listed.recent) == {"/store/d0/new.root"}
    # store, d0..d2, their sub, empty, empty/a
    assert listed.dirs_listed == 9


async def test_a_missing_root_is_a_failed_listing(storage: Storage, tmp_path: Path) -> None:
    listed = ListedFiles(cutoff=0)
    root = ListingRoot("/store", f"file://{tmp_path}/nothing-here")
    result = await list_root(storage, root, listed, parallelism=2, retries=0, timeout=10)
    assert result.root_failed
    assert [u.lfn for u in result.unlisted] == ["/store"] and listed.unlisted == ["/store"]


async def test_empty_directories_go_except_in_and_on_the_way_to_ignored_ones(
    storage: Storage, tmp_path: Path
) -> None:
    root = tree(
        tmp_path,
        {"/store/data/keep/f.root": b"1"},
        [
            "/store/data/gone/a/b",
            "/store/user/alice/empty",
            "/store/user/bob/keep/empty",
            "/store/user/bob/other/x",
            "/store/temp/y",
        ],
    )
    (tmp_path / "store/data/fresh").mkdir()
    removed = await remove_empty_dirs(
        storage,
        root,
        ["/store/user/bob/keep", "/store/temp"],
        older_than=3600,
        parallelism=4,
    )
    assert set(removed) == {
        "/store/data/gone",
        "/store/data/gone/a",
        "/store/data/gone/a/b",
        "/store/user/alice",
        "/store/user/alice/empty",
        "/store/user/bob/other",
        "/store/user/bob/other/x",
    }
    left = _everything_below(tmp_path)
    assert "store/user/bob/keep/empty" in left and "store/temp/y" in left
    assert "store/data/fresh" in left and "store/data/keep/f.root" in left
    assert await remove_empty_dirs(storage, root, ["/store"], older_than=0, parallelism=1) == []


def _everything_below(base: Path) -> set[str]:
    return {str(p.relative_to(base)) for p in base.rglob("*")}
