"""The direct backend between two real XRootD sites (root:// third-party copies through gfal2),
then the deletion of the copy."""

from __future__ import annotations

from typing import Any

import pytest

from dynamo_common.messages.registry import TransferCommand as C
from tests.integration.test_transfer_support import (
    DS,
    adler32,
    content,
    eventually,
    inventory_block_replica,
    lfn,
    replica_complete,
    run_transfer,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _site(name: str, server: Any) -> dict[str, Any]:
    return {
        "name": name,
        "protocols": [
            {
                "name": "root",
                "rules": [{"match": "/store/(.*)", "result": f"{server.url}/store/$1"}],
            }
        ],
    }


async def _gone(inventory: Any) -> bool:
    return await inventory_block_replica(inventory, "b1", "T2_X2") is None


async def test_copy_and_delete_between_xrootd_sites(
    inventory: Any, database_url: str, xrootd_pair: tuple[Any, Any]
) -> None:
    source, destination = xrootd_pair
    await inventory.ok(
        "POST",
        "/api/v1/sites",
        {"sites": [_site("T1_X1", source), _site("T2_X2", destination)]},
    )
    await inventory.ok("POST", "/api/v1/datasets", {"datasets": [{"name": DS}]})
    await inventory.ok("POST", "/api/v1/blocks", {"blocks": [{"dataset": DS, "name": "b1"}]})
    files = [(lfn("b1", i), content("b1", i, 50_000 + i)) for i in range(3)]
    for name, data in files:
        source.write(name, data)
    await inventory.ok(
        "POST",
        "/api/v1/files",
        {
            "files": [
                {"dataset": DS, "block": "b1", "lfn": n, "size": len(d), "adler32": adler32(d)}
                for n, d in files
            ]
        },
    )
    await inventory.ok(
        "POST",
        "/api/v1/replicas",
        {"block_replicas": [{"dataset": DS, "block": "b1", "site": "T1_X1"}]},
    )
    async with run_transfer(inventory, database_url, direct_parallel_per_link=3) as transfer:
        reply = await transfer.command(
            C.TRANSFER_REPLICAS, {"requests": [{"dataset": DS, "block": "b1", "site": "T2_X2"}]}
        )
        assert reply.tasks == 3
        await eventually(lambda: replica_complete(inventory, "b1", "T2_X2"), "copied", 60)
        for name, data in files:
            assert destination.path(name).read_bytes() == data
        history = await transfer.get("/api/v1/transfers/history")
        assert {h["source"] for h in history["items"]} == {"T1_X1"}

        reply = await transfer.command(
            C.DELETE_REPLICAS, {"requests": [{"dataset": DS, "block": "b1", "site": "T2_X2"}]}
        )
        assert reply.tasks == 3
        await eventually(lambda: _gone(inventory), "replica deleted", 60)
        for name, _ in files:
            assert not destination.path(name).exists()
            assert source.path(name).exists()
        assert not destination.path(files[0][0]).parent.exists(), "empty directory left"


async def _held(transfer: Any) -> list[dict[str, Any]] | None:
    page = await transfer.get("/api/v1/transfers/held")
    return page["items"] if page["total"] else None


async def test_a_destination_without_write_permission_holds_its_files_and_the_rest_goes_on(
    inventory: Any, database_url: str, xrootd_pair: tuple[Any, Any]
) -> None:
    source, destination = xrootd_pair
    await inventory.ok(
        "POST",
        "/api/v1/sites",
        {"sites": [_site("T1_X1", source), _site("T2_X2", destination)]},
    )
    await inventory.ok("POST", "/api/v1/datasets", {"datasets": [{"name": DS}]})
    await inventory.ok(
        "POST", "/api/v1/blocks", {"blocks": [{"dataset": DS, "name": b} for b in ("b1", "b2")]}
    )
    files = {b: (lfn(b, 0), content(b, 0, 30_000)) for b in ("b1", "b2")}
    for name, data in files.values():
        source.write(name, data)
    await inventory.ok(
        "POST",
        "/api/v1/files",
        {
            "files": [
                {"dataset": DS, "block": b, "lfn": n, "size": len(d), "adler32": adler32(d)}
                for b, (n, d) in files.items()
            ]
        },
    )
    await inventory.ok(
        "POST",
        "/api/v1/replicas",
        {"block_replicas": [{"dataset": DS, "block": b, "site": "T1_X1"} for b in files]},
    )
    # b1's directory at the destination belongs to root: the xrootd server may not write there.
    locked = destination.path(files["b1"][0]).parent
    locked.mkdir(parents=True)
    for parent in [locked.parent, locked.parent.parent, locked.parent.parent.parent]:
        destination.give_to_server(parent)
    locked.chmod(0o555)
    async with run_transfer(inventory, database_url) as transfer:
        await transfer.command(
            C.TRANSFER_REPLICAS, {"requests": [{"dataset": DS, "site": "T2_X2"}]}
        )
        await eventually(lambda: replica_complete(inventory, "b2", "T2_X2"), "b2 copied", 60)
        (held,) = await eventually(lambda: _held(transfer), "b1's file held", 60)
        assert held["lfn"] == files["b1"][0]
        assert "permission denied" in held["reason"].lower(), held["reason"]
        assert list(locked.iterdir()) == []
