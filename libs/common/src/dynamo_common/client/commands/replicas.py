"""How far the deletion of a replica at a site has got, from the inventory (the blocks still
there) and the transfer service (the files of each block deleted so far)."""

from __future__ import annotations

from typing import Any

from dynamo_common.client.api import Gateway
from dynamo_common.client.errors import ClientError, ExitCode


def split_item(item: str) -> tuple[str, str | None]:
    """``DATASET`` or ``DATASET#BLOCK``."""
    dataset, hash_, block = item.partition("#")
    if not dataset or (hash_ and not block):
        raise ClientError(f"{item!r} is not DATASET or DATASET#BLOCK", ExitCode.USAGE)
    return dataset, block or None


def held_blocks(api: Gateway, dataset: str, block: str | None, site: str) -> dict[str, int]:
    """The blocks (name -> size) of ``dataset`` (or only ``block``) the inventory still has
    at ``site``."""
    try:
        data = api.get("/api/v1/dataset", {"name": dataset})
    except ClientError as exc:
        if exc.code == ExitCode.NOT_FOUND:
            return {}
        raise
    return {
        b["name"]: int(b.get("size") or 0)
        for b in data.get("blocks", [])
        if site in b.get("replicas", []) and (block is None or b["name"] == block)
    }


class DeletionProgress:
    """Volume deleted of the blocks held when it started: a block gone from the inventory
    counts whole, one being deleted by the bytes the transfer service has removed."""

    def __init__(self, api: Gateway, dataset: str, block: str | None, site: str) -> None:
        self.api, self.dataset, self.block, self.site = api, dataset, block, site
        self.targets = held_blocks(api, dataset, block, site)
        self.total = sum(self.targets.values())

    def state(self) -> dict[str, Any]:
        left = held_blocks(self.api, self.dataset, self.block, self.site)
        rows = self._deleting() if left else {}
        done = sum(
            size if name not in left else int(rows.get(name, {}).get("bytes_done", 0))
            for name, size in self.targets.items()
        )
        held = sum(int(r.get("files_held", 0)) for r in rows.values())
        return {"left": sorted(left), "done": done, "total": self.total, "files_held": held}

    def _deleting(self) -> dict[str, dict[str, Any]]:
        page = self.api.get(
            "/api/v1/transfers/replicas",
            {"kind": "deletion", "site": self.site, "limit": 10_000},
        )
        return {r["block"]: r for r in page.get("items", []) if r.get("dataset") == self.dataset}
