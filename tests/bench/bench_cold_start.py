"""(1) Cold start: ``load_inventory`` over a bulk-loaded grid, against raw asyncpg fetches.

The grid (no files: they are never loaded into memory) is COPYed into a freshly migrated
inventory schema; then, interleaved, the floor (the same SELECTs as ``load_inventory``, same
transaction mode, rows fetched and dropped) and the real load are timed. Memory per object is
what tracemalloc sees still allocated once the model is built, divided by the number of sites,
groups, datasets, blocks, dataset replicas and block replicas it holds; its floor is the same
for the raw fetch's asyncpg Records, per row.

Diagnostics beside the result: the load with the cyclic garbage collector off (interleaved
too), the collector's own time during one load, and a cProfile of one load when the target is
missed (or ``--profile``).
"""

from __future__ import annotations

import cProfile
import gc
import statistics
import time
import tracemalloc
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from dynamo_common import gridgen
from dynamo_common.model.objects import Inventory
from dynamo_inventory.repository.reader import load_inventory
from tests.bench import infra
from tests.bench.report import Result, Target, log, profile_summary, result

S = "inventory"
SEED = 7
TIME_TARGET = Target(ratio=2.0, direction="max")
MEMORY_TARGET = Target(value=1024, direction="max")

# The statements load_inventory runs, verbatim in columns and tables.
FLOOR_QUERIES = (
    f"SELECT id, name, storage_type, status, host, protocols::text, quotas::text FROM {S}.sites",
    f"SELECT id, name, olevel FROM {S}.groups",
    f"SELECT id, name, status, data_type, software_version, is_open, "
    f"extract(epoch from last_update)::float8 FROM {S}.datasets",
    f"SELECT id, dataset_id, name, size, num_files, is_open, "
    f"extract(epoch from last_update)::float8 FROM {S}.blocks",
    f"SELECT dataset_id, site_id, group_id, growing, "
    f"extract(epoch from last_update)::float8 FROM {S}.dataset_replicas",
    f"SELECT block_id, site_id, group_id, is_custodial, size, num_files, "
    f"extract(epoch from last_update)::float8 FROM {S}.block_replicas",
    f"SELECT name, condition, subpartitions::text, description FROM {S}.partitions",
    f"SELECT name, datasets::text FROM {S}.containers",
)


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


async def bulk_load(conn: asyncpg.Connection, grid: gridgen.Grid) -> dict[str, Any]:
    """COPY every table but files (foreign-key triggers off: the generator's rows are
    consistent by construction); returns row counts and where the time went."""
    started = time.perf_counter()
    rows = gridgen.rows(grid)
    sites = [
        (
            i,
            s.name,
            s.storage_type.value,
            s.status.value,
            s.host,
            orjson.dumps(
                [
                    {"name": p, "rules": [{"match": m, "result": r} for m, r in rules]}
                    for p, rules in s.protocols
                ]
            ).decode(),
            orjson.dumps(s.quotas).decode(),
        )
        for i, s in enumerate(grid.sites, 1)
    ]
    tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {
        "sites": (
            ["id", "name", "storage_type", "status", "host", "protocols", "quotas"],
            sites,
        ),
        "groups": (["id", "name", "olevel"], list(rows.groups)),
        "datasets": (
            ["id", "name", "status", "data_type", "software_version", "is_open", "last_update"],
            [(i, n, st, dt, sv, o, _ts(lu)) for i, n, st, dt, sv, o, lu, _, _ in rows.datasets],
        ),
        "blocks": (
            ["id", "dataset_id", "name", "size", "num_files", "is_open", "last_update"],
            [(*r[:6], _ts(r[6])) for r in rows.blocks],
        ),
        "dataset_replicas": (
            ["dataset_id", "site_id", "group_id", "growing", "last_update"],
            [(d, s, g, gr, _ts(lu)) for d, s, g, gr, _, lu in rows.dataset_replicas],
        ),
        "block_replicas": (
            ["block_id", "site_id", "group_id", "is_custodial", "size", "num_files", "last_update"],
            [(*r[:6], _ts(r[6])) for r in rows.block_replicas],
        ),
    }
    built = time.perf_counter()
    async with conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        for table, (columns, records) in tables.items():
            await conn.copy_records_to_table(table, schema_name=S, columns=columns, records=records)
        await conn.execute(f"UPDATE {S}.writer_state SET seq = 1 WHERE id = 1")
    copied = time.perf_counter()
    for table in tables:
        await conn.execute(f"VACUUM (ANALYZE) {S}.{table}")
    counts = {table: len(records) for table, (_, records) in tables.items()}
    total = sum(counts.values())
    return {
        "rows": counts,
        "build_rows_s": round(built - started, 2),
        "copy_s": round(copied - built, 2),
        "copy_rows_per_s": round(total / (copied - built)),
        "vacuum_analyze_s": round(time.perf_counter() - copied, 2),
    }


async def raw_rows(conn: asyncpg.Connection) -> list[list[asyncpg.Record]]:
    """The floor: the loader's statements in the loader's transaction, rows only."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.fetchval(f"SELECT seq FROM {S}.writer_state WHERE id = 1")
        return [await conn.fetch(query) for query in FLOOR_QUERIES]


async def raw_fetch(conn: asyncpg.Connection) -> int:
    return sum(len(rows) for rows in await raw_rows(conn))


def object_count(model: Inventory) -> int:
    c = model.counts()
    keys = ("sites", "groups", "datasets", "blocks", "dataset_replicas", "block_replicas")
    return sum(c[k] for k in keys)


async def _seconds(factory: Any) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    value = await factory()
    return time.perf_counter() - start, value


async def _traced(factory: Any) -> tuple[int, int, Any]:
    """(bytes still allocated by what ``factory`` returned, peak bytes during the call, it),
    per tracemalloc, after a full collection."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    value = await factory()
    gc.collect()
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return after - before, peak - before, value


async def _gc_during_load(conn: asyncpg.Connection) -> dict[str, Any]:
    """Seconds the cyclic garbage collector ran during one ordinary load, and how often."""
    collections = [0, 0, 0]
    spent = [0.0]
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            spent[0] += time.perf_counter() - started[0]
            collections[info["generation"]] += 1

    gc.collect()
    gc.callbacks.append(callback)
    try:
        seconds, _ = await _seconds(lambda: load_inventory(conn))
    finally:
        gc.callbacks.remove(callback)
    return {
        "load_s": round(seconds, 3),
        "gc_s": round(spent[0], 3),
        "gc_share": round(spent[0] / seconds, 3),
        "collections_by_generation": collections,
    }


async def _profile(conn: asyncpg.Connection) -> tuple[str, list[dict[str, Any]]]:
    profiler = cProfile.Profile()
    profiler.enable()
    await load_inventory(conn)
    profiler.disable()
    return profile_summary(profiler)


async def _load_without_gc(conn: asyncpg.Connection) -> float:
    """Seconds of one load with the cyclic garbage collector off (diagnostic only)."""
    gc.collect()
    gc.disable()
    try:
        seconds, _ = await _seconds(lambda: load_inventory(conn))
    finally:
        gc.enable()
    return seconds


async def run(scale: str, repetitions: int = 3, profile: bool | None = None) -> list[Result]:
    log(f"cold start: generating the {scale} grid")
    grid = gridgen.generate(scale, seed=SEED)
    async with infra.inventory_database() as url, infra.connection(url) as conn:
        bulk = await bulk_load(conn, grid)
        rows = sum(bulk["rows"].values())
        log(
            f"cold start: {rows:,} rows COPYed in {bulk['copy_s']} s "
            f"({bulk['copy_rows_per_s']:,} rows/s); timing the load"
        )
        del grid
        await raw_fetch(conn)  # warm the cache and the hint bits for both sides
        await load_inventory(conn)
        floor_times: list[float] = []
        load_times: list[float] = []
        no_gc_times: list[float] = []
        fetched = objects = 0
        for _ in range(repetitions):  # interleaved, so that noise hits both sides alike
            seconds, fetched = await _seconds(lambda: raw_fetch(conn))
            floor_times.append(seconds)
            seconds, model = await _seconds(lambda: load_inventory(conn))
            load_times.append(seconds)
            objects = object_count(model)
            del model
            no_gc_times.append(await _load_without_gc(conn))
        log("cold start: memory (tracemalloc) and garbage-collector diagnostics")
        traced, peak, model = await _traced(lambda: load_inventory(conn))
        objects = object_count(model)
        del model
        raw_bytes, raw_peak, raw = await _traced(lambda: raw_rows(conn))
        raw_count = sum(len(rows) for rows in raw)
        del raw
        gc_info = await _gc_during_load(conn)
        no_gc = statistics.median(no_gc_times)
        time_result = result(
            "cold_start.load_time",
            scale,
            load_times,
            "s",
            floor_runs=floor_times,
            floor_unit="s",
            floor_label="raw asyncpg fetch, same rows",
            target=TIME_TARGET,
            details={
                "objects": objects,
                "rows_fetched": fetched,
                "objects_per_s": round(objects / statistics.median(load_times)),
                "bulk_load": bulk,
                "gc_during_one_load": gc_info,
                "load_time_gc_disabled_median_s": round(no_gc, 3),
                "ratio_gc_disabled": round(no_gc / statistics.median(floor_times), 2),
            },
        )
        memory_result = result(
            "cold_start.memory_per_object",
            scale,
            [traced / objects],
            "B/object",
            floor_runs=[raw_bytes / raw_count],
            floor_unit="B/row",
            floor_label="asyncpg Records of the same rows",
            target=MEMORY_TARGET,
            details={
                "objects": objects,
                "retained_bytes": traced,
                "peak_bytes_during_load": peak,
                "raw_rows": raw_count,
                "raw_retained_bytes": raw_bytes,
                "raw_peak_bytes": raw_peak,
                "method": "tracemalloc: bytes still allocated once loaded, after gc.collect()",
            },
        )
        if profile or (profile is None and not time_result.met):
            log("cold start: profiling load_inventory (cProfile)")
            text, entries = await _profile(conn)
            time_result.details["profile_top"] = entries
            time_result.details["profile_text"] = text
    return [time_result, memory_result]
