"""Find or start a real PostgreSQL for tests, and hand out throw-away databases.

Tests never skip for a missing server: if none can be found or started, :func:`ensure_postgres`
raises with the reason, so CI goes red instead of quietly green.

The helpers are synchronous (pytest fixtures call them) but talk to PostgreSQL with asyncpg.
Each call runs its own event loop in a short-lived thread, so it works whether or not the
calling thread already runs a loop (pytest-asyncio, an async test calling it directly).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from dynamo_common.settings import redact_url, to_asyncpg_dsn

__all__ = [
    "DEFAULT_ADMIN_URL",
    "ENV_VAR",
    "database_url_for",
    "ensure_postgres",
    "temporary_database",
]

ENV_VAR = "DYNAMO_TEST_DATABASE_URL"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_START_TIMEOUT = 60.0
_CONNECT_TIMEOUT = 5.0
_DB_PREFIX = "dynamo_test_"

_T = TypeVar("_T")


def _run(factory: Callable[[], Awaitable[_T]]) -> _T:
    """Run a coroutine to completion on a private event loop in a separate thread."""
    outcome: dict[str, object] = {}

    async def main() -> _T:
        return await factory()

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(main())
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="dynamo-test-postgres", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        error = outcome["error"]
        assert isinstance(error, BaseException)
        raise error
    return outcome["value"]  # type: ignore[return-value]


async def _probe(dsn: str) -> str | None:
    """None when the server answers, else why not."""
    try:
        conn = await asyncpg.connect(dsn, timeout=_CONNECT_TIMEOUT)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()
    return None


def _probe_sync(dsn: str) -> str | None:
    return _run(lambda: _probe(dsn))


def _start_local_cluster() -> str:
    """Start the distribution's PostgreSQL clusters; returns what happened, for error messages."""
    if shutil.which("pg_ctlcluster") is None:
        return "pg_ctlcluster is not installed (apt-get install postgresql)"
    conf = Path("/etc/postgresql")
    versions = sorted(p.name for p in conf.iterdir() if p.is_dir()) if conf.is_dir() else []
    if not versions:
        return "no cluster configured under /etc/postgresql"
    notes: list[str] = []
    for version in versions:
        # --skip-systemctl-redirect: there is no systemd here (containers, CI); start directly.
        cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=_START_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            notes.append(f"{' '.join(cmd)}: timed out")
            continue
        output = (proc.stdout + proc.stderr).strip()
        notes.append(f"{' '.join(cmd)}: exit {proc.returncode}{': ' + output if output else ''}")
    return "; ".join(notes)


def ensure_postgres() -> str:
    """The admin URL (plain ``postgresql://`` form) of a PostgreSQL that answers.

    ``DYNAMO_TEST_DATABASE_URL`` if set; else the local server on 127.0.0.1:5432 (trust auth),
    started with ``pg_ctlcluster`` if it is down. Raises RuntimeError when neither works.
    """
    configured = os.environ.get(ENV_VAR, "").strip()
    if configured:
        dsn = to_asyncpg_dsn(configured)
        why = _probe_sync(dsn)
        if why is not None:
            raise RuntimeError(f"{ENV_VAR}={redact_url(dsn)} does not answer: {why}")
        return dsn

    first_problem = _probe_sync(DEFAULT_ADMIN_URL)
    if first_problem is None:
        return DEFAULT_ADMIN_URL

    started = _start_local_cluster()
    deadline = time.monotonic() + _START_TIMEOUT
    problem: str | None = first_problem
    while time.monotonic() < deadline:
        problem = _probe_sync(DEFAULT_ADMIN_URL)
        if problem is None:
            return DEFAULT_ADMIN_URL
        time.sleep(0.5)
    raise RuntimeError(
        f"no PostgreSQL for the tests: {DEFAULT_ADMIN_URL} does not answer ({problem}); "
        f"tried to start it: {started}. Set {ENV_VAR} to the admin URL of a server that "
        "allows CREATE DATABASE."
    )


def database_url_for(admin_url: str, database: str) -> str:
    """``admin_url`` pointing at another database on the same server (plain form)."""
    parts = urlsplit(to_asyncpg_dsn(admin_url))
    return urlunsplit(parts._replace(path="/" + database))


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def temporary_database(admin_url: str) -> Iterator[str]:
    """A new, empty database for the ``with`` block; yields its URL (plain form).

    Dropped afterwards with ``WITH (FORCE)``, which also ends connections a test left open.
    """
    admin_dsn = to_asyncpg_dsn(admin_url)
    name = f"{_DB_PREFIX}{uuid.uuid4().hex[:16]}"

    async def execute(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn, timeout=_CONNECT_TIMEOUT)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    # template0: CREATE DATABASE from template1 fails while anyone else is connected to
    # template1, which parallel test runs on a shared server can hit.
    _run(lambda: execute(f"CREATE DATABASE {_quote_ident(name)} TEMPLATE template0"))
    try:
        yield database_url_for(admin_dsn, name)
    finally:
        _run(lambda: execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)"))
