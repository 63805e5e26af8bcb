"""`dynamo locks ...` and `dynamo detox ...` against a running stack with detox: a lock keeps a
dataset that the policy would delete, an operator runs a cycle and waits for it, anyone reads
why each replica was deleted or kept, and a policy test is compared with the real cycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dynamo_common.bus.base import Bus
from tests.integration.conftest import RunningInventory
from tests.integration.test_cli_support import (
    AUTH,
    NOT_FOUND,
    OK,
    USAGE,
    as_json,
    running_stack,
)
from tests.integration.test_detox_support import GB, seed
from tests.integration.test_gateway_support import ADMIN_TOKEN
from tests.integration.test_transfer_support import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

POLICY = """\
Partition Physics
When site.occupancy > 0.9
Until site.occupancy < 0.85
ProtectBlock blockreplica.is_locked
Protect dataset.name == /Keep/*/*
Dismiss
Order increasing dataset.name
"""
# A campaign at the other site only: whatever the real cycle's deletions have done since to
# T2_FULL, this test run's result is the same.
CAMPAIGN = """\
Partition Physics
When site.name == T2_FINE
Until never
Dismiss
Order increasing dataset.name
"""
FULL = {
    "T2_FULL": 20 * GB,  # 25 GB held: 125%
    "T2_FINE": 100 * GB,
}
HELD = {
    "T2_FULL": [(f"/D{i:02d}/Run-v1/AOD", 5 * GB) for i in range(4)]
    + [("/Keep/Run-v1/AOD", 5 * GB)],
    "T2_FINE": [("/F00/Run-v1/AOD", 5 * GB), ("/F01/Run-v1/AOD", 5 * GB)],
}


async def test_locks_cycles_decisions_and_policy_tests_from_the_command_line(
    database_url: str, memory_bus: Bus, tmp_path: Path
) -> None:
    policy_file = tmp_path / "Physics.txt"
    policy_file.write_text(POLICY)
    async with running_stack(
        database_url, memory_bus, tmp_path, detox_policies=[policy_file]
    ) as stack:
        operator = await stack.token("ops", "operator")
        ann = await stack.token("ann", "user")
        bob = await stack.token("bob", "user")
        async with stack.http(operator) as client:
            await seed(RunningInventory(client=client, app=None, bus=memory_bus), FULL, HELD)

        # ---- locks: ann keeps /D01 at T2_FULL for a week
        lock = as_json(
            await stack.as_(
                ann,
                "locks",
                "add",
                "/D01/*/AOD",
                "--sites",
                "T2_FULL",
                "--until",
                "7d",
                "--comment",
                "my analysis",
                "--json",
            )
        )
        assert (lock["owner"], lock["sites"], lock["active"]) == ("ann", "T2_FULL", True)
        in_a_week = datetime.fromisoformat(lock["until"]) - datetime.now(UTC)
        assert timedelta(days=6, hours=23) < in_a_week <= timedelta(days=7)
        page = as_json(await stack.as_(ann, "locks", "list", "--json"))
        assert [item["id"] for item in page["items"]] == [lock["id"]]
        result = await stack.as_(ann, "locks", "list")
        assert result.exit_code == OK and "/D01/*/AOD" in result.stdout
        assert "my analysis" in result.stdout

        # A lock in the past, or an end that is no time at all: refused, nothing stored.
        result = await stack.as_(ann, "locks", "add", "/D02/*/AOD", "--until", "2020-01-01T00:00Z")
        assert result.exit_code == USAGE and "future" in result.stderr
        result = await stack.as_(ann, "locks", "add", "/D02/*", "--until", "soon")
        assert result.exit_code == USAGE and "neither a time" in result.stderr
        assert as_json(await stack.as_(ann, "locks", "list", "--json"))["total"] == 1
        # Anonymous: told to sign in.
        result = await stack.run("locks", "add", "/D02/*", "--until", "1d")
        assert result.exit_code == USAGE  # no gateway configured at all
        result = await stack.run(
            "locks", "add", "/D02/*", "--until", "1d", DYNAMO_GATEWAY_URL=stack.url
        )
        assert result.exit_code == AUTH and "dynamo login" in result.stderr

        # Extended by its owner; not by someone else.
        extended = as_json(
            await stack.as_(ann, "locks", "extend", str(lock["id"]), "--until", "14d", "--json")
        )
        assert extended["until"] > lock["until"]
        result = await stack.as_(bob, "locks", "extend", str(lock["id"]), "--until", "1d")
        assert result.exit_code == AUTH and "belongs to ann" in result.stderr

        # ---- running a cycle is an operator's lever
        result = await stack.as_(ann, "detox", "run", "Physics")
        assert result.exit_code == AUTH and "needs the operator role" in result.stderr
        result = await stack.as_(operator, "detox", "run", "Nowhere")
        assert result.exit_code == NOT_FOUND and "Physics" in result.stderr

        ran = as_json(
            await stack.as_(
                operator,
                "detox",
                "run",
                "Physics",
                "--comment",
                "by hand",
                "--wait",
                "--interval",
                "0.1",
                "--json",
            )
        )
        cycle = ran["cycle"]
        assert (cycle["status"], cycle["kind"], cycle["requested_by"]) == ("done", "real", "ops")
        # 125% -> D00 goes (100%), D01 is locked, D02 goes (75%): under 85%.
        assert (cycle["replicas_deleted"], cycle["bytes_deleted"]) == (2, 10 * GB)
        by_site = {s["site"]: s for s in ran["sites"]["items"]}
        assert by_site["T2_FULL"]["triggered"] and not by_site["T2_FINE"]["triggered"]
        assert by_site["T2_FULL"]["used_after"] == 15 * GB

        # ---- the record: cycles, one cycle, its decisions at a site
        page = as_json(await stack.run("detox", "cycles", "--json", DYNAMO_GATEWAY_URL=stack.url))
        assert [c["id"] for c in page["items"]] == [cycle["id"]]
        result = await stack.as_(ann, "detox", "cycles")
        assert result.exit_code == OK and "Physics" in result.stdout and "ops" in result.stdout

        # `run --wait` returns when the cycle is done; its deletion commands are sent after
        # that, so their tally may have moved on by the next fetch: the rest may not.
        again = as_json(await stack.as_(ann, "detox", "cycle", str(cycle["id"]), "--json"))
        assert again["sites"] == ran["sites"]
        assert {k: v for k, v in again["cycle"].items() if k != "commands"} == {
            k: v for k, v in cycle.items() if k != "commands"
        }
        assert again["cycle"]["commands"]["batches"] == cycle["commands"]["batches"]
        assert again["cycle"]["commands"]["pending"] <= cycle["commands"]["pending"]
        result = await stack.as_(ann, "detox", "cycle", str(cycle["id"]))
        assert result.exit_code == OK, result.output
        assert "T2_FULL" in result.stdout and "by hand" in result.stdout
        assert "25.0 GB (125%)" in result.stdout and "15.0 GB (75%)" in result.stdout

        decisions = as_json(
            await stack.as_(ann, "detox", "cycle", str(cycle["id"]), "--site", "T2_FULL", "--json")
        )
        decided = {d["dataset"]: (d["decision"], d["rule"]) for d in decisions["items"]}
        assert decided == {
            "/D00/Run-v1/AOD": ("delete", "Dismiss"),
            "/D01/Run-v1/AOD": ("protect", "ProtectBlock blockreplica.is_locked"),
            "/D02/Run-v1/AOD": ("delete", "Dismiss"),
            "/D03/Run-v1/AOD": ("keep", "Dismiss"),
            "/Keep/Run-v1/AOD": ("protect", "Protect dataset.name == /Keep/*/*"),
        }
        result = await stack.as_(ann, "detox", "cycle", "999999")
        assert result.exit_code == NOT_FOUND and "no cycle 999999" in result.stderr

        # ---- why was it deleted, why was it kept
        why = as_json(await stack.as_(ann, "detox", "why", "/D01/Run-v1/AOD", "--json"))
        assert [(d["site"], d["decision"]) for d in why["items"]] == [("T2_FULL", "protect")]
        result = await stack.as_(ann, "detox", "why", "/D00/*", "--site", "T2_FULL")
        assert result.exit_code == OK
        assert "delete" in result.stdout and "Dismiss" in result.stdout
        result = await stack.as_(ann, "detox", "why", "/Never/Seen/AOD")
        assert result.exit_code == OK and "no cycle has decided on /Never/Seen/AOD" in result.stdout

        # ---- a policy test: the campaign at T2_FINE against the real cycle
        campaign = tmp_path / "campaign.txt"
        campaign.write_text(CAMPAIGN)
        tested = as_json(
            await stack.as_(
                ann, "detox", "test", str(campaign), "--wait", "--interval", "0.1", "--json"
            )
        )
        assert (tested["run"]["kind"], tested["run"]["status"]) == ("test", "done")
        comparison = tested["comparison"]
        assert comparison["real_cycle"] == cycle["id"]
        assert (comparison["additional"], comparison["additional_bytes"]) == (2, 10 * GB)
        assert (comparison["kept"], comparison["kept_bytes"]) == (2, 10 * GB)
        result = await stack.as_(ann, "detox", "test", str(campaign), "--wait", "--interval", "0.1")
        assert result.exit_code == OK, result.output
        assert f"Against real cycle {cycle['id']}: 2 more replicas deleted" in result.stdout
        assert "/F00/Run-v1/AOD" in result.stdout and "kept instead" in result.stdout

        # Without --wait: queued, and found in the record.
        submitted = as_json(await stack.as_(ann, "detox", "test", str(campaign), "--json"))
        assert submitted["status"] == "queued"

        async def finished() -> Any:
            run = as_json(await stack.as_(ann, "detox", "cycle", str(submitted["id"]), "--json"))
            return run if run["cycle"]["status"] == "done" else None

        await eventually(finished, "the test run")

        # A policy with errors: every error, FILE:LINE:COL; nothing runs.
        broken = tmp_path / "broken.txt"
        broken.write_text("Partition Physics\nWhen site.occupancy > x\nDismis\n")
        result = await stack.as_(ann, "detox", "test", str(broken))
        assert result.exit_code == USAGE
        assert "policy:3:1: unknown statement 'Dismis'" in result.stderr
        result = await stack.as_(ann, "detox", "test", str(tmp_path / "no-such-file"))
        assert result.exit_code == USAGE and "cannot read" in result.stderr
        tests = as_json(await stack.as_(ann, "detox", "cycles", "--kind", "test", "--json"))
        assert tests["total"] == 3

        policies = as_json(await stack.as_(ann, "detox", "policies", "--json"))
        assert [(p["partition"], p["text"]) for p in policies] == [("Physics", POLICY)]

        # ---- releasing the lock: its owner (or an admin) only, once
        result = await stack.as_(bob, "locks", "remove", str(lock["id"]))
        assert result.exit_code == AUTH
        result = await stack.as_(ann, "locks", "remove", str(lock["id"]))
        assert result.exit_code == OK and f"released lock {lock['id']}" in result.stdout
        result = await stack.as_(ann, "locks", "remove", str(lock["id"]))
        assert result.exit_code == USAGE and "was released" in result.stderr
        result = await stack.as_(ADMIN_TOKEN, "locks", "remove", "999999")
        assert result.exit_code == NOT_FOUND
        assert as_json(await stack.as_(ann, "locks", "list", "--json"))["total"] == 0
        page = as_json(await stack.as_(ann, "locks", "list", "--released", "--json"))
        assert [(item["id"], item["active"]) for item in page["items"]] == [(lock["id"], False)]
