"""Locks: operators keep named data at named sites until a date (``blockreplica.is_locked``).

A lock names datasets, optionally blocks, and sites, each with shell-style wildcards (``*``,
``?``, the language's own wildcards), and holds until its ``until`` time unless released.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from dynamo_common.model.objects import BlockReplica, Dataset, Inventory, Site
from dynamo_common.policy.parser import wildcard_pattern


@dataclass(frozen=True, slots=True)
class Lock:
    id: int
    dataset: str
    """Dataset name or pattern."""
    block: str | None
    """Block name or pattern; None: every block of the dataset."""
    sites: str
    """Site name or pattern."""
    until: datetime
    owner: str
    comment: str
    created: datetime
    released: datetime | None = None

    def active(self, at: datetime) -> bool:
        return self.released is None and self.until > at


class _Pattern:
    __slots__ = ("literal", "regex")

    def __init__(self, text: str) -> None:
        self.regex: re.Pattern[str] | None = wildcard_pattern(text)
        self.literal = text

    def matches(self, value: str) -> bool:
        if self.regex is None:
            return value == self.literal
        return self.regex.fullmatch(value) is not None


def _datasets(inventory: Inventory, pattern: _Pattern) -> Iterator[Dataset]:
    if pattern.regex is None:
        found = inventory.datasets.get(pattern.literal)
        if found is not None:
            yield found
        return
    for dataset in inventory.datasets.values():
        if pattern.regex.fullmatch(dataset.name):
            yield dataset


def _sites(inventory: Inventory, pattern: _Pattern) -> set[Site]:
    return {site for site in inventory.sites.values() if pattern.matches(site.name)}


def locked_block_replicas(
    inventory: Inventory, locks: Iterable[Lock], at: datetime
) -> dict[BlockReplica, bool]:
    """Every block replica an active lock covers (the ``blockreplica.is_locked`` table)."""
    table: dict[BlockReplica, bool] = {}
    for lock in locks:
        if not lock.active(at):
            continue
        sites = _sites(inventory, _Pattern(lock.sites))
        if not sites:
            continue
        block = None if lock.block is None else _Pattern(lock.block)
        for dataset in _datasets(inventory, _Pattern(lock.dataset)):
            for replica in dataset.replicas.values():
                if replica.site not in sites:
                    continue
                for name, block_replica in replica.block_replicas.items():
                    if block is None or block.matches(name):
                        table[block_replica] = True
    return table


def covers(lock: Lock, dataset: str, block: str | None, site: str) -> bool:
    """Whether ``lock`` names this dataset (and block, when given) at this site."""
    if not _Pattern(lock.dataset).matches(dataset) or not _Pattern(lock.sites).matches(site):
        return False
    return block is None or lock.block is None or _Pattern(lock.block).matches(block)
