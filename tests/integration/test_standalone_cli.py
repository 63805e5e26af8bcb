"""`dynamo up` refuses what it cannot do with a clear message, and starts nothing."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from dynamo_common.settings import to_asyncpg_dsn

pytestmark = pytest.mark.integration

DYNAMO = Path(sys.executable).parent / "dynamo"


def up(*args: str, database_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMO_")}
    if database_url:
        env["DYNAMO_DATABASE_URL"] = database_url
    return subprocess.run(
        [str(DYNAMO), "up", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_a_busy_port_is_reported_before_anything_starts(tmp_path: Path) -> None:
    data_dir = tmp_path / "instance"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = up("--data-dir", str(data_dir), "--port", str(port))
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not data_dir.exists()


def test_an_unknown_log_level_is_refused(tmp_path: Path) -> None:
    result = up("--data-dir", str(tmp_path / "instance"), "--log-level", "LOUD")
    assert result.returncode == 2
    assert "'LOUD' is not a log level" in result.stderr
    assert not (tmp_path / "instance").exists()


def test_a_damaged_demo_state_file_stops_the_start_and_changes_nothing(
    tmp_path: Path, database_url: str
) -> None:
    data_dir = tmp_path / "instance"
    data_dir.mkdir()
    (data_dir / "demo.json").write_text("{not json")
    result = up("--data-dir", str(data_dir), database_url=database_url)
    assert result.returncode == 1
    assert "demo.json is not a demo state file" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in data_dir.iterdir()) == ["demo.json"]
    assert asyncio.run(schemas(database_url)) == set()


async def schemas(database_url: str) -> set[str]:
    """Dynamo's schemas in the database (none before any service has started)."""
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT schema_name FROM information_schema.schemata "
            "WHERE schema_name IN ('inventory', 'transfer', 'detox', 'dealer', 'consistency', "
            "'gateway')"
        )
    finally:
        await conn.close()
    return {row["schema_name"] for row in rows}


def test_an_unreachable_database_is_reported_in_one_line(tmp_path: Path, postgres_url: str) -> None:
    missing = postgres_url.rsplit("/", 1)[0] + "/dynamo_no_such_database"
    result = up("--data-dir", str(tmp_path / "instance"), database_url=missing)
    assert result.returncode == 1
    assert "cannot use" in result.stderr
    assert 'database "dynamo_no_such_database" does not exist' in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "instance").exists()
