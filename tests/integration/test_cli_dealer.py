"""`dynamo request copy|show|cancel|list` and `dynamo subscriptions ...` against a running
stack with the dealer and the real transfer service: a copy request followed with --wait
until its files have really been copied between two file:// sites; a refused, a cancelled
and a forever-waiting request end with their documented exit codes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from dynamo_common.bus.base import Bus
from tests.integration.conftest import RunningInventory
from tests.integration.test_cli_support import (
    AUTH,
    FAILED,
    NOT_FOUND,
    OK,
    TIMEOUT,
    USAGE,
    Stack,
    as_json,
    running_stack,
)
from tests.integration.test_transfer_support import DS, Grid, eventually, seed_grid

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TB = 10**12
GROUP = "AnalysisOps"


async def _seed(stack: Stack, token: str, bus: Bus, grid: Grid) -> dict[str, Any]:
    quota = {"quotas": {"Physics": 10 * TB}}
    async with stack.http(token) as client:
        inventory = RunningInventory(client=client, app=None, bus=bus)
        await inventory.ok("POST", "/api/v1/groups", {"groups": [{"name": GROUP}]})
        await inventory.ok(
            "POST",
            "/api/v1/partitions",
            {"partitions": [{"name": "Physics", "condition": "site.storage_type == DISK"}]},
        )
        files = await seed_grid(
            inventory,
            grid,
            sites=[grid.site(name, **quota) for name in ("T1_A", "T2_B", "T2_C")],
            blocks={"b1": 2, "b2": 1},
            holders=["T1_A"],
        )
        # Owned: a copy without an owner counts as one being deleted.
        await inventory.ok(
            "PATCH",
            "/api/v1/replicas",
            {
                "block_replicas": [
                    {"dataset": DS, "block": block, "site": "T1_A", "group": GROUP}
                    for block in files
                ]
            },
        )
        return files


async def _new_request(stack: Stack, token: str, item: str) -> dict[str, Any]:
    """The caller's open request for ``item`` once the dealer has recorded it."""

    async def found() -> Any:
        page = as_json(await stack.as_(token, "request", "list", "--mine", "--json"))
        return next((r for r in page["items"] if r["items"] == [item]), None)

    request: dict[str, Any] = await eventually(found, f"the request for {item}")
    return request


async def test_copy_requests_and_subscriptions_from_the_command_line(
    database_url: str, memory_bus: Bus, tmp_path: Path
) -> None:
    grid = Grid(tmp_path / "sites")
    async with running_stack(database_url, memory_bus, tmp_path, dealer=True) as stack:
        operator = await stack.token("ops", "operator")
        ann = await stack.token("ann", "user")
        bob = await stack.token("bob", "user")
        files = await _seed(stack, operator, memory_bus, grid)
        volume = sum(len(data) for block in files.values() for _, data in block)

        # ---- a copy followed to completion: the dealer places it when its cycle runs, the
        # transfer service copies the files, the inventory sees the replica complete.
        copying = asyncio.ensure_future(
            stack.spawn(
                ann,
                "request",
                "copy",
                DS,
                "--site",
                "T2_B",
                "--group",
                GROUP,
                "--comment",
                "for my analysis",
                "--wait",
                "--interval",
                "0.2",
            )
        )
        request = await _new_request(stack, ann, DS)
        assert (request["state"], request["resolved"]) == ("new", [[DS, None]])
        result = await stack.as_(ann, "dealer", "run")
        assert result.exit_code == AUTH and "needs the operator role" in result.stderr
        ran = as_json(
            await stack.as_(operator, "dealer", "run", "--wait", "--interval", "0.2", "--json")
        )
        assert (ran["status"], ran["accepted"], ran["requested_by"]) == ("done", 1, "ops")
        result = await asyncio.wait_for(copying, 120)
        assert result.exit_code == OK, result.output
        assert f"request {request['id']}: completed" in result.stdout
        assert f"request {request['id']}" in result.stderr and "100%" in result.stderr  # the bar
        assert all(
            grid.read("T2_B", name) == data for block in files.values() for name, data in block
        )
        shown = as_json(await stack.as_(bob, "request", "show", str(request["id"]), "--json"))
        assert shown["state"] == "completed" and shown["comment"] == "for my analysis"
        assert sum(d["copied"] for d in shown["destinations"]) == volume
        result = await stack.as_(bob, "request", "show", str(request["id"]))
        assert result.exit_code == OK and "T2_B" in result.stdout and "completed" in result.stdout
        result = await stack.as_(bob, "request", "show", "999999")
        assert result.exit_code == NOT_FOUND and "no request 999999" in result.stderr

        # ---- the dealer's record of it
        page = as_json(await stack.as_(bob, "dealer", "cycles", "--json"))
        assert [c["id"] for c in page["items"]] == [ran["id"]]
        result = await stack.as_(bob, "dealer", "cycles")
        assert result.exit_code == OK and "ops" in result.stdout
        assert as_json(await stack.as_(bob, "dealer", "cycle", str(ran["id"]), "--json")) == ran
        result = await stack.as_(bob, "dealer", "cycle", str(ran["id"]))
        assert result.exit_code == OK and "1 accepted" in result.stdout
        assert "requests" in result.stdout  # the plugin
        decisions = as_json(
            await stack.as_(
                bob,
                "dealer",
                "cycle",
                str(ran["id"]),
                "--decisions",
                "--reference",
                str(request["id"]),
                "--json",
            )
        )
        assert [(d["plugin"], d["decision"], d["site"]) for d in decisions["items"]] == [
            ("requests", "accepted", "T2_B")
        ]
        result = await stack.as_(bob, "dealer", "cycle", str(ran["id"]), "--decisions")
        assert result.exit_code == OK and "T2_B" in result.stdout and "accepted" in result.stdout
        assert (await stack.as_(bob, "dealer", "cycle", "999999")).exit_code == NOT_FOUND
        # Nothing is in flight any more.
        flying = as_json(await stack.as_(bob, "dealer", "monitoring", "--json"))
        assert flying["total"]["replicas"] == 0
        assert (await stack.as_(bob, "dealer", "monitoring")).exit_code == OK
        page = as_json(await stack.as_(bob, "dealer", "monitoring", "--replicas", "--json"))
        assert page["total"] == 0

        # ---- refused by the dealer: recorded as rejected with its reason, exit 5
        result = await stack.as_(
            ann, "request", "copy", "/Nothing/*/AOD", "--site", "T2_C", "--group", GROUP
        )
        assert result.exit_code == FAILED
        assert "was rejected: unknown items: /Nothing/*/AOD" in result.stderr
        # Refused by the command line or the API: exit 1, nothing recorded.
        result = await stack.as_(ann, "request", "copy", DS, "--group", GROUP)
        assert result.exit_code == USAGE and "--site" in result.stderr
        result = await stack.as_(ann, "request", "copy", DS, "--site", "T2_C")
        assert result.exit_code == USAGE and "--group" in result.output
        result = await stack.as_(ann, "request", "copy", DS, "--site", "T2 C", "--group", GROUP)
        assert result.exit_code == USAGE and "not a site name" in result.stderr
        rejected = as_json(await stack.as_(ann, "request", "list", "--state", "rejected", "--json"))
        assert rejected["total"] == 1

        # ---- waiting longer than --timeout: exit 6, the request goes on (no cycle runs now)
        result = await stack.as_(
            ann,
            *f"request copy {DS}#b2 --site T2_C --group {GROUP}".split(),
            *["--wait", "--timeout", "1", "--interval", "0.2"],
        )
        assert result.exit_code == TIMEOUT and "gave up waiting" in result.stderr
        waiting = await _new_request(stack, ann, f"{DS}#b2")
        assert waiting["state"] == "new"

        # ---- cancelled while someone waits for it: exit 5 for them; only by its requester
        result = await stack.as_(bob, "request", "cancel", str(waiting["id"]))
        assert result.exit_code == AUTH and "belongs to ann" in result.stderr
        waiter = asyncio.ensure_future(
            stack.spawn(
                ann,
                *f"request copy {DS}#b1 --site T2_C --group {GROUP}".split(),
                *["--wait", "--interval", "0.2", "--json"],
            )
        )

        doomed = await _new_request(stack, ann, f"{DS}#b1")
        result = await stack.as_(ann, "request", "cancel", str(doomed["id"]))
        assert result.exit_code == OK and "cancelled" in result.stdout
        result = await asyncio.wait_for(waiter, 120)
        assert result.exit_code == FAILED and "was cancelled" in result.stderr
        result = await stack.as_(ann, "request", "cancel", str(doomed["id"]))
        assert result.exit_code == USAGE and "cannot be cancelled" in result.stderr

        listed = as_json(await stack.as_(ann, "request", "list", "--mine", "--json"))
        assert {r["state"] for r in listed["items"]} == {
            "completed",
            "rejected",
            "new",
            "cancelled",
        }
        result = await stack.as_(ann, "request", "list", "--mine")
        assert result.exit_code == OK and "cancelled" in result.stdout
        assert as_json(await stack.as_(bob, "request", "list", "--mine", "--json"))["total"] == 0

        # ---- subscriptions: operators add and remove them, anyone reads them
        result = await stack.as_(
            ann, "subscriptions", "add", DS, "--site", "T2_C", "--group", GROUP
        )
        assert result.exit_code == AUTH and "needs the operator role" in result.stderr
        made = as_json(
            await stack.as_(
                operator, "subscriptions", "add", DS, "--site", "T2_C", "--group", GROUP, "--json"
            )
        )
        assert (made["item"], made["site"], made["created_by"]) == (DS, "T2_C", "ops")
        result = await stack.as_(
            operator, "subscriptions", "add", DS, "--site", "T2_C", "--group", GROUP
        )
        assert result.exit_code == USAGE and "already subscribes" in result.stderr
        page = as_json(await stack.as_(ann, "subscriptions", "list", "--json"))
        assert [s["id"] for s in page["items"]] == [made["id"]]
        result = await stack.as_(ann, "subscriptions", "list", "--site", "T2_C")
        assert result.exit_code == OK and DS in result.stdout
        result = await stack.as_(operator, "subscriptions", "remove", str(made["id"]))
        assert result.exit_code == OK and "ended" in result.stdout
        result = await stack.as_(operator, "subscriptions", "remove", str(made["id"]))
        assert result.exit_code == NOT_FOUND
        assert as_json(await stack.as_(ann, "subscriptions", "list", "--json"))["total"] == 0

        # ---- deletion requests: carried out by the dealer's next cycle, never a last copy
        assert as_json(await stack.as_(ann, "request", "cancel", str(waiting["id"]), "--json"))
        asked = as_json(await stack.as_(ann, "request", "delete", DS, "--site", "T2_B", "--json"))
        assert (asked["state"], asked["size"]) == ("new", volume)
        shown = as_json(
            await stack.as_(bob, "request", "show", str(asked["id"]), "--deletion", "--json")
        )
        assert shown == asked
        result = await stack.as_(bob, "request", "cancel", str(asked["id"]), "--deletion")
        assert result.exit_code == AUTH and "belongs to ann" in result.stderr
        result = await stack.as_(ann, "request", "cancel", str(asked["id"]), "--deletion")
        assert result.exit_code == OK and "cancelled" in result.stdout

        deleting = asyncio.ensure_future(
            stack.spawn(ann, *f"request delete {DS} --site T2_B --wait --interval 0.2".split())
        )

        async def open_deletion() -> Any:
            page = as_json(await stack.as_(ann, "request", "list", "--deletions", "--json"))
            return next((r for r in page["items"] if r["state"] == "new"), None)

        deletion = await eventually(open_deletion, "the deletion request")
        ran = as_json(
            await stack.as_(operator, "dealer", "run", "--wait", "--interval", "0.2", "--json")
        )
        assert ran["status"] == "done"
        result = await asyncio.wait_for(deleting, 120)
        assert result.exit_code == OK, result.output
        assert f"deletion request {deletion['id']}: completed" in result.stdout
        assert "100%" in result.stderr  # the bar
        assert not any(
            grid.path("T2_B", name).exists() for block in files.values() for name, _ in block
        )
        page = as_json(await stack.as_(ann, "request", "list", "--deletions", "--json"))
        assert [r["state"] for r in page["items"]] == ["completed", "cancelled"]
        result = await stack.as_(ann, "request", "list", "--deletions")
        assert result.exit_code == OK and "completed" in result.stdout

        # T1_A now holds the last copy: refused at once, with the reason, exit 5.
        result = await stack.as_(ann, "request", "delete", DS, "--site", "T1_A", "--wait")
        assert result.exit_code == FAILED
        assert "was rejected: the last complete copy" in result.stderr
        assert all(
            grid.path("T1_A", name).exists() for block in files.values() for name, _ in block
        )
