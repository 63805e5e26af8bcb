"""Shared helpers of the `dynamo` client's tests (no tests here): a running stack (the
inventory, the transfer service and the gateway, and on request detox and consistency, each
on a real uvicorn server on loopback, on real PostgreSQL and one in-process bus) and the
command run the way a person or a script runs it (typer's CliRunner, in a worker thread, so
that the servers go on serving on the test's event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from dynamo_common.bus.base import Bus
from tests.integration.test_gateway_support import (
    ADMIN_TOKEN,
    TestIssuer,
    gateway_settings,
    serve,
)
from tests.integration.test_transfer_support import eventually, transfer_settings

OK, USAGE, NOT_FOUND, AUTH, UNREACHABLE, FAILED, TIMEOUT = 0, 1, 2, 3, 4, 5, 6


@dataclass
class Ran:
    """What a command run as a process did (the fields of CliRunner's result that tests
    read)."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Stack:
    url: str
    config: Path
    inventory_url: str
    issuer: TestIssuer
    services: dict[str, Any]
    """The apps by service name (their runtimes are in ``app.state``)."""

    async def run(self, *args: str, input: str | None = None, **env: str | None) -> Any:
        """``dynamo ARGS`` in a worker thread (the servers run on this event loop)."""
        from dynamo_common.cli import app

        environment: dict[str, str | None] = {
            "DYNAMO_CONFIG": str(self.config),
            "DYNAMO_GATEWAY_URL": None,
            "DYNAMO_TOKEN": None,
            "COLUMNS": "200",
        }
        environment.update(env)
        runner = CliRunner()
        return await asyncio.to_thread(
            runner.invoke, app, list(args), input=input, env=environment, catch_exceptions=False
        )

    async def spawn(self, token: str, *args: str) -> Ran:
        """``dynamo ARGS`` as its own process (the installed command) with ``token``: for a
        command that runs while others do (CliRunner swaps the process's sys.stdout, so two
        at once in threads would mix their output)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMO_")}
        env.update(
            DYNAMO_CONFIG=str(self.config),
            DYNAMO_GATEWAY_URL=self.url,
            DYNAMO_TOKEN=token,
            COLUMNS="200",
        )
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "dynamo"),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        stdout, stderr = await process.communicate()
        assert process.returncode is not None
        return Ran(process.returncode, stdout.decode(), stderr.decode())

    async def as_(self, token: str, *args: str, **env: str | None) -> Any:
        """``dynamo ARGS`` with ``token`` (DYNAMO_TOKEN) against this gateway."""
        return await self.run(*args, DYNAMO_GATEWAY_URL=self.url, DYNAMO_TOKEN=token, **env)

    async def caught_up(self, service: str) -> None:
        """Until ``service``'s copy of the inventory holds everything committed so far (what
        a test registered is then known to it)."""
        async with self.http() as client:
            response = await client.get("/api/v1/events", params={"after": 2**62, "limit": 1})
            assert response.status_code == 200, response.text
        state = getattr(self.services[service].state, service)
        await state.readmodel.wait_for_seq(int(response.json()["last_seq"]), timeout=60)

    def http(self, token: str | None = ADMIN_TOKEN) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)

    async def token(self, name: str, role: str) -> str:
        async with self.http() as admin:
            response = await admin.post("/api/v1/auth/accounts", json={"name": name, "role": role})
            assert response.status_code == 201, response.text
            response = await admin.post(f"/api/v1/auth/accounts/{name}/tokens", json={})
            assert response.status_code == 201, response.text
            token: str = response.json()["token"]
            return token


def as_json(result: Any) -> Any:
    """The JSON a command printed; the command must have succeeded."""
    assert result.exit_code == OK, result.output
    return json.loads(result.stdout)


def _detox(database_url: str, bus: Bus, inventory_url: str, policies: list[Path]) -> Any:
    from dynamo_detox.app import create_app
    from tests.integration.test_detox_support import detox_settings

    settings = detox_settings(database_url, bus.namespace, policies, inventory_url=inventory_url)
    return create_app(settings, bus=bus)


def _consistency(database_url: str, bus: Bus, inventory_url: str) -> Any:
    from dynamo_consistency.app import create_app
    from tests.integration.test_consistency_support import consistency_settings

    settings = consistency_settings(database_url, bus.namespace, inventory_url=inventory_url)
    return create_app(settings, bus=bus)


def _dealer(database_url: str, bus: Bus, inventory_url: str) -> Any:
    from dynamo_dealer.app import create_app
    from tests.integration.test_dealer_support import dealer_settings

    # Cycles on demand only: a test decides when the dealer places its requests.
    settings = dealer_settings(database_url, bus.namespace, inventory_url=inventory_url)
    return create_app(settings, bus=bus)


@contextlib.asynccontextmanager
async def running_stack(
    database_url: str,
    bus: Bus,
    tmp_path: Path,
    *,
    detox_policies: list[Path] | None = None,
    consistency: bool = False,
    dealer: bool = False,
    **gateway: Any,
) -> AsyncIterator[Stack]:
    """The stack; detox runs with ``detox_policies`` when given, consistency and the dealer
    on request.
    ``gateway`` overrides the gateway's settings (a service URL pointing elsewhere)."""
    from dynamo_gateway.app import create_app as gateway_app
    from dynamo_inventory.app import create_app as inventory_app
    from dynamo_inventory.settings import InventorySettings
    from dynamo_transfer.app import create_app as transfer_app

    issuer = TestIssuer()
    inventory = inventory_app(
        InventorySettings(
            database_url=database_url,
            amqp_url="memory://",
            bus_namespace=bus.namespace,
            log_format="console",
            relay_poll_interval=0.2,
            catch_up_interval=0.2,
        ),
        bus=bus,
    )
    async with contextlib.AsyncExitStack() as stack:
        idp_url = await stack.enter_async_context(serve(issuer.app))
        issuer.url = idp_url
        inventory_url = await stack.enter_async_context(serve(inventory))
        apps: dict[str, Any] = {
            "inventory": inventory,
            "transfer": transfer_app(
                transfer_settings(database_url, bus.namespace, inventory_url=inventory_url),
                bus=bus,
            ),
        }
        if detox_policies is not None:
            apps["detox"] = _detox(database_url, bus, inventory_url, detox_policies)
        if consistency:
            apps["consistency"] = _consistency(database_url, bus, inventory_url)
        if dealer:
            apps["dealer"] = _dealer(database_url, bus, inventory_url)
        values: dict[str, Any] = {
            "inventory_url": inventory_url,
            "consistency_url": "",
            "detox_url": "",
            "dealer_url": "",
            "oidc_issuers": [issuer.config()],
        }
        for name, app in apps.items():
            if name != "inventory":
                values[f"{name}_url"] = await stack.enter_async_context(serve(app))
        for name in ("detox", "consistency", "dealer"):
            if name in apps:
                state = getattr(apps[name].state, name)
                await eventually(lambda s=state: s.readmodel.ready.is_set(), f"{name} read model")
        values.update(gateway)
        url = await stack.enter_async_context(
            serve(gateway_app(gateway_settings(database_url, **values)))
        )
        yield Stack(
            url=url,
            config=tmp_path / "home" / "dynamo" / "config.toml",
            inventory_url=inventory_url,
            issuer=issuer,
            services=apps,
        )
