"""The browser tests' stack: every service in-process on real PostgreSQL and the in-process bus,
each on a real loopback port behind the gateway, seeded once per session with a small grid
whose files are real (``file://`` sites in a temporary directory), a detox cycle, transfers
done and held, and consistency checks; then headless Chromium (Debian's) driven by Playwright.

The services run in a thread of their own with their own event loop, so the tests use
Playwright's synchronous API while the servers keep answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.seed import Seeded, seed_grid

CHROMIUM = os.environ.get("DYNAMO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
READY_TIMEOUT_MS = 60_000


@dataclass
class Stack:
    """Where the gateway answers, and what the seed put behind it."""

    url: str
    inventory_only_url: str
    """A gateway with only the inventory behind it."""
    admin_token: str
    seeded: Seeded
    dealer: bool

    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}/api/v1{path}", params=params, timeout=30)
        response.raise_for_status()
        return response.json()


class StackThread(threading.Thread):
    """Runs the services until told to stop; ``stack`` is set once the seed is in place."""

    def __init__(self, database_url: str, workdir: Path) -> None:
        super().__init__(name="browser-stack", daemon=True)
        self.database_url = database_url
        self.workdir = workdir
        self.ready = threading.Event()
        self.stack: Stack | None = None
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # handed to the fixture, which fails the session with it
            self.error = exc
        finally:
            self.ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        async with run_stack(self.database_url, self.workdir) as stack:
            self.stack = stack
            self.ready.set()
            await self.stopping.wait()

    def stop(self) -> None:
        if self.loop is not None and self.stopping is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)
        self.join(timeout=120)


@contextlib.asynccontextmanager
async def run_stack(database_url: str, workdir: Path) -> Any:
    from asgi_lifespan import LifespanManager

    from dynamo_common.bus.memory import MemoryBus
    from dynamo_inventory.app import create_app as inventory_app
    from tests.browser.seed import ENFORCER, POLICY
    from tests.integration.conftest import RunningInventory
    from tests.integration.conftest import _settings as inventory_settings
    from tests.integration.test_consistency_support import run_consistency
    from tests.integration.test_detox_support import run_detox
    from tests.integration.test_gateway_support import ADMIN_TOKEN, run_gateway, serve
    from tests.integration.test_transfer_support import run_transfer

    policy = workdir / "physics.policy"
    policy.write_text(POLICY)
    bus = MemoryBus(namespace="browser")
    await bus.connect()
    try:
        app = inventory_app(inventory_settings(database_url, "memory://", bus.namespace), bus=bus)
        async with contextlib.AsyncExitStack() as stack:
            manager = await stack.enter_async_context(
                LifespanManager(app, startup_timeout=60, shutdown_timeout=30)
            )
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=manager.app), base_url="http://inventory"
                )
            )
            inventory = RunningInventory(client=client, app=app, bus=bus)
            transfer = await stack.enter_async_context(run_transfer(inventory, database_url))
            detox = await stack.enter_async_context(
                run_detox(inventory, database_url, [policy], volume_step=0.1)
            )
            consistency = await stack.enter_async_context(
                run_consistency(inventory, database_url, max_orphans=2)
            )
            dealer = None
            if importlib.util.find_spec("dynamo_dealer") is not None:
                from tests.integration.test_dealer_support import run_dealer

                enforcer = workdir / "enforcer.json"
                enforcer.write_text(json.dumps(ENFORCER))
                dealer = await stack.enter_async_context(
                    run_dealer(
                        inventory,
                        database_url,
                        plugins={"requests": 5, "enforcer": 3},
                        enforcer_files=[enforcer],
                        max_pending_fraction=1.0,
                    )
                )
            seeded = await seed_grid(
                inventory, transfer, detox, consistency, dealer, workdir / "sites"
            )
            apps = {
                "inventory": app,
                "transfer": transfer.app,
                "detox": detox.app,
                "consistency": consistency.app,
            }
            if dealer is not None:
                apps["dealer"] = dealer.app
            gateway = await stack.enter_async_context(run_gateway(database_url, apps))
            url = await stack.enter_async_context(serve(gateway.app, lifespan="off"))
            # A second gateway in front of the inventory alone: the pages of every other
            # service must say that it is not deployed.
            alone = await stack.enter_async_context(run_gateway(database_url, {"inventory": app}))
            alone_url = await stack.enter_async_context(serve(alone.app, lifespan="off"))
            yield Stack(
                url=url,
                inventory_only_url=alone_url,
                admin_token=ADMIN_TOKEN,
                seeded=seeded,
                dealer=dealer is not None,
            )
    finally:
        await bus.close()


# Package scope, not session: Playwright's sync API keeps an event loop running in the main
# thread until it stops, and the asynchronous tests that follow this package need it gone.
@pytest.fixture(scope="package")
def stack(postgres_url: str) -> Iterator[Stack]:
    from dynamo_common.testing.postgres import temporary_database

    with (
        temporary_database(postgres_url) as database_url,
        tempfile.TemporaryDirectory(prefix="dynamo-browser-") as workdir,
    ):
        thread = StackThread(database_url, Path(workdir))
        thread.start()
        if not thread.ready.wait(timeout=600):
            raise TimeoutError("the browser tests' stack did not start within 10 minutes")
        if thread.error is not None or thread.stack is None:
            raise RuntimeError("the browser tests' stack failed to start") from thread.error
        try:
            yield thread.stack
        finally:
            thread.stop()


@pytest.fixture(scope="package")
def browser_context() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(f"{CHROMIUM} is missing: apt-get install chromium")
    with (
        sync_playwright() as playwright,
        tempfile.TemporaryDirectory(prefix="dynamo-chromium-") as profile,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1440, "height": 900},
            locale="en-US",
            timezone_id="UTC",
        )
        context.set_default_timeout(READY_TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@dataclass
class Browser:
    """One page of the browser, recording every console error, uncaught exception and failed
    request; ``allowed`` are URL patterns whose failure the test expects (a service that is
    deliberately not deployed)."""

    page: Any
    base: str
    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def _allowed(self, url: str) -> bool:
        return any(p.search(url) for p in self.allowed)

    def attach(self) -> None:
        def console(message: Any) -> None:
            if message.type != "error":
                return
            url = (message.location or {}).get("url", "")
            if "Failed to load resource" in message.text and self._allowed(url):
                return
            self.errors.append(f"console: {message.text} ({url})")

        def response(resp: Any) -> None:
            if resp.status >= 400 and not self._allowed(resp.url):
                self.errors.append(f"HTTP {resp.status}: {resp.request.method} {resp.url}")

        self.page.on("console", console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.page.on(
            "requestfailed",
            lambda req: self.errors.append(f"request failed: {req.url} ({req.failure})"),
        )
        self.page.on("response", response)

    def open(self, path: str) -> Any:
        """Load a page and wait until every panel has loaded."""
        self.page.goto(f"{self.base}{path}")
        self.wait_ready()
        return self.page

    def follow(self, action: Callable[[], object]) -> Any:
        """Do something that loads another page (a link, a form), and wait for that page."""
        with self.page.expect_navigation():
            action()
        self.wait_ready()
        return self.page

    def wait_ready(self) -> None:
        self.page.wait_for_selector("body[data-ready='1']", state="attached")

    def text(self, selector: str) -> str:
        return str(self.page.inner_text(selector))

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        # The navigation bar is sticky: from the top, it is drawn once, where it belongs.
        self.page.evaluate("window.scrollTo(0, 0)")
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def assert_clean(self) -> None:
        assert self.errors == [], "\n".join(self.errors)


@pytest.fixture
def browser(
    stack: Stack, browser_context: Any, request: pytest.FixtureRequest
) -> Iterator[Browser]:
    page = browser_context.new_page()
    driver = Browser(page=page, base=stack.url)
    if not stack.dealer:
        # The dealer is not deployed in this stack: the gateway answers 503 for it, which the
        # pages must show as a message, and which is the one failure a test may see.
        driver.allow(r"/api/v1/dealer(/|\?|$)")
    driver.attach()
    try:
        yield driver
    finally:
        with contextlib.suppress(Exception):
            driver.screenshot(request.node.name)
        with contextlib.suppress(Exception):
            # The profile is shared by the session: a token one test saved stays with it.
            page.evaluate("localStorage.clear()")
        page.close()
