"""Factories for small grids, as command payloads (what a client sends)."""

from __future__ import annotations

from typing import Any


def site(name: str = "T2_US_MIT", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "storage_type": "disk",
        "status": "ready",
        "host": f"xrootd.{name.lower()}.example",
        "protocols": [
            {
                "name": "root",
                "rules": [
                    {
                        "match": "/store/(.*)",
                        "result": f"root://{name.lower()}.example:1094//store/$1",
                    }
                ],
            }
        ],
        "quotas": {"AnalysisOps": 10**15},
    }
    body.update(over)
    return body


def dataset(name: str = "/SingleMuon/Run2017D-v1/AOD", **over: Any) -> dict[str, Any]:
    return {
        "name": name,
        "status": "valid",
        "data_type": "data",
        "software_version": "CMSSW_9_4_0",
        "is_open": True,
        **over,
    }


def block(
    dataset_name: str = "/SingleMuon/Run2017D-v1/AOD", name: str = "b0001", **over: Any
) -> dict[str, Any]:
    return {"dataset": dataset_name, "name": name, **over}


def file(dataset_name: str, block_name: str, index: int, size: int = 1000) -> dict[str, Any]:
    return {
        "dataset": dataset_name,
        "block": block_name,
        "lfn": f"/store/data/{dataset_name.strip('/').replace('/', '_')}/{block_name}/"
        f"f{index:05d}.root",
        "size": size,
        "adler32": f"{index:08x}",
    }
