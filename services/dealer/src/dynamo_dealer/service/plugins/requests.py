"""Copy requests: a user asks for datasets (wildcards), blocks (``dataset#block``) or
containers, at sites given by name patterns, ``n_copies`` of each among them.

A request is validated when it is made (``validate``) and re-proposed every cycle for the
copies still missing (``proposals``); its state follows the inventory (``progress``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from dynamo_common.model.objects import Dataset, Inventory
from dynamo_dealer.service.proposals import Proposal

Item = tuple[str, str | None]
"""(dataset, block or None for the whole dataset)."""

PLUGIN = "requests"
_WILD = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class RequestSpec:
    id: int
    group: str
    items: tuple[Item, ...]
    sites: tuple[str, ...]
    n_copies: int


def _wild(pattern: str) -> bool:
    return any(ch in _WILD for ch in pattern)


def resolve(inventory: Inventory, items: Iterable[str]) -> tuple[list[Item], list[str]]:
    """(the datasets and blocks the items name, the items that name nothing). An item is a
    dataset name or pattern (``/A/B/C``), a block (``/A/B/C#block``, patterns allowed on both
    sides), or a container name or pattern."""
    found: dict[Item, None] = {}
    unknown: list[str] = []
    for item in items:
        before = len(found)
        if item.startswith("/") and "#" in item:
            dataset_part, _, block_part = item.partition("#")
            for dataset in _datasets(inventory, dataset_part):
                for name in sorted(dataset.blocks):
                    if fnmatchcase(name, block_part):
                        found.setdefault((dataset.name, name), None)
        elif item.startswith("/"):
            for dataset in _datasets(inventory, item):
                found.setdefault((dataset.name, None), None)
        else:
            names = (
                [n for n in sorted(inventory.containers) if fnmatchcase(n, item)]
                if _wild(item)
                else [item] * (item in inventory.containers)
            )
            for name in names:
                for dataset_name in inventory.containers[name].datasets:
                    if dataset_name in inventory.datasets:
                        found.setdefault((dataset_name, None), None)
        if len(found) == before:
            unknown.append(item)
    # A block whose whole dataset is also named is part of it.
    whole = {dataset for dataset, block in found if block is None}
    return [i for i in found if i[1] is None or i[0] not in whole], unknown


def _datasets(inventory: Inventory, pattern: str) -> list[Dataset]:
    if not _wild(pattern):
        found = inventory.datasets.get(pattern)
        return [found] if found is not None else []
    return [d for name, d in sorted(inventory.datasets.items()) if fnmatchcase(name, pattern)]


def size(inventory: Inventory, items: Iterable[Item]) -> int:
    total = 0
    for dataset_name, block_name in items:
        dataset = inventory.datasets[dataset_name]
        total += dataset.size if block_name is None else dataset.blocks[block_name].size
    return total


def matching_sites(inventory: Inventory, patterns: Iterable[str]) -> list[str]:
    names = sorted(inventory.sites)
    return [n for n in names if any(fnmatchcase(n, p) for p in patterns)]


def validate(
    inventory: Inventory,
    items: Sequence[str],
    sites: Sequence[str],
    group: str,
    max_size: int,
    targets: Collection[str],
) -> tuple[list[Item], int, str | None]:
    """(resolved items, their size, why the request is rejected or None). ``targets``: the
    sites the dealer may copy to now."""
    resolved, unknown = resolve(inventory, items)
    if unknown:
        return resolved, 0, "unknown items: " + ", ".join(unknown[:10])
    if group not in inventory.groups:
        return resolved, 0, f"invalid group {group}"
    total = size(inventory, resolved)
    if total > max_size:
        return resolved, total, f"too large: {total} bytes, the limit is {max_size}"
    if not [s for s in matching_sites(inventory, sites) if s in targets]:
        return resolved, total, "no matching site: " + " ".join(sites) + " names no target site"
    return resolved, total, None


def _copies(inventory: Inventory, item: Item, allowed: Collection[str]) -> tuple[int, int]:
    """(copies at allowed sites, complete or in flight; complete ones)."""
    dataset = inventory.datasets.get(item[0])
    if dataset is None:
        return 0, 0
    there = complete = 0
    for site, replica in dataset.replicas.items():
        if site not in allowed:
            continue
        if item[1] is None:
            there += 1
            complete += replica.is_complete
            continue
        block_replica = replica.block_replicas.get(item[1])
        if block_replica is not None:
            there += 1
            complete += block_replica.is_complete
    return there, complete


def proposals(
    inventory: Inventory, requests: Iterable[RequestSpec], priority: float
) -> list[Proposal]:
    out: list[Proposal] = []
    for request in requests:
        allowed = frozenset(matching_sites(inventory, request.sites))
        fixed = (
            next(iter(allowed))
            if len(allowed) == 1 and request.n_copies == 1 and not any(map(_wild, request.sites))
            else None
        )
        for item in request.items:
            there, _ = _copies(inventory, item, allowed)
            for _ in range(request.n_copies - there):
                out.append(
                    Proposal(
                        plugin=PLUGIN,
                        dataset=item[0],
                        block=item[1],
                        group=request.group,
                        priority=priority,
                        site=fixed,
                        allowed=None if fixed else allowed,
                        weight=-request.id,
                        reference=str(request.id),
                        reason=f"copy request {request.id}",
                    )
                )
    return out


@dataclass(frozen=True, slots=True)
class Progress:
    wanted: int
    there: int
    """Copies at allowed sites, complete or in flight."""
    complete: int

    @property
    def done(self) -> bool:
        return self.complete >= self.wanted

    @property
    def placed(self) -> bool:
        return self.there >= self.wanted


def progress(inventory: Inventory, request: RequestSpec) -> Progress:
    allowed = frozenset(matching_sites(inventory, request.sites))
    wanted = there = complete = 0
    for item in request.items:
        t, c = _copies(inventory, item, allowed)
        wanted += request.n_copies
        there += min(t, request.n_copies)
        complete += min(c, request.n_copies)
    return Progress(wanted, there, complete)
