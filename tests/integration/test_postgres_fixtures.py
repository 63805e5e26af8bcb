from __future__ import annotations

import asyncio

import asyncpg
import pytest

from dynamo_common.testing.postgres import (
    database_url_for,
    ensure_postgres,
    temporary_database,
)

pytestmark = pytest.mark.integration


async def database_exists(admin_url: str, name: str) -> bool:
    conn = await asyncpg.connect(admin_url)
    try:
        found = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    finally:
        await conn.close()
    return found == 1


def db_name(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", 1)[0]


async def test_database_fixture_gives_a_fresh_database(
    postgres_url: str, database_url: str
) -> None:
    assert postgres_url.startswith("postgresql://")
    assert database_url.startswith("postgresql://")
    name = db_name(database_url)
    assert name.startswith("dynamo_test_")
    assert await database_exists(postgres_url, name)

    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT current_database()") == name
        tables = await conn.fetchval(
            "SELECT count(*) FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
        assert tables == 0
        await conn.execute("CREATE TABLE t (x int)")
    finally:
        await conn.close()


async def test_temporary_database_is_dropped_even_with_open_connections(
    postgres_url: str,
) -> None:
    # Called from inside a running event loop on purpose: the helper must not need its own.
    with temporary_database(postgres_url) as url:
        name = db_name(url)
        assert await database_exists(postgres_url, name)
        leaked = await asyncpg.connect(url)  # a test that forgets to close its connection
    assert not await database_exists(postgres_url, name)
    assert leaked.is_closed() or await _is_dead(leaked)


async def _is_dead(conn: asyncpg.Connection) -> bool:
    try:
        await asyncio.wait_for(conn.fetchval("SELECT 1"), 5)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError, OSError):
        return True
    return False


def test_temporary_database_from_sync_code_and_on_error(postgres_url: str) -> None:
    names: list[str] = []
    with (
        pytest.raises(RuntimeError, match="test body failed"),
        temporary_database(postgres_url) as url,
    ):
        names.append(db_name(url))
        assert asyncio.run(database_exists(postgres_url, names[0]))
        raise RuntimeError("test body failed")
    assert not asyncio.run(database_exists(postgres_url, names[0]))


def test_two_temporary_databases_are_distinct(postgres_url: str) -> None:
    with temporary_database(postgres_url) as a, temporary_database(postgres_url) as b:
        assert a != b


def test_ensure_postgres_honours_the_environment_variable(
    monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    monkeypatch.setenv(
        "DYNAMO_TEST_DATABASE_URL", postgres_url.replace("postgresql://", "postgresql+asyncpg://")
    )
    assert ensure_postgres() == postgres_url


def test_ensure_postgres_fails_loudly_on_a_bad_configured_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DYNAMO_TEST_DATABASE_URL", "postgresql://nobody:pw@127.0.0.1:1/none")
    with pytest.raises(RuntimeError, match=r"DYNAMO_TEST_DATABASE_URL=.*\*\*\*.*does not answer"):
        ensure_postgres()


def test_database_url_for_keeps_host_and_query() -> None:
    assert (
        database_url_for("postgresql://postgres:@/postgres?host=/tmp/pg", "x")
        == "postgresql://postgres:@/x?host=/tmp/pg"
    )
    assert database_url_for("postgresql://u@h:5432/postgres", "x") == "postgresql://u@h:5432/x"
