"""The `dynamo` client commands against a running stack: the inventory, the transfer service
and the gateway each on a real uvicorn server on loopback; the command runs (typer's
CliRunner, in a worker thread) the way a person or a script would run it
(tests/integration/test_cli_support.py)."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from dynamo_common.bus.base import Bus
from tests.integration.conftest import RunningInventory
from tests.integration.test_cli_support import (
    AUTH,
    NOT_FOUND,
    OK,
    UNREACHABLE,
    USAGE,
    running_stack,
)
from tests.integration.test_cli_support import as_json as _json
from tests.integration.test_gateway_support import ADMIN_TOKEN, AUDIENCE, free_port
from tests.integration.test_transfer_support import DS, Grid, eventually, seed_grid


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

        # ---- one site, and the blocks of a dataset with where each is held
        site = _json(await stack.run("site", "T1_A", "--json"))
        assert (site["name"], site["dataset_replicas"]) == ("T1_A", 1)
        result = await stack.run("site", "T1_A")
        assert result.exit_code == OK and "T1_A" in result.stdout
        assert "1 dataset replicas" in result.stdout
        assert (await stack.run("site", "T9_NOWHERE")).exit_code == NOT_FOUND

        result = await stack.run("blocks", DS)
        assert result.exit_code == OK, result.output
        rows = {line.split()[1]: line for line in result.stdout.splitlines() if "│" in line}
        assert "T1_A" in rows["b1"] and "T1_A" in rows["b2"]
        assert " 2 " in rows["b1"] and " 1 " in rows["b2"]  # files per block
        assert _json(await stack.run("blocks", DS, "--json")) == detail
        assert (await stack.run("blocks", "/No/Such/DATASET")).exit_code == NOT_FOUND

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

        # ---- API tokens of one's own: made, used, listed, revoked
        made = _json(await stack.run("tokens", "create", "--description", "my script", "--json"))
        assert made["account"] == "ann" and made["description"] == "my script"
        me = _json(await stack.run("whoami", "--json", DYNAMO_TOKEN=made["token"]))
        assert me["name"] == "ann"
        listed = _json(await stack.run("tokens", "list", "--json"))
        assert made["id"] in [t["id"] for t in listed] and "token" not in listed[0]
        result = await stack.run("tokens", "create", "--expires-in-days", "1")
        assert result.exit_code == OK and result.stdout.strip().startswith("dyn_")
        assert "not shown again" in result.stderr
        result = await stack.run("tokens", "revoke", made["id"])
        assert result.exit_code == OK and "revoked" in result.stdout
        result = await stack.run("whoami", DYNAMO_TOKEN=made["token"])
        assert result.exit_code == AUTH and "sign in again" in result.stderr
        assert (await stack.run("tokens", "revoke", made["id"])).exit_code == NOT_FOUND
        assert "my script" not in (await stack.run("tokens", "list")).stdout

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

        # ---- operators release held files (users may not); the replica stays in flight.
        # (After the events: the retried copy must not add to the stream followed above.)
        result = await stack.run("transfers", "release", "--site", "T2_B")
        assert result.exit_code == AUTH and "needs the operator role" in result.stderr
        released = _json(
            await stack.run(
                "transfers", "release", "--site", "T2_B", "--json", DYNAMO_TOKEN=operator
            )
        )
        assert released == {"released": 1}
        flying = _json(await stack.run("transfers", "replicas", "--site", "T2_B", "--json"))
        assert [(r["dataset"], r["block"]) for r in flying["items"]] == [(DS, "b1")]
        result = await stack.run("transfers", "replicas")
        assert result.exit_code == OK and f"{DS}#b1" in result.stdout
        current = _json(await stack.run("transfers", "current", "--json"))
        assert current["total"] == len(current["items"])
        assert (await stack.run("transfers", "current")).exit_code == OK

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

        user_token = await stack.token("bob", "user")

        # A gateway that is not there.
        closed = f"http://127.0.0.1:{free_port()}"
        result = await stack.run("sites", DYNAMO_GATEWAY_URL=closed)
        assert result.exit_code == UNREACHABLE
        assert f"cannot reach the gateway at {closed}" in result.stderr

        # Forbidden: a user asks for an operator's lever; told which role it needs.
        result = await stack.run("consistency", "check", "T1_A", DYNAMO_TOKEN=user_token)
        assert result.exit_code == AUTH
        assert "forbidden" in result.stderr and "needs the operator role" in result.stderr

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
