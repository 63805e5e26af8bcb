"""Inputs from outside the inventory, fetched before a cycle: access records and the last
detox cycle's protected volume per site, both from detox's API (the dealer never reads
detox's tables). Tests and the decision simulator pass their own sources."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import httpx

from dynamo_dealer.service.plugins.popularity import Access

log = logging.getLogger("dynamo.dealer")
PAGE = 10_000


class AccessSource(Protocol):
    async def accesses(self, since: float) -> list[Access]: ...


@dataclass(frozen=True, slots=True)
class Protected:
    """The protected volume per site of detox's last real cycle (``cycle_id`` None and no
    sites when there is none)."""

    cycle_id: int | None = None
    sites: dict[str, tuple[int, int]] = field(default_factory=dict)
    """site -> (protected bytes, quota)."""


class ProtectionSource(Protocol):
    async def protected(self) -> Protected: ...


class DetoxAccesses:
    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url

    async def accesses(self, since: float) -> list[Access]:
        if not self.url:
            return []
        out: list[Access] = []
        offset = 0
        while True:
            response = await self.http.get(
                f"{self.url}/api/v1/popularity/accesses",
                params={
                    "since": datetime.fromtimestamp(since, UTC).isoformat(),
                    "limit": PAGE,
                    "offset": offset,
                },
            )
            response.raise_for_status()
            body = response.json()
            for item in body["items"]:
                when = datetime.fromisoformat(item["time"])
                out.append(Access(item["dataset"], when.timestamp(), int(item["count"])))
            offset += len(body["items"])
            if not body["items"] or offset >= body["total"]:
                return out


class DetoxProtection:
    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url

    async def protected(self) -> Protected:
        if not self.url:
            return Protected()
        response = await self.http.get(
            f"{self.url}/api/v1/cycles", params={"kind": "real", "status": "done", "limit": 1}
        )
        response.raise_for_status()
        items = response.json()["items"]
        if not items:
            return Protected()
        cycle_id = int(items[0]["id"])
        response = await self.http.get(
            f"{self.url}/api/v1/cycles/{cycle_id}/sites", params={"limit": 10_000}
        )
        response.raise_for_status()
        sites = {
            s["site"]: (int(s["protected"]), int(s["quota"])) for s in response.json()["items"]
        }
        return Protected(cycle_id, sites)
