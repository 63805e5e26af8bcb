"""`dynamo inject` and `dynamo userdata ...` through the real gateway (OIDC tokens, the
permission table, identities and roles passed on to the dealer), with the inventory, the
transfer service and the dealer each on a uvicorn server and sites on file:// storage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dynamo_common.bus.base import Bus
from tests.integration.conftest import RunningInventory
from tests.integration.test_cli_support import (
    AUTH,
    FAILED,
    OK,
    USAGE,
    Stack,
    as_json,
    running_stack,
)
from tests.integration.test_transfer_support import Grid, adler32, content

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DS = "/alice/cli-v1/USER"
LFN = "/store/user/alice/cli/out{}.root"


async def _seed(stack: Stack, token: str, bus: Bus, grid: Grid) -> None:
    async with stack.http(token) as client:
        inventory = RunningInventory(client=client, app=None, bus=bus)
        quotas = {"quotas": {"Physics": 10**9, "User": 10**9}}
        await inventory.ok("POST", "/api/v1/sites", {"sites": [grid.site("T2_A", **quotas)]})
        await inventory.ok(
            "POST",
            "/api/v1/partitions",
            {"partitions": [{"name": "User", "condition": "blockreplica.owner == UserData"}]},
        )
    await stack.caught_up("dealer")


def _output(grid: Grid, index: int) -> tuple[str, bytes]:
    lfn, data = LFN.format(index), content("cli", index, 5_000 + index)
    grid.write("T2_A", lfn, data)
    return lfn, data


async def test_a_user_injects_and_follows_their_data_and_nobody_else_may(
    database_url: str, memory_bus: Bus, tmp_path: Path
) -> None:
    grid = Grid(tmp_path / "sites")
    async with running_stack(database_url, memory_bus, tmp_path, dealer=True) as stack:
        operator = await stack.token("ops", "operator")
        alice = await stack.token("alice", "user")
        bob = await stack.token("bob", "user")
        admin = await stack.token("root", "admin")
        await _seed(stack, operator, memory_bus, grid)

        # The job's local output file gives size and adler32; --declare makes the dataset.
        lfn0, _ = _output(grid, 0)
        local = grid.path("T2_A", lfn0)
        got: dict[str, Any] = as_json(
            await stack.as_(
                alice, "inject", DS, f"{local}={lfn0}", "--site", "T2_A", "--declare", "--json"
            )
        )
        assert [(f["lfn"], f["block"]) for f in got["registered"]] == [(lfn0, "u000001")]

        # A wrong checksum is reported and not registered (exit 5).
        lfn1, data1 = _output(grid, 1)
        wrong = f"{lfn1},{len(data1)},{'0' * 7}1"
        result = await stack.as_(alice, "inject", DS, wrong, "--site", "T2_A")
        assert result.exit_code == FAILED, result.output
        assert "adler32 on storage" in result.stdout
        right = f"{lfn1},{len(data1)},{adler32(data1)}"
        result = await stack.as_(alice, "inject", DS, "not-a-spec", "--site", "T2_A")
        assert result.exit_code == USAGE

        # bob is refused in alice's space; an admin is not (the gateway passes the role on).
        result = await stack.as_(bob, "inject", DS, right, "--site", "T2_A")
        assert result.exit_code == AUTH and "bob may not act on the data of alice" in result.stderr
        result = await stack.as_(bob, "userdata", "delete", DS)
        assert result.exit_code == AUTH
        got = as_json(await stack.as_(admin, "inject", DS, right, "--site", "T2_A", "--json"))
        assert [f["lfn"] for f in got["registered"]] == [lfn1]

        status = as_json(await stack.as_(bob, "userdata", "status", DS, "--json"))
        assert [(b["name"], b["site"], b["files"], b["open"]) for b in status["blocks"]] == [
            ("u000001", "T2_A", 2, True)
        ]
        result = await stack.as_(alice, "userdata", "status", DS)
        assert result.exit_code == OK and "T2_A complete" in result.stdout

        done = as_json(await stack.as_(alice, "userdata", "complete", DS, "--json"))
        assert done["state"] == "complete"
        listed = as_json(await stack.as_(alice, "userdata", "list", "--owner", "alice", "--json"))
        assert [(d["name"], d["files"]) for d in listed["items"]] == [(DS, 2)]
        quota = as_json(await stack.as_(alice, "userdata", "quota", "alice", "--json"))
        assert quota["used"] == sum(len(content("cli", i, 5_000 + i)) for i in range(2))
