from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text

from dynamo_common.db import create_engine, ping, run_migrations, session_factory

pytestmark = pytest.mark.integration

ENV_PY = """
from sqlalchemy import MetaData

from dynamo_common.db import run_alembic_env

run_alembic_env(MetaData(), version_table_schema="svc")
"""

SCRIPT_MAKO = '''"""${message}"""
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
'''

REVISION_1 = """
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        schema="svc",
    )


def downgrade() -> None:
    op.drop_table("sites", schema="svc")
"""

REVISION_2 = """
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("sites", sa.Column("status", sa.Text, server_default="ready"), schema="svc")


def downgrade() -> None:
    op.drop_column("sites", "status", schema="svc")
"""


def make_migrations(root: Path, *revisions: str) -> Path:
    folder = root / "migrations"
    (folder / "versions").mkdir(parents=True)
    (folder / "env.py").write_text(ENV_PY)
    (folder / "script.py.mako").write_text(SCRIPT_MAKO)
    for i, body in enumerate(revisions, start=1):
        (folder / "versions" / f"{i:04d}.py").write_text(body)
    return folder


async def test_engine_session_and_ping(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=2, application_name="dynamo-test")
    try:
        assert await ping(engine)
        async with session_factory(engine)() as session:
            name = await session.scalar(text("SELECT current_setting('application_name')"))
            assert name == "dynamo-test"
    finally:
        await engine.dispose()


async def test_ping_is_false_when_the_database_does_not_answer() -> None:
    engine = create_engine("postgresql://nobody@127.0.0.1:1/none")
    try:
        assert not await ping(engine, timeout_s=2)
    finally:
        await engine.dispose()


async def test_run_migrations_from_a_running_loop(database_url: str, tmp_path: Path) -> None:
    folder = make_migrations(tmp_path, REVISION_1)
    # Two replicas starting together: the advisory lock and the in-process lock serialise them.
    await asyncio.gather(
        run_migrations(database_url, str(folder), "svc"),
        run_migrations(database_url, str(folder), "svc"),
    )
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT version_num FROM svc.alembic_version") == "0001"
        await conn.execute("INSERT INTO svc.sites (name) VALUES ('T2_US_MIT')")
        assert await conn.fetchval("SELECT to_regclass('public.alembic_version')") is None
    finally:
        await conn.close()

    (folder / "versions" / "0002.py").write_text(REVISION_2)
    await run_migrations(database_url, str(folder), "svc")
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT version_num FROM svc.alembic_version") == "0002"
        assert await conn.fetchval("SELECT status FROM svc.sites") == "ready"
    finally:
        await conn.close()


async def test_a_failing_migration_changes_nothing(database_url: str, tmp_path: Path) -> None:
    broken = REVISION_1.replace(
        'schema="svc",\n    )', 'schema="svc",\n    )\n    op.execute("SELEC 1")'
    )
    folder = make_migrations(tmp_path, broken)
    with pytest.raises(Exception, match="SELEC"):
        await run_migrations(database_url, str(folder), "svc")
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('svc.sites')") is None
        # The advisory lock was released: another migration can run.
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            == 0
        )
    finally:
        await conn.close()
