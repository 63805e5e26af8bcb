"""``create_app()``: the inventory service. Its lifespan owns every connection and loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from fastapi import FastAPI

from dynamo_common.app import add_readiness_check, create_service_app
from dynamo_common.bus.base import Bus
from dynamo_common.bus.factory import create_bus
from dynamo_common.db import pool_ready, run_migrations
from dynamo_common.settings import to_asyncpg_dsn
from dynamo_inventory.api import read, write
from dynamo_inventory.consumers.commands import COMMAND_QUEUE, command_handler
from dynamo_inventory.repository.reader import load_inventory
from dynamo_inventory.repository.tables import SCHEMA
from dynamo_inventory.runtime import InventoryRuntime
from dynamo_inventory.service.planner import IdCounters
from dynamo_inventory.settings import InventorySettings

log = logging.getLogger("dynamo.inventory")
MIGRATIONS = str(Path(__file__).parent / "migrations")


def _condition_checker() -> Callable[[str], str | None] | None:
    """Validates partition conditions with the shared condition language."""
    from dynamo_common.policy import PolicyError, PolicyErrors, parse_condition

    def check(text: str) -> str | None:
        try:
            parse_condition(text, context="blockreplica")
        except (PolicyError, PolicyErrors) as exc:
            return str(exc)
        return None

    return check


def create_app(settings: InventorySettings | None = None, *, bus: Bus | None = None) -> FastAPI:
    """``bus`` lets the standalone mode share one in-process bus between services; without it
    the lifespan creates (and owns) one from ``settings.amqp_url``."""
    settings = settings or InventorySettings()

    @asynccontextmanager
    async def inventory_part(app: FastAPI) -> AsyncIterator[None]:
        if not settings.database_url:
            raise RuntimeError(
                "DYNAMO_DATABASE_URL is not set (use `dynamo up` for an embedded database)"
            )
        dsn = to_asyncpg_dsn(settings.database_url)
        await run_migrations(settings.database_url, MIGRATIONS, SCHEMA)
        pool = await asyncpg.create_pool(dsn, min_size=2, max_size=settings.db_pool_size)
        owned_bus = bus is None
        the_bus = bus or create_bus(settings.amqp_url, settings.bus_namespace)
        tasks: list[asyncio.Task[None]] = []
        subscription = None
        try:
            if owned_bus:
                await the_bus.connect()
            async with pool.acquire() as conn:
                model = await load_inventory(conn)
            rt = InventoryRuntime(
                settings=settings,
                pool=pool,
                bus=the_bus,
                model=model,
                ids=IdCounters.from_model(model),
                dsn=dsn,
            )
            rt.check_condition = _condition_checker()
            log.info("inventory loaded", extra={"seq": model.seq, **model.counts()})
            app.state.inventory = rt
            add_readiness_check(app, "database", lambda: pool_ready(pool))
            add_readiness_check(app, "bus", the_bus.ping)
            tasks.append(asyncio.create_task(rt.relay_loop(), name="inventory-relay"))
            tasks.append(asyncio.create_task(rt.catch_up_loop(), name="inventory-catch-up"))
            await the_bus.declare_queue(COMMAND_QUEUE)
            subscription = await the_bus.consume(
                COMMAND_QUEUE.name, command_handler(rt, the_bus), prefetch=settings.command_prefetch
            )
            yield
        finally:
            if subscription is not None:
                await subscription.cancel()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if owned_bus:
                await the_bus.close()
            await pool.close()

    return create_service_app(
        title="Dynamo inventory",
        description="The single writer of the replica inventory: sites, datasets, blocks, "
        "files and replicas. Reads are served from memory; writes are commands.",
        settings=settings,
        lifespan_parts=[inventory_part],
        routers=[read.router, write.router],
    )
