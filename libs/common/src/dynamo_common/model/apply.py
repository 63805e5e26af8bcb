"""Applying inventory events to an in-memory ``Inventory``.

The inventory service applies its own events to its memory with this module after each commit,
and every follower applies the same events with the same code: the two cannot drift apart.
Every function is an idempotent upsert or removal, so a replayed event changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from dynamo_common.messages import inventory as inv
from dynamo_common.messages.registry import InventoryEvent, event_model
from dynamo_common.messages.types import NO_GROUP
from dynamo_common.model.objects import (
    Block,
    BlockReplica,
    Container,
    Dataset,
    DatasetReplica,
    Group,
    Inventory,
    Partition,
    Site,
)


class ApplyError(Exception):
    """The event refers to something this inventory does not hold: the follower is out of
    step and must resynchronise."""


def _ts(value: datetime) -> float:
    return value.timestamp()


def protocols_tuple(
    protocols: list[inv.Protocol],
) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    return tuple((p.name, tuple((r.match, r.result) for r in p.rules)) for p in protocols)


def _sites(model: Inventory, data: inv.SitesChanged) -> None:
    for state in data.sites:
        site = model.sites.get(state.name)
        protocols = protocols_tuple(state.protocols)
        if site is None:
            model.sites[state.name] = Site(
                state.id,
                state.name,
                state.storage_type,
                state.status,
                state.host,
                protocols,
                dict(state.quotas),
            )
        else:
            site.storage_type = state.storage_type
            site.status = state.status
            site.host = state.host
            site.protocols = protocols
            site.quotas = dict(state.quotas)


def _groups(model: Inventory, data: inv.GroupsChanged) -> None:
    for state in data.groups:
        group = model.groups.get(state.name)
        if group is None:
            model.groups[state.name] = Group(state.id, state.name, state.olevel)
        else:
            group.olevel = state.olevel


def _datasets(model: Inventory, data: inv.DatasetsChanged) -> None:
    for state in data.datasets:
        dataset = model.datasets.get(state.name)
        if dataset is None:
            model.datasets[state.name] = Dataset(
                state.id,
                state.name,
                state.status,
                state.data_type,
                state.software_version,
                state.is_open,
                _ts(state.last_update),
            )
        else:
            dataset.status = state.status
            dataset.data_type = state.data_type
            dataset.software_version = state.software_version
            dataset.is_open = state.is_open
            dataset.last_update = _ts(state.last_update)


def _datasets_deleted(model: Inventory, data: inv.DatasetsDeleted) -> None:
    for name in data.names:
        dataset = model.datasets.pop(name, None)
        if dataset is None:
            continue
        for replica in dataset.replicas.values():
            replica.site.dataset_replicas.pop(name, None)


def _dataset(model: Inventory, name: str) -> Dataset:
    dataset = model.datasets.get(name)
    if dataset is None:
        raise ApplyError(f"unknown dataset {name!r}")
    return dataset


def _site(model: Inventory, name: str) -> Site:
    site = model.sites.get(name)
    if site is None:
        raise ApplyError(f"unknown site {name!r}")
    return site


def _group(model: Inventory, name: str) -> Group:
    group = model.groups.get(name)
    if group is None:
        raise ApplyError(f"unknown group {name!r}")
    return group


def _block(model: Inventory, dataset: str, name: str) -> Block:
    block = _dataset(model, dataset).blocks.get(name)
    if block is None:
        raise ApplyError(f"unknown block {dataset}#{name}")
    return block


def upsert_block(model: Inventory, state: inv.BlockState) -> None:
    dataset = _dataset(model, state.dataset)
    block = dataset.blocks.get(state.name)
    if block is None:
        block = Block(
            state.id,
            dataset,
            state.name,
            state.size,
            state.num_files,
            state.is_open,
            _ts(state.last_update),
        )
        dataset.blocks[state.name] = block
        dataset.size += state.size
        dataset.num_files += state.num_files
    else:
        dataset.size += state.size - block.size
        dataset.num_files += state.num_files - block.num_files
        block.size = state.size
        block.num_files = state.num_files
        block.is_open = state.is_open
        block.last_update = _ts(state.last_update)


def _blocks(model: Inventory, data: inv.BlocksChanged) -> None:
    for state in data.blocks:
        upsert_block(model, state)


def _files(model: Inventory, data: inv.FilesAdded | inv.FilesRemoved) -> None:
    # Files are not held in memory; only the block totals they change are.
    for state in data.blocks:
        upsert_block(model, state)


def _dataset_replica(
    model: Inventory, dataset_name: str, site_name: str, group_name: str, growing: bool, ts: float
) -> None:
    dataset = _dataset(model, dataset_name)
    site = _site(model, site_name)
    replica = dataset.replicas.get(site.name)
    group = _group(model, group_name)
    if replica is None:
        replica = DatasetReplica(dataset, site, group, growing, ts)
        dataset.replicas[site.name] = replica
        site.dataset_replicas[dataset.name] = replica
    else:
        replica.group = group
        replica.growing = growing
        replica.last_update = ts


def _block_replica(
    model: Inventory,
    dataset_name: str,
    block_name: str,
    site_name: str,
    group_name: str,
    is_custodial: bool,
    size: int,
    num_files: int,
    ts: float,
) -> None:
    block = _block(model, dataset_name, block_name)
    dataset = block.dataset
    site = _site(model, site_name)
    group = _group(model, group_name)
    dataset_replica = dataset.replicas.get(site.name)
    if dataset_replica is None:
        dataset_replica = DatasetReplica(dataset, site, group, False, ts)
        dataset.replicas[site.name] = dataset_replica
        site.dataset_replicas[dataset.name] = dataset_replica
    replica = dataset_replica.block_replicas.get(block.name)
    if replica is None:
        replica = BlockReplica(block, site, group, is_custodial, size, num_files, ts)
        dataset_replica.block_replicas[block.name] = replica
        block.replicas.append(replica)
    else:
        replica.group = group
        replica.is_custodial = is_custodial
        replica.size = size
        replica.num_files = num_files
        replica.last_update = ts


def _replicas(model: Inventory, data: inv.ReplicasChanged) -> None:
    for dr in data.dataset_replicas:
        _dataset_replica(model, dr.dataset, dr.site, dr.group, dr.growing, _ts(dr.last_update))
    for br in data.block_replicas:
        _block_replica(
            model,
            br.dataset,
            br.block,
            br.site,
            br.group,
            br.is_custodial,
            br.size,
            br.num_files,
            _ts(br.last_update),
        )


def _replicas_json(model: Inventory, data: dict[str, Any]) -> None:
    """Replica events are most of the stream a follower applies: taking them straight from the
    JSON dict (the writer validated them against the contract before publishing) roughly
    halves a follower's cost per event. A malformed one raises, and the follower resyncs."""
    for dr in data.get("dataset_replicas", ()):
        _dataset_replica(
            model,
            dr["dataset"],
            dr["site"],
            dr.get("group", NO_GROUP),
            bool(dr.get("growing", False)),
            _iso_ts(dr["last_update"]),
        )
    for br in data.get("block_replicas", ()):
        _block_replica(
            model,
            br["dataset"],
            br["block"],
            br["site"],
            br.get("group", NO_GROUP),
            bool(br.get("is_custodial", False)),
            int(br.get("size", 0)),
            int(br.get("num_files", 0)),
            _iso_ts(br["last_update"]),
        )


def _iso_ts(value: str) -> float:
    # pydantic writes UTC as a trailing "Z", which fromisoformat accepts from Python 3.11 on.
    return datetime.fromisoformat(value).timestamp()


def _remove_block_replica(dataset_replica: DatasetReplica, block_name: str) -> None:
    replica = dataset_replica.block_replicas.pop(block_name, None)
    if replica is not None:
        replica.block.replicas.remove(replica)


def _replicas_deleted(model: Inventory, data: inv.ReplicasDeleted) -> None:
    for brk in data.block_replicas:
        dataset = model.datasets.get(brk.dataset)
        dataset_replica = dataset.replicas.get(brk.site) if dataset else None
        if dataset_replica is not None:
            _remove_block_replica(dataset_replica, brk.block)
    for drk in data.dataset_replicas:
        dataset = model.datasets.get(drk.dataset)
        if dataset is None:
            continue
        dataset_replica = dataset.replicas.pop(drk.site, None)
        if dataset_replica is None:
            continue
        for block_name in list(dataset_replica.block_replicas):
            _remove_block_replica(dataset_replica, block_name)
        dataset_replica.site.dataset_replicas.pop(dataset.name, None)


def _containers(model: Inventory, data: inv.ContainersChanged) -> None:
    for state in data.containers:
        model.containers[state.name] = Container(state.name, tuple(state.datasets))


def _containers_deleted(model: Inventory, data: inv.ContainersDeleted) -> None:
    for name in data.names:
        model.containers.pop(name, None)


def _partitions(model: Inventory, data: inv.PartitionsChanged) -> None:
    for state in data.partitions:
        model.partitions[state.name] = Partition(
            state.name, state.condition, tuple(state.subpartitions), state.description
        )


def _partitions_deleted(model: Inventory, data: inv.PartitionsDeleted) -> None:
    for name in data.names:
        model.partitions.pop(name, None)


_APPLIERS: dict[str, Callable[[Inventory, Any], None]] = {
    InventoryEvent.SITE_CREATED: _sites,
    InventoryEvent.SITE_UPDATED: _sites,
    InventoryEvent.GROUP_CREATED: _groups,
    InventoryEvent.GROUP_UPDATED: _groups,
    InventoryEvent.DATASET_CREATED: _datasets,
    InventoryEvent.DATASET_UPDATED: _datasets,
    InventoryEvent.DATASET_DELETED: _datasets_deleted,
    InventoryEvent.BLOCK_CREATED: _blocks,
    InventoryEvent.BLOCK_UPDATED: _blocks,
    InventoryEvent.FILE_ADDED: _files,
    InventoryEvent.FILE_REMOVED: _files,
    InventoryEvent.REPLICA_CREATED: _replicas,
    InventoryEvent.REPLICA_UPDATED: _replicas,
    InventoryEvent.REPLICA_DELETED: _replicas_deleted,
    InventoryEvent.CONTAINER_UPDATED: _containers,
    InventoryEvent.CONTAINER_DELETED: _containers_deleted,
    InventoryEvent.PARTITION_UPDATED: _partitions,
    InventoryEvent.PARTITION_DELETED: _partitions_deleted,
}


_JSON_APPLIERS: dict[str, Callable[[Inventory, dict[str, Any]], None]] = {
    InventoryEvent.REPLICA_CREATED: _replicas_json,
    InventoryEvent.REPLICA_UPDATED: _replicas_json,
}


def apply_event(model: Inventory, event_type: str, data: BaseModel | dict[str, Any]) -> None:
    """Apply one event's data (a contract model, or its JSON dict) without touching ``seq``."""
    if isinstance(data, dict):
        from_json = _JSON_APPLIERS.get(event_type)
        if from_json is not None:
            try:
                from_json(model, data)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ApplyError(f"malformed {event_type} event: {exc!r}") from exc
            return
        data = event_model(event_type).model_validate(data)
    _APPLIERS[event_type](model, data)


def apply_sequenced(
    model: Inventory, seq: int, event_type: str, data: BaseModel | dict[str, Any]
) -> bool:
    """Apply the event numbered ``seq`` if it is the next one. Returns False for an event
    already applied (a duplicate); raises ``SequenceGap`` when events are missing."""
    if seq <= model.seq:
        return False
    if seq != model.seq + 1:
        raise SequenceGap(expected=model.seq + 1, got=seq)
    apply_event(model, event_type, data)
    model.seq = seq
    return True


class SequenceGap(Exception):
    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"sequence gap: expected {expected}, got {got}")
        self.expected = expected
        self.got = got
