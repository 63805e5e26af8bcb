"""`GET /api/v1/sites/{site}/files`: every file a site should hold, in one streamed answer."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.factories import grid

pytestmark = pytest.mark.integration

DS = "/SingleMuon/Run2017D-v1/AOD"
OTHER = "/ZeroBias/Run2018A-v2/MINIAOD"


async def _seed(inv: Any) -> None:
    await inv.ok(
        "POST", "/api/v1/sites", {"sites": [grid.site("T2_US_MIT"), grid.site("T1_US_FNAL_Disk")]}
    )
    await inv.ok("POST", "/api/v1/datasets", {"datasets": [grid.dataset(DS), grid.dataset(OTHER)]})
    await inv.ok(
        "POST",
        "/api/v1/blocks",
        {"blocks": [grid.block(DS, "b1"), grid.block(DS, "b2"), grid.block(OTHER, "c1")]},
    )
    files = [grid.file(DS, "b1", i) for i in range(3)]
    files += [grid.file(DS, "b2", i, size=7) for i in range(2)]
    files += [grid.file(OTHER, "c1", i) for i in range(4)]
    await inv.ok("POST", "/api/v1/files", {"files": files})
    await inv.ok(
        "POST",
        "/api/v1/replicas",
        {
            "block_replicas": [
                {"dataset": DS, "block": "b1", "site": "T2_US_MIT"},
                {"dataset": DS, "block": "b2", "site": "T2_US_MIT"},
                {"dataset": OTHER, "block": "c1", "site": "T1_US_FNAL_Disk"},
            ]
        },
    )


async def _lines(inv: Any, site: str) -> list[dict[str, Any]]:
    response = await inv.client.get(f"/api/v1/sites/{site}/files")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert int(response.headers["x-dynamo-seq"]) > 0
    return [orjson.loads(line) for line in response.content.splitlines() if line]


async def test_a_site_streams_the_files_of_its_block_replicas_and_only_those(
    inventory: Any,
) -> None:
    await _seed(inventory)
    lines = await _lines(inventory, "T2_US_MIT")
    assert [(x["dataset"], x["block"]) for x in lines] == [(DS, "b1")] * 3 + [(DS, "b2")] * 2
    assert lines[0] == {**grid.file(DS, "b1", 0)}
    assert [x["size"] for x in lines if x["block"] == "b2"] == [7, 7]
    other = await _lines(inventory, "T1_US_FNAL_Disk")
    assert {x["dataset"] for x in other} == {OTHER} and len(other) == 4


async def test_a_site_without_replicas_streams_nothing(inventory: Any) -> None:
    await _seed(inventory)
    await inventory.ok("POST", "/api/v1/sites", {"sites": [grid.site("T3_CH_Empty")]})
    assert await _lines(inventory, "T3_CH_Empty") == []


async def test_an_unknown_site_is_a_404_problem(inventory: Any) -> None:
    response = await inventory.client.get("/api/v1/sites/T9_XX_Nowhere/files")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "T9_XX_Nowhere" in response.text
