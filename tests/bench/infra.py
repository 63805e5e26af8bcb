"""Throw-away databases and bus namespaces on the local PostgreSQL and RabbitMQ."""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from dynamo_common.db import run_migrations
from dynamo_common.testing.postgres import ensure_postgres, temporary_database
from dynamo_common.testing.rabbitmq import delete_namespace, ensure_rabbitmq

os.environ.setdefault("DYNAMO_LOG_FORMAT", "console")


@functools.cache
def postgres_admin_url() -> str:
    return ensure_postgres()


@functools.cache
def amqp_url() -> str:
    return ensure_rabbitmq()


def new_namespace(prefix: str = "bench") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@asynccontextmanager
async def inventory_database() -> AsyncIterator[str]:
    """A new database with the inventory schema migrated; yields its plain URL. Dropped after."""
    from dynamo_inventory.app import MIGRATIONS
    from dynamo_inventory.repository.tables import SCHEMA

    with temporary_database(postgres_admin_url()) as url:
        await run_migrations(url, MIGRATIONS, SCHEMA)
        yield url


@asynccontextmanager
async def connection(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def bus_namespace(prefix: str = "bench") -> AsyncIterator[tuple[str, list[str]]]:
    """A unique namespace and a list the caller appends its declared queue names to; every
    exchange and queue of the namespace is deleted afterwards."""
    namespace = new_namespace(prefix)
    queues: list[str] = []
    try:
        yield namespace, queues
    finally:
        await delete_namespace(amqp_url(), namespace, sorted(set(queues)))
