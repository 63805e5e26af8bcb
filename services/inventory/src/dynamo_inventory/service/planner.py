"""Turning a validated command into the events it causes, against the in-memory inventory.

This is the inventory's domain logic: pure (no I/O; the clock and the id counters are passed
in), so every rule is unit-testable. It never changes the model: the caller persists the events
and applies them to memory only after the transaction committed. A command is all or nothing:
the first rule it breaks rejects it whole, with the location of the offending item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from dynamo_common.messages import inventory as inv
from dynamo_common.messages.registry import InventoryCommand as C
from dynamo_common.messages.registry import InventoryEvent as E
from dynamo_common.messages.types import NO_GROUP
from dynamo_common.model.objects import Block, Dataset, Inventory


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    type: E
    data: BaseModel


class CommandRejected(Exception):
    def __init__(self, reason: str, loc: Iterable[str | int] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = [inv.FieldError(loc=list(loc), message=reason)] if loc else []


@dataclass(slots=True)
class IdCounters:
    """Next free integer id per kind. Counters only move forward, so an id handed out to a
    command that later failed is simply never used (gaps in ids are harmless; only event
    sequence numbers must be gap-free)."""

    site: int = 1
    group: int = 1
    dataset: int = 1
    block: int = 1

    @classmethod
    def from_model(cls, model: Inventory) -> IdCounters:
        blocks = (b.id for d in model.datasets.values() for b in d.blocks.values())
        return cls(
            site=max((s.id for s in model.sites.values()), default=0) + 1,
            group=max((g.id for g in model.groups.values()), default=0) + 1,
            dataset=max((d.id for d in model.datasets.values()), default=0) + 1,
            block=max(blocks, default=0) + 1,
        )

    def take(self, kind: str) -> int:
        value: int = getattr(self, kind)
        setattr(self, kind, value + 1)
        return value


@dataclass(slots=True)
class PlanContext:
    model: Inventory
    now: datetime
    ids: IdCounters
    files: Mapping[str, inv.FileState] = field(default_factory=dict)
    """Existing files the command refers to (looked up by the caller: files are not in memory)."""
    check_condition: Callable[[str], str | None] | None = None
    """Returns an error message for an invalid partition condition, None when it is valid."""


def _unique(names: Iterable[str], what: str, section: str) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise CommandRejected(f"duplicate {what} {name!r} in the command", (section, index))
        seen.add(name)


def _unique_replicas(cmd: inv.CreateReplicas | inv.UpdateReplicas | inv.DeleteReplicas) -> None:
    _unique(
        (f"{r.dataset}@{r.site}" for r in cmd.dataset_replicas),
        "dataset replica",
        "dataset_replicas",
    )
    _unique(
        (f"{r.dataset}#{r.block}@{r.site}" for r in cmd.block_replicas),
        "block replica",
        "block_replicas",
    )


def _dataset(ctx: PlanContext, name: str, loc: tuple[str | int, ...]) -> Dataset:
    dataset = ctx.model.datasets.get(name)
    if dataset is None:
        raise CommandRejected(f"unknown dataset {name!r}", loc)
    return dataset


def _block(ctx: PlanContext, dataset: str, name: str, loc: tuple[str | int, ...]) -> Block:
    block = _dataset(ctx, dataset, loc).blocks.get(name)
    if block is None:
        raise CommandRejected(f"unknown block {dataset}#{name}", loc)
    return block


def _site(ctx: PlanContext, name: str, loc: tuple[str | int, ...]) -> None:
    if name not in ctx.model.sites:
        raise CommandRejected(f"unknown site {name!r}", loc)


def _group(ctx: PlanContext, name: str, loc: tuple[str | int, ...]) -> None:
    if name not in ctx.model.groups:
        raise CommandRejected(f"unknown group {name!r}", loc)


# ----------------------------------------------------------------------------------- sites


def _upsert_sites(cmd: inv.UpsertSites, ctx: PlanContext) -> list[PlannedEvent]:
    _unique((s.name for s in cmd.sites), "site", "sites")
    created: list[inv.SiteState] = []
    updated: list[inv.SiteState] = []
    for spec in cmd.sites:
        existing = ctx.model.sites.get(spec.name)
        site_id = existing.id if existing else ctx.ids.take("site")
        state = inv.SiteState(id=site_id, **spec.model_dump())
        if existing is None:
            created.append(state)
        elif _site_differs(existing, state):
            updated.append(state)
    return _events(
        (E.SITE_CREATED, inv.SitesChanged(sites=created)),
        (E.SITE_UPDATED, inv.SitesChanged(sites=updated)),
    )


def _site_differs(site: Any, state: inv.SiteState) -> bool:
    from dynamo_common.model.apply import protocols_tuple

    return bool(
        site.storage_type != state.storage_type
        or site.status != state.status
        or site.host != state.host
        or site.protocols != protocols_tuple(state.protocols)
        or site.quotas != state.quotas
    )


def _upsert_groups(cmd: inv.UpsertGroups, ctx: PlanContext) -> list[PlannedEvent]:
    _unique((g.name for g in cmd.groups), "group", "groups")
    created: list[inv.GroupState] = []
    updated: list[inv.GroupState] = []
    for index, spec in enumerate(cmd.groups):
        if spec.name == NO_GROUP:
            raise CommandRejected(
                f"{NO_GROUP!r} is the reserved name of unowned data", ("groups", index, "name")
            )
        existing = ctx.model.groups.get(spec.name)
        if existing is None:
            created.append(inv.GroupState(id=ctx.ids.take("group"), **spec.model_dump()))
        elif existing.olevel != spec.olevel:
            updated.append(inv.GroupState(id=existing.id, **spec.model_dump()))
    return _events(
        (E.GROUP_CREATED, inv.GroupsChanged(groups=created)),
        (E.GROUP_UPDATED, inv.GroupsChanged(groups=updated)),
    )


# -------------------------------------------------------------------------------- datasets


def _upsert_datasets(cmd: inv.UpsertDatasets, ctx: PlanContext) -> list[PlannedEvent]:
    _unique((d.name for d in cmd.datasets), "dataset", "datasets")
    created: list[inv.DatasetState] = []
    updated: list[inv.DatasetState] = []
    for index, spec in enumerate(cmd.datasets):
        existing = ctx.model.datasets.get(spec.name)
        if existing is None:
            created.append(
                inv.DatasetState(
                    id=ctx.ids.take("dataset"), last_update=ctx.now, **spec.model_dump()
                )
            )
            continue
        if not existing.is_open and spec.is_open:
            raise CommandRejected(
                f"dataset {spec.name!r} is closed and cannot be reopened",
                ("datasets", index, "is_open"),
            )
        if (existing.status, existing.data_type, existing.software_version, existing.is_open) != (
            spec.status,
            spec.data_type,
            spec.software_version,
            spec.is_open,
        ):
            updated.append(
                inv.DatasetState(id=existing.id, last_update=ctx.now, **spec.model_dump())
            )
    return _events(
        (E.DATASET_CREATED, inv.DatasetsChanged(datasets=created)),
        (E.DATASET_UPDATED, inv.DatasetsChanged(datasets=updated)),
    )


def _delete_datasets(cmd: inv.DeleteDatasets, ctx: PlanContext) -> list[PlannedEvent]:
    _unique(cmd.names, "dataset", "names")
    doomed = set(cmd.names)
    for index, name in enumerate(cmd.names):
        dataset = _dataset(ctx, name, ("names", index))
        if dataset.replicas:
            sites = ", ".join(sorted(dataset.replicas))
            raise CommandRejected(
                f"dataset {name!r} still has replicas at {sites}", ("names", index)
            )
    # Containers name their datasets: drop the deleted ones from them in the same change.
    containers = [
        inv.ContainerState(name=c.name, datasets=[d for d in c.datasets if d not in doomed])
        for c in ctx.model.containers.values()
        if any(d in doomed for d in c.datasets)
    ]
    return _events(
        (E.CONTAINER_UPDATED, inv.ContainersChanged(containers=containers)),
        (E.DATASET_DELETED, inv.DatasetsDeleted(names=list(cmd.names))),
    )


# ---------------------------------------------------------------------------------- blocks


def _upsert_blocks(cmd: inv.UpsertBlocks, ctx: PlanContext) -> list[PlannedEvent]:
    _unique((f"{b.dataset}#{b.name}" for b in cmd.blocks), "block", "blocks")
    created: list[inv.BlockState] = []
    updated: list[inv.BlockState] = []
    growing: list[inv.BlockReplicaState] = []
    for index, spec in enumerate(cmd.blocks):
        loc = ("blocks", index)
        dataset = _dataset(ctx, spec.dataset, (*loc, "dataset"))
        existing = dataset.blocks.get(spec.name)
        if existing is None:
            if not dataset.is_open:
                raise CommandRejected(
                    f"dataset {dataset.name!r} is closed: no new blocks can be added", loc
                )
            state = inv.BlockState(
                id=ctx.ids.take("block"),
                dataset=dataset.name,
                name=spec.name,
                size=spec.size or 0,
                num_files=spec.num_files or 0,
                is_open=spec.is_open,
                last_update=ctx.now,
            )
            created.append(state)
            # A growing dataset replica follows its dataset: every new block gets a (still
            # empty) block replica there at once.
            for replica in dataset.replicas.values():
                if replica.growing:
                    growing.append(
                        inv.BlockReplicaState(
                            dataset=dataset.name,
                            block=spec.name,
                            site=replica.site.name,
                            group=replica.group.name,
                            size=0,
                            num_files=0,
                            last_update=ctx.now,
                        )
                    )
            continue
        size = existing.size if spec.size is None else spec.size
        num_files = existing.num_files if spec.num_files is None else spec.num_files
        unchanged = (size, num_files, spec.is_open) == (
            existing.size,
            existing.num_files,
            existing.is_open,
        )
        if unchanged:
            continue
        if not existing.is_open:
            raise CommandRejected(f"block {existing.full_name} is closed and immutable", loc)
        for block_replica in existing.replicas:
            if block_replica.size > size:
                raise CommandRejected(
                    f"block {existing.full_name} cannot shrink below its replica at "
                    f"{block_replica.site.name} ({block_replica.size} bytes)",
                    (*loc, "size"),
                )
        updated.append(
            inv.BlockState(
                id=existing.id,
                dataset=dataset.name,
                name=spec.name,
                size=size,
                num_files=num_files,
                is_open=spec.is_open,
                last_update=ctx.now,
            )
        )
    return _events(
        (E.BLOCK_CREATED, inv.BlocksChanged(blocks=created)),
        (E.BLOCK_UPDATED, inv.BlocksChanged(blocks=updated)),
        (E.REPLICA_CREATED, inv.ReplicasChanged(block_replicas=growing)),
    )


# ----------------------------------------------------------------------------------- files


def _add_files(cmd: inv.AddFiles, ctx: PlanContext) -> list[PlannedEvent]:
    _unique((f.lfn for f in cmd.files), "LFN", "files")
    totals: dict[tuple[str, str], list[int]] = {}
    blocks: dict[tuple[str, str], Block] = {}
    for index, spec in enumerate(cmd.files):
        key = (spec.dataset, spec.block)
        block = blocks.get(key)
        if block is None:
            block = _block(ctx, spec.dataset, spec.block, ("files", index, "block"))
            if not block.is_open:
                raise CommandRejected(
                    f"block {block.full_name} is closed: no files can be added",
                    ("files", index, "block"),
                )
            blocks[key] = block
            totals[key] = [block.size, block.num_files]
        if spec.lfn in ctx.files:
            raise CommandRejected(
                f"file {spec.lfn!r} is already registered", ("files", index, "lfn")
            )
        total = totals[key]
        total[0] += spec.size
        total[1] += 1
    states = [_block_state(blocks[k], size, n, ctx.now) for k, (size, n) in totals.items()]
    files = [inv.FileState(**spec.model_dump()) for spec in cmd.files]
    return [PlannedEvent(E.FILE_ADDED, inv.FilesAdded(files=files, blocks=states))]


def _remove_files(cmd: inv.RemoveFiles, ctx: PlanContext) -> list[PlannedEvent]:
    _unique(cmd.lfns, "LFN", "lfns")
    totals: dict[tuple[str, str], list[int]] = {}
    blocks: dict[tuple[str, str], Block] = {}
    files: list[inv.FileState] = []
    for index, lfn in enumerate(cmd.lfns):
        state = ctx.files.get(lfn)
        if state is None:
            raise CommandRejected(f"unknown file {lfn!r}", ("lfns", index))
        key = (state.dataset, state.block)
        if key not in blocks:
            block = _block(ctx, state.dataset, state.block, ("lfns", index))
            if not block.is_open:
                raise CommandRejected(
                    f"block {block.full_name} is closed: its files cannot be removed",
                    ("lfns", index),
                )
            blocks[key] = block
            totals[key] = [block.size, block.num_files]
        totals[key][0] -= state.size
        totals[key][1] -= 1
        files.append(state)
    states = [_block_state(blocks[k], size, n, ctx.now) for k, (size, n) in totals.items()]
    return [PlannedEvent(E.FILE_REMOVED, inv.FilesRemoved(files=files, blocks=states))]


def _block_state(block: Block, size: int, num_files: int, now: datetime) -> inv.BlockState:
    return inv.BlockState(
        id=block.id,
        dataset=block.dataset.name,
        name=block.name,
        size=size,
        num_files=num_files,
        is_open=block.is_open,
        last_update=now,
    )


# -------------------------------------------------------------------------------- replicas


def _create_replicas(cmd: inv.CreateReplicas, ctx: PlanContext) -> list[PlannedEvent]:
    _unique_replicas(cmd)
    dataset_states: dict[tuple[str, str], inv.DatasetReplicaState] = {}
    block_states: dict[tuple[str, str, str], inv.BlockReplicaState] = {}
    for index, spec in enumerate(cmd.dataset_replicas):
        loc = ("dataset_replicas", index)
        dataset = _dataset(ctx, spec.dataset, (*loc, "dataset"))
        _site(ctx, spec.site, (*loc, "site"))
        _group(ctx, spec.group, (*loc, "group"))
        if spec.site in dataset.replicas:
            raise CommandRejected(
                f"dataset {dataset.name!r} already has a replica at {spec.site}", loc
            )
        dataset_states[(dataset.name, spec.site)] = inv.DatasetReplicaState(
            dataset=dataset.name,
            site=spec.site,
            group=spec.group,
            growing=spec.growing,
            last_update=ctx.now,
        )
        for block in dataset.blocks.values():
            block_states[(dataset.name, block.name, spec.site)] = inv.BlockReplicaState(
                dataset=dataset.name,
                block=block.name,
                site=spec.site,
                group=spec.group,
                is_custodial=spec.is_custodial,
                size=block.size if spec.complete else 0,
                num_files=block.num_files if spec.complete else 0,
                last_update=ctx.now,
            )
    for index, bspec in enumerate(cmd.block_replicas):
        loc = ("block_replicas", index)
        block = _block(ctx, bspec.dataset, bspec.block, (*loc, "block"))
        _site(ctx, bspec.site, (*loc, "site"))
        _group(ctx, bspec.group, (*loc, "group"))
        key = (bspec.dataset, bspec.block, bspec.site)
        if key in block_states or any(r.site.name == bspec.site for r in block.replicas):
            raise CommandRejected(
                f"block {block.full_name} already has a replica at {bspec.site}", loc
            )
        size = block.size if bspec.size is None else bspec.size
        num_files = block.num_files if bspec.num_files is None else bspec.num_files
        _check_replica_fits(block, size, num_files, loc)
        block_states[key] = inv.BlockReplicaState(
            dataset=bspec.dataset,
            block=bspec.block,
            site=bspec.site,
            group=bspec.group,
            is_custodial=bspec.is_custodial,
            size=size,
            num_files=num_files,
            last_update=ctx.now,
        )
        dkey = (bspec.dataset, bspec.site)
        if dkey not in dataset_states and bspec.site not in block.dataset.replicas:
            dataset_states[dkey] = inv.DatasetReplicaState(
                dataset=bspec.dataset,
                site=bspec.site,
                group=bspec.group,
                growing=False,
                last_update=ctx.now,
            )
    return _events(
        (
            E.REPLICA_CREATED,
            inv.ReplicasChanged(
                dataset_replicas=list(dataset_states.values()),
                block_replicas=list(block_states.values()),
            ),
        )
    )


def _check_replica_fits(
    block: Block, size: int, num_files: int, loc: tuple[str | int, ...]
) -> None:
    if size > block.size:
        raise CommandRejected(
            f"replica of {block.full_name} ({size} bytes) is larger than the "
            f"block ({block.size} bytes)",
            (*loc, "size"),
        )
    if num_files > block.num_files:
        raise CommandRejected(
            f"replica of {block.full_name} has more files ({num_files}) than "
            f"the block ({block.num_files})",
            (*loc, "num_files"),
        )


def _update_replicas(cmd: inv.UpdateReplicas, ctx: PlanContext) -> list[PlannedEvent]:
    _unique_replicas(cmd)
    dataset_states: list[inv.DatasetReplicaState] = []
    block_states: dict[tuple[str, str, str], inv.BlockReplicaState] = {}
    for index, spec in enumerate(cmd.dataset_replicas):
        loc = ("dataset_replicas", index)
        dataset = _dataset(ctx, spec.dataset, (*loc, "dataset"))
        replica = dataset.replicas.get(spec.site)
        if replica is None:
            raise CommandRejected(f"dataset {dataset.name!r} has no replica at {spec.site}", loc)
        if spec.group is not None:
            _group(ctx, spec.group, (*loc, "group"))
        group = spec.group or replica.group.name
        dataset_states.append(
            inv.DatasetReplicaState(
                dataset=dataset.name,
                site=spec.site,
                group=group,
                growing=replica.growing if spec.growing is None else spec.growing,
                last_update=ctx.now,
            )
        )
        if spec.group is None and not spec.complete:
            continue
        for block in dataset.blocks.values():
            existing = replica.block_replicas.get(block.name)
            if existing is None and not spec.complete:
                continue
            block_states[(dataset.name, block.name, spec.site)] = inv.BlockReplicaState(
                dataset=dataset.name,
                block=block.name,
                site=spec.site,
                group=group,
                is_custodial=existing.is_custodial if existing else False,
                size=block.size if spec.complete else existing.size if existing else 0,
                num_files=(
                    block.num_files if spec.complete else existing.num_files if existing else 0
                ),
                last_update=ctx.now,
            )
    for index, bspec in enumerate(cmd.block_replicas):
        loc = ("block_replicas", index)
        block = _block(ctx, bspec.dataset, bspec.block, (*loc, "block"))
        current = block_states.get((bspec.dataset, bspec.block, bspec.site))
        existing_br = block.dataset.replicas.get(bspec.site)
        existing = existing_br.block_replicas.get(block.name) if existing_br else None
        if current is None and existing is None:
            raise CommandRejected(f"block {block.full_name} has no replica at {bspec.site}", loc)
        if bspec.group is not None:
            _group(ctx, bspec.group, (*loc, "group"))
        base_group = current.group if current else existing.group.name  # type: ignore[union-attr]
        base_custodial = current.is_custodial if current else existing.is_custodial  # type: ignore[union-attr]
        base_size = current.size if current else existing.size  # type: ignore[union-attr]
        base_files = current.num_files if current else existing.num_files  # type: ignore[union-attr]
        size = block.size if bspec.complete else (base_size if bspec.size is None else bspec.size)
        num_files = (
            block.num_files
            if bspec.complete
            else (base_files if bspec.num_files is None else bspec.num_files)
        )
        _check_replica_fits(block, size, num_files, loc)
        block_states[(bspec.dataset, bspec.block, bspec.site)] = inv.BlockReplicaState(
            dataset=bspec.dataset,
            block=bspec.block,
            site=bspec.site,
            group=bspec.group or base_group,
            is_custodial=base_custodial if bspec.is_custodial is None else bspec.is_custodial,
            size=size,
            num_files=num_files,
            last_update=ctx.now,
        )
    return _events(
        (
            E.REPLICA_UPDATED,
            inv.ReplicasChanged(
                dataset_replicas=dataset_states, block_replicas=list(block_states.values())
            ),
        )
    )


def _delete_replicas(cmd: inv.DeleteReplicas, ctx: PlanContext) -> list[PlannedEvent]:
    _unique_replicas(cmd)
    whole: list[inv.DatasetReplicaKey] = []
    whole_keys: set[tuple[str, str]] = set()
    for index, key in enumerate(cmd.dataset_replicas):
        dataset = _dataset(ctx, key.dataset, ("dataset_replicas", index, "dataset"))
        if key.site not in dataset.replicas:
            raise CommandRejected(
                f"dataset {dataset.name!r} has no replica at {key.site}",
                ("dataset_replicas", index),
            )
        whole.append(key)
        whole_keys.add((key.dataset, key.site))
    single: list[inv.BlockReplicaKey] = []
    removed: dict[tuple[str, str], int] = {}
    for index, bkey in enumerate(cmd.block_replicas):
        block = _block(ctx, bkey.dataset, bkey.block, ("block_replicas", index, "block"))
        site = ctx.model.sites.get(bkey.site)
        if site is None or block.replica_at(site) is None:
            raise CommandRejected(
                f"block {block.full_name} has no replica at {bkey.site}", ("block_replicas", index)
            )
        if (bkey.dataset, bkey.site) in whole_keys:
            continue
        single.append(bkey)
        removed[(bkey.dataset, bkey.site)] = removed.get((bkey.dataset, bkey.site), 0) + 1
    # A dataset replica that loses its last block replica goes with it.
    for (dataset_name, site_name), count in removed.items():
        replica = ctx.model.datasets[dataset_name].replicas[site_name]
        if count == len(replica.block_replicas):
            whole.append(inv.DatasetReplicaKey(dataset=dataset_name, site=site_name))
    return _events(
        (E.REPLICA_DELETED, inv.ReplicasDeleted(dataset_replicas=whole, block_replicas=single))
    )


# ----------------------------------------------------------------- containers, partitions


def _upsert_containers(cmd: inv.UpsertContainers, ctx: PlanContext) -> list[PlannedEvent]:
    _unique((c.name for c in cmd.containers), "container", "containers")
    states: list[inv.ContainerState] = []
    for index, spec in enumerate(cmd.containers):
        _unique(spec.datasets, "dataset", f"containers[{index}].datasets")
        for position, name in enumerate(spec.datasets):
            _dataset(ctx, name, ("containers", index, "datasets", position))
        existing = ctx.model.containers.get(spec.name)
        if existing is None or existing.datasets != tuple(spec.datasets):
            states.append(inv.ContainerState(name=spec.name, datasets=list(spec.datasets)))
    return _events((E.CONTAINER_UPDATED, inv.ContainersChanged(containers=states)))


def _delete_containers(cmd: inv.DeleteContainers, ctx: PlanContext) -> list[PlannedEvent]:
    _unique(cmd.names, "container", "names")
    for index, name in enumerate(cmd.names):
        if name not in ctx.model.containers:
            raise CommandRejected(f"unknown container {name!r}", ("names", index))
    return _events((E.CONTAINER_DELETED, inv.ContainersDeleted(names=list(cmd.names))))


def _upsert_partitions(cmd: inv.UpsertPartitions, ctx: PlanContext) -> list[PlannedEvent]:
    _unique((p.name for p in cmd.partitions), "partition", "partitions")
    known = set(ctx.model.partitions) | {p.name for p in cmd.partitions}
    states: list[inv.PartitionState] = []
    for index, spec in enumerate(cmd.partitions):
        for position, member in enumerate(spec.subpartitions):
            if member not in known:
                raise CommandRejected(
                    f"unknown partition {member!r} in the union of {spec.name!r}",
                    ("partitions", index, "subpartitions", position),
                )
            if member == spec.name:
                raise CommandRejected(
                    f"partition {spec.name!r} cannot contain itself",
                    ("partitions", index, "subpartitions", position),
                )
        if spec.condition is not None and ctx.check_condition is not None:
            problem = ctx.check_condition(spec.condition)
            if problem:
                raise CommandRejected(
                    f"partition {spec.name!r}: {problem}", ("partitions", index, "condition")
                )
        states.append(spec)
    return _events((E.PARTITION_UPDATED, inv.PartitionsChanged(partitions=states)))


def _delete_partitions(cmd: inv.DeletePartitions, ctx: PlanContext) -> list[PlannedEvent]:
    _unique(cmd.names, "partition", "names")
    doomed = set(cmd.names)
    for index, name in enumerate(cmd.names):
        if name not in ctx.model.partitions:
            raise CommandRejected(f"unknown partition {name!r}", ("names", index))
    for partition in ctx.model.partitions.values():
        if partition.name not in doomed and doomed.intersection(partition.subpartitions):
            raise CommandRejected(
                f"partition {partition.name!r} is a union that still uses "
                f"{sorted(doomed.intersection(partition.subpartitions))}"
            )
    return _events((E.PARTITION_DELETED, inv.PartitionsDeleted(names=list(cmd.names))))


# ---------------------------------------------------------------------------------- entry


def _events(*pairs: tuple[E, BaseModel]) -> list[PlannedEvent]:
    """Keep only events that carry something: an unchanged upsert produces no event."""
    return [
        PlannedEvent(t, d) for t, d in pairs if any(getattr(d, f) for f in type(d).model_fields)
    ]


_PLANNERS: dict[str, Callable[[Any, PlanContext], list[PlannedEvent]]] = {
    C.UPSERT_SITES: _upsert_sites,
    C.UPSERT_GROUPS: _upsert_groups,
    C.UPSERT_DATASETS: _upsert_datasets,
    C.DELETE_DATASETS: _delete_datasets,
    C.UPSERT_BLOCKS: _upsert_blocks,
    C.ADD_FILES: _add_files,
    C.REMOVE_FILES: _remove_files,
    C.CREATE_REPLICAS: _create_replicas,
    C.UPDATE_REPLICAS: _update_replicas,
    C.DELETE_REPLICAS: _delete_replicas,
    C.UPSERT_CONTAINERS: _upsert_containers,
    C.DELETE_CONTAINERS: _delete_containers,
    C.UPSERT_PARTITIONS: _upsert_partitions,
    C.DELETE_PARTITIONS: _delete_partitions,
}


def plan(command_type: str, command: BaseModel, ctx: PlanContext) -> list[PlannedEvent]:
    """The events ``command`` causes, or ``CommandRejected`` with the reason."""
    try:
        planner = _PLANNERS[command_type]
    except KeyError:
        raise CommandRejected(f"unknown command type {command_type!r}") from None
    return planner(command, ctx)


def lfns_referenced(command_type: str, command: BaseModel) -> list[str]:
    """LFNs whose current registration the planner needs (files are not held in memory)."""
    if isinstance(command, inv.AddFiles):
        return [f.lfn for f in command.files]
    if isinstance(command, inv.RemoveFiles):
        return list(command.lfns)
    return []
