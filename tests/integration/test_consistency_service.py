"""The consistency service end to end on ``file://`` sites: the inventory, the transfer service
and the consistency service run in-process on one bus, against real PostgreSQL and real
directories listed through gfal2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dynamo_common.messages.registry import ConsistencyEvent, TransferCommand
from dynamo_consistency.repository import store
from tests.integration.conftest import RunningInventory
from tests.integration.test_consistency_support import (
    DS,
    block_replica,
    content,
    eventually,
    file_site,
    lfn,
    names,
    record,
    run_consistency,
    run_transfer,
    seed,
)

pytestmark = pytest.mark.integration

A, B = "T2_XX_Alpha", "T1_XX_Beta_Disk"


async def test_lost_files_are_retransferred_on_the_second_check_and_are_back(
    inventory: RunningInventory, database_url: str, tmp_path: Path
) -> None:
    alpha, beta = file_site(tmp_path, A), file_site(tmp_path, B)
    written = await seed(inventory, [alpha, beta], {"b1": [A, B], "b2": [A, B]})
    lost = [lfn("b1", 0), lfn("b2", 2)]
    commands = await record(inventory.bus, "commands", "transfer.file.#")
    events = await record(inventory.bus, "events", "consistency.#")
    async with (
        run_transfer(inventory, database_url),
        run_consistency(inventory, database_url) as cons,
    ):
        clean = await cons.check(A)
        assert (clean["status"], clean["action"], clean["missing_files"]) == ("done", "none", 0)
        assert clean["files_listed"] == 6 and clean["expected_files"] == 6

        for name in lost:
            alpha.path(name).unlink()
        first = await cons.check(A)
        assert (first["missing_files"], first["missing_confirmed"]) == (2, 0)
        assert first["missing_bytes"] == sum(len(written[n]) for n in lost)
        assert first["transfers_requested"] == 0
        missing = await cons.files(first["id"], "missing")
        assert names(missing) == lost
        assert {m["strike"] for m in missing} == {1}
        assert not commands.of_type(TransferCommand.TRANSFER_FILES)

        second = await cons.check(A)
        assert (second["missing_files"], second["missing_confirmed"]) == (2, 2)
        assert (second["action"], second["transfers_requested"]) == ("acted", 2)
        missing = await cons.files(second["id"], "missing")
        assert all(m["strike"] == 2 and m["acted"] and m["source"] == B for m in missing)
        await eventually(lambda: commands.lfns(TransferCommand.TRANSFER_FILES) == lost, "commands")

        for name in lost:
            # A copy in progress may be visible already: wait for the whole file.
            await eventually(lambda n=name: alpha.has(n, written[n]), f"{name} copied back")
        alpha.backdate()
        again = await cons.check(A)
        assert (again["missing_files"], again["orphan_files"]) == (0, 0)

    finished = [e for e in events.messages if e.type == ConsistencyEvent.RUN_FINISHED]
    assert [e.data["run_id"] for e in finished] == [
        clean["id"],
        first["id"],
        second["id"],
        again["id"],
    ]
    assert finished[2].data["transfers_requested"] == 2


async def test_a_file_with_no_other_copy_is_reported_to_the_inventory(
    inventory: RunningInventory, database_url: str, tmp_path: Path
) -> None:
    alpha, beta = file_site(tmp_path, A), file_site(tmp_path, B)
    await seed(inventory, [alpha, beta], {"only": [A], "both": [A, B]})
    gone = lfn("only", 1)
    alpha.path(gone).unlink()
    commands = await record(inventory.bus, "commands", "transfer.file.#")
    async with run_consistency(inventory, database_url) as cons:
        first = await cons.check(A)
        assert (first["unrecoverable_files"], first["replicas_reported"]) == (1, 0)
        before = await block_replica(inventory, "only", A)
        assert before["is_complete"]

        second = await cons.check(A)
        assert (second["unrecoverable_files"], second["replicas_reported"]) == (1, 1)
        assert second["transfers_requested"] == 0
        (item,) = await cons.files(second["id"], "unrecoverable")
        assert (item["path"], item["acted"], item["source"]) == (gone, True, None)
        assert await cons.text(second["id"], "unrecoverable") == [gone]

        after = await block_replica(inventory, "only", A)
        assert not after["is_complete"]
        assert after["num_files"] == before["num_files"] - 1
        assert after["size"] == before["size"] - len(content("only", 1, 4001))

        # The replica is incomplete now, so in flight: its remaining files are not judged.
        third = await cons.check(A)
        assert (third["missing_files"], third["skipped_in_flight"]) == (0, 2)
    assert not commands.of_type(TransferCommand.TRANSFER_FILES)


async def test_orphans_are_deleted_and_old_empty_directories_removed(
    inventory: RunningInventory, database_url: str, tmp_path: Path
) -> None:
    alpha, beta = file_site(tmp_path, A), file_site(tmp_path, B)
    await seed(inventory, [alpha, beta], {"b1": [A, B]})
    orphans = ["/store/data/Consistency/AOD/b1/stray.root", "/store/mc/Old/x/y.root"]
    for name in orphans:
        alpha.write(name, b"left behind")
    alpha.write("/store/user/jdoe/mine.root", b"ignored area")
    alpha.mkdirs("/store/mc/Empty/a/b")
    alpha.mkdirs("/store/user/jdoe/empty")
    alpha.backdate()
    # Written after the backdating: within the grace period.
    alpha.write("/store/data/Consistency/AOD/b1/arriving.root", b"in flight", age=None)
    alpha.mkdirs("/store/mc/New")
    commands = await record(inventory.bus, "commands", "transfer.file.#")
    async with (
        run_transfer(inventory, database_url),
        run_consistency(inventory, database_url, ignored_dirs=["/store/user"]) as cons,
    ):
        run = await cons.check(A)
        assert (run["action"], run["orphan_files"], run["deletions_requested"]) == ("acted", 2, 2)
        assert run["orphan_bytes"] == 2 * len(b"left behind")
        assert (run["ignored_files"], run["skipped_recent"]) == (1, 1)
        assert names(await cons.files(run["id"], "orphans")) == sorted(orphans)
        assert sorted(await cons.text(run["id"], "orphans")) == sorted(orphans)
        await eventually(
            lambda: commands.lfns(TransferCommand.DELETE_FILES) == sorted(orphans), "deletions"
        )
        for name in orphans:
            await eventually(lambda n=name: not alpha.exists(n), f"{name} deleted")

        removed = set(await cons.text(run["id"], "empty"))
        empty = {"/store/mc/Empty", "/store/mc/Empty/a", "/store/mc/Empty/a/b"}
        # The orphans' directories empty out once the transfer service has deleted them,
        # which may or may not happen before the empty directories are pruned.
        assert empty <= removed <= empty | {"/store/mc/Old", "/store/mc/Old/x"}
        assert run["empty_dirs_removed"] == len(removed)
        assert alpha.exists("/store/mc/New")  # too recent
        assert alpha.exists("/store/user/jdoe/empty")  # ignored area
        assert alpha.exists("/store/user/jdoe/mine.root")
        assert alpha.exists("/store/data/Consistency/AOD/b1/arriving.root")


async def test_too_many_differences_flag_the_site_and_touch_nothing_until_approved(
    inventory: RunningInventory, database_url: str, tmp_path: Path
) -> None:
    alpha, beta = file_site(tmp_path, A), file_site(tmp_path, B)
    written = await seed(inventory, [alpha, beta], {"b1": [A, B]})
    orphans = [f"/store/mc/Junk/f{i}.root" for i in range(4)]
    for name in orphans:
        alpha.write(name, b"junk")
    alpha.mkdirs("/store/mc/Hollow/x")
    alpha.backdate()
    alpha.path(lfn("b1", 0)).unlink()
    commands = await record(inventory.bus, "commands", "transfer.file.#")
    async with (
        run_transfer(inventory, database_url),
        run_consistency(inventory, database_url, max_orphans=3, max_missing=0) as cons,
    ):
        flagged = await cons.check(A)
        assert flagged["action"] == "flagged"
        assert "safety valve" in flagged["reason"]
        assert (flagged["orphan_files"], flagged["missing_files"]) == (4, 1)
        assert flagged["deletions_requested"] == flagged["transfers_requested"] == 0
        site = await cons.get(f"/sites/{A}")
        assert site["state"] == "halted" and str(flagged["id"]) in site["state_reason"]
        table = await cons.get("/sites", attention=True)
        assert [row["site"] for row in table["items"]] == [A]
        assert all(alpha.exists(n) for n in orphans)
        assert alpha.exists("/store/mc/Hollow/x")
        assert not commands.messages

        # Only the site's own latest flagged run can be approved.
        await cons.send("POST", f"/sites/{A}/approve", {"run_id": flagged["id"] + 99}, 409)

        approved = await cons.approve(A, flagged["id"], first_strike=True)
        assert approved["deletions_requested"] == 4 and approved["transfers_requested"] == 1
        hollow = {"/store/mc/Hollow", "/store/mc/Hollow/x"}
        assert hollow <= set(await cons.text(flagged["id"], "empty"))
        assert approved["empty_dirs_removed"] >= 2
        for name in orphans:
            await eventually(lambda n=name: not alpha.exists(n), f"{name} deleted")
        await eventually(
            lambda: alpha.has(lfn("b1", 0), written[lfn("b1", 0)]), "the lost file copied back"
        )
        assert (await cons.get(f"/sites/{A}"))["state"] == "enabled"
        # Approved once: approving again is refused.
        await cons.send("POST", f"/sites/{A}/approve", {"run_id": flagged["id"]}, 409)


async def test_summary_history_state_and_dry_run(
    inventory: RunningInventory, database_url: str, tmp_path: Path
) -> None:
    alpha, beta = file_site(tmp_path, A), file_site(tmp_path, B)
    await seed(inventory, [alpha, beta], {"b1": [A, B]})
    alpha.write("/store/mc/Stray/s.root", b"x" * 10)
    alpha.backdate()
    # No transfer service runs here: requests to it go unanswered.
    async with run_consistency(inventory, database_url, command_timeout=1.0) as cons:
        dry = await cons.check(A, dry_run=True)
        assert (dry["action"], dry["dry_run"], dry["orphan_files"]) == ("dry_run", True, 1)
        assert alpha.exists("/store/mc/Stray/s.root")
        await cons.check(B)

        table = await cons.get("/sites")
        rows = {row["site"]: row for row in table["items"]}
        assert set(rows) == {A, B}
        row = rows[A]
        assert row["run_id"] == dry["id"] and row["files"] == 4 and row["orphans"] == 1
        assert row["orphan_bytes"] == 10 and row["missing"] == 0 and row["no_source"] == 0
        assert row["nodes"] >= 5 and row["unlisted"] == 0 and row["time_minutes"] is not None
        assert row["state"] == "enabled" and not row["running"] and not row["attention"]

        await cons.send("PUT", f"/sites/{A}/state", {"state": "disabled", "reason": "m"}, 200)
        problem = await cons.send("POST", f"/sites/{A}/check", {}, 409)
        assert "disabled" in problem["detail"]
        await cons.send("PUT", f"/sites/{A}/state", {"state": "enabled"}, 200)
        unanswered = await cons.check(A)
        assert (unanswered["action"], unanswered["deletions_requested"]) == ("acted", 0)
        assert "no answer" in unanswered["reason"]
        assert [r["site"] for r in (await cons.get("/sites", attention=True))["items"]] == [A]
        history = await cons.get(f"/sites/{A}/runs")
        assert history["total"] == 2
        assert [r["id"] for r in history["items"]][1] == dry["id"]

        await cons.get("/sites/T9_XX_Nowhere", 404)
        await cons.send("POST", "/sites/T9_XX_Nowhere/check", {}, 404)
        await cons.send("PUT", f"/sites/{A}/state", {"state": "paused"}, 422)
        await cons.get("/runs/999999", 404)

        # Bad input is refused with a clear error before it reaches the database.
        await cons.get("/sites/T2%00X", 422)
        await cons.get(f"/runs/{2**70}", 422)
        await cons.get(f"/runs/{dry['id']}/missing", 422, offset=2**70)
        await cons.get(f"/runs/{dry['id']}/everything", 422)
        await cons.send("PUT", f"/sites/{A}/state", {"state": "halted", "reason": "a\x00b"}, 422)
        await cons.send("POST", f"/sites/{A}/approve", {"run_id": 2**70}, 422)
        await cons.send("POST", f"/sites/{A}/check", {"dry_run": True, "extra": 1}, 422)
        assert (await cons.get(f"/sites/{A}"))["state"] == "enabled"


async def test_a_site_whose_storage_cannot_be_listed_fails_its_check(
    inventory: RunningInventory, database_url: str, tmp_path: Path
) -> None:
    alpha, beta = file_site(tmp_path, A), file_site(tmp_path, B)
    await seed(inventory, [alpha, beta], {"b1": [A, B]})
    commands = await record(inventory.bus, "commands", "transfer.file.#")
    alpha.path("/store").rename(alpha.root / "moved")
    async with run_consistency(inventory, database_url) as cons:
        run = await cons.check(A)
        assert (run["status"], run["action"]) == ("failed", "failed")
        assert "could not be listed" in run["error"]
        assert run["missing_files"] == 0
        row = (await cons.get("/sites", attention=True))["items"][0]
        assert row["site"] == A and row["status"] == "failed"
    assert not commands.messages


async def test_workers_split_the_sites_and_never_check_one_twice(
    inventory: RunningInventory, database_url: str, tmp_path: Path
) -> None:
    sites = [file_site(tmp_path, f"T2_XX_S{i}") for i in range(5)]
    await seed(inventory, sites, {"b1": [s.name for s in sites]})
    common: dict[str, Any] = {"scheduled_checks": True, "recheck_interval": 3600.0}
    async with (
        run_consistency(
            inventory, database_url, worker_id="w1", read_model_queue="c.w1", **common
        ) as one,
        run_consistency(
            inventory, database_url, worker_id="w2", read_model_queue="c.w2", **common
        ) as two,
    ):

        async def all_checked() -> list[dict[str, Any]] | None:
            rows = (await one.get("/sites"))["items"]
            done = [r for r in rows if r["status"] == "done"]
            return rows if len(done) == len(sites) else None

        await eventually(all_checked, "every site checked")
        async with one.runtime.pool.acquire() as conn:
            runs = await conn.fetch("SELECT site, worker FROM consistency.runs")
        assert sorted(r["site"] for r in runs) == sorted(s.name for s in sites)
        assert {r["worker"] for r in runs} <= {"w1", "w2"}

        # A site whose lock another worker holds is not taken, even when asked for.
        target = sites[0].name
        async with one.runtime.pool.acquire() as conn:
            row = await store.site(conn, target)
            assert row is not None and await store.try_lock(conn, row.id)
            try:
                await two.send("POST", f"/sites/{target}/check", {})
                await one.send("POST", f"/sites/{target}/check", {})
                summary = (await one.get("/sites"))["items"]
                assert next(r for r in summary if r["site"] == target)["running"]
                for worker in (one, two):
                    await worker.runtime.schedule_once()
                assert len((await one.get(f"/sites/{target}/runs"))["items"]) == 1
            finally:
                await store.unlock(conn, row.id)
        await eventually(
            lambda: _runs_of(one, target, 2), "the asked-for check once the lock is free"
        )
        await two.runtime.schedule_once()
        assert len((await one.get(f"/sites/{target}/runs"))["items"]) == 2


async def _runs_of(cons: Any, site: str, count: int) -> bool:
    items = (await cons.get(f"/sites/{site}/runs"))["items"]
    return len(items) == count and all(r["status"] != "running" for r in items)


async def test_an_inventory_with_many_blocks_is_read_in_pages(
    inventory: RunningInventory, database_url: str, tmp_path: Path
) -> None:
    alpha, beta = file_site(tmp_path, A), file_site(tmp_path, B)
    await seed(inventory, [alpha, beta], {f"b{i:02d}": [A] for i in range(12)}, files_per_block=2)
    async with run_consistency(inventory, database_url, view_parallelism=3) as cons:
        run = await cons.check(A)
        assert (run["expected_files"], run["files_listed"], run["missing_files"]) == (24, 24, 0)
    assert DS
