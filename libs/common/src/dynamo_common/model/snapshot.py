"""The inventory snapshot as NDJSON: a header line, then one record per object.

Each record is the JSON of the matching ``*State`` contract plus a ``kind`` field, so an outside
consumer can validate it against the exported schemas. Records come in dependency order (sites,
groups, datasets, blocks, replicas, partitions, containers) so a reader can build the model in
one pass. Readers here build objects directly instead of through pydantic, because a follower's
cold start is dominated by that step and the inventory is the only writer of these files.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from dynamo_common.messages.types import DatasetStatus, OwnershipLevel, SiteStatus, StorageType
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

FORMAT_VERSION = 1


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def iter_records(model: Inventory) -> Iterator[dict[str, Any]]:
    yield {"kind": "header", "format": FORMAT_VERSION, "seq": model.seq, "counts": model.counts()}
    for site in model.sites.values():
        yield {
            "kind": "site",
            "id": site.id,
            "name": site.name,
            "storage_type": site.storage_type.value,
            "status": site.status.value,
            "host": site.host,
            "protocols": [
                {"name": name, "rules": [{"match": m, "result": r} for m, r in rules]}
                for name, rules in site.protocols
            ],
            "quotas": site.quotas,
        }
    for group in model.groups.values():
        if group.id:
            yield {
                "kind": "group",
                "id": group.id,
                "name": group.name,
                "olevel": group.olevel.value,
            }
    datasets = model.datasets.values()
    for d in datasets:
        yield {
            "kind": "dataset",
            "id": d.id,
            "name": d.name,
            "status": d.status.value,
            "data_type": d.data_type,
            "software_version": d.software_version,
            "is_open": d.is_open,
            "last_update": _iso(d.last_update),
        }
    for d in datasets:
        for b in d.blocks.values():
            yield {
                "kind": "block",
                "id": b.id,
                "dataset": d.name,
                "name": b.name,
                "size": b.size,
                "num_files": b.num_files,
                "is_open": b.is_open,
                "last_update": _iso(b.last_update),
            }
    for d in datasets:
        for dr in d.replicas.values():
            yield {
                "kind": "dataset_replica",
                "dataset": d.name,
                "site": dr.site.name,
                "group": dr.group.name,
                "growing": dr.growing,
                "last_update": _iso(dr.last_update),
            }
            for br in dr.block_replicas.values():
                yield {
                    "kind": "block_replica",
                    "dataset": d.name,
                    "block": br.block.name,
                    "site": dr.site.name,
                    "group": br.group.name,
                    "is_custodial": br.is_custodial,
                    "size": br.size,
                    "num_files": br.num_files,
                    "last_update": _iso(br.last_update),
                }
    for p in model.partitions.values():
        yield {
            "kind": "partition",
            "name": p.name,
            "condition": p.condition,
            "subpartitions": list(p.subpartitions),
            "description": p.description,
        }
    for c in model.containers.values():
        yield {"kind": "container", "name": c.name, "datasets": list(c.datasets)}


def dump_lines(model: Inventory) -> Iterator[bytes]:
    for record in iter_records(model):
        yield orjson.dumps(record) + b"\n"


class SnapshotError(Exception):
    pass


def load_lines(lines: Iterable[bytes | str]) -> Inventory:
    """Build an inventory from snapshot lines (the header first)."""
    # As in the inventory's own cold start: the collector would rescan the growing model over
    # and over, and the model lives as long as the process.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _load_lines(lines)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _load_lines(lines: Iterable[bytes | str]) -> Inventory:
    model = Inventory()
    header_seen = False
    for raw in lines:
        if not raw or raw in (b"\n", "\n"):
            continue
        rec = orjson.loads(raw)
        kind = rec["kind"]
        if not header_seen:
            if kind != "header":
                raise SnapshotError("snapshot does not start with a header line")
            if rec.get("format") != FORMAT_VERSION:
                raise SnapshotError(f"unsupported snapshot format {rec.get('format')!r}")
            model.seq = int(rec["seq"])
            header_seen = True
            continue
        _LOADERS[kind](model, rec)
    if not header_seen:
        raise SnapshotError("empty snapshot")
    return model


def _load_site(model: Inventory, r: dict[str, Any]) -> None:
    protocols = tuple(
        (p["name"], tuple((rule["match"], rule["result"]) for rule in p["rules"]))
        for p in r["protocols"]
    )
    model.sites[r["name"]] = Site(
        r["id"],
        r["name"],
        StorageType(r["storage_type"]),
        SiteStatus(r["status"]),
        r["host"],
        protocols,
        dict(r["quotas"]),
    )


def _load_group(model: Inventory, r: dict[str, Any]) -> None:
    model.groups[r["name"]] = Group(r["id"], r["name"], OwnershipLevel(r["olevel"]))


_STATUS = {s.value: s for s in DatasetStatus}


def _load_dataset(model: Inventory, r: dict[str, Any]) -> None:
    model.datasets[r["name"]] = Dataset(
        r["id"],
        r["name"],
        _STATUS[r["status"]],
        r["data_type"],
        r["software_version"],
        r["is_open"],
        _ts(r["last_update"]),
    )


def _load_block(model: Inventory, r: dict[str, Any]) -> None:
    dataset = model.datasets[r["dataset"]]
    block = Block(
        r["id"], dataset, r["name"], r["size"], r["num_files"], r["is_open"], _ts(r["last_update"])
    )
    dataset.blocks[block.name] = block
    dataset.size += block.size
    dataset.num_files += block.num_files


def _load_dataset_replica(model: Inventory, r: dict[str, Any]) -> None:
    dataset = model.datasets[r["dataset"]]
    site = model.sites[r["site"]]
    replica = DatasetReplica(
        dataset, site, model.groups[r["group"]], r["growing"], _ts(r["last_update"])
    )
    dataset.replicas[site.name] = replica
    site.dataset_replicas[dataset.name] = replica


def _load_block_replica(model: Inventory, r: dict[str, Any]) -> None:
    dataset = model.datasets[r["dataset"]]
    block = dataset.blocks[r["block"]]
    site = model.sites[r["site"]]
    replica = BlockReplica(
        block,
        site,
        model.groups[r["group"]],
        r["is_custodial"],
        r["size"],
        r["num_files"],
        _ts(r["last_update"]),
    )
    dataset.replicas[site.name].block_replicas[block.name] = replica
    block.replicas.append(replica)


def _load_partition(model: Inventory, r: dict[str, Any]) -> None:
    model.partitions[r["name"]] = Partition(
        r["name"], r["condition"], tuple(r["subpartitions"]), r["description"]
    )


def _load_container(model: Inventory, r: dict[str, Any]) -> None:
    model.containers[r["name"]] = Container(r["name"], tuple(r["datasets"]))


_LOADERS = {
    "site": _load_site,
    "group": _load_group,
    "dataset": _load_dataset,
    "block": _load_block,
    "dataset_replica": _load_dataset_replica,
    "block_replica": _load_block_replica,
    "partition": _load_partition,
    "container": _load_container,
}
