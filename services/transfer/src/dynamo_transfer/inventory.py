"""Talking to the inventory: its REST API for what the read model does not hold (files, the
current sequence number), and commands on the bus for every change."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import httpx
from pydantic import BaseModel

from dynamo_common.bus.base import Bus
from dynamo_common.messages import inventory as inv
from dynamo_common.messages.envelope import Envelope
from dynamo_transfer.service.intake import FileInfo, RequestRejected

SOURCE = "/dynamo/transfer"
PAGE = 10_000
# Ids of the commands this service sends to the inventory derive from what they are about, so
# sending one again after a crash is answered from the inventory's record, not applied twice.
_NAMESPACE = uuid.UUID("3f0c8a4e-5b7d-4d0e-9a57-6d796e616d6f")


def command_id(*parts: object) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(str(p) for p in parts)))


class InventoryClient:
    def __init__(self, http: httpx.AsyncClient, base_url: str, bus: Bus, timeout: float) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._bus = bus
        self._timeout = timeout

    async def block_files(self, dataset: str, block: str) -> list[FileInfo]:
        files: list[FileInfo] = []
        offset = 0
        while True:
            response = await self._http.get(
                f"{self._base}/api/v1/files",
                params={"dataset": dataset, "block": block, "limit": PAGE, "offset": offset},
            )
            if response.status_code == 404:
                raise RequestRejected(_detail(response) or f"unknown block {dataset}#{block}")
            response.raise_for_status()
            page = response.json()
            items = page["items"]
            files.extend(FileInfo(f["lfn"], int(f["size"]), f.get("adler32")) for f in items)
            offset += len(items)
            if not items or offset >= int(page["total"]):
                return files

    async def last_seq(self, after: int) -> int:
        response = await self._http.get(
            f"{self._base}/api/v1/events", params={"after": after, "limit": 1}
        )
        if response.status_code == 410:
            return int(response.json().get("last_seq", after))
        response.raise_for_status()
        return int(response.json()["last_seq"])

    async def command(self, type_: str, body: BaseModel, cid: str) -> inv.CommandReply:
        envelope = Envelope(
            id=cid, type=type_, source=SOURCE, data=body.model_dump(mode="json", exclude_none=True)
        )
        reply = await self._bus.request(envelope, timeout=self._timeout)
        return inv.CommandReply.model_validate(reply.data)


def _detail(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    detail = body.get("detail") if isinstance(body, dict) else None
    return str(detail) if detail else None


def block_keys(items: Iterable[tuple[str, str, str]]) -> list[inv.BlockReplicaKey]:
    return [inv.BlockReplicaKey(dataset=d, block=b, site=s) for d, b, s in items]
