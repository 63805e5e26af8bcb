"""A deterministic synthetic CMS-like grid for benchmarks, tests and the demo.

``generate(scale, seed)`` builds a ``Grid``: sites with protocols and quotas, groups, datasets
named like CMS's (``/Primary/Processed-vN/TIER``), blocks, dataset and block replicas. Files are
not stored; they are recomputed per block from (seed, block), so even the ``cms`` scale (60
million files) streams them one block at a time. The same seed gives the same grid in every
process, whatever ``PYTHONHASHSEED`` is.

Ways out: ``commands`` (the inventory commands that build the grid, in an order the inventory
accepts), ``rows`` (plain tuples per table for COPY loaders), ``to_inventory`` (the in-memory
model directly), and ``Grid.block_files`` / ``Grid.iter_files`` for the files.

    grid = generate("tiny", seed=1)
    for routing_key, command in commands(grid, batch=500):
        ...
"""

from dynamo_common.gridgen.emit import Rows, commands, rows, to_inventory
from dynamo_common.gridgen.generate import DEFAULT_FILE_ROOT, generate
from dynamo_common.gridgen.grid import (
    BlockInfo,
    BlockReplicaInfo,
    BlockReplicaTable,
    BlockTable,
    DatasetDef,
    DatasetReplicaDef,
    FileInfo,
    Grid,
    GroupDef,
    SiteDef,
)
from dynamo_common.gridgen.scale import CI, CMS, SCALES, TENTH, TINY, Scale, get_scale

__all__ = [
    "CI",
    "CMS",
    "DEFAULT_FILE_ROOT",
    "SCALES",
    "TENTH",
    "TINY",
    "BlockInfo",
    "BlockReplicaInfo",
    "BlockReplicaTable",
    "BlockTable",
    "DatasetDef",
    "DatasetReplicaDef",
    "FileInfo",
    "Grid",
    "GroupDef",
    "Rows",
    "Scale",
    "SiteDef",
    "commands",
    "generate",
    "get_scale",
    "rows",
    "to_inventory",
]
