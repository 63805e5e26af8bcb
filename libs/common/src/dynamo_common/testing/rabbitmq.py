"""A real RabbitMQ broker for tests: found, or started, never skipped.

CI must go red when the broker is missing, so every failure here is a ``RuntimeError`` with the
reason, never a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable

import aio_pika
import aiormq

__all__ = ["DEFAULT_AMQP_URL", "delete_namespace", "ensure_rabbitmq"]

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
_START_TIMEOUT = 60.0
_POLL_INTERVAL = 1.0


async def _try_connect(url: str) -> None:
    connection = await aio_pika.connect(url, timeout=5)
    await connection.close()


def _answers(url: str) -> str | None:
    """None when an AMQP connection to ``url`` works, else why not.

    An open TCP port is not enough: RabbitMQ accepts connections on 5672 before it can serve
    them. The check runs in a thread with its own event loop so it works from sync code and
    from inside a running loop alike.
    """
    error: list[str] = []

    def run() -> None:
        try:
            asyncio.run(_try_connect(url))
        except Exception as exc:
            error.append(repr(exc))

    thread = threading.Thread(target=run, name="rabbitmq-probe", daemon=True)
    thread.start()
    thread.join(timeout=15)
    if thread.is_alive():
        return "connection attempt did not finish within 15 s"
    return error[0] if error else None


def ensure_rabbitmq() -> str:
    """URL of a working RabbitMQ broker: ``DYNAMO_TEST_AMQP_URL``, or a local one (started)."""
    configured = os.environ.get("DYNAMO_TEST_AMQP_URL")
    if configured:
        return configured
    url = DEFAULT_AMQP_URL
    first_error = _answers(url)
    if first_error is None:
        return url
    server = shutil.which("rabbitmq-server")
    if server is None:
        raise RuntimeError(
            f"RabbitMQ does not answer at {url} ({first_error}) and rabbitmq-server is not "
            "installed; set DYNAMO_TEST_AMQP_URL to a running broker"
        )
    started = subprocess.run(
        [server, "-detached"], capture_output=True, text=True, timeout=30, check=False
    )
    if started.returncode != 0:
        raise RuntimeError(
            f"`rabbitmq-server -detached` failed ({started.returncode}): "
            f"{(started.stderr or started.stdout).strip()}"
        )
    # `rabbitmqctl await_startup` fails when run right after the start; polling a real
    # connection is what works (AMQP typically answers about 6 s later).
    deadline = time.monotonic() + _START_TIMEOUT
    last_error: str | None = first_error
    while time.monotonic() < deadline:
        time.sleep(_POLL_INTERVAL)
        last_error = _answers(url)
        if last_error is None:
            return url
    raise RuntimeError(
        f"started rabbitmq-server but {url} still does not answer after {_START_TIMEOUT:.0f} s "
        f"(last error: {last_error})"
    )


def _list_with_rabbitmqctl(kind: str, prefix: str) -> list[str]:
    """Names of queues/exchanges starting with ``prefix`` (local broker only), or []."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        return []
    try:
        result = subprocess.run(
            [ctl, "-q", f"list_{kind}", "name", "--no-table-headers"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if result.returncode != 0:
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.startswith(prefix)]


async def delete_namespace(url: str, namespace: str, names: Iterable[str] | None = None) -> None:
    """Delete the exchanges and queues of a test namespace.

    ``names`` are the queue names the test declared (``RabbitBus.declared_names().queues``);
    without them, the local broker is asked with ``rabbitmqctl`` (slow: about a second).
    The three exchanges of a namespace have fixed names and are always deleted.
    """
    prefix = f"{namespace}."
    exchanges = [f"{namespace}.events", f"{namespace}.commands", f"{namespace}.dlx"]
    if names is None:
        queues = _list_with_rabbitmqctl("queues", prefix)
        exchanges += [e for e in _list_with_rabbitmqctl("exchanges", prefix) if e not in exchanges]
    else:
        queues = list(names)
    connection = await aio_pika.connect(url, timeout=10)
    try:
        for name in queues:
            await _delete(connection, "queue", name)
        for name in exchanges:
            await _delete(connection, "exchange", name)
    finally:
        await connection.close()


async def _delete(connection: aio_pika.abc.AbstractConnection, kind: str, name: str) -> None:
    # One channel per deletion: deleting something absent closes the channel (404) in some
    # broker versions, which must not stop the rest of the cleanup.
    channel = await connection.channel()
    try:
        if kind == "queue":
            await channel.queue_delete(name, if_unused=False, if_empty=False)
        else:
            await channel.exchange_delete(name, if_unused=False)
    except aiormq.exceptions.AMQPError:
        pass
    finally:
        if not channel.is_closed:
            with contextlib.suppress(Exception):
                await channel.close()
