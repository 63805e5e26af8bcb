"""`dynamo transfers delete` against a running stack: the transfer service removes the files of
a replica from a file:// site and then the replica from the inventory, while the command
follows it with a progress bar; a deletion that cannot finish ends in exit 6 at --timeout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dynamo_common.bus.base import Bus
from tests.integration.conftest import RunningInventory
from tests.integration.test_cli_support import (
    AUTH,
    NOT_FOUND,
    OK,
    TIMEOUT,
    UNREACHABLE,
    USAGE,
    as_json,
    running_stack,
)
from tests.integration.test_transfer_support import DS, Grid, eventually, seed_grid

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _unreachable(name: str) -> dict[str, Any]:
    """A site whose storage refuses every connection (nothing listens on port 1): its files
    cannot be deleted."""
    rules = [{"match": "/store/(.*)", "result": "root://127.0.0.1:1//store/$1"}]
    return {
        "name": name,
        "storage_type": "disk",
        "status": "ready",
        "protocols": [{"name": "root", "rules": rules}],
    }


async def test_a_replica_deleted_and_followed_until_the_inventory_forgets_it(
    database_url: str, memory_bus: Bus, tmp_path: Path
) -> None:
    grid = Grid(tmp_path / "sites")
    async with running_stack(database_url, memory_bus, tmp_path) as stack:
        operator = await stack.token("ops", "operator")
        user = await stack.token("ann", "user")
        async with stack.http(operator) as client:
            files = await seed_grid(
                RunningInventory(client=client, app=None, bus=memory_bus),
                grid,
                sites=[grid.site("T1_A"), grid.site("T2_B"), _unreachable("T3_NOWHERE")],
                blocks={"b1": 2, "b2": 3},
                holders=["T1_A", "T2_B", "T3_NOWHERE"],
            )
        b2_volume = sum(len(data) for _, data in files["b2"])

        async def sites_of(block: str) -> list[str]:
            detail = as_json(await stack.as_(user, "dataset", DS, "--json"))
            (found,) = [b for b in detail["blocks"] if b["name"] == block]
            return list(found["replicas"])

        # ---- one block, followed to the end (as a script would: JSON)
        result = await stack.as_(
            user, *f"transfers delete {DS}#b2 --site T2_B --wait --interval 0.1 --json".split()
        )
        outcome = as_json(result)
        assert outcome["deletion"]["status"] == "accepted"
        assert outcome["result"] == {
            "left": [],
            "done": b2_volume,
            "total": b2_volume,
            "files_held": 0,
        }
        assert not any(grid.path("T2_B", name).exists() for name, _ in files["b2"])
        assert all(grid.path("T2_B", name).exists() for name, _ in files["b1"])
        assert await sites_of("b2") == ["T1_A", "T3_NOWHERE"]

        # ---- the rest of the replica, as a person would: a bar, then one line
        result = await stack.as_(
            user, "transfers", "delete", DS, "--site", "T2_B", "--wait", "--interval", "0.1"
        )
        assert result.exit_code == OK, result.output
        assert f"deleted {DS} at T2_B" in result.stdout
        # The bar's last state, on stderr: everything deleted.
        assert f"deleting {DS} at T2_B" in result.stderr and "100%" in result.stderr
        assert not any(grid.path("T2_B", name).exists() for name, _ in files["b1"])
        assert await sites_of("b1") == ["T1_A", "T3_NOWHERE"]

        # Nothing left there: not found, nothing sent.
        result = await stack.as_(user, "transfers", "delete", DS, "--site", "T2_B")
        assert result.exit_code == NOT_FOUND and "T2_B holds no replica" in result.stderr
        result = await stack.as_(user, "transfers", "delete", f"{DS}#", "--site", "T1_A")
        assert result.exit_code == USAGE and "DATASET#BLOCK" in result.stderr
        result = await stack.run(
            "transfers", "delete", DS, "--site", "T1_A", DYNAMO_GATEWAY_URL=stack.url
        )
        assert result.exit_code == AUTH and "dynamo login" in result.stderr
        assert all(grid.path("T1_A", name).exists() for name, _ in files["b1"])

        # Requests go to the dealer, which this stack does not run: unreachable, exit 4.
        result = await stack.as_(user, "request", "copy", DS, "--site", "T2_B", "--group", "G")
        assert result.exit_code == UNREACHABLE and "dealer" in result.stderr
        result = await stack.as_(user, "request", "delete", DS, "--site", "T1_A")
        assert result.exit_code == UNREACHABLE and "dealer" in result.stderr

        # ---- without --wait: queued; it goes on by itself
        queued = as_json(
            await stack.as_(user, "transfers", "delete", f"{DS}#b1", "--site", "T1_A", "--json")
        )
        assert (queued["status"], queued["tasks"]) == ("accepted", len(files["b1"]))

        async def b1_gone() -> Any:
            return "T1_A" not in await sites_of("b1")

        await eventually(b1_gone, "b1 deleted at T1_A")

        # ---- a deletion that cannot finish: --timeout gives up with exit 6, the files held
        result = await stack.as_(
            user,
            *f"transfers delete {DS}#b1 --site T3_NOWHERE".split(),
            *["--wait", "--timeout", "1", "--interval", "0.1"],
        )
        assert result.exit_code == TIMEOUT, result.output
        assert "gave up waiting" in result.stderr and "--timeout" in result.stderr
        assert "T3_NOWHERE" in await sites_of("b1")
