"""End to end on the real stack (in-process inventory, transfer service with the direct gfal2
backend, two real XRootD servers): the dealer's decisions become real files at the
destination and complete replicas in the inventory. A copy request lands; a popular dataset
gains a replica; an enforcer rule becomes compliant; a site being emptied is left without
last copies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dynamo_dealer.service.plugins.popularity import Access
from tests.integration.test_dealer_support import eventually, run_dealer
from tests.integration.test_transfer_support import adler32, content, run_transfer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

FILE = 40_000
PARTITION = "blockreplica.owner == AnalysisOps and site.storage_type == DISK"
AOD = "/Request/Run2024A-v1/AOD"
HOT = "/Popular/Run2024A-v1/AOD"
MINI = "/Enforced/Run2024A-v1/MINIAOD"
DATASETS = (AOD, HOT, MINI)


def _site(name: str, server: Any, **over: Any) -> dict[str, Any]:
    return {
        "name": name,
        "storage_type": "disk",
        "quotas": {"Physics": 10**9},
        "protocols": [
            {
                "name": "root",
                "rules": [{"match": "/store/(.*)", "result": f"{server.url}/store/$1"}],
            }
        ],
        **over,
    }


def _lfn(dataset: str, index: int) -> str:
    return f"/store/data/{dataset.split('/')[1]}/b1/f{index:02d}.root"


async def _seed(inventory: Any, source: Any, destination: Any) -> dict[str, list[str]]:
    """T1_X (the first server) holds two files of each dataset; T2_X (the second) is empty."""
    await inventory.ok(
        "POST", "/api/v1/sites", {"sites": [_site("T1_X", source), _site("T2_X", destination)]}
    )
    await inventory.ok("POST", "/api/v1/groups", {"groups": [{"name": "AnalysisOps"}]})
    await inventory.ok(
        "POST", "/api/v1/partitions", {"partitions": [{"name": "Physics", "condition": PARTITION}]}
    )
    await inventory.ok("POST", "/api/v1/datasets", {"datasets": [{"name": d} for d in DATASETS]})
    await inventory.ok(
        "POST", "/api/v1/blocks", {"blocks": [{"dataset": d, "name": "b1"} for d in DATASETS]}
    )
    files: dict[str, list[str]] = {}
    specs = []
    for dataset in DATASETS:
        files[dataset] = []
        for index in range(2):
            name, data = _lfn(dataset, index), content(dataset, index, FILE + index)
            source.write(name, data)
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
            "dataset_replicas": [
                {
                    "dataset": d,
                    "site": "T1_X",
                    "group": "AnalysisOps",
                    "complete": True,
                    "growing": False,
                }
                for d in DATASETS
            ]
        },
    )
    return files


async def _replicas(inventory: Any, dataset: str) -> dict[str, bool]:
    response = await inventory.client.get("/api/v1/dataset", params={"name": dataset})
    assert response.status_code == 200, response.text
    return {r["site"]: bool(r["is_complete"]) for r in response.json()["replicas"]}


async def _landed(inventory: Any, dataset: str, site: str = "T2_X") -> bool:
    return (await _replicas(inventory, dataset)).get(site) is True


def _same_files(files: list[str], source: Any, destination: Any) -> None:
    for name in files:
        assert destination.path(name).read_bytes() == source.path(name).read_bytes(), name


async def test_a_copy_request_lands_real_files_at_an_xrootd_site(
    inventory: Any, database_url: str, xrootd_pair: tuple[Any, Any]
) -> None:
    source, destination = xrootd_pair
    files = await _seed(inventory, source, destination)
    async with (
        run_transfer(inventory, database_url, poll_interval=0.2),
        run_dealer(inventory, database_url, plugins={"requests": 5}) as dealer,
    ):
        made = await dealer.send(
            "POST",
            "/api/v1/dealer/requests",
            {"items": [AOD], "sites": ["T2_X"], "group": "AnalysisOps"},
            201,
        )
        cycle = await dealer.cycle()
        assert (cycle["accepted"], cycle["commands"]["accepted"]) == (1, 1)
        await eventually(lambda: _landed(inventory, AOD), "the replica complete", 120)
        _same_files(files[AOD], source, destination)

        async def completed() -> bool:
            got = await dealer.get(f"/api/v1/dealer/requests/{made['id']}")
            return bool(got["state"] == "completed")

        await eventually(completed, "the request completed")
        summary = await dealer.get("/api/v1/dealer/monitoring")

        async def nothing_in_flight() -> bool:
            summary = await dealer.get("/api/v1/dealer/monitoring")
            return bool(summary["total"]["replicas"] == 0)

        await eventually(nothing_in_flight, "no replica in flight", 10)
        assert summary["stuck_days"] == 5.0


async def test_a_popular_dataset_gains_a_replica(
    inventory: Any, database_url: str, xrootd_pair: tuple[Any, Any]
) -> None:
    source, destination = xrootd_pair
    files = await _seed(inventory, source, destination)
    async with (
        run_transfer(inventory, database_url, poll_interval=0.2),
        run_dealer(inventory, database_url, plugins={"popularity": 2}) as dealer,
    ):
        now = dealer.runtime.clock()
        dealer.accesses.records += [
            Access(HOT, now - 3600, 150),
            Access(AOD, now - 3600, 10),
        ]
        cycle = await dealer.cycle()
        decided = await dealer.decisions(cycle["id"])
        assert [(d["plugin"], d["dataset"], d["decision"], d["site"]) for d in decided] == [
            ("popularity", HOT, "accepted", "T2_X")
        ]
        await eventually(lambda: _landed(inventory, HOT), "the popular replica complete", 120)
        _same_files(files[HOT], source, destination)
        assert await _replicas(inventory, AOD) == {"T1_X": True}


async def test_an_enforcer_rule_becomes_compliant(
    inventory: Any, database_url: str, xrootd_pair: tuple[Any, Any], tmp_path: Path
) -> None:
    source, destination = xrootd_pair
    files = await _seed(inventory, source, destination)
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            {
                "partition": "Physics",
                "default_destination_group": "AnalysisOps",
                "rules": {
                    "t2_miniaod": {
                        "replicas": ["dataset.name == /*/*/MINIAOD"],
                        "num_copies": 1,
                        "destinations": ["site.name == T2_*"],
                        "protect": True,
                    }
                },
            }
        )
    )
    async with (
        run_transfer(inventory, database_url, poll_interval=0.2),
        run_dealer(
            inventory, database_url, plugins={"enforcer": 3}, enforcer_files=[rules]
        ) as dealer,
    ):
        (before,) = (await dealer.get("/api/v1/dealer/compliance"))["items"]
        assert (before["there"], before["in_flight"], before["missing"]) == (0, 0, 1)
        await dealer.cycle()

        async def compliant() -> bool:
            (rule,) = (await dealer.get("/api/v1/dealer/compliance"))["items"]
            return bool((rule["there"], rule["in_flight"], rule["missing"]) == (1, 0, 0))

        await eventually(compliant, "the rule compliant", 120)
        _same_files(files[MINI], source, destination)


async def test_a_site_being_emptied_is_left_without_last_copies(
    inventory: Any, database_url: str, xrootd_pair: tuple[Any, Any]
) -> None:
    source, destination = xrootd_pair
    files = await _seed(inventory, source, destination)
    async with (
        run_transfer(inventory, database_url, poll_interval=0.2),
        run_dealer(
            inventory, database_url, plugins={"undertaker": 4}, evacuate_sites=["T1_X"]
        ) as dealer,
    ):
        cycle = await dealer.cycle()
        decided = await dealer.decisions(cycle["id"])
        assert sorted((d["dataset"], d["decision"], d["site"]) for d in decided) == sorted(
            (d, "accepted", "T2_X") for d in DATASETS
        )

        async def all_landed() -> bool:
            return all([await _landed(inventory, d) for d in DATASETS])

        await eventually(all_landed, "every last copy rescued", 150)
        for dataset in DATASETS:
            _same_files(files[dataset], source, destination)
        # Now the site can go to morgue: nothing there is a last copy any more.
        await inventory.ok(
            "POST", "/api/v1/sites", {"sites": [_site("T1_X", source, status="morgue")]}
        )

        async def morgue() -> bool:
            site = dealer.runtime.readmodel.model.sites.get("T1_X")
            return site is not None and site.status.value == "morgue"

        await eventually(morgue, "the site in morgue")
        again = await dealer.cycle()
        assert again["proposals"] == 0


async def test_a_deletion_request_removes_real_files_and_the_replica(
    inventory: Any, database_url: str, xrootd_pair: tuple[Any, Any]
) -> None:
    source, destination = xrootd_pair
    files = await _seed(inventory, source, destination)
    # A second complete copy of AOD at T2_X, files and all.
    for name in files[AOD]:
        destination.write(name, source.path(name).read_bytes())
    await inventory.ok(
        "POST",
        "/api/v1/replicas",
        {
            "dataset_replicas": [
                {
                    "dataset": AOD,
                    "site": "T2_X",
                    "group": "AnalysisOps",
                    "complete": True,
                    "growing": False,
                }
            ]
        },
    )
    async with (
        run_transfer(inventory, database_url, poll_interval=0.2),
        run_dealer(inventory, database_url, plugins={"requests": 5}) as dealer,
    ):
        path = "/api/v1/dealer/deletion-requests"
        made = await dealer.send("POST", path, {"dataset": AOD, "site": "T2_X"}, 201)
        assert made["state"] == "new" and made["size"] == 2 * FILE + 1
        await dealer.cycle()

        async def completed() -> bool:
            got = await dealer.get(f"{path}/{made['id']}")
            return bool(got["state"] == "completed")

        await eventually(completed, "the deletion request completed", 120)
        assert await _replicas(inventory, AOD) == {"T1_X": True}
        for name in files[AOD]:
            assert not destination.path(name).exists(), name
            assert source.path(name).exists(), name
