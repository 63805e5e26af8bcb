from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import asyncpg
import psutil
import pytest

from dynamo_common.settings import to_asyncpg_dsn
from dynamo_common.standalone.embedded_pg import (
    embedded_postgres,
    embedded_postgres_async,
    start_embedded_postgres,
)

pytestmark = pytest.mark.integration


def postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().splitlines()[0])


async def server_version(url: str) -> tuple[int, str]:
    conn = await asyncpg.connect(to_asyncpg_dsn(url))
    try:
        num = int(await conn.fetchval("SHOW server_version_num"))
        text = await conn.fetchval("SELECT version()")
    finally:
        await conn.close()
    return num, text


def test_embedded_postgres_starts_answers_and_stops(tmp_path: Path) -> None:
    with embedded_postgres(tmp_path) as url:
        assert url.startswith("postgresql+asyncpg://")
        pgdata = tmp_path / "pg"
        assert (pgdata / "PG_VERSION").read_text().strip() == "16"
        pid = postmaster_pid(pgdata)
        assert psutil.pid_exists(pid)
        num, text = asyncio.run(server_version(url))
        assert 160000 <= num < 170000
        assert text.startswith("PostgreSQL 16")
    process_gone = (
        not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    )
    assert process_gone
    assert not (pgdata / "postmaster.pid").exists()


async def test_embedded_postgres_in_a_lifespan_restarts_on_the_same_data(tmp_path: Path) -> None:
    async with embedded_postgres_async(tmp_path) as url:
        conn = await asyncpg.connect(to_asyncpg_dsn(url))
        try:
            await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        finally:
            await conn.close()
    async with embedded_postgres_async(tmp_path) as url:
        conn = await asyncpg.connect(to_asyncpg_dsn(url))
        try:
            assert await conn.fetchval("SELECT x FROM kept") == 42
        finally:
            await conn.close()


def test_nested_users_of_one_data_dir_share_the_server(tmp_path: Path) -> None:
    outer = start_embedded_postgres(tmp_path)
    try:
        with embedded_postgres(tmp_path) as inner_url:
            assert inner_url == outer.url
        # The inner user leaving must not stop the server under the outer one.
        num, _ = asyncio.run(server_version(outer.url))
        assert num >= 160000
    finally:
        outer.stop()
    assert not (tmp_path / "pg" / "postmaster.pid").exists()


def test_a_killed_holder_does_not_keep_the_server_alive(tmp_path: Path) -> None:
    # A process using the server is killed with -9: postgres keeps running (it is detached)
    # and its pid stays in pgserver's list of holders. The next user must take the server over
    # and stop it on exit, not leave it running forever.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from dynamo_common.standalone.embedded_pg import start_embedded_postgres\n"
            "start_embedded_postgres(sys.argv[1])\n"
            "print('ready', flush=True)\n"
            "time.sleep(120)\n",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    finally:
        child.kill()
        child.wait()
    pgdata = tmp_path / "pg"
    pid = postmaster_pid(pgdata)
    assert psutil.pid_exists(pid)

    with embedded_postgres(tmp_path) as url:
        assert postmaster_pid(pgdata) == pid  # joined the running server
        assert asyncio.run(server_version(url))[0] >= 160000
    assert not (pgdata / "postmaster.pid").exists()
