"""The comparison of a site's storage with the inventory's view of it, by LFN and size.

The inventory's view (:class:`InventoryView`) and the listing (:class:`ListedFiles`) are built
while their data arrives, as dictionaries keyed by LFN, so :func:`compare` itself is two
passes that run in C (``itertools`` over built-in methods: no Python frame per file) followed
by Python only for the few files that differ. See rules.py for what "settled" and "in flight"
mean.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from itertools import compress, filterfalse, repeat
from operator import ne

from dynamo_consistency.service.paths import PrefixSet
from dynamo_consistency.service.rules import BlockKey

__all__ = ["Comparison", "InventoryView", "ListedFiles", "Missing", "Orphan", "compare"]


@dataclass(slots=True)
class InventoryView:
    """The files the inventory places at a site, as far as the listing can see them."""

    expected: dict[str, int] = field(default_factory=dict)
    """LFN -> size of the files of settled replicas: these must be on the storage."""
    in_flight: set[str] = field(default_factory=set)
    """Files of replicas in flight: whatever their state on storage, not judged."""
    block_of: dict[str, BlockKey] = field(default_factory=dict)
    outside: int = 0
    """Files of the site's replicas that the listing cannot show (outside the listed roots,
    or mapped elsewhere by the site's rules): not judged either."""

    def add_block(
        self,
        key: BlockKey,
        settled: bool,
        files: Iterable[tuple[str, int]],
        visible: Callable[[str], bool] | None = None,
    ) -> None:
        """Add the files of one block replica. ``visible``: when given, only the files it
        accepts are kept (the others are counted in ``outside``)."""
        expected, in_flight, block_of = self.expected, self.in_flight, self.block_of
        for lfn, size in files:
            if visible is not None and not visible(lfn):
                self.outside += 1
                continue
            block_of[lfn] = key
            if settled:
                expected[lfn] = size
            else:
                in_flight.add(lfn)

    def demote(self, keys: Collection[BlockKey]) -> int:
        """Move the files of these block replicas from expected to in flight (they changed
        while the storage was listed); returns how many files moved."""
        if not keys:
            return 0
        moved = [lfn for lfn, key in self.block_of.items() if key in keys and lfn in self.expected]
        for lfn in moved:
            del self.expected[lfn]
        self.in_flight.update(moved)
        return len(moved)

    def add_in_flight(self, files: Iterable[tuple[str, BlockKey]]) -> None:
        """Files of replicas that appeared while the storage was listed."""
        for lfn, key in files:
            if lfn not in self.expected:
                self.in_flight.add(lfn)
                self.block_of.setdefault(lfn, key)


@dataclass(slots=True)
class ListedFiles:
    """The files a walk of the storage found, by LFN."""

    cutoff: float
    """Files modified after this time (epoch seconds) are within the grace period."""
    sizes: dict[str, int] = field(default_factory=dict)
    recent: dict[str, float] = field(default_factory=dict)
    unlisted: list[str] = field(default_factory=list)
    """LFN directories that could not be listed: nothing in them is judged."""
    dirs_listed: int = 0

    def add(self, lfn: str, size: int, mtime: float) -> None:
        self.sizes[lfn] = size
        if mtime > self.cutoff:
            self.recent[lfn] = mtime


@dataclass(frozen=True, slots=True)
class Missing:
    lfn: str
    size: int
    block: BlockKey
    listed_size: int | None = None
    """Set when the storage holds a file of another size under this name (a wrong or
    truncated copy): it counts as missing, and a new copy replaces it."""


@dataclass(frozen=True, slots=True)
class Orphan:
    lfn: str
    size: int


@dataclass(slots=True)
class Comparison:
    missing: list[Missing] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)
    expected: int = 0
    listed: int = 0
    ignored: int = 0
    """Files that would be orphans but lie under an ignored directory."""
    ignored_bytes: int = 0
    recent: int = 0
    """Differences not judged because the file on storage is within the grace period."""
    in_flight: int = 0
    """Files on storage that belong to replicas in flight."""
    unlisted: int = 0
    """Expected files inside directories that could not be listed."""

    @property
    def missing_bytes(self) -> int:
        return sum(m.size for m in self.missing)

    @property
    def orphan_bytes(self) -> int:
        return sum(o.size for o in self.orphans)


def compare(
    view: InventoryView, listed: ListedFiles, ignored: PrefixSet | None = None
) -> Comparison:
    """Missing files (expected, absent or of another size) and orphans (on storage, unknown
    to the inventory), with what was left out and why. Pure: the same inputs always give the
    same result, sorted by LFN."""
    expected = view.expected
    sizes = listed.sizes
    recent = listed.recent
    # Expected files whose listed size differs; -1 (never a size) when absent.
    differing = list(
        compress(expected, map(ne, expected.values(), map(sizes.get, expected, repeat(-1))))
    )
    unexpected = list(filterfalse(expected.__contains__, sizes))

    result = Comparison(expected=len(expected), listed=len(sizes))
    unlisted = PrefixSet(listed.unlisted)
    block_of = view.block_of
    for lfn in differing:
        have = sizes.get(lfn)
        if have is None:
            if unlisted and unlisted.covers(lfn):
                result.unlisted += 1
                continue
        elif lfn in recent:
            result.recent += 1
            continue
        result.missing.append(Missing(lfn, expected[lfn], block_of[lfn], have))

    in_flight = view.in_flight
    ignore = ignored if ignored else None
    for lfn in unexpected:
        if lfn in in_flight:
            result.in_flight += 1
        elif lfn in recent:
            result.recent += 1
        elif ignore is not None and ignore.covers(lfn):
            result.ignored += 1
            result.ignored_bytes += sizes[lfn]
        else:
            result.orphans.append(Orphan(lfn, sizes[lfn]))
    result.missing.sort(key=_lfn)
    result.orphans.sort(key=_lfn)
    return result


def _lfn(item: Missing | Orphan) -> str:
    return item.lfn
