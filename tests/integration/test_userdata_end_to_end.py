"""User data end to end on the real stack: the inventory and the transfer service (direct
gfal2 backend) in-process, the dealer beside them, two real XRootD sites and two users.
Files injected at two sites are verified on storage and fall into Dynamo's blocks, closed at
the limit and at completion; a subscription consolidates the dataset at one site and the
scattered copies are deleted; quotas refuse what is over; bob never touches alice's space."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.integration.test_dealer_support import RunningDealer, eventually, run_dealer
from tests.integration.test_transfer_support import adler32, content, run_transfer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

DS = "/alice/analysis-v1/USER"
U = "/api/v1/dealer/userdata"
FILE = 30_000
PARTITIONS = [
    {"name": "Physics", "condition": "blockreplica.owner == AnalysisOps"},
    {"name": "User", "condition": "blockreplica.owner == UserData"},
]


def _site(name: str, server: Any, user_quota: int) -> dict[str, Any]:
    return {
        "name": name,
        "storage_type": "disk",
        "quotas": {"Physics": 10**9, "User": user_quota},
        "protocols": [
            {
                "name": "root",
                "rules": [{"match": "/store/(.*)", "result": f"{server.url}/store/$1"}],
            }
        ],
    }


async def _grid(inventory: Any, a: Any, b: Any, user_quota: int = 10**9) -> None:
    sites = [_site("T2_A", a, user_quota), _site("T2_B", b, user_quota)]
    await inventory.ok("POST", "/api/v1/sites", {"sites": sites})
    await inventory.ok("POST", "/api/v1/groups", {"groups": [{"name": "AnalysisOps"}]})
    await inventory.ok("POST", "/api/v1/partitions", {"partitions": PARTITIONS})


def _job_output(server: Any, user: str, name: str, size: int = FILE) -> dict[str, Any]:
    """What a user's job does: copy its output into the namespace, then tell Dynamo."""
    lfn = f"/store/user/{user}/analysis/{name}.root"
    data = content(name, 0, size)
    server.write(lfn, data)
    return {"lfn": lfn, "size": len(data), "adler32": adler32(data)}


async def _call(
    dealer: RunningDealer,
    path: str,
    body: Any,
    status: int,
    user: str = "alice",
    roles: str = "user,anonymous",
) -> Any:
    headers = {"X-Dynamo-User": user, "X-Dynamo-Roles": roles}
    response = await dealer.client.post(f"{U}{path}", json=body, headers=headers)
    assert response.status_code == status, response.text
    return response.json()


async def _status(dealer: RunningDealer, name: str = DS) -> dict[str, Any]:
    got: dict[str, Any] = await dealer.get(f"{U}/dataset", name=name)
    return got


async def _inventory_dataset(inventory: Any, name: str = DS) -> dict[str, Any] | None:
    response = await inventory.client.get("/api/v1/dataset", params={"name": name})
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _inventory_lfns(inventory: Any, block: str, name: str = DS) -> set[str]:
    response = await inventory.client.get("/api/v1/files", params={"dataset": name, "block": block})
    assert response.status_code == 200, response.text
    return {f["lfn"] for f in response.json()["items"]}


@asynccontextmanager
async def _stack(inventory: Any, database_url: str, **over: Any) -> AsyncIterator[RunningDealer]:
    settings = {"plugins": {"subscriptions": 4}, "userdata_max_block_files": 2, **over}
    async with (
        run_transfer(inventory, database_url, poll_interval=0.2),
        run_dealer(inventory, database_url, **settings) as dealer,
    ):
        yield dealer


async def test_injected_files_fill_blocks_that_close_and_consolidate_at_one_site(
    inventory: Any, database_url: str, xrootd_pair: tuple[Any, Any]
) -> None:
    a, b = xrootd_pair
    await _grid(inventory, a, b)
    async with _stack(inventory, database_url) as dealer:
        made = await _call(dealer, "/datasets", {"name": DS}, 201)
        assert (made["owner"], made["state"]) == ("alice", "open")
        await _call(dealer, "/datasets", {"name": DS}, 409)

        at_a = [_job_output(a, "alice", f"a{i}") for i in range(3)]
        bad = _job_output(a, "alice", "corrupt")
        bad["adler32"] = "00000001"
        missing = {
            "lfn": "/store/user/alice/analysis/never.root",
            "size": 10,
            "adler32": "0000000a",
        }
        got = await _call(
            dealer, "/inject", {"dataset": DS, "site": "T2_A", "files": [*at_a, bad, missing]}, 200
        )
        assert [(f["lfn"], f["block"]) for f in got["registered"]] == [
            (at_a[0]["lfn"], "u000001"),
            (at_a[1]["lfn"], "u000001"),
            (at_a[2]["lfn"], "u000002"),
        ]
        failed = {f["lfn"]: f["reason"] for f in got["failed"]}
        assert set(failed) == {bad["lfn"], missing["lfn"]}
        assert "adler32" in failed[bad["lfn"]]

        at_b = [_job_output(b, "alice", "b0")]
        got = await _call(dealer, "/inject", {"dataset": DS, "site": "T2_B", "files": at_b}, 200)
        assert [f["block"] for f in got["registered"]] == ["u000003"], got
        again = await _call(dealer, "/inject", {"dataset": DS, "site": "T2_B", "files": at_b}, 200)
        assert again == {
            "registered": [],
            "failed": [{"lfn": at_b[0]["lfn"], "reason": "already registered"}],
        }

        # The first block closed at the limit; a block never spans sites.
        status = await _status(dealer)
        blocks = {blk["name"]: (blk["site"], blk["files"], blk["open"]) for blk in status["blocks"]}
        assert blocks == {
            "u000001": ("T2_A", 2, False),
            "u000002": ("T2_A", 1, True),
            "u000003": ("T2_B", 1, True),
        }
        assert status["files"] == 4
        listed = await inventory.client.get("/api/v1/dataset", params={"name": DS})
        in_inventory = {blk["name"]: blk["is_open"] for blk in listed.json()["blocks"]}
        assert in_inventory == {"u000001": False, "u000002": True, "u000003": True}
        assert await _inventory_lfns(inventory, "u000001") == {at_a[0]["lfn"], at_a[1]["lfn"]}
        every = set().union(*[await _inventory_lfns(inventory, n) for n in in_inventory])
        assert bad["lfn"] not in every and missing["lfn"] not in every

        # Production over: the remaining blocks close, no more files.
        done = await _call(dealer, "/complete", {"dataset": DS}, 200)
        assert done["state"] == "complete"
        listed = await inventory.client.get("/api/v1/dataset", params={"name": DS})
        assert not any(blk["is_open"] for blk in listed.json()["blocks"])
        late = [_job_output(a, "alice", "late")]
        await _call(dealer, "/inject", {"dataset": DS, "site": "T2_A", "files": late}, 409)

        # Consolidation at T2_B: A's blocks are copied there, then deleted at A.
        await _call(dealer, "/subscribe", {"dataset": DS, "site": "T2_B"}, 200)
        await _call(dealer, "/subscribe", {"dataset": DS, "site": "T2_A"}, 409)

        async def consolidated() -> bool:
            status = await _status(dealer)
            return all(
                [(r["site"], r["complete"]) for r in blk["replicas"]] == [("T2_B", True)]
                for blk in status["blocks"]
            )

        await eventually(consolidated, "every block only at T2_B, complete", 150)
        for f in at_a:
            assert b.path(f["lfn"]).read_bytes() == content(
                f["lfn"].rsplit("/", 1)[1][:-5], 0, FILE
            )

        def gone_from_a() -> bool:
            return not any(a.path(f["lfn"]).exists() for f in at_a)

        await eventually(gone_from_a, "the scattered files deleted at T2_A")
        assert b.path(at_b[0]["lfn"]).exists()


async def test_bob_is_refused_everywhere_in_alices_space_and_an_admin_is_not(
    inventory: Any, database_url: str, xrootd_pair: tuple[Any, Any]
) -> None:
    a, b = xrootd_pair
    await _grid(inventory, a, b)
    async with _stack(inventory, database_url) as dealer:
        await _call(dealer, "/datasets", {"name": "/alice/bobs-idea/USER"}, 403, user="bob")
        await _call(dealer, "/datasets", {"name": "/Official/Run2024A-v1/AOD"}, 422, user="bob")
        await _call(dealer, "/datasets", {"name": DS}, 201)
        await _call(dealer, "/datasets", {"name": "/bob/mine/USER"}, 201, user="bob")
        mine = [_job_output(a, "alice", "a0")]
        await _call(dealer, "/inject", {"dataset": DS, "site": "T2_A", "files": mine}, 200)

        theirs = [_job_output(a, "alice", "a1")]
        body = {"dataset": DS, "site": "T2_A", "files": theirs}
        refused = await _call(dealer, "/inject", body, 403, user="bob")
        assert "bob may not act on the data of alice" in refused["detail"]
        # bob's own dataset cannot take files from alice's namespace either
        body = {"dataset": "/bob/mine/USER", "site": "T2_A", "files": theirs}
        refused = await _call(dealer, "/inject", body, 422, user="bob")
        assert "outside the namespace /store/user/bob/" in refused["detail"]
        await _call(dealer, "/complete", {"dataset": DS}, 403, user="bob")
        await _call(dealer, "/subscribe", {"dataset": DS, "site": "T2_B"}, 403, user="bob")
        await _call(dealer, "/delete", {"dataset": DS}, 403, user="bob")
        unauthenticated = await dealer.client.post(f"{U}/delete", json={"dataset": DS})
        assert unauthenticated.status_code == 401

        # Malformed requests are refused whole, with the reason.
        for body, status in (
            ({"dataset": DS, "site": "T2_A", "files": []}, 422),
            ({"dataset": DS, "site": "T2_A", "files": [{**theirs[0], "adler32": "xyz"}]}, 422),
            ({"dataset": DS, "site": "T2_A", "files": [{**theirs[0], "size": -1}]}, 422),
            ({"dataset": DS, "site": "T2_A", "files": theirs, "extra": 1}, 422),
            ({"dataset": DS, "site": "T9_NOWHERE", "files": theirs}, 422),
            ({"dataset": DS, "site": "T2_A", "files": [theirs[0], theirs[0]]}, 422),
            ({"dataset": "/alice/nothing/USER", "site": "T2_A", "files": theirs}, 404),
        ):
            refused = await _call(dealer, "/inject", body, status)
            assert refused["status"] == status and refused["detail"]
        missing = await dealer.client.get(f"{U}/dataset", params={"name": "/alice/x/USER"})
        assert missing.status_code == 404

        # Nothing bob (or a malformed request) asked changed anything.
        status = await _status(dealer)
        assert (status["state"], status["home"], status["files"]) == ("open", None, 1)
        assert await _inventory_lfns(inventory, "u000001") == {mine[0]["lfn"]}
        assert (await dealer.get("/api/v1/dealer/subscriptions"))["total"] == 0

        # An admin (role passed on by the gateway) acts on anyone's data.
        body = {"dataset": DS, "site": "T2_A", "files": theirs}
        got = await _call(dealer, "/inject", body, 200, user="carol", roles="admin,user")
        assert [f["lfn"] for f in got["registered"]] == [theirs[0]["lfn"]]
        await _call(dealer, "/complete", {"dataset": DS}, 200, user="carol", roles="admin,user")


async def test_quotas_refuse_what_is_over_with_the_numbers_and_register_nothing(
    inventory: Any, database_url: str, xrootd_pair: tuple[Any, Any]
) -> None:
    a, b = xrootd_pair
    await _grid(inventory, a, b, user_quota=3 * FILE)
    async with _stack(inventory, database_url, userdata_user_quota=2 * FILE) as dealer:
        await _call(dealer, "/datasets", {"name": DS}, 201)
        first = [_job_output(a, "alice", f"a{i}") for i in range(2)]
        await _call(dealer, "/inject", {"dataset": DS, "site": "T2_A", "files": first}, 200)
        one_more = [_job_output(a, "alice", "a2")]
        body = {"dataset": DS, "site": "T2_A", "files": one_more}
        refused = await _call(dealer, "/inject", body, 422)
        assert (refused["used"], refused["asked"], refused["quota"]) == (2 * FILE, FILE, 2 * FILE)
        assert "user quota of alice" in refused["detail"]

        # bob has room of his own, but T2_A's user partition holds 3 files' worth.
        await _call(dealer, "/datasets", {"name": "/bob/b/USER"}, 201, user="bob")
        bobs = [_job_output(a, "bob", f"b{i}") for i in range(2)]
        body = {"dataset": "/bob/b/USER", "site": "T2_A", "files": bobs}
        refused = await _call(dealer, "/inject", body, 422, user="bob")
        assert (refused["used"], refused["asked"], refused["quota"]) == (
            2 * FILE,
            2 * FILE,
            3 * FILE,
        )
        assert "user data quota at T2_A" in refused["detail"]
        assert (await _status(dealer, "/bob/b/USER"))["files"] == 0
        bobs_ds = await _inventory_dataset(inventory, "/bob/b/USER")
        assert bobs_ds is not None and bobs_ds["blocks"] == []

        # A subscription counts what the site lacks: bob's files fill T2_B's user partition.
        body = {"dataset": "/bob/b/USER", "site": "T2_B", "files": bobs}
        for f in bobs:
            b.write(f["lfn"], a.path(f["lfn"]).read_bytes())
        await _call(dealer, "/inject", body, 200, user="bob")
        body = {"dataset": DS, "site": "T2_B"}
        refused = await _call(dealer, "/subscribe", body, 422)
        assert (refused["used"], refused["asked"], refused["quota"]) == (
            2 * FILE,
            2 * FILE,
            3 * FILE,
        )
        assert "user data quota at T2_B" in refused["detail"]
        assert (await _status(dealer))["home"] is None
        assert (await dealer.get("/api/v1/dealer/subscriptions"))["total"] == 0

        quota = await dealer.get(f"{U}/quota", user="alice")
        assert (quota["used"], quota["quota"]) == (2 * FILE, 2 * FILE)
        assert quota["sites"] == {"T2_A": [2 * FILE, 3 * FILE], "T2_B": [2 * FILE, 3 * FILE]}


async def test_a_user_deletes_their_dataset_files_replicas_and_name(
    inventory: Any, database_url: str, xrootd_pair: tuple[Any, Any]
) -> None:
    a, b = xrootd_pair
    await _grid(inventory, a, b)
    async with _stack(inventory, database_url) as dealer:
        await _call(dealer, "/datasets", {"name": DS}, 201)
        at_a = [_job_output(a, "alice", "a0")]
        at_b = [_job_output(b, "alice", "b0")]
        await _call(dealer, "/inject", {"dataset": DS, "site": "T2_A", "files": at_a}, 200)
        await _call(dealer, "/inject", {"dataset": DS, "site": "T2_B", "files": at_b}, 200)
        deleting = await _call(dealer, "/delete", {"dataset": DS}, 200)
        assert deleting["state"] == "deleting"

        async def gone() -> bool:
            response = await dealer.client.get(f"{U}/dataset", params={"name": DS})
            return response.status_code == 404 and await _inventory_dataset(inventory) is None

        await eventually(gone, "the dataset gone from the dealer and the inventory", 90)
        assert not a.path(at_a[0]["lfn"]).exists() and not b.path(at_b[0]["lfn"]).exists()
        # The name is free again, and the space counts no more.
        await _call(dealer, "/datasets", {"name": DS}, 201)
        assert (await dealer.get(f"{U}/quota", user="alice"))["used"] == 0


async def test_data_produced_elsewhere_is_copied_into_the_namespace_and_registered(
    inventory: Any, database_url: str, xrootd_pair: tuple[Any, Any]
) -> None:
    a, b = xrootd_pair
    await _grid(inventory, a, b)
    async with _stack(inventory, database_url) as dealer:
        await _call(dealer, "/datasets", {"name": DS}, 201)
        # Produced earlier, outside Dynamo's namespace (a scratch area on the second server).
        old, corrupt = content("old", 0, FILE), content("corrupt", 0, FILE)
        b.write("/scratch/alice/old.root", old)
        b.write("/scratch/alice/corrupt.root", corrupt)
        target = "/store/user/alice/analysis/old.root"
        files = [
            {
                "source": f"{b.url}/scratch/alice/old.root",
                "lfn": target,
                "size": len(old),
                "adler32": adler32(old),
            },
            {
                "source": f"{b.url}/scratch/alice/corrupt.root",
                "lfn": "/store/user/alice/analysis/corrupt.root",
                "size": len(corrupt),
                "adler32": "00000001",
            },
        ]
        got = await _call(dealer, "/import", {"dataset": DS, "site": "T2_A", "files": files}, 200)
        assert [(f["lfn"], f["block"], f["site"]) for f in got["registered"]] == [
            (target, "u000001", "T2_A")
        ]
        assert [f["lfn"] for f in got["failed"]] == [files[1]["lfn"]]
        assert a.path(target).read_bytes() == old
        assert not a.path(files[1]["lfn"]).exists()
        assert await _inventory_lfns(inventory, "u000001") == {target}

        # The dealer's own disk is nobody's source; nor is another user's namespace a target.
        local = {**files[0], "source": "file:///etc/passwd"}
        body = {"dataset": DS, "site": "T2_A", "files": [local]}
        refused = await _call(dealer, "/import", body, 422)
        assert "sources must be URLs of" in refused["detail"]
        body = {"dataset": DS, "site": "T2_A", "files": [files[0]]}
        await _call(dealer, "/import", body, 403, user="bob")


async def test_a_batch_the_inventory_refuses_leaves_no_file_registered(
    inventory: Any, database_url: str, xrootd_pair: tuple[Any, Any]
) -> None:
    a, b = xrootd_pair
    await _grid(inventory, a, b)
    async with _stack(inventory, database_url) as dealer:
        await _call(dealer, "/datasets", {"name": DS}, 201)
        good, clash = _job_output(a, "alice", "good"), _job_output(a, "alice", "clash")
        # An operator registered the second LFN elsewhere, behind Dynamo's back.
        other = "/Other/Run2024A-v1/RAW"
        await inventory.ok("POST", "/api/v1/datasets", {"datasets": [{"name": other}]})
        await inventory.ok("POST", "/api/v1/blocks", {"blocks": [{"dataset": other, "name": "b1"}]})
        await inventory.ok(
            "POST", "/api/v1/files", {"files": [{"dataset": other, "block": "b1", **clash}]}
        )
        body = {"dataset": DS, "site": "T2_A", "files": [good, clash]}
        got = await _call(dealer, "/inject", body, 200)
        assert got["registered"] == []
        assert {f["lfn"] for f in got["failed"]} == {good["lfn"], clash["lfn"]}
        assert all("refused by the inventory" in f["reason"] for f in got["failed"])
        assert (await _status(dealer))["files"] == 0
        ds = await _inventory_dataset(inventory)
        assert ds is not None and all(blk["num_files"] == 0 for blk in ds["blocks"])

        # The good file alone goes in, into the block made for the refused batch.
        got = await _call(dealer, "/inject", {**body, "files": [good]}, 200)
        assert [(f["lfn"], f["block"]) for f in got["registered"]] == [(good["lfn"], "u000001")]
        assert await _inventory_lfns(inventory, "u000001") == {good["lfn"]}
