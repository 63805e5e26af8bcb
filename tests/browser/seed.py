"""The small grid behind the browser tests, made through the services' own APIs so that every
page shows what the services really recorded:

* four disk sites (``file://`` storage in a temporary directory) with Physics quotas, seven
  datasets of real files owned by AnalysisOps;
* the transfer service copies /TTbar to T2_US_MIT (done) and tries /Broken (whose only source
  lost its files) until it holds it;
* a real detox cycle: T2_DE_DESY is over 90% and loses /DoubleEG, the first unprotected
  dataset in name order; T2_IT_Rome sits between the marks (86%);
* consistency checks: T2_US_MIT lost a file and holds an orphan (acted on), T2_IT_Rome holds
  three orphans, above the safety valve of two (flagged: a person is needed);
* one lock.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.integration.test_consistency_support import SiteStorage, adler32, eventually, file_site

GROUP = "AnalysisOps"
PARTITION = "blockreplica.owner == AnalysisOps and site.storage_type == DISK"
FILE = 50_000
FILES_PER_BLOCK = 4
BLOCKS = ("b1", "b2")
DATASET_BYTES = FILE * FILES_PER_BLOCK * len(BLOCKS)

POLICY = """\
# Physics: keep disk sites below 90%, down to 85%
Partition Physics
On site.storage_type == DISK
When site.occupancy > 0.9
Until site.occupancy < 0.85
Protect dataset.name == /SingleMuon/*/AOD
Dismiss
Order increasing dataset.name
"""

SINGLEMUON_A = "/SingleMuon/Run2024A-v1/AOD"
SINGLEMUON_B = "/SingleMuon/Run2024B-v1/AOD"
DOUBLEEG = "/DoubleEG/Run2024A-v1/MINIAOD"
ZEROBIAS = "/ZeroBias/Run2024A-v1/RAW"
TTBAR = "/TTbar_13TeV/Summer24-v1/AODSIM"
WJETS = "/WJets_13TeV/Summer24-v1/MINIAODSIM"
BROKEN = "/Broken/Run2024A-v1/AOD"
BROKEN_FILES = 2

FNAL, DESY, ROME, MIT = "T1_US_FNAL_Disk", "T2_DE_DESY", "T2_IT_Rome", "T2_US_MIT"
HOLDINGS = {
    FNAL: [SINGLEMUON_A, SINGLEMUON_B, DOUBLEEG, ZEROBIAS, TTBAR, WJETS],
    DESY: [SINGLEMUON_A, DOUBLEEG, TTBAR],
    ROME: [ZEROBIAS, WJETS],
    MIT: [SINGLEMUON_B],
}
QUOTAS = {
    FNAL: int(6 * DATASET_BYTES / 0.80),  # 80%
    DESY: int(3 * DATASET_BYTES / 0.92),  # 92%: over the trigger
    ROME: int((2 * DATASET_BYTES + BROKEN_FILES * FILE) / 0.86),  # 86%: between the marks
    MIT: 10 * DATASET_BYTES,
}


ENFORCER = {
    "partition": "Physics",
    "default_destination_group": GROUP,
    "rules": {
        "us_miniaod": {
            "replicas": ["dataset.name == /*/*/MINIAOD*"],
            "num_copies": 1,
            "destinations": ["site.name in [T2_US_*]"],
            "sources": ["site.storage_type == DISK"],
            "protect": False,
        }
    },
}


@dataclass
class Seeded:
    sites: dict[str, SiteStorage]
    cycle_id: int
    mit_run: dict[str, Any]
    rome_run: dict[str, Any]
    missing_lfn: str
    orphan_lfn: str
    held_lfns: list[str]
    held_files: int
    lock_id: int
    dealer_cycle: dict[str, Any] | None
    dealer_requests: list[dict[str, Any]]


def lfn(dataset: str, block: str, index: int) -> str:
    primary, processed, tier = dataset.strip("/").split("/")
    return f"/store/data/{primary}/{tier}/{processed}/{block}/f{index:03d}.root"


def content(name: str, size: int = FILE) -> bytes:
    seed = f"{name}:".encode()
    return (seed * (size // len(seed) + 1))[:size]


async def seed_grid(
    inventory: Any, transfer: Any, detox: Any, consistency: Any, dealer: Any, root: Path
) -> Seeded:
    sites = {name: file_site(root, name) for name in QUOTAS}
    await inventory.ok(
        "POST",
        "/api/v1/sites",
        {"sites": [s.spec(quotas={"Physics": QUOTAS[n]}) for n, s in sites.items()]},
    )
    await inventory.ok("POST", "/api/v1/groups", {"groups": [{"name": GROUP}]})
    await inventory.ok(
        "POST", "/api/v1/partitions", {"partitions": [{"name": "Physics", "condition": PARTITION}]}
    )
    datasets = [SINGLEMUON_A, SINGLEMUON_B, DOUBLEEG, ZEROBIAS, TTBAR, WJETS, BROKEN]
    await inventory.ok(
        "POST",
        "/api/v1/datasets",
        {
            "datasets": [
                {"name": d, "data_type": "mc" if "13TeV" in d else "data"} for d in datasets
            ]
        },
    )
    blocks = {d: list(BLOCKS) for d in datasets}
    blocks[BROKEN] = ["b1"]
    await inventory.ok(
        "POST",
        "/api/v1/blocks",
        {"blocks": [{"dataset": d, "name": b} for d, names in blocks.items() for b in names]},
    )
    files: list[dict[str, Any]] = []
    for dataset, names in blocks.items():
        count = BROKEN_FILES if dataset == BROKEN else FILES_PER_BLOCK
        for block in names:
            for index in range(count):
                name = lfn(dataset, block, index)
                data = content(name)
                files.append(
                    {
                        "dataset": dataset,
                        "block": block,
                        "lfn": name,
                        "size": len(data),
                        "adler32": adler32(data),
                    }
                )
                for site, held in HOLDINGS.items():
                    if dataset in held:
                        sites[site].write(name, data)
    await inventory.ok("POST", "/api/v1/files", {"files": files})
    await inventory.ok(
        "POST",
        "/api/v1/blocks",
        {
            "blocks": [
                {"dataset": d, "name": b, "is_open": False}
                for d, names in blocks.items()
                for b in names
            ]
        },
    )
    # /Broken is registered at Rome, but its files never reached the disk: its only source.
    holdings = {site: [*held] for site, held in HOLDINGS.items()}
    holdings[ROME].append(BROKEN)
    await inventory.ok(
        "POST",
        "/api/v1/replicas",
        {
            "block_replicas": [
                {"dataset": d, "block": b, "site": site, "group": GROUP}
                for site, held in holdings.items()
                for d in held
                for b in blocks[d]
            ]
        },
    )

    # ---- transfers: one that completes, one that fails until it is held
    await transfer.post(
        "/api/v1/transfers/requests",
        {
            "requests": [
                {"dataset": TTBAR, "site": MIT, "group": GROUP},
                {"dataset": BROKEN, "site": MIT, "group": GROUP},
            ]
        },
    )

    # ---- the dealer: a user's copy request, one that cannot succeed, and the enforcer's
    # MINIAOD rule, all decided in one cycle
    dealer_cycle, dealer_requests, expected_held = None, [], BROKEN_FILES
    if dealer is not None:
        dealer_requests = [
            await dealer.send(
                "POST",
                "/api/v1/dealer/requests",
                {"items": [ZEROBIAS], "sites": [MIT], "group": GROUP, "comment": "for skims"},
                201,
            ),
            await dealer.send(
                "POST",
                "/api/v1/dealer/requests",
                {"items": [BROKEN], "sites": [FNAL], "group": GROUP},
                201,
                user="bob",
            ),
        ]
        dealer_cycle = await dealer.cycle(comment="browser tests")
        expected_held += BROKEN_FILES

    async def settled() -> bool:
        held = await transfer.get("/api/v1/transfers/held", limit=100)
        current = await transfer.get("/api/v1/transfers/current", limit=100)
        return held["total"] == expected_held and current["total"] == 0

    await eventually(settled, "the TTbar copy done and the Broken files held", within=120)
    held = await transfer.get("/api/v1/transfers/held", limit=100)

    # ---- detox: a real cycle, then its deletion carried out
    cycle = await detox.cycle("Physics")

    async def deleted() -> bool:
        response = await inventory.client.get(
            f"/api/v1/sites/{DESY}/replicas", params={"dataset": DOUBLEEG}
        )
        return response.status_code == 200 and response.json()["total"] == 0

    await eventually(deleted, f"{DOUBLEEG} deleted at {DESY}", within=120)
    lock = await detox.send(
        "POST",
        "/api/v1/locks",
        {
            "dataset": "/SingleMuon/*/AOD",
            "sites": DESY,
            "until": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            "comment": "muon calibration campaign",
        },
        201,
    )

    # ---- consistency: MIT lost a file and holds an orphan; Rome holds too many orphans
    missing = lfn(SINGLEMUON_B, "b1", 0)
    sites[MIT].path(missing).unlink()
    orphan = "/store/data/Stray/AOD/leftover.root"
    sites[MIT].write(orphan, b"x" * 1234)
    for index in range(3):
        sites[ROME].write(f"/store/temp/old/junk{index}.root", b"y" * 4321)
    for site in sites.values():
        site.backdate()
    # Replicas written in the last seconds are in flight for the consistency service: wait
    # out its grace period (the helpers' GRACE) before judging.
    await asyncio.sleep(2.5)
    mit_run = await consistency.check(MIT)
    rome_run = await consistency.check(ROME)

    return Seeded(
        sites=sites,
        cycle_id=cycle["id"],
        mit_run=mit_run,
        rome_run=rome_run,
        missing_lfn=missing,
        orphan_lfn=orphan,
        held_lfns=sorted({t["lfn"] for t in held["items"]}),
        held_files=held["total"],
        lock_id=lock["id"],
        dealer_cycle=dealer_cycle,
        dealer_requests=dealer_requests,
    )
