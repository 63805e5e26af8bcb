"""Where a file is copied from, and with which protocol.

A pure function of the read model and the file's own history: complete replicas of the
file's block on ready sites are candidates; disk before tape (tape needs staging first),
untried before tried, then the least failed. The protocol is the first of the preference
list that both ends speak and that maps the LFN at both ends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from dynamo_common.messages.types import SiteStatus, StorageType
from dynamo_common.model.objects import Block, Inventory, Site

PfnFunc = Callable[[Site, str, str], str | None]
"""(site, protocol, lfn) -> the PFN, or None when the site's rules map the LFN to nothing."""


@dataclass(frozen=True, slots=True)
class SourceChoice:
    site: str
    protocol: str
    source_pfn: str
    dest_pfn: str
    tape: bool  # the source must be staged (brought online) before the copy


@dataclass(frozen=True, slots=True)
class NoSource:
    reason: str


def protocol_names(site: Site) -> list[str]:
    return [name for name, _ in site.protocols]


def common_protocols(a: Site, b: Site, preference: Sequence[str]) -> list[str]:
    names_a, names_b = set(protocol_names(a)), set(protocol_names(b))
    return [p for p in preference if p in names_a and p in names_b]


def destination_problem(site: Site, preference: Sequence[str]) -> str | None:
    """Why no file can be written to ``site`` at all right now, or None."""
    if site.status is not SiteStatus.READY:
        return f"site {site.name} is in {site.status.value} (downtime)"
    if not any(p in protocol_names(site) for p in preference):
        return f"site {site.name} has no storage protocol (needs one of {', '.join(preference)})"
    return None


def map_at(site: Site, lfn: str, preference: Sequence[str], pfn: PfnFunc) -> tuple[str, str] | None:
    """(protocol, PFN) of ``lfn`` at ``site`` with the first preferred protocol that maps it."""
    names = protocol_names(site)
    for protocol in preference:
        if protocol in names:
            mapped = pfn(site, protocol, lfn)
            if mapped is not None:
                return protocol, mapped
    return None


def deletion_target(
    site: Site, lfn: str, preference: Sequence[str], pfn: PfnFunc
) -> tuple[str, str] | NoSource:
    """(protocol, PFN) with which ``lfn`` is deleted at ``site``, or why it cannot be now."""
    problem = destination_problem(site, preference)
    if problem is not None:
        return NoSource(problem)
    mapped = map_at(site, lfn, preference, pfn)
    if mapped is None:
        return NoSource(f"LFN {lfn} maps to no PFN at {site.name}")
    return mapped


def block_of(model: Inventory, dataset: str | None, block: str | None) -> Block | None:
    """The read model's block of a task or replica row; None for a file-level deletion (no
    block named) and for a block the inventory no longer has."""
    if dataset is None or block is None:
        return None
    found = model.datasets.get(dataset)
    return found.blocks.get(block) if found is not None else None


def sources_left(block: Block | None, destination: str, ruled_out: Mapping[str, str]) -> int:
    """How many complete replicas elsewhere could still deliver a file of ``block`` to
    ``destination`` (sources ruled out for the file do not count)."""
    if block is None:
        return 0
    return sum(
        1
        for r in block.replicas
        if r.site.name != destination and r.is_complete and r.site.name not in ruled_out
    )


def _is_tape(site: Site) -> bool:
    return site.storage_type is StorageType.TAPE


def choose_source(
    block: Block,
    destination: Site,
    lfn: str,
    *,
    failures: Mapping[str, int],
    ruled_out: Mapping[str, str],
    preference: Sequence[str],
    pfn: PfnFunc,
) -> SourceChoice | NoSource:
    """The best source of ``lfn`` (a file of ``block``) for a copy to ``destination``.

    ``failures`` counts failed attempts per source site; ``ruled_out`` names sources that
    can never deliver this file (missing or corrupt there) with the error they gave.
    """
    problem = destination_problem(destination, preference)
    if problem is not None:
        return NoSource(problem)
    complete = [r.site for r in block.replicas if r.site is not destination and r.is_complete]
    if not complete:
        return NoSource(f"no source: no complete replica of {block.full_name} on another site")
    ready = [s for s in complete if s.status is SiteStatus.READY]
    if not ready:
        states = ", ".join(f"{s.name} ({s.status.value})" for s in sorted(complete, key=_name))
        return NoSource(f"no source: no site with a complete replica is ready: {states}")
    usable = [s for s in ready if s.name not in ruled_out]
    if not usable:
        errors = "; ".join(f"{name}: {ruled_out[name]}" for name in sorted(ruled_out))
        return NoSource(f"all sources failed: {errors}")
    ordered = sorted(usable, key=lambda s: (_is_tape(s), failures.get(s.name, 0), s.name))
    for site in ordered:
        for protocol in common_protocols(site, destination, preference):
            source_pfn = pfn(site, protocol, lfn)
            dest_pfn = pfn(destination, protocol, lfn)
            if source_pfn is not None and dest_pfn is not None:
                return SourceChoice(site.name, protocol, source_pfn, dest_pfn, _is_tape(site))
    names = ", ".join(s.name for s in ordered)
    return NoSource(
        f"no source: no protocol that maps {lfn} both at {destination.name} and at any of {names}"
    )


def _name(site: Site) -> str:
    return site.name
