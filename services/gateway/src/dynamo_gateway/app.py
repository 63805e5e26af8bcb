"""``create_app()``: the gateway. Its lifespan owns the database pool and the one pooled HTTP
client every forwarded request goes through."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from dynamo_common.app import add_readiness_check, create_service_app
from dynamo_common.db import pool_ready, run_migrations
from dynamo_common.settings import to_asyncpg_dsn
from dynamo_gateway.api import accounts, docs, proxy
from dynamo_gateway.auth import Authenticator
from dynamo_gateway.forward import Forwarder
from dynamo_gateway.repository.tables import SCHEMA
from dynamo_gateway.runtime import GatewayRuntime
from dynamo_gateway.service.permissions import PermissionTable
from dynamo_gateway.service.routing import RouteTable
from dynamo_gateway.settings import GatewaySettings
from dynamo_gateway.upstream import UpstreamTransport
from dynamo_gateway.web import mount as mount_web

log = logging.getLogger("dynamo.gateway")
MIGRATIONS = str(Path(__file__).parent / "migrations")
_FASTAPI_DOCS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def upstream_client(settings: GatewaySettings) -> httpx.AsyncClient:
    """The pooled client for the services (plain HTTP, through the gateway's own transport)
    and for the identity providers' key sets (HTTPS, through httpx's default one)."""
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.read_timeout,
        pool=settings.pool_timeout,
    )
    # retries=1: one more try when a connection cannot be opened, which absorbs a service
    # restarting between two requests; a refused connection fails in microseconds, so a
    # service that is down still gets its 503 at once.
    services = UpstreamTransport(
        max_keepalive=settings.max_keepalive,
        keepalive_expiry=settings.keepalive_expiry,
        retries=1,
    )
    # trust_env=False: service URLs are internal; an HTTP(S)_PROXY meant for the outside
    # must not capture them.
    return httpx.AsyncClient(
        transport=services,
        mounts={"https://": httpx.AsyncHTTPTransport(retries=1)},
        timeout=timeout,
        trust_env=False,
        cookies=no_cookies(),
    )


def no_cookies() -> httpx.Cookies:
    """A cookie jar that keeps nothing: the client serves every caller, so a cookie one
    service sets for one caller must never be stored, let alone sent for another."""
    return httpx.Cookies(CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))


def bootstrap_token(settings: GatewaySettings) -> str:
    """The admin token of the standalone mode: configured, or made once and kept in a file
    only its owner can read."""
    configured = settings.admin_token.get_secret_value()
    if configured:
        return configured
    path = settings.bootstrap_token_file()
    with contextlib.suppress(FileNotFoundError):
        text = path.read_text().strip()
        if text:
            return text
    token = "dynamo-admin-" + secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
    except FileExistsError:
        # Another gateway process made it first: use theirs.
        return path.read_text().strip()
    except OSError as exc:
        log.warning("no bootstrap admin token: cannot write %s (%s)", path, exc)
        return ""
    log.warning("bootstrap admin token written to %s (sign in with: dynamo login)", path)
    return token


def create_app(
    settings: GatewaySettings | None = None,
    *,
    http: httpx.AsyncClient | None = None,
    **_: Any,
) -> FastAPI:
    """``http`` replaces the client made from the settings; the gateway does not close a
    client it was given. Other keyword arguments (the standalone mode's shared ``bus``) are
    accepted and ignored: the gateway talks to the services over HTTP only, at the URLs of its
    settings (``dynamo up`` sets them to where it starts each service)."""
    settings = settings or GatewaySettings()
    routes = RouteTable(settings.route_prefixes, default="inventory")
    permissions = PermissionTable(public_reads=settings.public_reads)

    @asynccontextmanager
    async def gateway_part(app: FastAPI) -> AsyncIterator[None]:
        if not settings.database_url:
            raise RuntimeError(
                "DYNAMO_DATABASE_URL is not set (use `dynamo up` for an embedded database)"
            )
        await run_migrations(settings.database_url, MIGRATIONS, SCHEMA)
        pool = await asyncpg.create_pool(
            to_asyncpg_dsn(settings.database_url), min_size=1, max_size=settings.db_pool_size
        )
        client = http or upstream_client(settings)
        try:
            auth = Authenticator(
                settings, client, lambda: pool, bootstrap_token=bootstrap_token(settings)
            )
            app.state.gateway = GatewayRuntime(
                settings=settings,
                http=client,
                pool=pool,
                auth=auth,
                forwarder=Forwarder(
                    client,
                    settings.service_urls(),
                    max_body_bytes=settings.max_body_bytes,
                    max_in_flight=settings.max_in_flight,
                    slot_timeout=settings.pool_timeout,
                    drop_headers=frozenset(
                        {
                            settings.client_dn_header.lower().encode("latin-1"),
                            settings.client_verify_header.lower().encode("latin-1"),
                        }
                    ),
                ),
                routes=routes,
                permissions=permissions,
                own_openapi=app.openapi,
            )
            add_readiness_check(app, "database", lambda: pool_ready(pool))
            # Everything made so far (modules, the app, settings) lives as long as the
            # process: out of the cyclic collector's reach, its full collections stay short
            # instead of pausing every request in flight for tens of milliseconds.
            gc.collect()
            gc.freeze()
            log.info(
                "gateway ready",
                extra={"services": settings.service_urls(), "public_reads": settings.public_reads},
            )
            yield
        finally:
            app.state.gateway = None
            if http is None:
                await client.aclose()
            await pool.close()

    app = create_service_app(
        title="Dynamo gateway",
        description="The single public entry of the Dynamo API: authentication, roles, "
        "forwarding to the services.",
        settings=settings,
        lifespan_parts=[gateway_part],
        routers=[accounts.router],
    )
    # FastAPI's own /openapi.json and /docs describe the gateway alone; the merged document
    # of every service takes their place.
    app.router.routes[:] = [
        r for r in app.router.routes if getattr(r, "path", None) not in _FASTAPI_DOCS
    ]
    app.include_router(docs.router)
    # First: it leaves /api/v1/auth to the gateway's own endpoints by itself.
    app.router.routes.insert(0, proxy.route)
    # The operators' pages and their assets (chart library, Swagger UI), all served locally.
    mount_web(app)
    return app
