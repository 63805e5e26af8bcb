"""The transfer service end to end, with the direct backend on real local storage.

The inventory and the transfer service run in-process on one in-process bus and a real
PostgreSQL; requests arrive as commands (or through the REST write endpoints, which send the
same commands), files are really copied and deleted, and the outcome is checked in the
inventory, on disk, in the transfer service's API and in its events.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dynamo_common.messages.registry import TransferCommand as C
from tests.integration.test_transfer_support import (
    DS,
    Grid,
    collect_events,
    eventually,
    inventory_block_replica,
    replica_complete,
    run_transfer,
    seed_grid,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def grid(tmp_path: Path) -> Grid:
    return Grid(tmp_path / "sites")


async def test_block_replica_is_copied_and_the_inventory_completes_it(
    inventory: Any, database_url: str, grid: Grid
) -> None:
    files = await seed_grid(
        inventory,
        grid,
        sites=[grid.site("T1_A"), grid.site("T2_B")],
        blocks={"b1": 4, "b2": 2},
        holders=["T1_A"],
    )
    async with run_transfer(inventory, database_url) as transfer:
        events: list[Any] = []
        await collect_events(inventory.bus, events)
        reply = await transfer.post(
            "/api/v1/transfers/requests",
            {"requests": [{"dataset": DS, "block": "b1", "site": "T2_B", "priority": 4}]},
        )
        assert reply["status"] == "accepted" and reply["tasks"] == 4, reply

        await eventually(lambda: replica_complete(inventory, "b1", "T2_B"), "b1 complete at B")
        for name, data in files["b1"]:
            assert grid.read("T2_B", name) == data
        assert not grid.path("T2_B", files["b2"][0][0]).exists()

        history = await transfer.get("/api/v1/transfers/history", kind="transfer")
        assert history["total"] == 4
        assert {h["result"] for h in history["items"]} == {"done"}
        assert {(h["source"], h["destination"]) for h in history["items"]} == {("T1_A", "T2_B")}
        assert sum(h["bytes"] for h in history["items"]) == sum(len(d) for _, d in files["b1"])

        await eventually(
            lambda: _has(events, "transfer.replica.completed.v1"), "replica completed event"
        )
        done = [e for e in events if e.type == "transfer.file.done.v1"]
        assert len(done) == 4
        completed = [e for e in events if e.type == "transfer.replica.completed.v1"]
        assert completed[0].data["block"] == "b1" and completed[0].data["files"] == 4

        links = await transfer.get("/api/v1/transfers/links", window=600, buckets=4)
        (link,) = links["links"]
        assert (link["source"], link["destination"], link["done"]) == ("T1_A", "T2_B", 4)
        assert link["success_ratio"] == 1.0 and link["rate"] > 0
        assert len(link["buckets"]) == 4 and sum(b["done"] for b in link["buckets"]) == 4

        # A whole-dataset request only queues what is missing: b1 is complete already.
        reply = await transfer.command(
            C.TRANSFER_REPLICAS, {"requests": [{"dataset": DS, "site": "T2_B"}]}
        )
        assert reply.status == "accepted" and reply.tasks == 2, reply
        await eventually(lambda: replica_complete(inventory, "b2", "T2_B"), "b2 complete at B")
        summary = await transfer.get("/api/v1/transfers/summary")
        assert summary["links"] == []


def _has(events: list[Any], type_: str) -> bool:
    return any(e.type == type_ for e in events)


async def _true() -> bool:
    return True


async def test_block_replica_created_empty_at_the_inventory_first(
    inventory: Any, database_url: str, grid: Grid
) -> None:
    await seed_grid(
        inventory,
        grid,
        sites=[grid.site("T1_A"), grid.site("T2_B", status="waitroom")],
        blocks={"b1": 2},
        holders=["T1_A"],
    )
    async with run_transfer(inventory, database_url) as transfer:
        reply = await transfer.command(
            C.TRANSFER_REPLICAS, {"requests": [{"dataset": DS, "block": "b1", "site": "T2_B"}]}
        )
        assert reply.status == "accepted" and reply.tasks == 2
        br = await inventory_block_replica(inventory, "b1", "T2_B")
        assert br is not None and br["size"] == 0 and not br["is_complete"]
        held = await eventually(
            lambda: _held(transfer, 2), "files held while the destination is in downtime"
        )
        assert all("waitroom" in t["reason"] for t in held), held


async def _held(transfer: Any, count: int) -> list[dict[str, Any]] | None:
    page = await transfer.get("/api/v1/transfers/held")
    return page["items"] if page["total"] == count else None


async def test_deletion_removes_files_empty_directories_and_the_replica(
    inventory: Any, database_url: str, grid: Grid
) -> None:
    files = await seed_grid(
        inventory,
        grid,
        sites=[grid.site("T1_A"), grid.site("T2_B")],
        blocks={"b1": 3, "b2": 1},
        holders=["T1_A", "T2_B"],
    )
    # One file is already gone from the storage: that counts as deleted.
    grid.path("T2_B", files["b1"][2][0]).unlink()
    async with run_transfer(inventory, database_url) as transfer:
        events: list[Any] = []
        await collect_events(inventory.bus, events)
        reply = await transfer.post(
            "/api/v1/transfers/deletions",
            {"requests": [{"dataset": DS, "block": "b1", "site": "T2_B"}]},
        )
        assert reply["tasks"] == 3, reply
        await eventually(
            lambda: _gone(inventory, "b1", "T2_B"), "b1 replica removed from the inventory"
        )
        block_dir = grid.path("T2_B", files["b1"][0][0]).parent
        assert not block_dir.exists(), "the emptied block directory is left behind"
        assert grid.path("T2_B", files["b2"][0][0]).exists(), "b2 must not be touched"
        assert (grid.root / "T2_B" / "store" / "data").is_dir(), "the namespace root stays"
        for name, _ in files["b1"]:
            assert grid.path("T1_A", name).exists(), "the other replica must not be touched"
        await eventually(lambda: _has(events, "transfer.deletion.done.v1"), "deletion event")
        history = await transfer.get("/api/v1/transfers/history", kind="deletion")
        assert history["total"] == 3
        assert sorted(h["error"] or "" for h in history["items"]) == ["", "", "already gone"]


async def _gone(inventory: Any, block: str, site: str) -> bool:
    return await inventory_block_replica(inventory, block, site) is None


async def test_a_deletion_cancels_a_pending_transfer_and_the_reverse(
    inventory: Any, database_url: str, grid: Grid
) -> None:
    files = await seed_grid(
        inventory,
        grid,
        sites=[grid.site("T1_A"), grid.site("T2_B", status="waitroom")],
        blocks={"b1": 2, "b2": 2},
        holders=["T1_A"],
    )
    # b2 is complete at B too (B is in downtime, so nothing runs there yet).
    await inventory.ok(
        "POST",
        "/api/v1/replicas",
        {"block_replicas": [{"dataset": DS, "block": "b2", "site": "T2_B"}]},
    )
    for name, data in files["b2"]:
        grid.write("T2_B", name, data)
    async with run_transfer(inventory, database_url) as transfer:
        b1 = {"requests": [{"dataset": DS, "block": "b1", "site": "T2_B"}]}
        b2 = {"requests": [{"dataset": DS, "block": "b2", "site": "T2_B"}]}
        reply = await transfer.command(C.TRANSFER_REPLICAS, b1)
        assert (reply.tasks, reply.cancelled) == (2, 0)
        reply = await transfer.command(C.DELETE_REPLICAS, b2)
        assert (reply.tasks, reply.cancelled) == (2, 0)
        await eventually(lambda: _held(transfer, 4), "everything held while B is down")

        # The deletion of b1 cancels its pending transfers; the transfer of b2 (complete, but
        # about to be deleted) cancels the pending deletions.
        reply = await transfer.command(C.DELETE_REPLICAS, b1)
        assert (reply.tasks, reply.cancelled) == (2, 2), reply
        reply = await transfer.command(C.TRANSFER_REPLICAS, b2)
        assert (reply.tasks, reply.cancelled) == (2, 2), reply
        held = await eventually(lambda: _held(transfer, 4), "the new requests held")
        assert {(t["kind"], t["block"]) for t in held} == {("deletion", "b1"), ("transfer", "b2")}

        await inventory.ok("POST", "/api/v1/sites", {"sites": [grid.site("T2_B")]})
        await transfer.runtime.readmodel.wait_for_seq(inventory.runtime.model.seq, timeout=10)
        released = await transfer.post("/api/v1/transfers/held/release", {"site": "T2_B"})
        assert released == {"released": 4}
        await eventually(lambda: _gone(inventory, "b1", "T2_B"), "b1 replica removed")
        await eventually(lambda: _settled(transfer), "queue drained")
        assert await replica_complete(inventory, "b2", "T2_B")
        for name, data in files["b2"]:
            assert grid.read("T2_B", name) == data
        history = await transfer.get("/api/v1/transfers/history", kind="transfer")
        # b2's files were there already: found, not copied again.
        assert {h["bytes"] for h in history["items"]} == {0}


async def _settled(transfer: Any) -> bool:
    summary = await transfer.get("/api/v1/transfers/summary")
    replicas = await transfer.get("/api/v1/transfers/replicas")
    return not summary["links"] and replicas["total"] == 0


async def test_missing_source_is_held_with_its_reason_and_retried_when_released(
    inventory: Any, database_url: str, grid: Grid
) -> None:
    files = await seed_grid(
        inventory,
        grid,
        sites=[grid.site("T1_A"), grid.site("T2_B")],
        blocks={"b1": 3},
        holders=["T1_A"],
    )
    missing, data = files["b1"][1]
    grid.path("T1_A", missing).unlink()
    async with run_transfer(inventory, database_url) as transfer:
        await transfer.command(
            C.TRANSFER_REPLICAS, {"requests": [{"dataset": DS, "block": "b1", "site": "T2_B"}]}
        )
        (held,) = await eventually(lambda: _held(transfer, 1), "the missing file held")
        assert held["lfn"] == missing
        assert "all sources failed" in held["reason"] and "missing at T1_A" in held["reason"]
        page = await transfer.get("/api/v1/transfers/replicas")
        (replica,) = page["items"]
        assert (replica["files_done"], replica["files_total"], replica["files_held"]) == (2, 3, 1)
        assert replica["bytes_done"] == sum(len(d) for n, d in files["b1"] if n != missing)
        assert not replica["stuck"]
        stuck = await transfer.get("/api/v1/transfers/replicas", stuck_window=0.001)
        assert stuck["items"][0]["stuck"]
        # Progress reached the inventory: two files of three.
        br = await eventually(
            lambda: _partial(inventory, 2), "partial progress reported to the inventory"
        )
        assert not br["is_complete"]
        assert not await replica_complete(inventory, "b1", "T2_B")

        grid.write("T1_A", missing, data)
        released = await transfer.post("/api/v1/transfers/held/release", {"ids": [held["id"]]})
        assert released == {"released": 1}
        await eventually(lambda: replica_complete(inventory, "b1", "T2_B"), "b1 complete")
        assert grid.read("T2_B", missing) == data
        failed = await transfer.get("/api/v1/transfers/history", result="failed")
        assert failed["total"] == 1 and "missing" in failed["items"][0]["error"]


async def _partial(inventory: Any, files: int) -> dict[str, Any] | None:
    br = await inventory_block_replica(inventory, "b1", "T2_B")
    return br if br and br["num_files"] == files else None


async def test_corrupt_source_is_held_and_nothing_is_left_at_the_destination(
    inventory: Any, database_url: str, grid: Grid
) -> None:
    files = await seed_grid(
        inventory,
        grid,
        sites=[grid.site("T1_A"), grid.site("T1_C"), grid.site("T2_B")],
        blocks={"b1": 2, "b2": 2},
        holders=["T1_A"],
    )
    bad, data = files["b1"][0]
    grid.write("T1_A", bad, bytes(reversed(data)))  # same size, other checksum
    async with run_transfer(inventory, database_url) as transfer:
        reply = await transfer.command(
            C.TRANSFER_REPLICAS,
            {"requests": [{"dataset": DS, "site": "T2_B"}]},
        )
        assert reply.tasks == 4
        (held,) = await eventually(lambda: _held(transfer, 1), "the corrupt file held")
        assert held["lfn"] == bad and "checksum mismatch at source T1_A" in held["reason"]
        await eventually(lambda: replica_complete(inventory, "b2", "T2_B"), "b2 complete")
        directory = grid.path("T2_B", bad).parent
        assert sorted(p.name for p in directory.iterdir()) == ["f001.root"], "debris left"

    # With a second, good source the same file is copied from there instead.
    await inventory.ok(
        "POST",
        "/api/v1/replicas",
        {"block_replicas": [{"dataset": DS, "block": "b1", "site": "T1_C"}]},
    )
    for name, content_ in files["b1"]:
        grid.write("T1_C", name, content_)
    async with run_transfer(inventory, database_url) as transfer:
        await transfer.post("/api/v1/transfers/held/release", {"site": "T2_B"})
        await eventually(lambda: replica_complete(inventory, "b1", "T2_B"), "b1 complete")
        assert grid.read("T2_B", bad) == data
        done = await transfer.get("/api/v1/transfers/history", lfn="*/b1/f000.root", result="done")
        assert [h["source"] for h in done["items"]] == ["T1_C"]


BAD_REQUESTS = [
    ("unknown site", {"dataset": DS, "block": "b1", "site": "T2_XX_Nowhere"}, "unknown site"),
    ("unknown dataset", {"dataset": "/No/Such-v1/AOD", "site": "T2_B"}, "unknown dataset"),
    ("unknown block", {"dataset": DS, "block": "b9", "site": "T2_B"}, "unknown block"),
    ("unknown group", {"dataset": DS, "site": "T2_B", "group": "Nobody"}, "unknown group"),
    ("site without protocol", {"dataset": DS, "site": "T2_NoProto"}, "no storage protocol"),
    ("LFN mapping to nothing", {"dataset": DS, "site": "T2_McOnly"}, "maps to no PFN"),
    ("bad priority", {"dataset": DS, "site": "T2_B", "priority": 9}, "less than or equal to 5"),
]


@pytest.mark.parametrize(("case", "spec", "needle"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
async def test_bad_request_is_refused_with_a_reason_and_queues_nothing(
    inventory: Any, database_url: str, grid: Grid, case: str, spec: dict[str, Any], needle: str
) -> None:
    mc_only = grid.site("T2_McOnly")
    mc_only["protocols"][0]["rules"][0]["match"] = "/store/mc/(.*)"
    await seed_grid(
        inventory,
        grid,
        sites=[
            grid.site("T1_A"),
            grid.site("T2_B"),
            grid.site("T2_NoProto", protocols=[]),
            mc_only,
        ],
        blocks={"b1": 1},
        holders=["T1_A"],
    )
    async with run_transfer(inventory, database_url) as transfer:
        before = await inventory.client.get("/api/v1/snapshot")
        reply = await transfer.command(C.TRANSFER_REPLICAS, {"requests": [spec]})
        assert reply.status == "rejected" and needle in (reply.reason or ""), reply
        response = await transfer.client.post(
            "/api/v1/transfers/requests", json={"requests": [spec]}
        )
        assert response.status_code == 422 and needle in response.text, response.text
        after = await inventory.client.get("/api/v1/snapshot")
        assert after.content == before.content, "a refused request changed the inventory"
        async with transfer.runtime.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM transfer.tasks") == 0
            assert await conn.fetchval("SELECT count(*) FROM transfer.replicas") == 0


async def test_a_redelivered_command_gets_the_same_reply_and_queues_nothing_more(
    inventory: Any, database_url: str, grid: Grid
) -> None:
    await seed_grid(
        inventory,
        grid,
        sites=[grid.site("T1_A"), grid.site("T2_B", status="waitroom")],
        blocks={"b1": 3},
        holders=["T1_A"],
    )
    async with run_transfer(inventory, database_url) as transfer:
        body = {"requests": [{"dataset": DS, "block": "b1", "site": "T2_B"}]}
        first = await transfer.command(C.TRANSFER_REPLICAS, body, cid="cmd-1")
        again = await transfer.command(C.TRANSFER_REPLICAS, body, cid="cmd-1")
        assert first == again and first.tasks == 3
        # The same request under a new id: the files are already queued.
        other = await transfer.command(C.TRANSFER_REPLICAS, body, cid="cmd-2")
        assert (other.status, other.tasks) == ("accepted", 0)
        async with transfer.runtime.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM transfer.tasks") == 3
            assert await conn.fetchval("SELECT count(*) FROM transfer.replicas") == 1


async def test_single_files_are_copied_again_and_orphans_deleted(
    inventory: Any, database_url: str, grid: Grid
) -> None:
    files = await seed_grid(
        inventory,
        grid,
        sites=[grid.site("T1_A"), grid.site("T2_B")],
        blocks={"b1": 2},
        holders=["T1_A", "T2_B"],
    )
    lost, data = files["b1"][0]
    grid.path("T2_B", lost).unlink()
    orphan = "/store/data/TransferTest/AOD/orphans/x.root"
    grid.write("T2_B", orphan, b"not in the inventory")
    async with run_transfer(inventory, database_url) as transfer:
        reply = await transfer.post(
            "/api/v1/transfers/requests/files",
            {"files": [{"dataset": DS, "block": "b1", "lfn": lost, "site": "T2_B"}]},
        )
        assert reply["tasks"] == 1
        reply = await transfer.post(
            "/api/v1/transfers/deletions/files", {"files": [{"lfn": orphan, "site": "T2_B"}]}
        )
        assert reply["tasks"] == 1
        await eventually(lambda: _settled(transfer), "both done")
        assert grid.read("T2_B", lost) == data
        assert not grid.path("T2_B", orphan).exists()
        assert not grid.path("T2_B", orphan).parent.exists()
        history = await transfer.get("/api/v1/transfers/history")
        assert {(h["kind"], h["result"]) for h in history["items"]} == {
            ("transfer", "done"),
            ("deletion", "done"),
        }
        # A file that is not in the block it is said to be in is refused.
        response = await transfer.client.post(
            "/api/v1/transfers/requests/files",
            json={"files": [{"dataset": DS, "block": "b1", "lfn": orphan, "site": "T2_B"}]},
        )
        assert response.status_code == 422 and "is not a file of block" in response.text
    assert await replica_complete(inventory, "b1", "T2_B")
