"""The `dynamo` client commands against a running stack: the inventory, the transfer service
and the gateway each on a real uvicorn server on loopback; the command runs (typer's
CliRunner, in a worker thread) the way a person or a script would run it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from dynamo_common.bus.base import Bus
from tests.integration.conftest import RunningInventory
from tests.integration.test_gateway_support import (
    ADMIN_TOKEN,
    AUDIENCE,
    TestIssuer,
    free_port,
    gateway_settings,
    serve,
)
from tests.integration.test_transfer_support import (
    DS,
    Grid,
    eventually,
    seed_grid,
    transfer_settings,
)

OK, USAGE, NOT_FOUND, AUTH, UNREACHABLE = 0, 1, 2, 3, 4


@dataclass
class Stack:
    url: str
    config: Path
    inventory_url: str
    issuer: TestIssuer

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


@contextlib.asynccontextmanager
async def running_stack(
    database_url: str, bus: Bus, tmp_path: Path, **gateway: Any
) -> AsyncIterator[Stack]:
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
    async with serve(issuer.app) as idp_url, serve(inventory) as inventory_url:
        issuer.url = idp_url
        transfer = transfer_app(
            transfer_settings(database_url, bus.namespace, inventory_url=inventory_url), bus=bus
        )
        async with serve(transfer) as transfer_url:
            values: dict[str, Any] = {
                "inventory_url": inventory_url,
                "transfer_url": transfer_url,
                "consistency_url": "",
                "oidc_issuers": [issuer.config()],
            }
            values.update(gateway)
            settings = gateway_settings(database_url, **values)
            async with serve(gateway_app(settings)) as url:
                yield Stack(
                    url=url,
                    config=tmp_path / "home" / "dynamo" / "config.toml",
                    inventory_url=inventory_url,
                    issuer=issuer,
                )


def _json(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def test_the_client_commands_against_a_running_stack(
    database_url: str, memory_bus: Bus, tmp_path: Path
) -> None:
    grid = Grid(tmp_path / "sites")
    async with running_stack(database_url, memory_bus, tmp_path) as stack:
        operator = await stack.token("ops", "operator")
        user = await stack.token("ann", "user")

        # Register a small grid through the gateway as an operator would.
        async with stack.http(operator) as client:
            as_inventory = RunningInventory(client=client, app=None, bus=memory_bus)
            files = await seed_grid(
                as_inventory,
                grid,
                sites=[grid.site("T1_A"), grid.site("T2_B")],
                blocks={"b1": 2, "b2": 1},
                holders=["T1_A"],
            )
        missing = files["b1"][0][0]
        grid.path("T1_A", missing).unlink()

        # ---- sign in
        result = await stack.run("login", stack.url, input=f"{user}\n")
        assert result.exit_code == OK, result.output
        assert "as ann (role user)" in result.stderr
        assert stat.S_IMODE(stack.config.stat().st_mode) == 0o600
        assert user in stack.config.read_text()
        me = _json(await stack.run("whoami", "--json"))
        assert (me["name"], me["role"], me["method"]) == ("ann", "user", "token")

        # ---- the inventory, as tables and as JSON
        result = await stack.run("sites")
        assert result.exit_code == OK, result.output
        assert "T1_A" in result.stdout and "T2_B" in result.stdout
        page = _json(await stack.run("sites", "T1_*", "--json"))
        assert [s["name"] for s in page["items"]] == ["T1_A"]

        result = await stack.run("datasets", "/TransferTest/*")
        assert result.exit_code == OK and DS in result.stdout
        page = _json(await stack.run("datasets", "/Nothing/*", "--json"))
        assert page["total"] == 0

        result = await stack.run("dataset", DS)
        assert result.exit_code == OK, result.output
        assert "b1" in result.stdout and "b2" in result.stdout and "T1_A" in result.stdout
        detail = _json(await stack.run("dataset", DS, "--json"))
        assert {b["name"] for b in detail["blocks"]} == {"b1", "b2"}

        result = await stack.run("dataset", "/No/Such/DATASET")
        assert result.exit_code == NOT_FOUND
        assert "not found" in result.stderr and "/No/Such/DATASET" in result.stderr

        page = _json(await stack.run("files", DS, "b1", "--json"))
        assert sorted(f["lfn"] for f in page["items"]) == sorted(n for n, _ in files["b1"])
        result = await stack.run("files", DS, "b1")
        assert missing in result.stdout

        page = _json(await stack.run("replicas", "T1_A", "--json"))
        assert [r["dataset"] for r in page["items"]] == [DS]
        assert (await stack.run("replicas", "T9_NOWHERE")).exit_code == NOT_FOUND

        stats = _json(await stack.run("stats", "--json"))
        assert stats["group_by"] == ["site"]
        assert "T1_A" in (await stack.run("stats")).stdout

        # ---- paging: one row per page, then --all
        page = _json(await stack.run("sites", "--limit", "1", "--json"))
        assert (len(page["items"]), page["total"]) == (1, 2)
        result = await stack.run("sites", "--limit", "1")
        assert "1-1 of 2" in result.stdout
        page = _json(await stack.run("sites", "--limit", "1", "--all", "--json"))
        assert len(page["items"]) == 2

        # ---- transfers: a copy whose source file is gone ends up held, with its reason
        async with stack.http(user) as client:
            response = await client.post(
                "/api/v1/transfers/requests",
                json={"requests": [{"dataset": DS, "block": "b1", "site": "T2_B"}]},
            )
            assert response.status_code == 200, response.text

        async def held() -> Any:
            page = _json(await stack.run("transfers", "held", "--json"))
            return page if page["total"] == 1 else None

        page = await eventually(held, "the missing file held")
        assert page["items"][0]["lfn"] == missing
        result = await stack.run("transfers", "held")
        assert result.exit_code == OK and "missing" in result.stdout

        summary = _json(await stack.run("transfers", "summary", "--json"))
        assert "held" in summary["totals"]
        assert "held" in (await stack.run("transfers", "summary")).stdout

        history = _json(await stack.run("transfers", "history", "--result", "failed", "--json"))
        assert history["total"] >= 1
        assert (await stack.run("transfers", "history")).exit_code == OK

        # ---- events: the last few, then following new ones
        result = await stack.run("events", "tail", "-n", "3", "--no-follow", "--json")
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(lines) == 3
        seqs = [e["seq"] for e in lines]
        assert seqs == sorted(seqs)
        last = seqs[-1]

        follower = asyncio.ensure_future(
            stack.run("events", "tail", "-n", "0", "--count", "1", "--interval", "0.1")
        )
        await asyncio.sleep(0.5)
        async with stack.http(operator) as client:
            response = await client.post("/api/v1/sites", json={"sites": [grid.site("T3_NEW")]})
            assert response.status_code == 200, response.text
        result = await asyncio.wait_for(follower, 30)
        assert result.exit_code == OK, result.output
        (line,) = result.stdout.splitlines()
        assert "T3_NEW" in line and int(line.split()[0]) > last

        # ---- usage errors exit 1 (click would say 2, which means "not found" here)
        assert (await stack.run("datasets", "--no-such-option")).exit_code == USAGE
        assert (await stack.run("sites", "--limit", "0")).exit_code == USAGE
        assert (await stack.run("transfers", "nonsense")).exit_code == USAGE
        result = await stack.run("stats", "--group-by", "colour")
        assert result.exit_code == USAGE and "colour" in result.stderr

        # ---- the environment overrides the file, for scripts
        result = await stack.run("whoami", "--json", DYNAMO_TOKEN=operator)
        assert _json(result)["name"] == "ops"

        # ---- signed out: reads stay public, the identity is gone
        assert (await stack.run("logout")).exit_code == OK
        assert user not in stack.config.read_text()
        assert _json(await stack.run("whoami", "--json"))["method"] == "anonymous"
        assert (await stack.run("sites", "--json")).exit_code == OK


async def test_client_errors_say_what_to_do_and_exit_with_their_code(
    database_url: str, memory_bus: Bus, tmp_path: Path
) -> None:
    async with running_stack(database_url, memory_bus, tmp_path, public_reads=False) as stack:
        # Nothing configured yet.
        result = await stack.run("datasets")
        assert result.exit_code == USAGE
        assert "dynamo login" in result.stderr

        # A refused token at sign-in leaves the configuration alone.
        result = await stack.run("login", stack.url, "--token", "dyn_aaaaaaaaaaaa_" + "b" * 43)
        assert result.exit_code == AUTH
        assert "unknown or revoked" in result.stderr
        assert not stack.config.exists()

        # Anonymous with private reads: told to sign in.
        assert (await stack.run("login", stack.url, "--anonymous")).exit_code == OK
        result = await stack.run("datasets")
        assert result.exit_code == AUTH
        assert "not signed in" in result.stderr and "dynamo login" in result.stderr

        # An expired OIDC token: told so, and how to fix it.
        expired = stack.issuer.token("alice", exp=1_000_000, iat=999_000)
        result = await stack.run("datasets", DYNAMO_TOKEN=expired)
        assert result.exit_code == AUTH
        assert "expired" in result.stderr and "sign in again" in result.stderr
        fresh = stack.issuer.token("alice", aud=AUDIENCE)
        assert (await stack.run("datasets", "--json", DYNAMO_TOKEN=fresh)).exit_code == OK

        # The token file of the bootstrap admin works for `login --token-file`.
        token_file = tmp_path / "admin-token"
        token_file.write_text(ADMIN_TOKEN + "\n")
        result = await stack.run("login", "--token-file", str(token_file))
        assert result.exit_code == OK and "as admin (role admin)" in result.stderr

        # A gateway that is not there.
        closed = f"http://127.0.0.1:{free_port()}"
        result = await stack.run("sites", DYNAMO_GATEWAY_URL=closed)
        assert result.exit_code == UNREACHABLE
        assert f"cannot reach the gateway at {closed}" in result.stderr

        # Forbidden: a user's write.
        from dynamo_common.client.api import Gateway
        from dynamo_common.client.config import ClientConfig
        from dynamo_common.client.errors import ClientError, ExitCode

        user = await stack.token("ann", "user")
        with (
            Gateway(ClientConfig(url=stack.url, token=user)) as gateway,
            pytest.raises(ClientError) as refused,
        ):
            await asyncio.to_thread(gateway.post, "/api/v1/sites", {"sites": []})
        assert refused.value.code == ExitCode.AUTH
        assert "forbidden" in refused.value.message and "operator" in refused.value.message


async def test_a_service_behind_the_gateway_that_is_down(
    database_url: str, memory_bus: Bus, tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with running_stack(database_url, memory_bus, tmp_path, inventory_url=closed) as stack:
        result = await stack.run("datasets", DYNAMO_GATEWAY_URL=stack.url)
        assert result.exit_code == UNREACHABLE
        assert "inventory service is unavailable" in result.stderr
        # The transfer service is up: its commands still work.
        result = await stack.run("transfers", "summary", "--json", DYNAMO_GATEWAY_URL=stack.url)
        assert result.exit_code == OK, result.output
