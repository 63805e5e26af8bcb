"""The three ways out of a ``Grid``: inventory commands, plain rows, an in-memory inventory."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

from pydantic import BaseModel

from dynamo_common.gridgen.grid import Grid
from dynamo_common.messages import inventory as inv
from dynamo_common.messages.registry import InventoryCommand
from dynamo_common.messages.types import NO_GROUP
from dynamo_common.model.objects import (
    Block,
    BlockReplica,
    Dataset,
    DatasetReplica,
    Group,
    Inventory,
    Site,
)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

_SMALL_MAX = 1000
"""Largest list of UpsertSites and UpsertGroups."""


class _Make(Protocol):
    def __call__(self, cls: type[M], /, **fields: Any) -> M: ...


def _validated(cls: type[M], /, **fields: Any) -> M:
    return cls(**fields)


_MISSING = object()
_TEMPLATES: dict[type[BaseModel], tuple[dict[str, Any], tuple[tuple[str, Any], ...]]] = {}
_set = object.__setattr__


def _template(cls: type[BaseModel]) -> tuple[dict[str, Any], tuple[tuple[str, Any], ...]]:
    template: dict[str, Any] = {}
    factories = []
    for name, info in cls.model_fields.items():
        if info.default_factory is not None:
            template[name] = _MISSING
            factories.append((name, info.default_factory))
        elif info.is_required():
            template[name] = _MISSING
        else:
            template[name] = info.default
    _TEMPLATES[cls] = template, tuple(factories)
    return template, tuple(factories)


def _trusted(cls: type[M], /, **fields: Any) -> M:
    """What ``cls.model_construct(**fields)`` builds, three times faster: a benchmark streams
    millions of these. The tests check the result equals the validated model."""
    template, factories = _TEMPLATES.get(cls) or _template(cls)
    values = dict(template)
    values.update(fields)  # keeps the fields' declaration order, as validation would
    for name, factory in factories:
        if values[name] is _MISSING:
            values[name] = factory()
    return _assemble(cls, values, set(fields))


def _assemble(cls: type[M], values: dict[str, Any], fields_set: set[str]) -> M:
    # The same four attributes BaseModel.model_construct sets.
    model = cls.__new__(cls)
    _set(model, "__dict__", values)
    _set(model, "__pydantic_fields_set__", fields_set)
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model


_FILE_FIELDS = ("dataset", "block", "lfn", "size", "adler32")


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def commands(
    grid: Grid,
    batch: int = 1000,
    *,
    include_files: bool = True,
    validate: bool = True,
) -> Iterator[tuple[str, BaseModel]]:
    """The commands that build ``grid`` in an empty inventory, as (routing key, contract).

    Order: UpsertGroups, UpsertSites, UpsertDatasets (all open), UpsertBlocks (all open),
    AddFiles, UpsertBlocks closing the closed blocks, UpsertDatasets closing the closed
    datasets, CreateReplicas. Every command holds at most ``batch`` items (sites and groups at
    most 1000). Nothing refers to an object an earlier command has not created.

    With ``include_files=False`` no AddFiles are sent and blocks are declared with their size
    and file count directly, as a large-scale benchmark wants. A dataset replica that holds
    all its blocks in full is sent as a DatasetReplicaSpec (``complete=True``,
    ``growing=False``), any other as its block replicas with explicit ``size`` and
    ``num_files``, the inventory creating the dataset replica with the first of them; a
    DatasetReplicaSpec counts as its number of blocks towards ``batch``.

    ``validate=False`` builds the same contracts without validating them (as
    ``model_construct`` would, only faster), for benchmarks that trust the generator.
    """
    if not 1 <= batch <= inv.MAX_BATCH:
        raise ValueError(f"batch must be between 1 and {inv.MAX_BATCH}")
    make: _Make = _validated if validate else _trusted
    small = min(batch, _SMALL_MAX)

    for groups in _chunks(grid.groups, small):
        yield (
            InventoryCommand.UPSERT_GROUPS.value,
            make(
                inv.UpsertGroups,
                groups=[make(inv.GroupSpec, name=g.name, olevel=g.olevel) for g in groups],
            ),
        )
    for sites in _chunks(grid.sites, small):
        specs = [
            make(
                inv.SiteSpec,
                name=s.name,
                storage_type=s.storage_type,
                status=s.status,
                host=s.host,
                protocols=[
                    make(
                        inv.Protocol,
                        name=proto,
                        rules=[make(inv.PfnRule, match=m, result=r) for m, r in rules],
                    )
                    for proto, rules in s.protocols
                ],
                quotas=dict(s.quotas),
            )
            for s in sites
        ]
        yield InventoryCommand.UPSERT_SITES.value, make(inv.UpsertSites, sites=specs)

    datasets = grid.datasets

    def dataset_specs(closing: bool) -> Iterator[inv.DatasetSpec]:
        for d in datasets:
            if closing and d.is_open:
                continue
            yield make(
                inv.DatasetSpec,
                name=d.name,
                status=d.status,
                data_type=d.data_type,
                software_version=d.software_version,
                is_open=not closing,
            )

    yield from _batched(
        InventoryCommand.UPSERT_DATASETS,
        inv.UpsertDatasets,
        "datasets",
        dataset_specs(False),
        batch,
        make,
    )

    blocks = grid.blocks

    def block_specs(closing: bool) -> Iterator[inv.BlockSpec]:
        b_dataset, b_name, b_size = blocks.dataset, blocks.name, blocks.size
        b_files, b_open = blocks.num_files, blocks.is_open
        declare = closing or not include_files
        for b in range(len(blocks)):
            if closing and b_open[b]:
                continue
            yield make(
                inv.BlockSpec,
                dataset=datasets[b_dataset[b]].name,
                name=b_name[b],
                size=b_size[b] if declare else 0,
                num_files=b_files[b] if declare else 0,
                is_open=not closing,
            )

    yield from _batched(
        InventoryCommand.UPSERT_BLOCKS,
        inv.UpsertBlocks,
        "blocks",
        block_specs(False),
        batch,
        make,
    )

    if include_files:

        def file_specs() -> Iterator[inv.FileSpec]:
            spec = inv.FileSpec
            for b in range(len(blocks)):
                dataset = datasets[blocks.dataset[b]].name
                block = blocks.name[b]
                for lfn, size, adler32 in grid.block_files(b):
                    if validate:
                        yield spec(
                            dataset=dataset, block=block, lfn=lfn, size=size, adler32=adler32
                        )
                    else:
                        # Files are most of a large grid: skip even _trusted's generality.
                        yield _assemble(
                            spec,
                            {
                                "dataset": dataset,
                                "block": block,
                                "lfn": lfn,
                                "size": size,
                                "adler32": adler32,
                                "crc32": None,
                            },
                            set(_FILE_FIELDS),
                        )

        yield from _batched(
            InventoryCommand.ADD_FILES, inv.AddFiles, "files", file_specs(), batch, make
        )

    yield from _batched(
        InventoryCommand.UPSERT_BLOCKS,
        inv.UpsertBlocks,
        "blocks",
        block_specs(True),
        batch,
        make,
    )
    yield from _batched(
        InventoryCommand.UPSERT_DATASETS,
        inv.UpsertDatasets,
        "datasets",
        dataset_specs(True),
        batch,
        make,
    )
    yield from _replica_commands(grid, batch, make)


def _batched(
    key: InventoryCommand,
    cls: type[BaseModel],
    field: str,
    items: Iterator[BaseModel],
    batch: int,
    make: _Make,
) -> Iterator[tuple[str, BaseModel]]:
    chunk: list[BaseModel] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == batch:
            yield key.value, make(cls, **{field: chunk})
            chunk = []
    if chunk:
        yield key.value, make(cls, **{field: chunk})


def _replica_commands(grid: Grid, batch: int, make: _Make) -> Iterator[tuple[str, BaseModel]]:
    """CreateReplicas for every dataset replica of the grid.

    A DatasetReplicaSpec makes the inventory create a block replica of *every* block of the
    dataset (empty, or full with ``complete``), and a block replica named beside it would be a
    duplicate. So a dataset replica that holds every block in full is sent as one
    DatasetReplicaSpec(complete=True, growing=False); any other is sent as its block replicas
    with explicit size and file count, and the inventory creates the dataset replica with the
    first of them (growing=False, the block replica's group, which is the dataset replica's).
    A DatasetReplicaSpec counts as its number of blocks towards ``batch``, which bounds the
    work and the event size of one command.
    """
    datasets, blocks, sites = grid.datasets, grid.blocks, grid.sites
    brs = grid.block_replicas
    b_size, b_files, b_name = blocks.size, blocks.num_files, blocks.name
    r_block, r_size, r_files, r_custodial = brs.block, brs.size, brs.num_files, brs.is_custodial
    dataset_replicas: list[inv.DatasetReplicaSpec] = []
    block_replicas: list[inv.BlockReplicaSpec] = []
    load = 0

    def flush() -> tuple[str, BaseModel]:
        nonlocal dataset_replicas, block_replicas, load
        command = make(
            inv.CreateReplicas, dataset_replicas=dataset_replicas, block_replicas=block_replicas
        )
        dataset_replicas, block_replicas, load = [], [], 0
        return InventoryCommand.CREATE_REPLICAS.value, command

    for dr in grid.dataset_replicas:
        dataset = datasets[dr.dataset]
        site = sites[dr.site].name
        group = grid.group_name(dr.group)
        members = dr.block_replicas
        whole = (
            len(members) == dataset.num_blocks <= batch
            and all(r_files[i] == b_files[r_block[i]] for i in members)
            and all(r_size[i] == b_size[r_block[i]] for i in members)
        )
        if whole:
            if load + len(members) > batch:
                yield flush()
            dataset_replicas.append(
                make(
                    inv.DatasetReplicaSpec,
                    dataset=dataset.name,
                    site=site,
                    group=group,
                    growing=dr.growing,
                    complete=True,
                    is_custodial=dr.is_custodial,
                )
            )
            load += len(members)
            continue
        for i in members:
            if load == batch:
                yield flush()
            block_replicas.append(
                make(
                    inv.BlockReplicaSpec,
                    dataset=dataset.name,
                    block=b_name[r_block[i]],
                    site=site,
                    group=group,
                    is_custodial=bool(r_custodial[i]),
                    size=r_size[i],
                    num_files=r_files[i],
                )
            )
            load += 1
    if dataset_replicas or block_replicas:
        yield flush()


# ---------------------------------------------------------------------------------------------
# Rows for bulk loaders
# ---------------------------------------------------------------------------------------------

SiteRow = tuple[int, str, str, str, str]
SiteRuleRow = tuple[int, str, int, str, str]
SiteQuotaRow = tuple[int, str, int]
GroupRow = tuple[int, str, str]
DatasetRow = tuple[int, str, str, str, str, bool, float, int, int]
BlockRow = tuple[int, int, str, int, int, bool, float]
DatasetReplicaRow = tuple[int, int, int, bool, bool, float]
BlockReplicaRow = tuple[int, int, int, bool, int, int, float]
FileRow = tuple[int, int, str, int, str]


class Rows(NamedTuple):
    """Plain tuples per table, for COPY loaders. Every field is a lazy iterator (files are
    computed block by block while they are read). Ids are list index + 1; group id 0 is the
    unowned group ``None``; enums are their string values; times are UTC epoch seconds.

    - ``sites``: (id, name, storage_type, status, host)
    - ``site_rules``: (site_id, protocol, position, match, result), position from 0 in rule order
    - ``site_quotas``: (site_id, partition, bytes)
    - ``groups``: (id, name, olevel)
    - ``datasets``: (id, name, status, data_type, software_version, is_open, last_update,
      size, num_files), size and num_files being the sums over its blocks
    - ``blocks``: (id, dataset_id, name, size, num_files, is_open, last_update)
    - ``dataset_replicas``: (dataset_id, site_id, group_id, growing, is_custodial, last_update)
    - ``block_replicas``: (block_id, site_id, group_id, is_custodial, size, num_files,
      last_update)
    - ``files``: (id, block_id, lfn, size, adler32), ids consecutive in block order
    """

    sites: Iterator[SiteRow]
    site_rules: Iterator[SiteRuleRow]
    site_quotas: Iterator[SiteQuotaRow]
    groups: Iterator[GroupRow]
    datasets: Iterator[DatasetRow]
    blocks: Iterator[BlockRow]
    dataset_replicas: Iterator[DatasetReplicaRow]
    block_replicas: Iterator[BlockReplicaRow]
    files: Iterator[FileRow]


def rows(grid: Grid) -> Rows:
    """Fresh lazy row iterators over ``grid`` (see ``Rows`` for the tuple layouts)."""

    def sites() -> Iterator[SiteRow]:
        for i, s in enumerate(grid.sites, 1):
            yield i, s.name, s.storage_type.value, s.status.value, s.host

    def site_rules() -> Iterator[SiteRuleRow]:
        for i, s in enumerate(grid.sites, 1):
            for proto, rules in s.protocols:
                for pos, (match, result) in enumerate(rules):
                    yield i, proto, pos, match, result

    def site_quotas() -> Iterator[SiteQuotaRow]:
        for i, s in enumerate(grid.sites, 1):
            for partition, quota in s.quotas.items():
                yield i, partition, quota

    def groups() -> Iterator[GroupRow]:
        for i, g in enumerate(grid.groups, 1):
            yield i, g.name, g.olevel.value

    def datasets() -> Iterator[DatasetRow]:
        for i, d in enumerate(grid.datasets, 1):
            yield (
                i,
                d.name,
                d.status.value,
                d.data_type,
                d.software_version,
                d.is_open,
                d.last_update,
                d.size,
                d.num_files,
            )

    def blocks() -> Iterator[BlockRow]:
        t = grid.blocks
        for b in range(len(t)):
            yield (
                b + 1,
                t.dataset[b] + 1,
                t.name[b],
                t.size[b],
                t.num_files[b],
                bool(t.is_open[b]),
                t.last_update[b],
            )

    def dataset_replicas() -> Iterator[DatasetReplicaRow]:
        for dr in grid.dataset_replicas:
            yield dr.dataset + 1, dr.site + 1, dr.group, dr.growing, dr.is_custodial, dr.last_update

    def block_replicas() -> Iterator[BlockReplicaRow]:
        t = grid.block_replicas
        for i in range(len(t)):
            yield (
                t.block[i] + 1,
                t.site[i] + 1,
                t.group[i],
                bool(t.is_custodial[i]),
                t.size[i],
                t.num_files[i],
                t.last_update[i],
            )

    def files() -> Iterator[FileRow]:
        offsets = grid.blocks.file_offset
        for b in range(len(grid.blocks)):
            file_id = offsets[b]
            block_id = b + 1
            for lfn, size, adler32 in grid.block_files(b):
                file_id += 1
                yield file_id, block_id, lfn, size, adler32

    return Rows(
        sites(),
        site_rules(),
        site_quotas(),
        groups(),
        datasets(),
        blocks(),
        dataset_replicas(),
        block_replicas(),
        files(),
    )


# ---------------------------------------------------------------------------------------------
# In-memory inventory
# ---------------------------------------------------------------------------------------------


def to_inventory(grid: Grid) -> Inventory:
    """The ``Inventory`` the commands of ``grid`` would produce, built directly (ids are index
    + 1 in creation order, as a fresh inventory would number them; times are the grid's)."""
    model = Inventory()
    sites: list[Site] = []
    for i, s in enumerate(grid.sites, 1):
        site = Site(i, s.name, s.storage_type, s.status, s.host, s.protocols, dict(s.quotas))
        model.sites[site.name] = site
        sites.append(site)
    groups: list[Group] = [model.groups[NO_GROUP]]
    for i, g in enumerate(grid.groups, 1):
        group = Group(i, g.name, g.olevel)
        model.groups[group.name] = group
        groups.append(group)

    datasets: list[Dataset] = []
    for i, d in enumerate(grid.datasets, 1):
        dataset = Dataset(
            i, d.name, d.status, d.data_type, d.software_version, d.is_open, d.last_update
        )
        dataset.size = d.size
        dataset.num_files = d.num_files
        model.datasets[dataset.name] = dataset
        datasets.append(dataset)

    t = grid.blocks
    block_objs: list[Block] = []
    append_block = block_objs.append
    for b in range(len(t)):
        dataset = datasets[t.dataset[b]]
        block = Block(
            b + 1,
            dataset,
            t.name[b],
            t.size[b],
            t.num_files[b],
            bool(t.is_open[b]),
            t.last_update[b],
        )
        dataset.blocks[block.name] = block
        append_block(block)

    r = grid.block_replicas
    for dr in grid.dataset_replicas:
        dataset = datasets[dr.dataset]
        site = sites[dr.site]
        group = groups[dr.group]
        replica = DatasetReplica(dataset, site, group, dr.growing, dr.last_update)
        dataset.replicas[site.name] = replica
        site.dataset_replicas[dataset.name] = replica
        members = replica.block_replicas
        for i in dr.block_replicas:
            block = block_objs[r.block[i]]
            br = BlockReplica(
                block,
                site,
                group,
                bool(r.is_custodial[i]),
                r.size[i],
                r.num_files[i],
                r.last_update[i],
            )
            members[block.name] = br
            block.replicas.append(br)
    return model
