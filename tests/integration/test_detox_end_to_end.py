"""End to end on the real stack (in-process): a site filled past 90% with real files on an
XRootD server gets back under 85%. Detox decides and clears the owners, the transfer service
removes the files with gfal2 and has the inventory delete the replicas, and the cycle record
explains each deletion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_detox_support import eventually, run_detox, site_usage
from tests.integration.test_transfer_support import adler32, content, run_transfer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

FILE = 50_000
FILES_PER_DATASET = 2
DATASETS = [f"/E2E{i:02d}/Run2024A-v1/AOD" for i in range(10)]
POLICY = """\
Partition Physics
On site.name == T2_XROOTD
When site.occupancy > 0.9
Until site.occupancy < 0.85
Protect dataset.name == /E2E09/*/*
Dismiss
Order increasing dataset.name
"""


def _lfn(dataset: str, index: int) -> str:
    primary = dataset.split("/")[1]
    return f"/store/data/{primary}/AOD/b1/f{index:02d}.root"


async def _seed(inventory: Any, server: Any) -> dict[str, list[str]]:
    total = len(DATASETS) * FILES_PER_DATASET * FILE
    await inventory.ok(
        "POST",
        "/api/v1/sites",
        {
            "sites": [
                {
                    "name": "T2_XROOTD",
                    "storage_type": "disk",
                    # 95% full.
                    "quotas": {"Physics": int(total / 0.95)},
                    "protocols": [
                        {
                            "name": "root",
                            "rules": [{"match": "/store/(.*)", "result": f"{server.url}/store/$1"}],
                        }
                    ],
                }
            ]
        },
    )
    await inventory.ok("POST", "/api/v1/groups", {"groups": [{"name": "AnalysisOps"}]})
    await inventory.ok(
        "POST",
        "/api/v1/partitions",
        {
            "partitions": [
                {
                    "name": "Physics",
                    "condition": "blockreplica.owner == AnalysisOps and site.storage_type == DISK",
                }
            ]
        },
    )
    await inventory.ok("POST", "/api/v1/datasets", {"datasets": [{"name": d} for d in DATASETS]})
    await inventory.ok(
        "POST", "/api/v1/blocks", {"blocks": [{"dataset": d, "name": "b1"} for d in DATASETS]}
    )
    files: dict[str, list[str]] = {}
    specs = []
    for dataset in DATASETS:
        files[dataset] = []
        for index in range(FILES_PER_DATASET):
            name = _lfn(dataset, index)
            data = content(dataset, index, FILE)
            server.write(name, data)
            files[dataset].append(name)
            specs.append(
                {
                    "dataset": dataset,
                    "block": "b1",
                    "lfn": name,
                    "size": len(data),
                    "adler32": adler32(data),
                }
            )
    await inventory.ok("POST", "/api/v1/files", {"files": specs})
    await inventory.ok(
        "POST",
        "/api/v1/blocks",
        {"blocks": [{"dataset": d, "name": "b1", "is_open": False} for d in DATASETS]},
    )
    await inventory.ok(
        "POST",
        "/api/v1/replicas",
        {
            "block_replicas": [
                {"dataset": d, "block": "b1", "site": "T2_XROOTD", "group": "AnalysisOps"}
                for d in DATASETS
            ]
        },
    )
    return files


async def _replicas_at(inventory: Any) -> set[str]:
    response = await inventory.client.get(
        "/api/v1/sites/T2_XROOTD/replicas", params={"limit": 1000}
    )
    assert response.status_code == 200, response.text
    return {r["dataset"] for r in response.json()["items"]}


async def test_a_full_xrootd_site_gets_back_under_85_percent(
    inventory: Any, database_url: str, xrootd_site: Any, tmp_path: Path
) -> None:
    files = await _seed(inventory, xrootd_site)
    assert (await site_usage(inventory, "T2_XROOTD"))["occupancy"] > 0.9
    policy = tmp_path / "Physics.txt"
    policy.write_text(POLICY)
    async with (
        run_transfer(inventory, database_url, poll_interval=0.2),
        run_detox(inventory, database_url, [policy]) as detox,
    ):
        cycle = await detox.cycle()
        gone = DATASETS[:2]
        assert cycle["replicas_deleted"] == 2
        assert cycle["commands"]["accepted"] == 2 and cycle["commands"]["rejected"] == 0

        async def removed() -> bool:
            return not (await _replicas_at(inventory)) & set(gone)

        await eventually(removed, "the replicas removed from the inventory", 90)
        for dataset in DATASETS:
            for name in files[dataset]:
                assert xrootd_site.path(name).exists() == (dataset not in gone), name
        assert await _replicas_at(inventory) == set(DATASETS) - set(gone)
        usage = await site_usage(inventory, "T2_XROOTD")
        assert usage["occupancy"] < 0.85

        # The record explains each deletion.
        deleted = await detox.get(
            f"/api/v1/cycles/{cycle['id']}/sites/T2_XROOTD/decisions", decision="delete"
        )
        assert [(d["dataset"], d["line"], d["rule"]) for d in deleted["items"]] == [
            (name, 6, "Dismiss") for name in gone
        ]
        kept = await detox.get("/api/v1/decisions", dataset="/E2E09/*")
        assert [(d["decision"], d["rule"]) for d in kept["items"]] == [
            ("protect", "Protect dataset.name == /E2E09/*/*")
        ]
        sites = await detox.get(f"/api/v1/cycles/{cycle['id']}/sites")
        (site,) = sites["items"]
        assert site["occupancy_before"] > 0.9 and site["occupancy_after"] < 0.85
