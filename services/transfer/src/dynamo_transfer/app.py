"""``create_app()``: the transfer service. Its lifespan owns every connection and loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
from fastapi import FastAPI

from dynamo_common.app import add_readiness_check, create_service_app
from dynamo_common.bus.base import Bus, Subscription
from dynamo_common.bus.factory import create_bus
from dynamo_common.db import pool_ready, run_migrations
from dynamo_common.readmodel import ReadModelClient, readmodel_ready
from dynamo_common.settings import to_asyncpg_dsn
from dynamo_common.storage import Storage, open_storage
from dynamo_transfer.api import lfn2pfn, read, write
from dynamo_transfer.backends.base import Backend
from dynamo_transfer.backends.direct import DirectBackend
from dynamo_transfer.consumers.commands import COMMAND_QUEUE, command_handler
from dynamo_transfer.inventory import InventoryClient
from dynamo_transfer.repository import store
from dynamo_transfer.repository.tables import SCHEMA
from dynamo_transfer.runtime import TransferRuntime
from dynamo_transfer.settings import TransferSettings

log = logging.getLogger("dynamo.transfer")
MIGRATIONS = str(Path(__file__).parent / "migrations")


def _backend_factory(settings: TransferSettings, storage: Storage):  # type: ignore[no-untyped-def]
    def make(rt: TransferRuntime) -> Backend:
        if settings.backend == "fts3":
            from dynamo_transfer.backends.fts3 import Fts3Client
            from dynamo_transfer.backends.fts3_backend import Fts3Backend

            client = Fts3Client(
                settings.fts3_url,
                token=settings.fts3_token or None,
                cert=settings.fts3_cert or None,
            )
            return Fts3Backend(client)
        return DirectBackend(
            storage,
            rt.record_result,
            per_link=settings.direct_parallel_per_link,
            total=settings.direct_parallel_total,
            copy_timeout=settings.copy_timeout,
        )

    return make


def create_app(
    settings: TransferSettings | None = None,
    *,
    bus: Bus | None = None,
    inventory_http: httpx.AsyncClient | None = None,
) -> FastAPI:
    """``bus`` lets the standalone mode share one in-process bus between services; without it
    the lifespan creates (and owns) one. ``inventory_http`` is the client for the inventory's
    REST API (tests reach an in-process inventory through it); without it one is made for
    ``settings.inventory_url``."""
    settings = settings or TransferSettings()
    if settings.backend == "fts3" and not settings.fts3_url:
        raise ValueError("backend fts3 needs DYNAMO_FTS3_URL")

    @asynccontextmanager
    async def transfer_part(app: FastAPI) -> AsyncIterator[None]:
        if not settings.database_url:
            raise RuntimeError(
                "DYNAMO_DATABASE_URL is not set (use `dynamo up` for an embedded database)"
            )
        dsn = to_asyncpg_dsn(settings.database_url)
        await run_migrations(settings.database_url, MIGRATIONS, SCHEMA)
        pool = await asyncpg.create_pool(
            dsn, min_size=2, max_size=settings.db_pool_size, init=store.init_connection
        )
        owned_bus = bus is None
        the_bus = bus or create_bus(settings.amqp_url, settings.bus_namespace)
        http = inventory_http or httpx.AsyncClient(timeout=httpx.Timeout(30.0))
        storage = open_storage(
            max_parallel=settings.direct_parallel_total + settings.deletion_parallel
        )
        tasks: list[asyncio.Task[None]] = []
        subscription: list[Subscription] = []
        readmodel: ReadModelClient | None = None
        try:
            if owned_bus:
                await the_bus.connect()
            readmodel = ReadModelClient(
                the_bus, settings.inventory_url, settings.read_model_queue, http=http
            )
            rt = TransferRuntime(
                settings=settings,
                pool=pool,
                bus=the_bus,
                readmodel=readmodel,
                inventory=InventoryClient(
                    http, settings.inventory_url, the_bus, settings.inventory_request_timeout
                ),
                storage=storage,
                dsn=dsn,
                make_backend=_backend_factory(settings, storage),
            )
            app.state.transfer = rt
            add_readiness_check(app, "database", lambda: pool_ready(pool))
            add_readiness_check(app, "bus", the_bus.ping)
            add_readiness_check(app, "inventory", lambda: readmodel_ready(readmodel))

            async def start() -> None:
                # Commands are taken only once the copy of the inventory they are checked
                # against is loaded; the queue holds them meanwhile. An inventory that is not
                # up yet (standalone mode starts every service at once) is waited for.
                nonlocal readmodel
                while True:
                    try:
                        await rt.readmodel.start()
                        break
                    except Exception as exc:
                        log.warning("inventory snapshot not available yet: %r", exc)
                        await asyncio.sleep(5.0)
                        readmodel = rt.readmodel = ReadModelClient(
                            the_bus, settings.inventory_url, settings.read_model_queue, http=http
                        )
                await the_bus.declare_queue(COMMAND_QUEUE)
                subscription.append(
                    await the_bus.consume(
                        COMMAND_QUEUE.name,
                        command_handler(rt, the_bus),
                        prefetch=settings.command_prefetch,
                    )
                )
                await rt.leader_loop()

            tasks.append(asyncio.create_task(rt.relay_loop(), name="transfer-relay"))
            tasks.append(asyncio.create_task(start(), name="transfer-main"))
            yield
        finally:
            for sub in subscription:
                await sub.cancel()
            for task in reversed(tasks):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
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
        title="Dynamo transfer",
        description="File-level queue of transfers and deletions: sources, batches per link, "
        "retries, held files; FTS3 or direct gfal2 copies; reports to the inventory.",
        settings=settings,
        lifespan_parts=[transfer_part],
        routers=[read.router, write.router, lfn2pfn.router],
    )
