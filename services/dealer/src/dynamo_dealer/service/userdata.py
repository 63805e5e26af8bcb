"""User data (issue 9): the rules, free of I/O.

A user's data lives in a namespace only Dynamo writes: datasets are named
``/<user>/<anything>/USER`` and their files' LFNs start with ``<root>/<user>/`` (root
``/store/user``). Blocks are Dynamo's: files join the open block of their dataset at the site
they were injected at until it holds ``max_files``, which closes it; a block never spans sites.
Consolidation keeps one site: once a closed block is complete there, its replicas elsewhere go.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from dynamo_common.messages.types import NO_GROUP
from dynamo_common.model.objects import Inventory
from dynamo_common.userdata import TIER, USER_RE

BLOCK_PREFIX = "u"


class Refused(Exception):
    """A request that breaks a rule: ``status`` is the HTTP status it deserves, ``numbers``
    the figures behind a quota refusal (used, asked, quota)."""

    def __init__(self, status: int, message: str, **numbers: object) -> None:
        super().__init__(message)
        self.status = status
        self.numbers = numbers


def owner_of(dataset: str) -> str:
    """The user whose namespace ``dataset`` names; refused (422) when it is no user dataset."""
    parts = dataset.split("/")
    if len(parts) != 4 or parts[0] != "" or parts[3] != TIER or not parts[2]:
        raise Refused(422, f"{dataset} is not a user dataset: names are /<user>/<name>/{TIER}")
    if not USER_RE.match(parts[1]) or not re.match(r"^[^\s/]+$", parts[2]):
        raise Refused(422, f"{dataset} is not a user dataset: invalid user or name")
    return parts[1]


def namespace(root: str, user: str) -> str:
    return f"{root.rstrip('/')}/{user}/"


def check_lfns(lfns: Sequence[str], user: str, root: str) -> None:
    """Every LFN inside the user's namespace and named once."""
    prefix = namespace(root, user)
    outside = [lfn for lfn in lfns if not lfn.startswith(prefix) or lfn == prefix]
    if outside:
        raise Refused(422, f"{outside[0]} is outside the namespace {prefix} of {user}")
    seen: set[str] = set()
    for lfn in lfns:
        if lfn in seen:
            raise Refused(422, f"{lfn} is listed twice")
        seen.add(lfn)


def may_act(who: str, owner: str, admin: bool) -> None:
    if who != owner and not admin:
        raise Refused(403, f"{who} may not act on the data of {owner}")


def block_name(index: int) -> str:
    return f"{BLOCK_PREFIX}{index:06d}"


@dataclass(frozen=True, slots=True)
class NewFile:
    lfn: str
    size: int
    adler32: str


@dataclass(frozen=True, slots=True)
class OpenBlock:
    name: str
    num_files: int


@dataclass(slots=True)
class BlockPlan:
    name: str
    new: bool
    files: list[NewFile] = field(default_factory=list)
    start: int = 0
    """Files the block held before."""
    close: bool = False


def assign(
    files: Sequence[NewFile], open_block: OpenBlock | None, next_index: int, max_files: int
) -> list[BlockPlan]:
    """Files into the site's open block, then into new ones, each closed at ``max_files``."""
    if max_files < 1:
        raise ValueError("max_files must be at least 1")
    plans: list[BlockPlan] = []
    current: BlockPlan | None = None
    if open_block is not None and open_block.num_files < max_files:
        current = BlockPlan(open_block.name, new=False, start=open_block.num_files)
    for f in files:
        if current is None or current.start + len(current.files) >= max_files:
            current = BlockPlan(block_name(next_index), new=True)
            next_index += 1
        if not current.files:
            plans.append(current)
        current.files.append(f)
    for plan in plans:
        plan.close = plan.start + len(plan.files) >= max_files
    return plans


def over_quota(what: str, used: int, asked: int, quota: int) -> Refused | None:
    if used + asked <= quota:
        return None
    return Refused(
        422,
        f"{what}: {used} bytes used + {asked} asked > quota {quota}",
        used=used,
        asked=asked,
        quota=quota,
    )


def missing_at(inventory: Inventory, dataset: str, site: str) -> int:
    """Bytes of ``dataset`` not yet held at ``site``."""
    ds = inventory.datasets.get(dataset)
    if ds is None:
        return 0
    replica = ds.replicas.get(site)
    total = 0
    for block in ds.blocks.values():
        held = replica.block_replicas.get(block.name) if replica is not None else None
        total += block.size - (held.size if held is not None else 0)
    return total


def scattered(inventory: Inventory, dataset: str, home: str) -> list[tuple[str, str]]:
    """(block, site) of the replicas to clean up: closed blocks complete at ``home`` keep no
    copy elsewhere (those already being deleted, owner cleared, are left alone)."""
    ds = inventory.datasets.get(dataset)
    if ds is None:
        return []
    out: list[tuple[str, str]] = []
    for block in sorted(ds.blocks.values(), key=lambda b: b.name):
        if block.is_open:
            continue
        replicas = {r.site.name: r for r in block.replicas}
        kept = replicas.get(home)
        if kept is None or not kept.is_complete or kept.group.name == NO_GROUP:
            continue
        out += [
            (block.name, name)
            for name, r in sorted(replicas.items())
            if name != home and r.group.name != NO_GROUP
        ]
    return out


def replica_sites(inventory: Inventory, dataset: str) -> list[str]:
    ds = inventory.datasets.get(dataset)
    return sorted(ds.replicas) if ds is not None else []


def unplaced(inventory: Inventory, dataset: str, home: str) -> list[str]:
    """Blocks with no replica at ``home`` at all (neither complete nor in flight)."""
    ds = inventory.datasets.get(dataset)
    if ds is None:
        return []
    replica = ds.replicas.get(home)
    return sorted(
        name for name in ds.blocks if replica is None or name not in replica.block_replicas
    )
