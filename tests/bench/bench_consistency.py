"""(4) The consistency check: the comparison of a big site, and the listing of an XRootD site.

``consistency.compare``: one site holding 1,000,000 files (CMS-like LFNs from gridgen; 2 % of
its blocks in flight), whose storage lost 100 files, holds 50 of the wrong size, 1,000 orphans
and 200 files within the grace period. The measured value is ``compare()`` itself, on the
structures the service holds at that point (the inventory view and the listing, both
dictionaries by LFN that are filled while the data arrives, during the REST fetch and the
walk). The floor is a plain Python set difference, both ways (missing and orphans), on the
same LFN lists: ``a, b = set(inventory), set(listed); a - b; b - a``. The cost of filling the
dictionaries is reported beside it in the details.

``consistency.xrootd_listing``: a real XRootD server on loopback holding 100,000 files in
1,000 directories (created directly in its data directory), listed the way a check lists it
(gfal2 through ``Storage.walk``, 8 directories at a time, each entry turned back into an LFN);
the floor is ``xrdfs 127.0.0.1:PORT ls -l -R /store`` of the same tree. gfal2 itself is the
bound here: a bare sequential loop of gfal2 ``opendir``/``readpp`` over the same tree (no
asyncio, no objects of ours; in the details) takes about as long as the check's listing,
about four times ``xrdfs`` (its XRootD plugin stats every directory before listing it, and
builds Python objects per entry), hence the target. Listings that hit gfal2's 60 s stall
(see ``ListingGuard``) are counted in the details.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import os
import random
import shutil
import statistics
import subprocess
import time
from typing import Any

from dynamo_common import gridgen
from dynamo_common.gridgen.scale import Scale
from dynamo_common.storage import open_storage
from dynamo_common.storage.gfal import import_gfal2
from dynamo_common.testing.xrootd import XrootdServer
from dynamo_consistency.listing import ListingGuard, list_root
from dynamo_consistency.service.compare import InventoryView, ListedFiles, compare
from dynamo_consistency.service.paths import ListingRoot, PrefixSet
from dynamo_consistency.service.rules import BlockKey
from tests.bench.report import Result, Target, log, profile_summary, result

SEED = 23
FILES = 1_000_000
LOST, WRONG_SIZE, ORPHANS, RECENT = 100, 50, 1_000, 200
IN_FLIGHT_SHARE = 0.02
COMPARE_TARGET = Target(value=3.0, ratio=2.0, direction="max")

XRD_DIRS, XRD_FILES_PER_DIR = 1_000, 100
LISTING_TARGET = Target(ratio=5.0, direction="max")
LISTING_PARALLELISM = 8

NOW = 1_800_000_000.0
GRACE = 2 * 86400.0
ROOT = ListingRoot("/store", "root://se.example:1094//data/store")
SITE_SCALE = Scale(
    sites=20,
    datasets=2_000,
    blocks=10_000,
    dataset_replicas=2_000,
    block_replicas=10_000,
    files=FILES,
    name="site-1M",
)


class _Site:
    """The inventory view and the listing of one big site, as a check holds them."""

    def __init__(self) -> None:
        rng = random.Random(SEED)
        grid = gridgen.generate(SITE_SCALE, seed=SEED)
        blocks: dict[int, list[tuple[str, int]]] = {}
        for block, info in grid.iter_files():
            blocks.setdefault(block, []).append((info.lfn, info.size))
        in_flight = set(rng.sample(sorted(blocks), int(len(blocks) * IN_FLIGHT_SHARE)))

        started = time.perf_counter()
        self.view = InventoryView()
        for block, files in blocks.items():
            key = BlockKey(str(grid.datasets[grid.blocks[block].dataset].name), str(block))
            self.view.add_block(key, block not in in_flight, files)
        self.view_seconds = time.perf_counter() - started

        expected = list(self.view.expected.items())
        damaged = rng.sample(expected, LOST + WRONG_SIZE + RECENT)
        lost = {name for name, _ in damaged[:LOST]}
        wrong = {name for name, _ in damaged[LOST : LOST + WRONG_SIZE]}
        recent = {name for name, _ in damaged[LOST + WRONG_SIZE :]}
        entries: list[tuple[str, int, float]] = []
        for name, size in blocks_files(blocks):
            if name in lost:
                continue
            mtime = NOW - 60 if name in recent else NOW - 30 * 86400
            entries.append((name, size + 1 if name in wrong or name in recent else size, mtime))
        entries += [
            (f"/store/unmerged/x/orphan{i:05d}.root", 1000, NOW - 9e6) for i in range(ORPHANS)
        ]
        # The walk hands over PFNs; the listing turns them back into (new) LFN strings.
        pfns = [(ROOT.pfn_of(name), size, mtime) for name, size, mtime in entries]
        del entries
        started = time.perf_counter()
        self.listed = ListedFiles(cutoff=NOW - GRACE)
        add, to_lfn = self.listed.add, ROOT.to_lfn
        for pfn, size, mtime in pfns:
            add(to_lfn(pfn), size, mtime)  # type: ignore[arg-type]
        self.listing_seconds = time.perf_counter() - started
        self.expect_missing = len(lost) + len(wrong)
        self.ignored = PrefixSet(["/store/user"])
        # The floor's input: the same LFN strings, as plain lists.
        self.inventory_lfns = list(self.view.expected)
        self.listed_lfns = list(self.listed.sizes)


def blocks_files(blocks: dict[int, list[tuple[str, int]]]) -> list[tuple[str, int]]:
    return [f for files in blocks.values() for f in files]


def _floor(site: _Site) -> float:
    started = time.perf_counter()
    inventory, listed = set(site.inventory_lfns), set(site.listed_lfns)
    missing = inventory - listed
    orphans = listed - inventory
    elapsed = time.perf_counter() - started
    assert len(missing) == LOST and len(orphans) >= ORPHANS
    return elapsed


def _ours(site: _Site) -> tuple[float, Any]:
    started = time.perf_counter()
    outcome = compare(site.view, site.listed, site.ignored)
    return time.perf_counter() - started, outcome


def run_compare(repetitions: int, profile: bool = False) -> Result:
    log(f"consistency: building a site of {FILES:,} files (gridgen)")
    site = _Site()
    log("consistency: timing compare() against a plain set difference")
    ours: list[float] = []
    floor: list[float] = []
    outcome: Any = None
    for _ in range(repetitions):  # interleaved, so that noise hits both sides alike
        gc.collect()
        floor.append(_floor(site))
        gc.collect()
        seconds, outcome = _ours(site)
        ours.append(seconds)
    assert len(outcome.missing) == site.expect_missing, len(outcome.missing)
    assert len(outcome.orphans) == ORPHANS, len(outcome.orphans)
    details: dict[str, Any] = {
        "listed_files": len(site.listed.sizes),
        "expected_files": len(site.view.expected),
        "in_flight_files": len(site.view.in_flight),
        "found_missing": len(outcome.missing),
        "found_orphans": len(outcome.orphans),
        "skipped_recent": outcome.recent,
        "skipped_in_flight": outcome.in_flight,
        "building_view_s": round(site.view_seconds, 3),
        "building_listing_s": round(site.listing_seconds, 3),
        "note": "the view and the listing are filled while the REST pages and the storage "
        "listing arrive; the floor builds its sets inside the timing",
    }
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        compare(site.view, site.listed, site.ignored)
        profiler.disable()
        text, entries = profile_summary(profiler)
        details["profile_top"] = entries
        details["profile_text"] = text
    return result(
        "consistency.compare",
        f"{FILES // 1000}k files",
        ours,
        "s",
        floor_runs=floor,
        floor_unit="s",
        floor_label="set(inventory) - set(listed) and back, same LFN lists",
        target=COMPARE_TARGET,
        details=details,
    )


# --------------------------------------------------------------------------- XRootD listing


def _populate(server: XrootdServer) -> int:
    """XRD_DIRS directories of XRD_FILES_PER_DIR small files, written straight into the
    server's data directory (through XRootD it would take many minutes)."""
    count = 0
    base = server.data_dir / "store" / "mc" / "Bench"
    for d in range(XRD_DIRS):
        directory = base / f"Primary{d % 20:02d}" / "AODSIM" / f"v{d // 20:03d}" / f"{d:05d}"
        directory.mkdir(parents=True, exist_ok=True)
        for f in range(XRD_FILES_PER_DIR):
            with open(directory / f"{f:08X}-file.root", "wb") as out:
                out.write(b"x" * (f % 7))
            count += 1
    # Readable by the server's user without a chown: 0755 directories, 0644 files.
    return count


def _xrdfs_seconds(server: XrootdServer) -> tuple[float, int]:
    xrdfs = shutil.which("xrdfs")
    if xrdfs is None:
        raise RuntimeError("xrdfs is not installed (apt-get install xrootd-client)")
    started = time.perf_counter()
    done = subprocess.run(
        [xrdfs, f"127.0.0.1:{server.port}", "ls", "-l", "-R", "/store"],
        capture_output=True,
        check=True,
        timeout=1800,
    )
    elapsed = time.perf_counter() - started
    files = sum(1 for line in done.stdout.splitlines() if line.startswith(b"-"))
    return elapsed, files


async def _walk_seconds(server: XrootdServer) -> tuple[float, ListedFiles, int]:
    root = ListingRoot("/store", server.pfn("/store"))
    listed = ListedFiles(cutoff=time.time() - GRACE)
    storage = ListingGuard(open_storage("gfal", max_parallel=LISTING_PARALLELISM))
    async with storage:
        started = time.perf_counter()
        outcome = await list_root(
            storage, root, listed, parallelism=LISTING_PARALLELISM, retries=2, timeout=300
        )
        elapsed = time.perf_counter() - started
    stalls = storage.slow_listings
    assert not outcome.root_failed and not outcome.unlisted, outcome
    return elapsed, listed, stalls


def _raw_gfal2_seconds(server: XrootdServer) -> float:
    """gfal2 alone: one thread, one context, opendir/readpp over the whole tree."""
    gfal2 = import_gfal2()
    ctx = gfal2.creat_context()
    started = time.perf_counter()
    pending, files = [server.pfn("/store")], 0
    while pending:
        directory = pending.pop()
        handle = ctx.opendir(directory)
        while True:
            entry, st = handle.readpp()
            if entry is None:
                break
            if entry.d_name in (".", ".."):
                continue
            if st.st_mode & 0o040000:
                pending.append(f"{directory}/{entry.d_name}")
            else:
                files += 1
    elapsed = time.perf_counter() - started
    assert files == XRD_DIRS * XRD_FILES_PER_DIR, files
    return elapsed


async def run_xrootd_listing(repetitions: int) -> Result:
    with XrootdServer(name="benchsite") as server:
        log(f"consistency: writing {XRD_DIRS * XRD_FILES_PER_DIR:,} files into an XRootD site")
        started = time.perf_counter()
        count = await asyncio.to_thread(_populate, server)
        log(f"consistency: written in {time.perf_counter() - started:.0f} s; listing")
        ours: list[float] = []
        floor: list[float] = []
        listed_files = dirs = xrdfs_files = stalls = 0
        raw: list[float] = []
        for _ in range(repetitions):
            raw.append(await asyncio.to_thread(_raw_gfal2_seconds, server))
            seconds, seen = await asyncio.to_thread(_xrdfs_seconds, server)
            floor.append(seconds)
            xrdfs_files = seen
            seconds, listed, stalled = await _walk_seconds(server)
            ours.append(seconds)
            stalls += stalled
            listed_files, dirs = len(listed.sizes), listed.dirs_listed
        assert listed_files == count == xrdfs_files, (listed_files, count, xrdfs_files)
    return result(
        "consistency.xrootd_listing",
        f"{count // 1000}k files",
        ours,
        "s",
        floor_runs=floor,
        floor_unit="s",
        floor_label="xrdfs ls -l -R of the same tree",
        target=LISTING_TARGET,
        details={
            "files": listed_files,
            "directories": dirs,
            "parallelism": LISTING_PARALLELISM,
            "files_per_s": round(listed_files / min(ours)),
            "xrdfs_files_per_s": round(xrdfs_files / min(floor)),
            "raw_gfal2_sequential_median_s": round(statistics.median(raw), 3),
            "raw_gfal2_sequential_runs_s": [round(r, 3) for r in raw],
            "listings_stalled_60s": stalls,
            "cpus": os.cpu_count(),
        },
    )


async def run(repetitions: int = 3, profile: bool = False) -> list[Result]:
    results = [run_compare(repetitions, profile=profile)]
    results.append(await run_xrootd_listing(repetitions))
    return results
