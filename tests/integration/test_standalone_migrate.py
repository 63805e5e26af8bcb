"""`dynamo migrate`: the one-shot job that brings every service's schema to its head."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from dynamo_common.service_plugin import discover
from dynamo_common.settings import to_asyncpg_dsn

pytestmark = pytest.mark.integration
# The console script installed beside this interpreter: what an operator runs.
DYNAMO = Path(sys.executable).parent / "dynamo"


def run_migrate(database_url: str | None, *services: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMO_")}
    if database_url is not None:
        env["DYNAMO_DATABASE_URL"] = database_url
    return subprocess.run(
        [str(DYNAMO), "migrate", *services],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


async def versioned_schemas(database_url: str) -> dict[str, str]:
    """Each schema that has an Alembic version table, with the revision it is at."""
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT table_schema FROM information_schema.tables "
            "WHERE table_name = 'alembic_version'"
        )
        found = {}
        for row in rows:
            schema = row["table_schema"]
            found[schema] = await conn.fetchval(
                f'SELECT version_num FROM "{schema}".alembic_version'
            )
        return found
    finally:
        await conn.close()


def test_migrate_brings_every_installed_service_to_its_head_and_is_repeatable(
    database_url: str,
) -> None:
    first = run_migrate(database_url)
    assert first.returncode == 0, first.stderr
    installed = set(discover())
    schemas = asyncio.run(versioned_schemas(database_url))
    assert installed <= set(schemas), (installed, schemas)
    assert all(schemas.values())
    for name in installed:
        assert f"migrated {name}" in first.stderr

    again = run_migrate(database_url)
    assert again.returncode == 0, again.stderr
    assert asyncio.run(versioned_schemas(database_url)) == schemas


def test_migrate_named_services_touches_only_those(database_url: str) -> None:
    result = run_migrate(database_url, "inventory", "detox")
    assert result.returncode == 0, result.stderr
    assert set(asyncio.run(versioned_schemas(database_url))) == {"inventory", "detox"}


def test_migrate_refuses_an_unknown_service_and_changes_nothing(database_url: str) -> None:
    result = run_migrate(database_url, "inventory", "nosuchservice")
    assert result.returncode == 2
    assert "nosuchservice" in result.stderr
    assert asyncio.run(versioned_schemas(database_url)) == {}


def test_migrate_without_a_database_url_says_so() -> None:
    result = run_migrate(None)
    assert result.returncode == 2
    assert "DYNAMO_DATABASE_URL is not set" in result.stderr
