"""``create_app()``: the consistency service. Its lifespan owns every connection and loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
from fastapi import FastAPI

from dynamo_common.app import add_readiness_check, create_service_app
from dynamo_common.bus.base import Bus
from dynamo_common.bus.factory import create_bus
from dynamo_common.db import pool_ready, run_migrations
from dynamo_common.readmodel import ReadModelClient, readmodel_ready
from dynamo_common.settings import to_asyncpg_dsn
from dynamo_common.storage import open_storage
from dynamo_consistency.api import routes
from dynamo_consistency.clients import InventoryFiles, Requests
from dynamo_consistency.listing import ListingGuard
from dynamo_consistency.repository.tables import SCHEMA
from dynamo_consistency.runtime import ConsistencyRuntime
from dynamo_consistency.settings import ConsistencySettings

log = logging.getLogger("dynamo.consistency")
MIGRATIONS = str(Path(__file__).parent / "migrations")


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def create_app(
    settings: ConsistencySettings | None = None,
    *,
    bus: Bus | None = None,
    inventory_http: httpx.AsyncClient | None = None,
) -> FastAPI:
    """``bus`` lets the standalone mode share one in-process bus between services; without it
    the lifespan creates (and owns) one. ``inventory_http`` is the client for the inventory's
    REST API (tests reach an in-process inventory through it); without it one is made for
    ``settings.inventory_url``."""
    settings = settings or ConsistencySettings()

    @asynccontextmanager
    async def consistency_part(app: FastAPI) -> AsyncIterator[None]:
        if not settings.database_url:
            raise RuntimeError(
                "DYNAMO_DATABASE_URL is not set (use `dynamo up` for an embedded database)"
            )
        await run_migrations(settings.database_url, MIGRATIONS, SCHEMA)
        # Every running check holds one connection (its site's lock) for its whole length.
        pool = await asyncpg.create_pool(
            to_asyncpg_dsn(settings.database_url),
            min_size=2,
            max_size=settings.db_pool_size + settings.parallel_sites,
            init=_init_connection,
        )
        owned_bus = bus is None
        the_bus = bus or create_bus(settings.amqp_url, settings.bus_namespace)
        http = inventory_http or httpx.AsyncClient(timeout=httpx.Timeout(60.0))
        storage = ListingGuard(
            open_storage(
                settings.storage_backend,
                max_parallel=settings.listing_parallelism * settings.parallel_sites,
            )
        )
        tasks: list[asyncio.Task[None]] = []
        readmodel: ReadModelClient | None = None
        rt: ConsistencyRuntime | None = None
        try:
            if owned_bus:
                await the_bus.connect()
            readmodel = ReadModelClient(
                the_bus, settings.inventory_url, settings.read_model_queue, http=http
            )
            rt = ConsistencyRuntime(
                settings=settings,
                pool=pool,
                bus=the_bus,
                readmodel=readmodel,
                files=InventoryFiles(http, settings.inventory_url),
                requests=Requests(the_bus, settings.command_timeout),
                storage=storage,
            )
            app.state.consistency = rt
            add_readiness_check(app, "database", lambda: pool_ready(pool))
            add_readiness_check(app, "bus", the_bus.ping)
            add_readiness_check(app, "inventory", lambda: readmodel_ready(readmodel))

            async def start() -> None:
                # The scheduler waits for the copy of the inventory it checks sites against.
                assert readmodel is not None
                await readmodel.start()
                await rt.scheduler_loop()

            tasks.append(asyncio.create_task(rt.relay_loop(), name="consistency-relay"))
            tasks.append(asyncio.create_task(start(), name="consistency-scheduler"))
            yield
        finally:
            for task in tasks:
                task.cancel()
            # The scheduler hands each check a pool connection it acquired (holding the
            # site's lock) and the check's own `finally` gives it back. A check cancelled
            # before its first step never enters that `finally`, and pool.close() below would
            # wait for the connection forever: so the scheduler is stopped first, which lets
            # every check it created begin (the loop runs tasks in the order they were
            # scheduled), and only then are the checks cancelled.
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            running = list(rt.running.values()) if rt is not None else []
            for task in running:
                task.cancel()
            for task in running:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if readmodel is not None:
                await readmodel.stop()
            await storage.close()
            if inventory_http is None:
                await http.aclose()
            if owned_bus:
                await the_bus.close()
            await pool.close()

    return create_service_app(
        title="Dynamo consistency",
        description="Compares what each site's storage holds with what the inventory says it "
        "holds; re-transfers missing files, deletes orphans and empty directories, under a "
        "safety valve; keeps the history of every check.",
        settings=settings,
        lifespan_parts=[consistency_part],
        routers=[routes.router],
    )
