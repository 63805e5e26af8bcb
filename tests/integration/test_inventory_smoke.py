from __future__ import annotations

from tests.factories import grid


async def test_registered_grid_is_readable_back(inventory) -> None:  # type: ignore[no-untyped-def]
    await inventory.ok("POST", "/api/v1/sites", {"sites": [grid.site("T2_US_MIT")]})
    await inventory.ok("POST", "/api/v1/groups", {"groups": [{"name": "AnalysisOps"}]})
    await inventory.ok("POST", "/api/v1/datasets", {"datasets": [grid.dataset()]})
    await inventory.ok("POST", "/api/v1/blocks", {"blocks": [grid.block()]})
    ds = "/SingleMuon/Run2017D-v1/AOD"
    await inventory.ok(
        "POST", "/api/v1/files", {"files": [grid.file(ds, "b0001", i) for i in range(3)]}
    )
    reply = await inventory.ok(
        "POST",
        "/api/v1/replicas",
        {
            "block_replicas": [
                {"dataset": ds, "block": "b0001", "site": "T2_US_MIT", "group": "AnalysisOps"}
            ]
        },
    )
    assert reply["first_seq"] == reply["last_seq"]
    detail = (await inventory.client.get("/api/v1/dataset", params={"name": ds})).json()
    assert detail["size"] == 3000
    assert detail["replicas"][0]["is_complete"] is True
    files = (
        await inventory.client.get("/api/v1/files", params={"dataset": ds, "block": "b0001"})
    ).json()
    assert files["total"] == 3
