"""``dynamo up``: a whole Dynamo instance in one process.

Every installed service runs its real app (the same code as in production) under uvicorn, on
one in-process bus, against one PostgreSQL (embedded from the ``pgserver`` wheel, or the one
``DYNAMO_DATABASE_URL`` names). The inventory starts first (everyone reads it), the gateway last
(it is the front door, on ``--port``). Ctrl-C stops them in the reverse order, each through
its own lifespan, so nothing acknowledged is lost and the next start finds everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
from rich.console import Console
from rich.markup import escape

from dynamo_common.bus.memory import MemoryBus
from dynamo_common.settings import DynamoSettings, redact_url, to_asyncpg_dsn
from dynamo_common.standalone.demo import schedules
from dynamo_common.standalone.demo.seed import SeedError
from dynamo_common.standalone.demo.state import DemoState, DemoStateError, load_state
from dynamo_common.standalone.progress import ProgressReporter
from dynamo_common.standalone.services import (
    FRONT_DOOR,
    PortInUse,
    RunningService,
    StartupFailed,
    bind,
    layout,
    loadable_plugins,
)

__all__ = ["Options", "run_standalone"]

T = TypeVar("T")

_COMMAND_TAKERS = ("transfer",)
"""Services that agents send commands to (besides the inventory, which starts first)."""


@dataclass(frozen=True, slots=True)
class Options:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    demo: bool | None = None
    """None: seed the demo on an empty instance (and keep a demo instance's schedules)."""
    log_level: str = "WARNING"
    database_url: str = ""
    """An existing PostgreSQL; empty: the embedded one in ``<data_dir>/pg``."""


class _Stopped(Exception):
    """Ctrl-C (or SIGTERM) arrived while the instance was still starting."""


@dataclass
class _Instance:
    options: Options
    console: Console
    services: dict[str, RunningService]
    bus: MemoryBus
    stop: asyncio.Event
    started_at: float
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    progress: ProgressReporter | None = None
    start_order: list[RunningService] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.options.data_dir

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {text}")

    # ------------------------------------------------------------------ starting

    def settings(self, service: RunningService, db_url: str, demo: bool) -> DynamoSettings:
        cls = service.plugin.settings_class
        fields = set(cls.model_fields)
        values: dict[str, Any] = {
            "database_url": db_url,
            "amqp_url": "memory://",
            "data_dir": self.data_dir,
            "log_format": "console",
            "log_level": self.options.log_level,
            "http_host": service.host,
            "http_port": service.port,
        }
        # Every service finds the others where this process puts them (``<name>_url``).
        values.update(
            (f"{other.name}_url", other.url)
            for other in self.services.values()
            if f"{other.name}_url" in fields
        )
        values.update(schedules.policy_settings(service.name, fields, self.data_dir))
        if demo:
            values.update(schedules.demo_settings(service.name, fields))
        return cls(**values)

    async def until_stopped(self, work: Awaitable[T]) -> T:
        """``work``, unless Ctrl-C comes first (then it is cancelled and _Stopped raised)."""
        task = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise _Stopped

    async def start(self, db_url: str, state: DemoState | None) -> None:
        inventory = self.services["inventory"]
        self.launch(inventory, db_url, demo=False)
        await self.until_stopped(inventory.started())
        urls = {s.name: s.url for s in self.services.values()}
        self.progress = ProgressReporter(self.bus, urls, self.say)
        await self.progress.start()
        empty = await self.until_stopped(_inventory_empty(inventory.url))
        demo = self.decide_demo(state, empty)
        if demo:
            from dynamo_common.standalone.demo import run as demo_run

            if state is None:
                self.install_policies()
            # Before the agents start: their first cycles see the grid.
            state = await self.until_stopped(
                demo_run.seed_demo(self.bus, self.data_dir, state, self.say)
            )
        # The services that take the agents' commands first, and ready (their command queues
        # exist: the in-process bus, like any broker, drops what no queue is bound for).
        takers = [s for s in self.services.values() if s.name in _COMMAND_TAKERS]
        for service in takers:
            self.launch(service, db_url, demo)
            await self.until_stopped(service.started())
            await self.until_stopped(self.ready(service))
        others = [
            s for s in self.services.values() if s.name not in ("inventory", *_COMMAND_TAKERS)
        ]
        for service in others:
            self.launch(service, db_url, demo)
        await self.until_stopped(asyncio.gather(*(s.started() for s in others)))
        self.banner()
        if demo and state is not None:
            self.tasks.append(asyncio.create_task(self.play(state, urls), name="demo"))

    def launch(self, service: RunningService, db_url: str, demo: bool) -> None:
        service.start(self.settings(service, db_url, demo), bus=self.bus)
        self.start_order.append(service)

    async def play(self, state: DemoState, urls: dict[str, str]) -> None:
        from dynamo_common.standalone.demo import run as demo_run

        token = self.admin_token()
        staged = await self.scene(
            "staging", demo_run.stage_demo(self.data_dir, state, urls, token, self.say)
        )
        await asyncio.gather(
            self.scene("users", demo_run.users_forever(staged or state, urls, token, self.say)),
            self.scene(
                "production",
                demo_run.production_forever(self.bus, self.data_dir, state, urls, self.say),
            ),
        )

    async def scene(self, name: str, work: Awaitable[T]) -> T | None:
        """One of the demo's scenes; if it breaks, the services and the other scenes go on."""
        try:
            return await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.say(f"[red]the demo's {name} stopped[/]: {type(exc).__name__}: {exc}")
            return None

    async def ready(self, service: RunningService, within: float = 120.0) -> None:
        """Wait for the service's /readyz; after ``within`` seconds go on regardless (its
        readiness endpoint says what it waits for) rather than hold the whole instance."""
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=10.0) as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{service.url}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        self.say(f"[yellow]{service.name} is not ready yet[/] (see {service.url}/readyz)")

    def decide_demo(self, state: DemoState | None, empty: bool) -> bool:
        wanted = self.options.demo
        if wanted is False:
            return False
        if state is not None:
            return True
        if empty:
            return True
        if wanted:
            self.say(
                "[yellow]not seeding the demo[/]: this instance already holds data the demo "
                "did not make"
            )
        return False

    def install_policies(self) -> None:
        """The demo's policy files, copied where the operator can edit them."""
        folder = schedules.instance_policies(self.data_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name in schedules.POLICY_FILES:
            target = folder / name
            if not target.exists():
                shutil.copyfile(schedules.POLICIES / name, target)

    def admin_token(self) -> str | None:
        gateway = self.services.get(FRONT_DOOR)
        if gateway is None or gateway.settings is None:
            return None
        secret = getattr(gateway.settings, "admin_token", None)
        if secret is not None and secret.get_secret_value():
            return str(secret.get_secret_value())
        token_file = getattr(gateway.settings, "bootstrap_token_file", None)
        if token_file is None:
            return None
        try:
            return str(Path(token_file()).read_text(encoding="utf-8").strip())
        except OSError:
            return None

    def banner(self) -> None:
        front = self.services.get(FRONT_DOOR) or next(iter(self.services.values()))
        elapsed = time.monotonic() - self.started_at
        c = self.console
        c.print()
        c.print(f"[bold green]Dynamo is up[/] in {elapsed:.1f} s:  [bold]{front.url}/[/]")
        c.print(f"  API documentation  {front.url}/docs")
        token = self.admin_token()
        if token:
            gateway = self.services[FRONT_DOOR]
            token_file = getattr(gateway.settings, "bootstrap_token_file", lambda: None)()
            c.print(f"  admin token        [bold]{escape(token)}[/]")
            if token_file is not None:
                c.print(f"  sign in            dynamo login {front.url} --token-file {token_file}")
        others = ", ".join(f"{s.name} :{s.port}" for s in self.services.values() if s is not front)
        c.print(f"  services           {front.name} :{front.port}, {others}")
        where = (
            redact_url(self.options.database_url)
            if self.options.database_url
            else f"embedded PostgreSQL in {self.data_dir / 'pg'}"
        )
        c.print(f"  database           {where}")
        c.print(f"  data               {self.data_dir}")
        c.print("  Ctrl-C stops it; start it again and everything is there.")
        c.print()

    # ------------------------------------------------------------------ running and stopping

    async def serve_until_stopped(self) -> int:
        """0 after Ctrl-C; 1 when a service stopped by itself (its log says why)."""
        watched: dict[asyncio.Future[Any], RunningService] = {
            s.task: s for s in self.services.values() if s.task is not None
        }
        stopper: asyncio.Future[Any] = asyncio.ensure_future(self.stop.wait())
        done, _ = await asyncio.wait({stopper, *watched}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for task in done:
            if task in watched:
                self.say(f"[red]{watched[task].name} stopped unexpectedly[/]; stopping the rest")
                return 1
        return 0

    async def shutdown(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.progress is not None:
            await self.progress.stop()
        # In the reverse order of the start, one at a time: the front door first (no new
        # requests), the inventory last (the others send it their last commands and reports
        # while they stop), and no agent outlives a service it calls (the dealer reads
        # detox's API; every agent sends commands to the transfer service).
        for service in reversed(self.start_order):
            if not await service.stop():
                self.say(f"[red]{service.name} did not stop in time[/]; leaving it behind")
            if service.stuck:
                self.record_stuck(service)
        for service in self.services.values():
            if service not in self.start_order:
                await service.stop()

    def record_stuck(self, service: RunningService) -> None:
        """Where the tasks waited while ``service`` was slow to stop, kept for a bug report
        (a stop that overruns is rare and not reproducible at will)."""
        path = self.data_dir / f"stop-{service.name}-{time.strftime('%Y%m%dT%H%M%S')}.txt"
        try:
            path.write_text(service.stuck, encoding="utf-8")
        except OSError as exc:
            self.say(f"[yellow]cannot write {path}[/]: {exc}")
            return
        self.say(f"{service.name} was slow to stop; where its tasks waited: {path}")


async def _inventory_empty(url: str) -> bool:
    async with httpx.AsyncClient(timeout=30.0) as http:
        response = await http.get(f"{url}/api/v1/sites", params={"limit": 1})
        response.raise_for_status()
        return int(response.json()["total"]) == 0


async def _database_problem(url: str) -> str | None:
    """Why the configured PostgreSQL cannot be used, or None: said in one line before any
    service starts, instead of in a traceback from the first service that tries."""
    try:
        conn = await asyncpg.connect(to_asyncpg_dsn(url), timeout=15)
    except (OSError, asyncpg.PostgresError, TimeoutError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    await conn.close()
    return None


@contextlib.asynccontextmanager
async def _database(options: Options) -> AsyncIterator[str]:
    if options.database_url:
        yield options.database_url
        return
    from dynamo_common.standalone.embedded_pg import embedded_postgres_async

    async with embedded_postgres_async(options.data_dir) as url:
        yield url


def _signals(loop: asyncio.AbstractEventLoop, on_signal: Callable[[], None]) -> Callable[[], None]:
    handled = [signal.SIGINT, signal.SIGTERM]
    for sig in handled:
        loop.add_signal_handler(sig, on_signal)

    def remove() -> None:
        for sig in handled:
            loop.remove_signal_handler(sig)

    return remove


async def run_standalone(options: Options, console: Console) -> int:
    """Run the instance until Ctrl-C or SIGTERM; returns the process's exit status."""
    started_at = time.monotonic()
    plugins, broken = loadable_plugins()
    for name, why in broken.items():
        console.print(f"[yellow]warning[/]: service {name} is installed but does not load: {why}")
    if "inventory" not in plugins:
        console.print("[red]the inventory service is not installed[/]: nothing to run")
        return 1
    try:
        # Read before anything starts: a broken file must not leave a half-started instance.
        state = load_state(options.data_dir)
    except DemoStateError as exc:
        console.print(f"[red]{exc}[/]")
        return 1
    if options.database_url:
        problem = await _database_problem(options.database_url)
        if problem:
            console.print(f"[red]cannot use {redact_url(options.database_url)}[/]: {problem}")
            return 1
    ports = layout(list(plugins), options.port)
    sockets = {}
    try:
        # The port asked for first: when it is busy, that is the one to name, whatever else
        # happens to hold one of the following ports at that moment.
        for name, port in sorted(ports.items(), key=lambda item: item[1] != options.port):
            sockets[name] = bind(options.host, port)
    except PortInUse as exc:
        for sock in sockets.values():
            sock.close()
        console.print(f"[red]{exc}[/]: choose other ports with --port (services use {len(ports)})")
        return 2
    options.data_dir.mkdir(parents=True, exist_ok=True)
    services = {
        name: RunningService(plugins[name], options.host, ports[name], sockets[name])
        for name in plugins
    }
    bus = MemoryBus(namespace="dynamo")
    await bus.connect()
    stop = asyncio.Event()
    instance = _Instance(options, console, services, bus, stop, started_at)

    def on_signal() -> None:
        if stop.is_set():
            console.print("[yellow]stopping at once[/] (second Ctrl-C)")
            for service in services.values():
                if service.server is not None:
                    service.server.force_exit = True
            return
        console.print("\nstopping (Ctrl-C again to hurry)...")
        stop.set()

    remove_signals = _signals(asyncio.get_running_loop(), on_signal)
    status = 0
    try:
        async with _database(options) as db_url:
            try:
                await instance.start(db_url, state)
                status = await instance.serve_until_stopped()
            except _Stopped:
                status = 0
            except (StartupFailed, SeedError) as exc:
                console.print(f"[red]{exc}[/]")
                status = 1
            finally:
                await instance.shutdown()
    finally:
        remove_signals()
        await bus.close()
        for sock in sockets.values():
            sock.close()
    if status == 0:
        console.print("stopped")
    return status


def default_log_level() -> str:
    return os.environ.get("DYNAMO_LOG_LEVEL", "WARNING")
