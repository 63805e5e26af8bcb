"""``create_app()``: the detox service. Its lifespan owns every connection and loop."""

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
from dynamo_common.policy.detox import DetoxPolicy, parse_detox_policy
from dynamo_common.policy.enforcer import EnforcerPolicy, parse_enforcer_rules
from dynamo_common.readmodel import ReadModelClient, follow, readmodel_ready
from dynamo_common.settings import to_asyncpg_dsn
from dynamo_detox.api import cycles, locks, popularity, simulations
from dynamo_detox.repository import simulations as simulation_store
from dynamo_detox.repository import store
from dynamo_detox.repository.tables import SCHEMA
from dynamo_detox.runtime import DetoxRuntime
from dynamo_detox.service.popularity import PopularitySource
from dynamo_detox.service.simulations import SimulationWorker
from dynamo_detox.settings import DetoxSettings

log = logging.getLogger("dynamo.detox")
MIGRATIONS = str(Path(__file__).parent / "migrations")


def load_policies(settings: DetoxSettings) -> tuple[dict[str, DetoxPolicy], list[EnforcerPolicy]]:
    """The configured policy files, every one valid or the service does not start (with all
    their errors, as ``dynamo policy check`` prints them)."""
    policies: dict[str, DetoxPolicy] = {}
    for path in settings.policy_files:
        policy = parse_detox_policy(path.read_text(encoding="utf-8"), file=str(path))
        if policy.partition in policies:
            raise ValueError(
                f"{path}: partition {policy.partition!r} already has a policy "
                f"({policies[policy.partition].file})"
            )
        policies[policy.partition] = policy
    enforcers = [
        parse_enforcer_rules(path.read_text(encoding="utf-8"), file=str(path))
        for path in settings.enforcer_files
    ]
    return policies, enforcers


def create_app(
    settings: DetoxSettings | None = None,
    *,
    bus: Bus | None = None,
    inventory_http: httpx.AsyncClient | None = None,
    clock: Callable[[], float] | None = None,
    popularity_source: PopularitySource | None = None,
) -> FastAPI:
    """``bus`` lets the standalone mode share one in-process bus between services;
    ``inventory_http`` reaches the inventory's REST API (tests pass an in-process client);
    ``clock`` replaces the wall clock (tests and the decision simulator); ``popularity_source``
    replaces the access records posted to the API as the source of popularity."""
    settings = settings or DetoxSettings()
    policies, enforcers = load_policies(settings)

    @asynccontextmanager
    async def detox_part(app: FastAPI) -> AsyncIterator[None]:
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
        tasks: list[asyncio.Task[None]] = []
        readmodel: ReadModelClient | None = None
        rt: DetoxRuntime | None = None
        sims: SimulationWorker | None = None
        try:
            if owned_bus:
                await the_bus.connect()
            async with pool.acquire() as conn:
                interrupted = await store.fail_interrupted(conn, datetime.now(UTC))
                stopped_runs = await simulation_store.fail_interrupted(conn, datetime.now(UTC))
            if interrupted:
                log.warning("%d cycles were interrupted by the last stop", interrupted)
            if stopped_runs:
                log.warning("%d simulations were interrupted by the last stop", stopped_runs)
            readmodel = ReadModelClient(
                the_bus, settings.inventory_url, settings.read_model_queue, http=http
            )
            rt = DetoxRuntime(
                settings=settings,
                pool=pool,
                bus=the_bus,
                readmodel=readmodel,
                http=http,
                policies=policies,
                enforcers=enforcers,
                popularity=popularity_source or store.DatabasePopularity(pool),
            )
            if clock is not None:
                rt.clock = clock
            app.state.detox = rt
            add_readiness_check(app, "database", lambda: pool_ready(pool))
            add_readiness_check(app, "bus", the_bus.ping)
            add_readiness_check(app, "inventory", lambda: readmodel_ready(readmodel))
            # The snapshot loads in the background: the API (records, locks) serves meanwhile.
            tasks.append(asyncio.create_task(follow(readmodel), name="detox-readmodel"))
            tasks.append(asyncio.create_task(rt.schedule_loop(), name="detox-schedule"))
            tasks.append(asyncio.create_task(rt.maintenance_loop(), name="detox-maintenance"))
            sims = SimulationWorker(simulation_store.DatabaseSimulations(pool))
            app.state.simulations = sims
            tasks.append(asyncio.create_task(sims.loop(), name="detox-simulations"))
            yield
        finally:
            if rt is not None:
                await rt.stop()
            if sims is not None:
                sims.stop()
            for task in reversed(tasks):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if readmodel is not None:
                await readmodel.stop()
            if inventory_http is None:
                await http.aclose()
            if owned_bus:
                await the_bus.close()
            await pool.close()

    return create_service_app(
        title="Dynamo detox",
        description="Policy-driven deletion: cycles on a schedule and on demand, test runs "
        "that delete nothing, the record of every decision, locks and popularity.",
        settings=settings,
        lifespan_parts=[detox_part],
        routers=[cycles.router, locks.router, popularity.router, simulations.router],
    )
