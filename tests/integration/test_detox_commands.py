"""The commands of a real cycle against the real inventory: block-level deletions and
ownership hand-offs, refused items isolated from their batch, and commands left unanswered
sent again later under the same ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.test_detox_support import (
    GB,
    FakeTransfer,
    eventually,
    replica_group,
    run_detox,
    seed,
)


async def _block_groups(inventory: Any, dataset: str, site: str) -> dict[str, str]:
    response = await inventory.client.get("/api/v1/dataset", params={"name": dataset})
    assert response.status_code == 200, response.text
    (replica,) = [r for r in response.json()["replicas"] if r["site"] == site]
    return {b["block"]: b["group"] for b in replica["block_replicas"]}


async def _one_dataset(inventory: Any, ds: str, blocks: int, size: int) -> None:
    await inventory.ok(
        "POST",
        "/api/v1/sites",
        {"sites": [{"name": "T2_A", "storage_type": "disk", "quotas": {"Physics": 10 * GB}}]},
    )
    await inventory.ok(
        "POST",
        "/api/v1/groups",
        {"groups": [{"name": "AnalysisOps"}, {"name": "FacOps", "olevel": "block"}]},
    )
    await inventory.ok(
        "POST",
        "/api/v1/partitions",
        {"partitions": [{"name": "Physics", "condition": "site.storage_type == DISK"}]},
    )
    await inventory.ok("POST", "/api/v1/datasets", {"datasets": [{"name": ds}]})
    await inventory.ok(
        "POST",
        "/api/v1/blocks",
        {
            "blocks": [
                {"dataset": ds, "name": f"b{i}", "size": size, "num_files": 1, "is_open": False}
                for i in range(blocks)
            ]
        },
    )
    await inventory.ok(
        "POST",
        "/api/v1/replicas",
        {
            "dataset_replicas": [
                {"dataset": ds, "site": "T2_A", "group": "AnalysisOps", "complete": True}
            ]
        },
    )


async def test_a_hand_off_becomes_an_owner_change_and_no_deletion(
    inventory: Any, database_url: str, tmp_path: Path
) -> None:
    ds = "/Mixed/Run-v1/AOD"
    await _one_dataset(inventory, ds, 4, GB)
    await inventory.ok(
        "PATCH",
        "/api/v1/replicas",
        {
            "block_replicas": [
                {"dataset": ds, "block": b, "site": "T2_A", "group": "FacOps"} for b in ("b2", "b3")
            ]
        },
    )
    policy = tmp_path / "Physics.txt"
    policy.write_text(
        "Partition Physics\nWhen never\nUntil always\n"
        # FacOps blocks inside an AnalysisOps replica pass to AnalysisOps instead of going.
        "DeleteBlock blockreplica.owner == FacOps\nProtect\n"
    )
    transfer = FakeTransfer()
    await transfer.start(inventory.bus)
    async with run_detox(inventory, database_url, [policy]) as detox:
        cycle = await detox.cycle()
        records = await detox.get(f"/api/v1/cycles/{cycle['id']}/sites/T2_A/decisions")
        assert [
            (d["blocks"], d["decision"], d["handed_to"], d["line"]) for d in records["items"]
        ] == [
            (None, "protect", None, 5),
            (["b2", "b3"], "keep", "AnalysisOps", 4),
        ]
        assert cycle["replicas_deleted"] == 0
        assert cycle["commands"]["accepted"] == 2
    assert await _block_groups(inventory, ds, "T2_A") == dict.fromkeys(
        ("b0", "b1", "b2", "b3"), "AnalysisOps"
    )
    assert transfer.requests == []


async def test_part_of_a_replica_goes_as_block_replicas(
    inventory: Any, database_url: str, tmp_path: Path
) -> None:
    ds = "/Part/Run-v1/AOD"
    await _one_dataset(inventory, ds, 3, 3 * GB)
    policy = tmp_path / "Physics.txt"
    policy.write_text(
        "Partition Physics\nWhen site.occupancy > 0.8\nUntil site.occupancy < 0.5\n"
        "ProtectBlock blockreplica.is_locked\nDismiss\n"
    )
    transfer = FakeTransfer()
    await transfer.start(inventory.bus)
    async with run_detox(inventory, database_url, [policy]) as detox:
        await detox.send(
            "POST",
            "/api/v1/locks",
            {"dataset": ds, "block": "b0", "sites": "T2_A", "until": "2999-01-01T00:00:00Z"},
            201,
        )
        cycle = await detox.cycle()
        assert cycle["replicas_deleted"] == 1
        text = await detox.get(f"/api/v1/cycles/{cycle['id']}/deletions.txt")
        assert text == f"T2_A {ds}#b1,b2 {6 * GB}\n"
    assert transfer.requests == [(ds, "b1", "T2_A"), (ds, "b2", "T2_A")]
    assert await _block_groups(inventory, ds, "T2_A") == {
        "b0": "AnalysisOps",
        "b1": "None",
        "b2": "None",
    }
    assert await replica_group(inventory, ds, "T2_A") == "AnalysisOps"


async def test_a_refused_item_is_isolated_and_the_rest_goes(
    inventory: Any, database_url: str, tmp_path: Path
) -> None:
    names = [f"/R{i}/Run-v1/AOD" for i in range(6)]
    await seed(inventory, {"T2_A": 10 * GB}, {"T2_A": [(n, GB) for n in names]})
    policy = tmp_path / "Physics.txt"
    policy.write_text("Partition Physics\nWhen always\nUntil never\nAlgo Static\nDismiss\n")
    transfer = FakeTransfer(refuse={("/R3/Run-v1/AOD", "T2_A")})
    await transfer.start(inventory.bus)
    async with run_detox(inventory, database_url, [policy]) as detox:
        cycle = await detox.cycle()
        assert cycle["replicas_deleted"] == 6
        assert cycle["commands"] == {"batches": 1, "pending": 0, "accepted": 5, "rejected": 1}
    assert sorted(d for d, _, _ in transfer.requests) == [n for n in names if n != "/R3/Run-v1/AOD"]


async def test_unanswered_commands_are_sent_again_under_the_same_ids(
    inventory: Any, database_url: str, tmp_path: Path
) -> None:
    names = [f"/U{i}/Run-v1/AOD" for i in range(3)]
    await seed(inventory, {"T2_A": 10 * GB}, {"T2_A": [(n, GB) for n in names]})
    policy = tmp_path / "Physics.txt"
    policy.write_text("Partition Physics\nWhen always\nUntil never\nDismiss\n")
    async with run_detox(
        inventory, database_url, [policy], command_reply_timeout=0.5, command_retry_interval=0.2
    ) as detox:
        # No transfer service yet: the owners are cleared, the file deletions unanswered.
        cycle = await detox.cycle()
        assert cycle["commands"]["pending"] == 1
        for name in names:
            assert await replica_group(inventory, name, "T2_A") == "None"
        transfer = FakeTransfer()
        await transfer.start(inventory.bus)

        async def sent() -> bool:
            found = await detox.get(f"/api/v1/cycles/{cycle['id']}")
            return bool(found["commands"]["pending"] == 0)

        await eventually(sent, "the commands sent again")
        final = await detox.get(f"/api/v1/cycles/{cycle['id']}")
        assert final["commands"]["accepted"] == 3
        assert transfer.requests == [(n, None, "T2_A") for n in names]


async def test_the_schedule_runs_each_configured_policy(
    inventory: Any, database_url: str, tmp_path: Path
) -> None:
    await seed(inventory, {"T2_A": 10 * GB}, {"T2_A": [("/S0/Run-v1/AOD", GB)]})
    policy = tmp_path / "Physics.txt"
    policy.write_text("Partition Physics\nWhen never\nUntil always\nProtect\n")
    async with run_detox(inventory, database_url, [policy], cycle_interval=3600) as detox:

        async def scheduled() -> list[dict[str, Any]]:
            page = await detox.get("/api/v1/cycles", kind="real", status="done")
            return [c for c in page["items"] if c["requested_by"] == "schedule"]

        (cycle,) = await eventually(scheduled, "a scheduled cycle")
        assert cycle["partition"] == "Physics" and cycle["replicas_deleted"] == 0
        # Within the interval a second one is not due; on demand still works.
        on_demand = await detox.cycle()
        assert on_demand["requested_by"] == "alice"
        assert len(await scheduled()) == 1
