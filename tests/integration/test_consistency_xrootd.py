"""The consistency service end to end on two real XRootD sites (loopback servers), listed
through gfal2's XRootD plugin; the transfer service repairs with root -> root copies."""

from __future__ import annotations

from typing import Any

import pytest

from dynamo_common.messages.registry import TransferCommand
from tests.integration.conftest import RunningInventory
from tests.integration.test_consistency_support import (
    eventually,
    lfn,
    names,
    record,
    run_consistency,
    run_transfer,
    seed,
    xrootd_site,
)

pytestmark = pytest.mark.integration

ONE, TWO = "T2_XX_Xrd_One", "T1_XX_Xrd_Two_Disk"


async def test_lost_files_come_back_orphans_and_empty_directories_go(
    inventory: RunningInventory, database_url: str, xrootd_pair: tuple[Any, Any]
) -> None:
    one, two = xrootd_site(xrootd_pair[0], ONE), xrootd_site(xrootd_pair[1], TWO)
    written = await seed(inventory, [one, two], {"b1": [ONE, TWO], "b2": [ONE, TWO]})
    lost = [lfn("b1", 0), lfn("b1", 2)]
    for name in lost:
        one.path(name).unlink()
    orphans = ["/store/data/Consistency/AOD/b1/stray.root", "/store/mc/Gone/f.root"]
    for name in orphans:
        one.write(name, b"not in the inventory")
    one.mkdirs("/store/mc/Empty/deeper")
    # A directory the server cannot read: nothing in it may be called missing, not even a
    # file really gone from it.
    one.path(lfn("b2", 1)).unlink()
    one.backdate()
    unreadable = one.path(lfn("b2", 0)).parent
    unreadable.chmod(0)
    commands = await record(inventory.bus, "commands", "transfer.file.#")
    try:
        async with (
            run_transfer(inventory, database_url),
            run_consistency(inventory, database_url) as cons,
        ):
            first = await cons.check(ONE)
            assert first["status"] == "done", first
            assert first["protocol"] == "root"
            assert first["roots"] == [f"{xrootd_pair[0].url}/store"]
            assert (first["missing_files"], first["missing_confirmed"]) == (2, 0)
            assert (first["unlisted_dirs"], first["skipped_unlisted"]) == (1, 3)
            assert await cons.text(first["id"], "unlisted") == ["/store/data/Consistency/AOD/b2"]
            assert names(await cons.files(first["id"], "missing")) == lost
            assert (first["orphan_files"], first["deletions_requested"]) == (2, 2)
            assert {"/store/mc/Empty", "/store/mc/Empty/deeper"} <= set(
                await cons.text(first["id"], "empty")
            )
            assert not one.exists("/store/mc/Empty")
            for name in orphans:
                await eventually(lambda n=name: not one.exists(n), f"{name} deleted")
            assert one.exists(lfn("b2", 0))
            assert not commands.of_type(TransferCommand.TRANSFER_FILES)
            row = next(r for r in (await cons.get("/sites"))["items"] if r["site"] == ONE)
            assert row["attention"] and row["unlisted"] == 1

            second = await cons.check(ONE)
            assert (second["missing_confirmed"], second["transfers_requested"]) == (2, 2)
            assert commands.lfns(TransferCommand.TRANSFER_FILES) == lost
            for name in lost:
                # A copy in progress is visible already: wait for the whole file.
                await eventually(lambda n=name: one.has(n, written[n]), f"{name} copied back", 120)
    finally:
        unreadable.chmod(0o755)


async def test_a_site_with_too_many_orphans_is_flagged_and_left_alone_until_approved(
    inventory: RunningInventory, database_url: str, xrootd_pair: tuple[Any, Any]
) -> None:
    one, two = xrootd_site(xrootd_pair[0], ONE), xrootd_site(xrootd_pair[1], TWO)
    await seed(inventory, [one, two], {"b1": [ONE, TWO]})
    orphans = [f"/store/temp/junk{i}.root" for i in range(3)]
    for name in orphans:
        one.write(name, b"junk")
    one.mkdirs("/store/mc/Empty")
    one.backdate()
    commands = await record(inventory.bus, "commands", "transfer.file.#")
    async with (
        run_transfer(inventory, database_url),
        run_consistency(inventory, database_url, max_orphans=2) as cons,
    ):
        flagged = await cons.check(ONE)
        assert (flagged["action"], flagged["orphan_files"]) == ("flagged", 3)
        assert flagged["empty_dirs_removed"] == 0
        assert all(one.exists(n) for n in orphans) and one.exists("/store/mc/Empty")
        assert (await cons.get(f"/sites/{ONE}"))["state"] == "halted"
        assert not commands.messages

        approved = await cons.approve(ONE, flagged["id"])
        assert approved["deletions_requested"] == 3
        assert commands.lfns(TransferCommand.DELETE_FILES) == sorted(orphans)
        for name in orphans:
            await eventually(lambda n=name: not one.exists(n), f"{name} deleted")
        assert not one.exists("/store/mc/Empty")
        assert (await cons.get(f"/sites/{ONE}"))["state"] == "enabled"
