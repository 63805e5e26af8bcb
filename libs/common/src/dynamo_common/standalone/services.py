"""The services of a standalone instance: which are installed, where each listens, and running
each one's real app under uvicorn in this process."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import AsyncGeneratorType, CoroutineType, FrameType, GeneratorType
from typing import Any, cast

import uvicorn

from dynamo_common import service_plugin
from dynamo_common.service_plugin import ServicePlugin
from dynamo_common.settings import DynamoSettings

__all__ = [
    "FRONT_DOOR",
    "PortInUse",
    "RunningService",
    "StartupFailed",
    "bind",
    "layout",
    "loadable_plugins",
    "task_stacks",
]

FRONT_DOOR = "gateway"
"""The service on the well-known port (``--port``): the one a person opens in a browser."""


class PortInUse(RuntimeError):
    pass


class StartupFailed(RuntimeError):
    pass


def loadable_plugins() -> tuple[dict[str, ServicePlugin], dict[str, str]]:
    """The installed services that load, in start order, and the ones that do not with why:
    a service that fails to import does not stop the others (a laptop runs what works and
    says what does not)."""
    found: dict[str, ServicePlugin] = {}
    broken: dict[str, str] = {}
    for name in service_plugin.installed():
        try:
            plugin = service_plugin.load(name)
        except service_plugin.PluginError as exc:
            broken[name] = str(exc)
            continue
        if plugin is not None:
            found[plugin.name] = plugin
    ordered = dict(sorted(found.items(), key=lambda kv: (kv[1].order, kv[0])))
    return ordered, broken


def layout(names: list[str], port: int) -> dict[str, int]:
    """Ports: the front door on ``port``, the others on the following ones in start order (so
    the address to open never depends on which services are installed)."""
    ports: dict[str, int] = {}
    following = port + 1 if FRONT_DOOR in names else port
    for name in names:
        if name == FRONT_DOOR:
            ports[name] = port
        else:
            ports[name] = following
            following += 1
    return ports


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket, bound before anything starts, so a busy port is reported at
    once instead of after the database and half the services are up."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the instance stops its services in order itself
    (uvicorn would stop only the server that installed its handler last)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RunningService:
    plugin: ServicePlugin
    host: str
    port: int
    sock: socket.socket
    settings: DynamoSettings | None = None
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    stuck: str = field(default="", repr=False)
    """Where every task of the process waited when this service's stop overran its grace:
    what holds it up (a connection never given back to a pool, a task never cancelled)."""

    @property
    def name(self) -> str:
        return self.plugin.name

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, settings: DynamoSettings, **app_kwargs: Any) -> None:
        self.settings = settings
        app = self.plugin.create_app(settings, **app_kwargs)
        self.server = _Server(
            uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=10)
        )
        self.task = asyncio.create_task(self._serve(), name=f"serve:{self.name}")

    async def _serve(self) -> None:
        assert self.server is not None
        try:
            await self.server.serve(sockets=[self.sock])
        except SystemExit:
            # uvicorn exits the process when a lifespan fails; here it is one service of many.
            raise StartupFailed(f"{self.name} failed to start (its log says why)") from None

    async def started(self) -> None:
        """Return once the service serves; raise StartupFailed if it stopped instead."""
        assert self.server is not None and self.task is not None
        while not self.server.started:
            if self.task.done():
                self.task.result()
                raise StartupFailed(f"{self.name} stopped while starting (its log says why)")
            await asyncio.sleep(0.05)

    async def stop(self, grace: float = 30.0, hurry: float = 15.0) -> bool:
        """Stop through the app's lifespan; False when it did not finish within ``grace`` and
        then ``hurry`` more seconds (the app's own shutdown hangs: it is left behind rather
        than holding up the services after it)."""
        if self.server is None or self.task is None:
            self.sock.close()
            return True
        self.server.should_exit = True
        for limit in (grace, hurry):
            try:
                await asyncio.wait_for(asyncio.shield(self.task), limit)
                return True
            except TimeoutError:
                if not self.stuck:
                    self.stuck = task_stacks()
                # Skip waiting for open connections (uvicorn's second Ctrl-C).
                self.server.force_exit = True
            except Exception:
                # A failure to start was already reported; stopping goes on with the others.
                return True
        return False


def _awaited_by(task: asyncio.Task[Any]) -> list[str]:
    """The chain of coroutines ``task`` is suspended in, outermost first (``print_stack``
    shows only the outermost frame of a suspended task, which never names the culprit)."""
    lines = []
    awaitable: Any = task.get_coro()
    caller: FrameType | None = None
    for _ in range(100):
        if awaitable is not None and not _frame_of(awaitable) and caller is not None:
            # An async generator's asend() hides the generator: an `async with` on an
            # @asynccontextmanager (a lifespan) keeps it in the caller's `self.gen`.
            awaitable = _running_generator(caller) or awaitable
        frame = _frame_of(awaitable)
        if frame is None:
            if awaitable is not None:
                lines.append(f"    waiting on {awaitable!r}")
            break
        code = frame.f_code
        lines.append(f"    {code.co_filename}:{frame.f_lineno} in {code.co_name}")
        caller = frame
        if isinstance(awaitable, CoroutineType):
            awaitable = awaitable.cr_await
        elif isinstance(awaitable, GeneratorType):
            awaitable = awaitable.gi_yieldfrom
        elif isinstance(awaitable, AsyncGeneratorType):
            awaitable = awaitable.ag_await
        else:
            awaitable = getattr(awaitable, "cr_await", None)
    return lines


def _frame_of(awaitable: Any) -> FrameType | None:
    for name in ("cr_frame", "gi_frame", "ag_frame"):
        frame = getattr(awaitable, name, None)
        if frame is not None:
            return cast(FrameType, frame)
    return None


def _running_generator(frame: FrameType) -> AsyncGeneratorType[Any, Any] | None:
    owner = frame.f_locals.get("self")
    for candidate in (getattr(owner, "gen", None), *frame.f_locals.values()):
        if isinstance(candidate, AsyncGeneratorType) and candidate.ag_await is not None:
            return candidate
    return None


def task_stacks() -> str:
    """Every pending task of the running loop and where it waits, as text."""
    out = []
    for task in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
        out.append(f"task {task.get_name()}:")
        out.extend(_awaited_by(task))
    return "\n".join(out) + "\n"
