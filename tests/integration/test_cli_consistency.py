"""`dynamo consistency ...` against a running stack with the consistency service: an operator
asks for a check of a site whose storage lost a file and gained one, follows it, and reads
the result in the summary and in the site's history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dynamo_common.bus.base import Bus
from tests.integration.conftest import RunningInventory
from tests.integration.test_cli_support import AUTH, NOT_FOUND, OK, USAGE, as_json, running_stack
from tests.integration.test_consistency_support import file_site, lfn, seed
from tests.integration.test_transfer_support import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def test_a_check_asked_for_followed_and_read_from_the_command_line(
    database_url: str, memory_bus: Bus, tmp_path: Path
) -> None:
    storage = file_site(tmp_path / "sites", "T2_CHECKED")
    async with running_stack(database_url, memory_bus, tmp_path, consistency=True) as stack:
        operator = await stack.token("ops", "operator")
        user = await stack.token("ann", "user")
        async with stack.http(operator) as client:
            await seed(
                RunningInventory(client=client, app=None, bus=memory_bus),
                [storage],
                {"b1": ["T2_CHECKED"]},
            )
        await stack.caught_up("consistency")
        storage.path(lfn("b1", 0)).unlink()
        storage.write("/store/data/Consistency/AOD/b1/stray.root", b"left behind")

        # ---- asking for a check is an operator's lever; an unknown site is not found
        result = await stack.as_(user, "consistency", "check", "T2_CHECKED")
        assert result.exit_code == AUTH and "needs the operator role" in result.stderr
        result = await stack.as_(operator, "consistency", "check", "T9_NOWHERE")
        assert result.exit_code == NOT_FOUND and "T9_NOWHERE" in result.stderr
        result = await stack.as_(operator, "consistency", "check", "T2_CHECKED", "--dry-run")
        assert result.exit_code == OK, result.output
        assert "dry-run check of T2_CHECKED is requested" in result.stdout

        async def checked() -> Any:
            # The command reads the site's state and its runs in two requests: a check that
            # finishes between them shows a finished run beside the state from before it.
            site = as_json(await stack.as_(user, "consistency", "site", "T2_CHECKED", "--json"))
            runs = site["runs"]["items"]
            settled = runs and runs[0]["status"] != "running"
            return site if settled and site["site"]["last_run_id"] == runs[0]["id"] else None

        site = await eventually(checked, "the check of T2_CHECKED")
        (run,) = site["runs"]["items"]
        assert site["site"]["site"] == "T2_CHECKED" and site["site"]["last_run_id"] == run["id"]
        assert (run["status"], run["dry_run"]) == ("done", True)
        assert (run["missing_files"], run["orphan_files"]) == (1, 1)
        assert run["orphan_bytes"] == len(b"left behind")

        result = await stack.as_(user, "consistency", "site", "T2_CHECKED")
        assert result.exit_code == OK, result.output
        assert "T2_CHECKED" in result.stdout and "enabled" in result.stdout
        assert "(dry run)" in result.stdout
        result = await stack.as_(user, "consistency", "site", "T9_NOWHERE")
        assert result.exit_code == NOT_FOUND

        # ---- the summary table: the site's latest check
        summary = as_json(await stack.as_(user, "consistency", "summary", "--json"))
        (row,) = [r for r in summary["items"] if r["site"] == "T2_CHECKED"]
        assert (row["run_id"], row["missing"], row["orphans"]) == (run["id"], 1, 1)
        result = await stack.as_(user, "consistency", "summary")
        assert result.exit_code == OK, result.output
        (line,) = [line for line in result.stdout.splitlines() if "T2_CHECKED" in line]
        assert f" {run['id']} " in line and "1 (11 B)" in line
        calm = as_json(await stack.as_(user, "consistency", "summary", "--no-attention", "--json"))
        attention = as_json(
            await stack.as_(user, "consistency", "summary", "--attention", "--json")
        )
        assert calm["total"] + attention["total"] == summary["total"]

        # ---- an operator halts the site (and only an operator), then enables it again
        result = await stack.as_(user, "consistency", "state", "T2_CHECKED", "halted")
        assert result.exit_code == AUTH
        result = await stack.as_(
            operator, "consistency", "state", "T2_CHECKED", "halted", "--reason", "disk work"
        )
        assert result.exit_code == OK and "T2_CHECKED is halted (disk work)" in result.stdout
        summary = as_json(await stack.as_(user, "consistency", "summary", "--attention", "--json"))
        assert [(r["site"], r["state"]) for r in summary["items"]] == [("T2_CHECKED", "halted")]
        result = await stack.as_(operator, "consistency", "state", "T2_CHECKED", "asleep")
        assert result.exit_code == USAGE and "state" in result.stderr
        state = as_json(
            await stack.as_(operator, "consistency", "state", "T2_CHECKED", "enabled", "--json")
        )
        assert (state["site"], state["state"]) == ("T2_CHECKED", "enabled")

        # A dry run is not a flagged check: nothing to approve.
        result = await stack.as_(operator, "consistency", "approve", "T2_CHECKED", str(run["id"]))
        assert result.exit_code == USAGE, result.output
        assert f"run {run['id']} is not waiting for approval" in result.stderr
