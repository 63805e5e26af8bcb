"""``create_app()``: the dealer service. Its lifespan owns every connection and loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from fastapi import FastAPI

from dynamo_common.app import add_readiness_check, create_service_app
from dynamo_common.bus.base import Bus
from dynamo_common.bus.factory import create_bus
from dynamo_common.db import pool_ready, run_migrations
from dynamo_common.policy.enforcer import EnforcerPolicy, parse_enforcer_rules
from dynamo_common.readmodel import ReadModelClient, follow, readmodel_ready
from dynamo_common.settings import to_asyncpg_dsn
from dynamo_dealer.api import cycles, deletions, monitoring, requests, subscriptions, userdata
from dynamo_dealer.repository import store
from dynamo_dealer.repository.tables import SCHEMA
from dynamo_dealer.runtime import DealerRuntime, build_config
from dynamo_dealer.service.placement import parse_vetoes
from dynamo_dealer.settings import DealerSettings
from dynamo_dealer.sources import AccessSource, DetoxAccesses, DetoxProtection, ProtectionSource
from dynamo_dealer.userdata.manager import UserData

log = logging.getLogger("dynamo.dealer")
MIGRATIONS = str(Path(__file__).parent / "migrations")


def load_enforcers(settings: DealerSettings) -> list[EnforcerPolicy]:
    """The configured enforcer rule files, every one valid or the service does not start."""
    return [
        parse_enforcer_rules(path.read_text(encoding="utf-8"), file=str(path))
        for path in settings.enforcer_files
    ]


def create_app(
    settings: DealerSettings | None = None,
    *,
    bus: Bus | None = None,
    inventory_http: httpx.AsyncClient | None = None,
    clock: Callable[[], float] | None = None,
    access_source: AccessSource | None = None,
    protection_source: ProtectionSource | None = None,
) -> FastAPI:
    """``bus`` lets the standalone mode share one in-process bus between services;
    ``inventory_http`` reaches the inventory's REST API (tests pass an in-process client);
    ``clock`` replaces the wall clock; ``access_source`` and ``protection_source`` replace
    detox's API as the source of access records and of the last detox cycle."""
    settings = settings or DealerSettings()
    config = build_config(
        settings, load_enforcers(settings), parse_vetoes(settings.placement_rules)
    )

    @asynccontextmanager
    async def dealer_part(app: FastAPI) -> AsyncIterator[None]:
        if not settings.database_url:
            raise RuntimeError(
                "DYNAMO_DATABASE_URL is not set (use `dynamo up` for an embedded database)"
            )
        await run_migrations(settings.database_url, MIGRATIONS, SCHEMA)
        pool = await asyncpg.create_pool(
            to_asyncpg_dsn(settings.database_url),
            min_size=2,
            max_size=settings.db_pool_size,
            init=store.init_connection,
        )
        owned_bus = bus is None
        the_bus = bus or create_bus(settings.amqp_url, settings.bus_namespace)
        http = inventory_http or httpx.AsyncClient(timeout=httpx.Timeout(30.0))
        detox_http = httpx.AsyncClient(timeout=httpx.Timeout(30.0))
        tasks: list[asyncio.Task[None]] = []
        readmodel: ReadModelClient | None = None
        rt: DealerRuntime | None = None
        users: UserData | None = None
        try:
            if owned_bus:
                await the_bus.connect()
            async with pool.acquire() as conn:
                interrupted = await store.fail_interrupted(conn, datetime.now(UTC))
            if interrupted:
                log.warning("%d dealer cycles were interrupted by the last stop", interrupted)
            readmodel = ReadModelClient(
                the_bus, settings.inventory_url, settings.read_model_queue, http=http
            )
            rt = DealerRuntime(
                settings=settings,
                pool=pool,
                bus=the_bus,
                readmodel=readmodel,
                http=http,
                config=config,
                accesses=access_source or DetoxAccesses(detox_http, settings.detox_url),
                protection=protection_source or DetoxProtection(detox_http, settings.detox_url),
            )
            if clock is not None:
                rt.clock = clock
            app.state.dealer = rt
            users = app.state.userdata = UserData(rt)
            add_readiness_check(app, "database", lambda: pool_ready(pool))
            add_readiness_check(app, "bus", the_bus.ping)
            add_readiness_check(app, "inventory", lambda: readmodel_ready(readmodel))
            tasks.append(asyncio.create_task(follow(readmodel), name="dealer-readmodel"))
            tasks.append(asyncio.create_task(rt.schedule_loop(), name="dealer-schedule"))
            tasks.append(asyncio.create_task(rt.progress_loop(), name="dealer-progress"))
            tasks.append(asyncio.create_task(rt.maintenance_loop(), name="dealer-maintenance"))
            tasks.append(asyncio.create_task(users.loop(), name="dealer-userdata"))
            yield
        finally:
            if rt is not None:
                await rt.stop()
            for task in reversed(tasks):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if readmodel is not None:
                await readmodel.stop()
            if users is not None:
                await users.close()
            if inventory_http is None:
                await http.aclose()
            await detox_http.aclose()
            if owned_bus:
                await the_bus.close()
            await pool.close()

    return create_service_app(
        title="Dynamo dealer",
        description="Copies popular and required data where it is needed, within quotas: "
        "copy requests, subscriptions, popularity, enforcer rules, balancing, rescue from "
        "sites being emptied; every cycle and decision on record.",
        settings=settings,
        lifespan_parts=[dealer_part],
        routers=[
            requests.router,
            deletions.router,
            subscriptions.router,
            cycles.router,
            monitoring.router,
            userdata.router,
        ],
    )
