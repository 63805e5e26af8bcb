"""The comparison of a listing with the inventory's view: by LFN and size, with the grace
period, files in flight, unlisted and ignored directories."""

from __future__ import annotations

import random

from dynamo_consistency.service.compare import (
    InventoryView,
    ListedFiles,
    Missing,
    Orphan,
    compare,
)
from dynamo_consistency.service.paths import PrefixSet
from dynamo_consistency.service.rules import BlockKey

NOW = 1_800_000_000.0
GRACE = 3600.0
OLD = NOW - 10 * GRACE
B1 = BlockKey("/A/B-v1/AOD", "b1")
B2 = BlockKey("/A/B-v1/AOD", "b2")


def lfn(block: str, i: int) -> str:
    return f"/store/data/A/{block}/f{i:03d}.root"


def view_of(
    settled: dict[BlockKey, dict[str, int]], in_flight: dict[BlockKey, dict[str, int]] | None = None
) -> InventoryView:
    view = InventoryView()
    for key, files in settled.items():
        view.add_block(key, True, files.items())
    for key, files in (in_flight or {}).items():
        view.add_block(key, False, files.items())
    return view


def listing(
    files: dict[str, int], recent: set[str] = frozenset(), unlisted: list[str] | None = None
) -> ListedFiles:  # type: ignore[assignment]
    listed = ListedFiles(cutoff=NOW - GRACE)
    for name, size in files.items():
        listed.add(name, size, NOW - 60 if name in recent else OLD)
    listed.unlisted.extend(unlisted or [])
    return listed


def test_a_site_that_holds_exactly_what_the_inventory_says_has_no_difference() -> None:
    files = {lfn("b1", i): 1000 + i for i in range(5)}
    result = compare(view_of({B1: files}), listing(files))
    assert result.missing == [] and result.orphans == []
    assert (result.expected, result.listed) == (5, 5)


def test_a_file_absent_from_the_storage_is_missing_with_its_block_and_size() -> None:
    files = {lfn("b1", i): 1000 + i for i in range(5)}
    on_disk = dict(files)
    del on_disk[lfn("b1", 2)]
    result = compare(view_of({B1: files}), listing(on_disk))
    assert result.missing == [Missing(lfn("b1", 2), 1002, B1, None)]
    assert result.missing_bytes == 1002
    assert result.orphans == []


def test_a_file_of_another_size_is_missing_and_says_what_the_storage_holds() -> None:
    files = {lfn("b1", 0): 1000}
    result = compare(view_of({B1: files}), listing({lfn("b1", 0): 17}))
    assert result.missing == [Missing(lfn("b1", 0), 1000, B1, 17)]


def test_a_file_unknown_to_the_inventory_is_an_orphan() -> None:
    files = {lfn("b1", 0): 1000}
    stray = "/store/data/A/old/x.root"
    result = compare(view_of({B1: files}), listing({**files, stray: 55}))
    assert result.orphans == [Orphan(stray, 55)]
    assert result.orphan_bytes == 55
    assert result.missing == []


def test_files_within_the_grace_period_are_neither_orphans_nor_wrong_sizes() -> None:
    files = {lfn("b1", 0): 1000, lfn("b1", 1): 1000}
    new_orphan = "/store/data/A/new/x.root"
    on_disk = {lfn("b1", 0): 1000, lfn("b1", 1): 5, new_orphan: 9}
    result = compare(view_of({B1: files}), listing(on_disk, recent={lfn("b1", 1), new_orphan}))
    assert result.missing == [] and result.orphans == []
    assert result.recent == 2


def test_the_grace_period_boundary_is_strict() -> None:
    listed = ListedFiles(cutoff=NOW - GRACE)
    listed.add("/store/a", 1, NOW - GRACE)
    listed.add("/store/b", 1, NOW - GRACE + 0.001)
    assert set(listed.recent) == {"/store/b"}


def test_files_of_replicas_in_flight_are_never_missing_nor_orphans() -> None:
    settled = {lfn("b1", 0): 1000}
    moving = {lfn("b2", 0): 1000, lfn("b2", 1): 1000}
    # b2 is half transferred: one of its files is there, one is not.
    on_disk = {lfn("b1", 0): 1000, lfn("b2", 0): 1000}
    result = compare(view_of({B1: settled}, {B2: moving}), listing(on_disk))
    assert result.missing == [] and result.orphans == []
    assert result.in_flight == 1


def test_nothing_inside_an_unlisted_directory_is_called_missing() -> None:
    files = {lfn("b1", i): 1000 for i in range(3)} | {lfn("b10", 0): 1000}
    result = compare(
        view_of({B1: files}),
        listing({}, unlisted=["/store/data/A/b1"]),
    )
    # b10 is a sibling whose name starts like b1: it was listed, and its file is missing.
    assert [m.lfn for m in result.missing] == [lfn("b10", 0)]
    assert result.unlisted == 3


def test_an_unlisted_root_protects_everything() -> None:
    files = {lfn("b1", i): 1000 for i in range(3)}
    result = compare(view_of({B1: files}), listing({}, unlisted=["/store"]))
    assert result.missing == [] and result.unlisted == 3


def test_unknown_files_under_ignored_directories_are_counted_apart() -> None:
    on_disk = {"/store/user/jdoe/x.root": 10, "/store/user/jdoe/y.root": 20, "/store/users.txt": 5}
    result = compare(view_of({}), listing(on_disk), PrefixSet(["/store/user"]))
    assert result.orphans == [Orphan("/store/users.txt", 5)]
    assert (result.ignored, result.ignored_bytes) == (2, 30)


def test_ignored_directories_do_not_hide_missing_files() -> None:
    files = {"/store/user/jdoe/x.root": 10}
    result = compare(view_of({B1: files}), listing({}), PrefixSet(["/store/user"]))
    assert [m.lfn for m in result.missing] == ["/store/user/jdoe/x.root"]


def test_replicas_that_changed_during_the_listing_are_demoted_to_in_flight() -> None:
    view = view_of({B1: {lfn("b1", 0): 1000}, B2: {lfn("b2", 0): 1000}})
    assert view.demote({B2}) == 1
    view.add_in_flight([("/store/data/A/b3/f000.root", BlockKey("/A/B-v1/AOD", "b3"))])
    result = compare(view, listing({lfn("b1", 0): 1000, "/store/data/A/b3/f000.root": 1}))
    assert result.missing == [] and result.orphans == []
    assert result.in_flight == 1


def test_results_are_sorted_by_lfn() -> None:
    files = {lfn("b1", i): 1000 for i in range(50)}
    on_disk = {f"/store/o/{i:03d}": 1 for i in range(50)}
    result = compare(view_of({B1: files}), listing(on_disk))
    assert [m.lfn for m in result.missing] == sorted(files)
    assert [o.lfn for o in result.orphans] == sorted(on_disk)


def test_the_comparison_agrees_with_a_plain_reference_on_random_sites() -> None:
    rng = random.Random(7)
    for _ in range(30):
        names = [f"/store/d/{rng.randrange(40)}/f{i}" for i in range(300)]
        expected = {n: rng.randrange(1, 5) for n in names[:200]}
        in_flight = {n: 1 for n in names[200:240] if n not in expected}
        on_disk = {n: rng.randrange(1, 5) for n in rng.sample(names, 220)}
        on_disk |= {f"/store/x/{i}": 1 for i in range(rng.randrange(5))}
        recent = {n for n in on_disk if rng.random() < 0.1}
        unlisted = [f"/store/d/{rng.randrange(40)}"] if rng.random() < 0.5 else []
        ignored = PrefixSet(["/store/x"]) if rng.random() < 0.5 else PrefixSet()
        view = view_of({B1: expected}, {B2: in_flight})
        result = compare(view, listing(on_disk, recent, unlisted), ignored)

        gone = PrefixSet(unlisted)
        want_missing = sorted(
            n
            for n, size in expected.items()
            if (n not in on_disk and not gone.covers(n))
            or (n in on_disk and on_disk[n] != size and n not in recent)
        )
        want_orphans = sorted(
            n
            for n in on_disk
            if n not in expected
            and n not in in_flight
            and n not in recent
            and not ignored.covers(n)
        )
        assert [m.lfn for m in result.missing] == want_missing
        assert [o.lfn for o in result.orphans] == want_orphans
