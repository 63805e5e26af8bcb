"""The inventory's write rules, through its REST API (the same commands as on the bus).

Every refused command must leave the inventory exactly as it was: the sequence number does not
move and the snapshot is byte-for-byte the same.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import grid

DS = "/SingleMuon/Run2017D-v1/AOD"


async def _seed(inv: Any) -> None:
    await inv.ok(
        "POST", "/api/v1/sites", {"sites": [grid.site("T2_US_MIT"), grid.site("T1_US_FNAL_Disk")]}
    )
    await inv.ok("POST", "/api/v1/groups", {"groups": [{"name": "AnalysisOps"}]})
    await inv.ok("POST", "/api/v1/datasets", {"datasets": [grid.dataset(DS)]})
    await inv.ok("POST", "/api/v1/blocks", {"blocks": [grid.block(DS, "b1"), grid.block(DS, "b2")]})
    await inv.ok("POST", "/api/v1/files", {"files": [grid.file(DS, "b1", i) for i in range(4)]})


async def _snapshot(inv: Any) -> bytes:
    response = await inv.client.get("/api/v1/snapshot")
    assert response.status_code == 200
    return response.content


async def _assert_rejected(
    inv: Any, method: str, path: str, body: Any, needle: str, status: int = 422
) -> dict[str, Any]:
    before = await _snapshot(inv)
    kwargs: dict[str, Any] = (
        {"content": body, "headers": {"content-type": "application/json"}}
        if isinstance(body, str)
        else {"json": body}
    )
    response = await inv.client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert needle in response.text, problem
    assert await _snapshot(inv) == before, "a refused command changed the inventory"
    return problem


BAD_COMMANDS = [
    (
        "unknown site",
        "POST",
        "/api/v1/replicas",
        {"block_replicas": [{"dataset": DS, "block": "b1", "site": "T2_XX_Nowhere"}]},
        "unknown site 'T2_XX_Nowhere'",
    ),
    (
        "unknown dataset",
        "POST",
        "/api/v1/blocks",
        {"blocks": [grid.block("/No/Such-v1/AOD", "b9")]},
        "unknown dataset '/No/Such-v1/AOD'",
    ),
    (
        "unknown group",
        "POST",
        "/api/v1/replicas",
        {
            "block_replicas": [
                {"dataset": DS, "block": "b1", "site": "T2_US_MIT", "group": "Nobody"}
            ]
        },
        "unknown group 'Nobody'",
    ),
    (
        "duplicate names in one command",
        "POST",
        "/api/v1/sites",
        {"sites": [grid.site("T2_DE_DESY"), grid.site("T2_DE_DESY")]},
        "duplicate site",
    ),
    (
        "negative block size",
        "POST",
        "/api/v1/blocks",
        {"blocks": [grid.block(DS, "b3", size=-1)]},
        "greater than or equal to 0",
    ),
    (
        "negative file size",
        "POST",
        "/api/v1/files",
        {"files": [{**grid.file(DS, "b1", 99), "size": -5}]},
        "greater than or equal to 0",
    ),
    (
        "LFN with ..",
        "POST",
        "/api/v1/files",
        {"files": [{**grid.file(DS, "b1", 98), "lfn": "/store/../etc/passwd"}]},
        "'..'",
    ),
    (
        "relative LFN",
        "POST",
        "/api/v1/files",
        {"files": [{**grid.file(DS, "b1", 97), "lfn": "store/data/x.root"}]},
        "absolute",
    ),
    (
        "LFN with //",
        "POST",
        "/api/v1/files",
        {"files": [{**grid.file(DS, "b1", 96), "lfn": "/store//data/x.root"}]},
        "normalised",
    ),
    (
        "bad checksum",
        "POST",
        "/api/v1/files",
        {"files": [{**grid.file(DS, "b1", 95), "adler32": "xyz"}]},
        "8 hexadecimal",
    ),
    (
        "replica larger than its block",
        "POST",
        "/api/v1/replicas",
        {
            "block_replicas": [
                {"dataset": DS, "block": "b1", "site": "T2_US_MIT", "size": 10**9, "num_files": 1}
            ]
        },
        "larger than the block",
    ),
    ("reserved group name", "POST", "/api/v1/groups", {"groups": [{"name": "None"}]}, "reserved"),
    (
        "malformed dataset name",
        "POST",
        "/api/v1/datasets",
        {"datasets": [grid.dataset("not-a-dataset")]},
        "pattern",
    ),
    (
        "unknown field",
        "POST",
        "/api/v1/sites",
        {"sites": [{**grid.site("T2_IT_Pisa"), "colour": "red"}]},
        "Extra inputs",
    ),
    ("empty command", "POST", "/api/v1/replicas", {}, "nothing to create"),
    (
        "bad PFN regex",
        "POST",
        "/api/v1/sites",
        {
            "sites": [
                grid.site(
                    "T2_IT_Bari",
                    protocols=[{"name": "root", "rules": [{"match": "(unclosed", "result": "x"}]}],
                )
            ]
        },
        "invalid regular expression",
    ),
    (
        "union with an unknown partition",
        "POST",
        "/api/v1/partitions",
        {"partitions": [{"name": "Physics", "subpartitions": ["Nope"]}]},
        "unknown partition",
    ),
    (
        "deleting a dataset that still has replicas",
        "POST",
        "/api/v1/datasets/delete",
        {"names": [DS]},
        "still has replicas",
    ),
]


@pytest.mark.parametrize(
    ("case", "method", "path", "body", "needle"), BAD_COMMANDS, ids=[c[0] for c in BAD_COMMANDS]
)
async def test_bad_command_is_refused_with_a_clear_reason_and_changes_nothing(
    inventory: Any, case: str, method: str, path: str, body: Any, needle: str
) -> None:
    await _seed(inventory)
    await inventory.ok(
        "POST",
        "/api/v1/replicas",
        {"block_replicas": [{"dataset": DS, "block": "b1", "site": "T1_US_FNAL_Disk"}]},
    )
    await _assert_rejected(inventory, method, path, body, needle)


async def test_malformed_json_is_refused(inventory: Any) -> None:
    await _assert_rejected(inventory, "POST", "/api/v1/sites", '{"sites": [', "JSON")


async def test_block_of_a_closed_dataset_is_refused(inventory: Any) -> None:
    await _seed(inventory)
    await inventory.ok("POST", "/api/v1/datasets", {"datasets": [grid.dataset(DS, is_open=False)]})
    await _assert_rejected(
        inventory, "POST", "/api/v1/blocks", {"blocks": [grid.block(DS, "b9")]}, "is closed"
    )


async def test_closed_block_is_immutable(inventory: Any) -> None:
    await _seed(inventory)
    await inventory.ok("POST", "/api/v1/blocks", {"blocks": [grid.block(DS, "b1", is_open=False)]})
    await _assert_rejected(
        inventory, "POST", "/api/v1/files", {"files": [grid.file(DS, "b1", 50)]}, "closed"
    )
    await _assert_rejected(
        inventory, "POST", "/api/v1/blocks", {"blocks": [grid.block(DS, "b1", size=1)]}, "immutable"
    )


async def test_an_lfn_registered_twice_is_refused_by_the_database_constraint(
    inventory: Any,
) -> None:
    await _seed(inventory)
    problem = await _assert_rejected(
        inventory,
        "POST",
        "/api/v1/files",
        {"files": [{**grid.file(DS, "b1", 0)}]},
        "already registered",
    )
    assert problem["title"] == "Command rejected"
    # Same LFN moved to another block: the planner cannot see files, PostgreSQL can.
    await _assert_rejected(
        inventory,
        "POST",
        "/api/v1/files",
        {"files": [{**grid.file(DS, "b2", 0), "lfn": grid.file(DS, "b1", 0)["lfn"]}]},
        "already registered",
    )


async def test_same_idempotency_key_applies_once_and_gets_the_same_reply(inventory: Any) -> None:
    await _seed(inventory)
    body = {"block_replicas": [{"dataset": DS, "block": "b1", "site": "T2_US_MIT"}]}
    headers = {"Idempotency-Key": "request-42"}
    first = await inventory.client.post("/api/v1/replicas", json=body, headers=headers)
    second = await inventory.client.post("/api/v1/replicas", json=body, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    third = await inventory.client.post("/api/v1/replicas", json=body)
    assert third.status_code == 422 and "already has a replica" in third.text


async def test_every_change_gets_the_next_sequence_number_and_events_replay_it(
    inventory: Any,
) -> None:
    await _seed(inventory)
    replies = [
        await inventory.ok(
            "POST",
            "/api/v1/replicas",
            {"block_replicas": [{"dataset": DS, "block": b, "site": "T2_US_MIT"}]},
        )
        for b in ("b1", "b2")
    ]
    assert replies[1]["first_seq"] == replies[0]["last_seq"] + 1
    events = (await inventory.client.get("/api/v1/events", params={"after": 0})).json()
    seqs = [e["seq"] for e in events["events"]]
    assert seqs == list(range(1, events["last_seq"] + 1))
    assert events["events"][-1]["type"] == "inventory.replica.created.v1"
    assert events["events"][-1]["specversion"] == "1.0"

    from dynamo_common.model.apply import apply_sequenced
    from dynamo_common.model.objects import Inventory
    from dynamo_common.model.snapshot import dump_lines

    follower = Inventory()
    for e in events["events"]:
        apply_sequenced(follower, e["seq"], e["type"], e["data"])
    assert b"".join(dump_lines(follower)) == await _snapshot(inventory)


async def test_growing_dataset_replica_follows_new_blocks(inventory: Any) -> None:
    await _seed(inventory)
    await inventory.ok(
        "POST",
        "/api/v1/replicas",
        {
            "dataset_replicas": [
                {"dataset": DS, "site": "T2_US_MIT", "group": "AnalysisOps", "growing": True}
            ]
        },
    )
    await inventory.ok("POST", "/api/v1/blocks", {"blocks": [grid.block(DS, "b3")]})
    detail = (await inventory.client.get("/api/v1/dataset", params={"name": DS})).json()
    replica = detail["replicas"][0]
    assert replica["growing"] is True
    assert sorted(b["block"] for b in replica["block_replicas"]) == ["b1", "b2", "b3"]


async def test_deleting_the_last_block_replica_removes_the_dataset_replica(inventory: Any) -> None:
    await _seed(inventory)
    await inventory.ok(
        "POST",
        "/api/v1/replicas",
        {"block_replicas": [{"dataset": DS, "block": "b1", "site": "T2_US_MIT"}]},
    )
    await inventory.ok(
        "POST",
        "/api/v1/replicas/delete",
        {"block_replicas": [{"dataset": DS, "block": "b1", "site": "T2_US_MIT"}]},
    )
    page = (await inventory.client.get("/api/v1/sites/T2_US_MIT/replicas")).json()
    assert page["total"] == 0


async def test_owner_change_and_completion_apply_to_every_block_replica(inventory: Any) -> None:
    await _seed(inventory)
    await inventory.ok(
        "POST",
        "/api/v1/replicas",
        {"dataset_replicas": [{"dataset": DS, "site": "T2_US_MIT", "growing": False}]},
    )
    await inventory.ok(
        "PATCH",
        "/api/v1/replicas",
        {
            "dataset_replicas": [
                {"dataset": DS, "site": "T2_US_MIT", "group": "AnalysisOps", "complete": True}
            ]
        },
    )
    detail = (await inventory.client.get("/api/v1/dataset", params={"name": DS})).json()
    replica = detail["replicas"][0]
    assert replica["group"] == "AnalysisOps" and replica["is_complete"] is True
    assert {b["group"] for b in replica["block_replicas"]} == {"AnalysisOps"}


async def test_lists_are_paged_and_datasets_filter_by_wildcard(inventory: Any) -> None:
    await inventory.ok(
        "POST",
        "/api/v1/datasets",
        {
            "datasets": [
                grid.dataset(f"/Primary{i}/Run2017-v1/{'AOD' if i % 2 else 'MINIAOD'}")
                for i in range(7)
            ]
        },
    )
    page = (
        await inventory.client.get("/api/v1/datasets", params={"name": "/*/*/AOD", "limit": 2})
    ).json()
    assert page["total"] == 3 and len(page["items"]) == 2
    rest = (
        await inventory.client.get(
            "/api/v1/datasets", params={"name": "/*/*/AOD", "limit": 2, "offset": 2}
        )
    ).json()
    assert [d["name"] for d in rest["items"]] == ["/Primary5/Run2017-v1/AOD"]


async def test_stats_group_volume_by_site_and_tier(inventory: Any) -> None:
    await _seed(inventory)
    await inventory.ok(
        "POST",
        "/api/v1/replicas",
        {"block_replicas": [{"dataset": DS, "block": "b1", "site": "T2_US_MIT"}]},
    )
    stats = (await inventory.client.get("/api/v1/stats", params={"group_by": "site,tier"})).json()
    assert stats["rows"] == [
        {"key": {"site": "T2_US_MIT", "tier": "AOD"}, "replicas": 1, "size": 4000}
    ]
    bad = await inventory.client.get("/api/v1/stats", params={"group_by": "colour"})
    assert bad.status_code == 400


async def test_restart_reloads_the_same_inventory_from_postgres(
    database_url: str, memory_bus: Any
) -> None:
    import httpx
    from asgi_lifespan import LifespanManager

    from dynamo_inventory.app import create_app
    from dynamo_inventory.settings import InventorySettings

    settings = InventorySettings(database_url=database_url, bus_namespace=memory_bus.namespace)
    snapshots = []
    for round_ in range(2):
        app = create_app(settings, bus=memory_bus)
        async with (
            LifespanManager(app, startup_timeout=60) as manager,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=manager.app), base_url="http://i"
            ) as client,
        ):
            if round_ == 0:
                from tests.integration.conftest import RunningInventory

                inv = RunningInventory(client=client, app=app, bus=memory_bus)
                await _seed(inv)
                await inv.ok(
                    "POST",
                    "/api/v1/replicas",
                    {
                        "block_replicas": [
                            {
                                "dataset": DS,
                                "block": "b1",
                                "site": "T2_US_MIT",
                                "size": 1000,
                                "num_files": 1,
                            }
                        ]
                    },
                )
            snapshots.append((await client.get("/api/v1/snapshot")).content)
    # Same records; their order follows PostgreSQL's row order after a reload.
    first, second = (s.decode().splitlines() for s in snapshots)
    assert first[0] == second[0]
    assert sorted(first) == sorted(second)


async def test_sites_report_usage_per_partition_from_partition_conditions(inventory: Any) -> None:
    await _seed(inventory)
    await inventory.ok(
        "POST",
        "/api/v1/partitions",
        {
            "partitions": [
                {
                    "name": "AnalysisOps",
                    "condition": "blockreplica.owner == AnalysisOps and site.storage_type == DISK",
                },
                {"name": "Unowned", "condition": "blockreplica.owner == None"},
                {"name": "Physics", "subpartitions": ["AnalysisOps", "Unowned"]},
            ]
        },
    )
    await inventory.ok(
        "POST",
        "/api/v1/replicas",
        {
            "block_replicas": [
                {"dataset": DS, "block": "b1", "site": "T2_US_MIT", "group": "AnalysisOps"}
            ]
        },
    )
    site = (await inventory.client.get("/api/v1/sites/T2_US_MIT")).json()
    usage = {u["partition"]: u for u in site["usage"]}
    assert usage["AnalysisOps"]["used"] == 4000
    assert usage["AnalysisOps"]["occupancy"] == 4000 / 10**15
    assert usage["Unowned"]["used"] == 0
    assert usage["Physics"]["used"] == 4000


async def test_partition_with_an_invalid_condition_is_refused_with_line_and_column(
    inventory: Any,
) -> None:
    problem = await _assert_rejected(
        inventory,
        "POST",
        "/api/v1/partitions",
        {"partitions": [{"name": "Broken", "condition": "blockreplica.colour == red"}]},
        "unknown variable",
    )
    assert problem["errors"][0]["loc"] == ["partitions", 0, "condition"]


async def test_a_value_postgresql_cannot_store_is_refused_not_dead_lettered(
    inventory: Any,
) -> None:
    await _assert_rejected(
        inventory,
        "POST",
        "/api/v1/datasets",
        {"datasets": [grid.dataset("/Bad\u0000Primary/Run-v1/AOD")]},
        "invalid value",
    )
