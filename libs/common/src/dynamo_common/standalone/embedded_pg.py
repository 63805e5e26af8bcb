"""An embedded PostgreSQL 16 for the standalone mode, from the ``pgserver`` wheel.

The standalone mode speaks the same SQL dialect as the distributed one: it runs a real
PostgreSQL from binaries shipped in a pip wheel, in ``<data_dir>/pg``, listening on a unix socket
inside that directory only (no TCP port to clash with a system PostgreSQL).

Running as root: PostgreSQL refuses to run as root, so pgserver creates a system user
``pgserver`` (with ``useradd``), gives it the data directory, and widens the permissions of the
directories above the data directory and above its own binaries to ``o+rx`` so that user can
reach them. That happens the first time only, and needs ``useradd`` (Debian's ``passwd``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from dynamo_common.settings import to_asyncpg_dsn, to_sqlalchemy_url

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

__all__ = [
    "EmbeddedPostgres",
    "embedded_postgres",
    "embedded_postgres_async",
    "start_embedded_postgres",
]

_PG_SUBDIR = "pg"
_SYSTEM_USER = "pgserver"

# pgserver hands out one server object per data directory in a process; several users of the
# same directory (two contexts, or a test and the app it starts) must not stop it under each
# other, so the last one out stops it.
_refcounts: dict[Path, int] = {}
_refcount_lock = threading.Lock()


def _import_pgserver() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns at pgserver's import when XDG_RUNTIME_DIR is unset (root in CI,
        # containers) and falls back to /tmp/runtime-<uid>, which works.
        warnings.simplefilter("ignore")
        import pgserver
    pg_logger = logging.getLogger("pgserver")
    if pg_logger.level == logging.NOTSET:
        # pgserver logs every command line it runs at INFO.
        pg_logger.setLevel(logging.WARNING)
    return pgserver


def _check_can_run_as_root() -> None:
    if os.name != "posix" or os.geteuid() != 0:
        return
    import pwd

    try:
        pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        if shutil.which("useradd") is None:
            raise RuntimeError(
                "embedded PostgreSQL cannot run as root, and the system user "
                f"'{_SYSTEM_USER}' it would run as does not exist and cannot be created "
                "(no useradd). Create the user, run as a non-root user, or set "
                "DYNAMO_DATABASE_URL to an existing PostgreSQL."
            ) from None


def _prune_dead_handles(pgdata: Path, server_class: Any) -> None:
    """Forget processes that held the server and died without letting go (kill -9).

    pgserver records the pid of every process using a data directory and stops the server
    only when the last of them exits; a dead pid left in that list would keep the server
    running forever after.
    """
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    with server_class._lock:
        try:
            pids = json.loads(handles.read_text())
        except (OSError, ValueError):
            return
        if not isinstance(pids, list):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


@dataclass(frozen=True, slots=True)
class EmbeddedPostgres:
    """A running embedded server; ``url`` is for SQLAlchemy, ``dsn`` for asyncpg and psql."""

    pgdata: Path
    url: str
    dsn: str
    _server: PostgresServer

    def stop(self) -> None:
        """Stop the server unless another user (in this process or another live one) holds it."""
        with _refcount_lock:
            remaining = _refcounts.get(self.pgdata, 0) - 1
            if remaining > 0:
                _refcounts[self.pgdata] = remaining
                return
            _refcounts.pop(self.pgdata, None)
            _prune_dead_handles(self.pgdata, type(self._server))
            self._server.cleanup()
            # pgserver keeps its handle object when another process still held the server;
            # forget it so a later start registers this process again.
            type(self._server)._instances.pop(self.pgdata, None)


def start_embedded_postgres(data_dir: Path | str, database: str = "postgres") -> EmbeddedPostgres:
    """Start (or join) the embedded server in ``<data_dir>/pg``; blocks about a second."""
    pgserver = _import_pgserver()
    _check_can_run_as_root()
    base = Path(data_dir).expanduser().resolve()
    base.mkdir(parents=True, exist_ok=True)
    pgdata = base / _PG_SUBDIR
    with _refcount_lock:
        _prune_dead_handles(pgdata, pgserver.PostgresServer)
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
        _refcounts[pgdata] = _refcounts.get(pgdata, 0) + 1
    dsn = str(server.get_uri(database))
    return EmbeddedPostgres(
        pgdata=pgdata, url=to_sqlalchemy_url(dsn), dsn=to_asyncpg_dsn(dsn), _server=server
    )


@contextmanager
def embedded_postgres(data_dir: Path | str, database: str = "postgres") -> Iterator[str]:
    """Run the embedded server for the ``with`` block; yields its ``postgresql+asyncpg://`` URL.

    The URL points at a unix socket (``...@/postgres?host=<dir>``); use
    :func:`dynamo_common.settings.to_asyncpg_dsn` for the plain form asyncpg wants.
    """
    server = start_embedded_postgres(data_dir, database)
    try:
        yield server.url
    finally:
        server.stop()


@asynccontextmanager
async def embedded_postgres_async(
    data_dir: Path | str, database: str = "postgres"
) -> AsyncIterator[str]:
    """:func:`embedded_postgres` for a lifespan: starting and stopping run in a thread."""
    server = await asyncio.to_thread(start_embedded_postgres, data_dir, database)
    try:
        yield server.url
    finally:
        await asyncio.to_thread(server.stop)
