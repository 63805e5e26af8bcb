"""Small SQLAlchemy (async, asyncpg) and Alembic helpers shared by the services.

Each service owns one PostgreSQL schema and one Alembic history. On start it calls
:func:`run_migrations` with its own migrations folder; that folder's ``env.py`` can be three
lines long by delegating to :func:`run_alembic_env`::

    from dynamo_common.db import run_alembic_env
    from dynamo_inventory.repository.tables import metadata

    run_alembic_env(metadata, version_table_schema="inventory")
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from typing import Any

from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from dynamo_common.settings import to_sqlalchemy_url

__all__ = [
    "create_engine",
    "migration_lock_key",
    "ping",
    "run_alembic_env",
    "run_migrations",
    "session_factory",
]

# Alembic keeps the running migration environment in module globals (alembic.context, op), so
# two migrations at once in one process (standalone mode starts every service together) would
# trample each other: run them one at a time.
_ALEMBIC_LOCK = threading.Lock()


def create_engine(
    url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    pool_timeout: float = 30.0,
    pool_pre_ping: bool = True,
    application_name: str | None = None,
    echo: bool = False,
    **kwargs: Any,
) -> AsyncEngine:
    """An async engine on asyncpg; ``url`` may be in plain ``postgresql://`` form.

    ``pool_pre_ping`` is on by default so that a pool survives a PostgreSQL restart: stale
    connections are replaced on checkout instead of failing the first request after it.
    """
    connect_args: dict[str, Any] = dict(kwargs.pop("connect_args", {}))
    if application_name:
        # Shows up in pg_stat_activity, which is how an operator tells the services apart.
        server_settings = dict(connect_args.get("server_settings", {}))
        server_settings.setdefault("application_name", application_name)
        connect_args["server_settings"] = server_settings
    return create_async_engine(
        to_sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_pre_ping=pool_pre_ping,
        echo=echo,
        connect_args=connect_args,
        **kwargs,
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: the edge commits and then still reads the objects it returns.
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine, timeout_s: float = 2.0) -> bool:
    """True when the database answers ``SELECT 1`` within ``timeout_s`` seconds."""
    try:
        async with asyncio.timeout(timeout_s), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


def migration_lock_key(schema: str | None) -> int:
    """The advisory-lock key that serialises migrations of one schema across processes."""
    digest = hashlib.sha256(f"dynamo-migrations:{schema or 'public'}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def run_migrations(
    url: str,
    script_location: str,
    version_table_schema: str | None = None,
) -> None:
    """Run Alembic ``upgrade head`` for one service's migrations folder.

    Alembic is synchronous and its ``env.py`` starts its own event loop (``asyncio.run``), so
    the command runs in a worker thread; this coroutine can be awaited from a running loop
    (a lifespan). The URL and schema reach ``env.py`` through ``config.attributes``
    (``database_url``, ``version_table_schema``) and the ``sqlalchemy.url`` option.
    """
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", script_location)
    # ConfigParser interpolates '%', which URL-encoded passwords contain.
    cfg.set_main_option("sqlalchemy.url", to_sqlalchemy_url(url).replace("%", "%%"))
    cfg.attributes["database_url"] = to_sqlalchemy_url(url)
    cfg.attributes["version_table_schema"] = version_table_schema

    def upgrade() -> None:
        with _ALEMBIC_LOCK:
            command.upgrade(cfg, "head")

    await asyncio.to_thread(upgrade)


def run_alembic_env(
    target_metadata: MetaData | None,
    *,
    version_table_schema: str | None = None,
) -> None:
    """The body of a service's Alembic ``env.py``.

    Creates the service's schema if needed, keeps Alembic's version table in it, restricts
    autogenerate to that schema (so it never proposes to drop another service's tables), and
    holds a PostgreSQL advisory lock while migrating, so replicas starting together migrate
    one after the other.
    """
    from alembic import context

    config = context.config
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(
            "no database URL for Alembic: call dynamo_common.db.run_migrations, or set "
            "sqlalchemy.url"
        )
    schema = config.attributes.get("version_table_schema", version_table_schema)
    options: dict[str, Any] = {
        "target_metadata": target_metadata,
        "version_table_schema": schema,
        "compare_type": True,
    }
    if schema:

        def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
            return type_ != "schema" or name == schema

        options["include_schemas"] = True
        options["include_name"] = include_name

    if context.is_offline_mode():
        context.configure(url=to_sqlalchemy_url(url), literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return

    def migrate(connection: Connection) -> None:
        key = migration_lock_key(schema)
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            if schema:
                quoted = connection.dialect.identifier_preparer.quote_schema(schema)
                connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
            # Committed here so that Alembic sees no transaction in progress and manages its own.
            connection.commit()
            context.configure(connection=connection, **options)
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if connection.in_transaction():
                connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            connection.commit()

    async def run_online() -> None:
        engine = create_async_engine(to_sqlalchemy_url(url), poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(migrate)
        finally:
            await engine.dispose()

    asyncio.run(run_online())


async def pool_ready(pool: Any) -> bool:
    """The ``/readyz`` check of a service's asyncpg pool: a connection within 2 s that
    answers ``SELECT 1``."""
    async with pool.acquire(timeout=2) as conn:
        return bool(await conn.fetchval("SELECT 1") == 1)
