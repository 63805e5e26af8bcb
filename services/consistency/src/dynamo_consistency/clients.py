"""Talking to the other services: the inventory's REST API for the files of blocks (the read
model holds no files), and requests on the bus to the transfer service and the inventory."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import httpx
import orjson
from pydantic import BaseModel

from dynamo_common.bus.base import Bus, RequestTimeout
from dynamo_common.messages import inventory as inv
from dynamo_common.messages import transfer as tr
from dynamo_common.messages.envelope import Envelope
from dynamo_common.messages.registry import InventoryCommand, TransferCommand

log = logging.getLogger("dynamo.consistency")

SOURCE = "/dynamo/consistency"
FILES_PAGE = 10_000
# Ids of the requests derive from the run and what they ask, so sending one again (after a
# crash, or a retry) is answered from the receiver's record instead of being applied twice.
_NAMESPACE = uuid.UUID("8d2f7c1e-3b6a-4f59-9c0d-636f6e736973")

Item = TypeVar("Item", bound=BaseModel)


def request_id(*parts: object) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(str(p) for p in parts)))


class InventoryFiles:
    """Files from the inventory's REST API: all of a site's in one stream
    (``GET /api/v1/sites/{site}/files``), or one block's (``GET /api/v1/files``, paged)."""

    def __init__(self, http: httpx.AsyncClient, base_url: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._url = self._base + "/api/v1/files"

    async def site_files(self, site: str) -> dict[tuple[str, str], list[tuple[str, int]]]:
        """(LFN, size) of every file of every block replica at the site, by (dataset, block).
        Raises ``httpx.HTTPStatusError`` when the inventory refuses (404: unknown site)."""
        blocks: dict[tuple[str, str], list[tuple[str, int]]] = {}
        loads = orjson.loads
        async with self._http.stream("GET", f"{self._base}/api/v1/sites/{site}/files") as reply:
            if reply.status_code >= 400:
                await reply.aread()
                reply.raise_for_status()
            async for line in reply.aiter_lines():
                if not line:
                    continue
                row = loads(line)
                key = (row["dataset"], row["block"])
                files = blocks.get(key)
                if files is None:
                    files = blocks[key] = []
                files.append((row["lfn"], int(row["size"])))
        return blocks

    async def block_files(self, dataset: str, block: str) -> list[tuple[str, int]] | None:
        """(LFN, size) of every file of the block; None when the inventory no longer knows
        the block."""
        files: list[tuple[str, int]] = []
        offset = 0
        while True:
            response = await self._http.get(
                self._url,
                params={"dataset": dataset, "block": block, "limit": FILES_PAGE, "offset": offset},
            )
            if response.status_code == 404:
                return None
            response.raise_for_status()
            page = response.json()
            items = page["items"]
            files.extend((item["lfn"], int(item["size"])) for item in items)
            offset += len(items)
            if not items or offset >= int(page["total"]):
                return files


@dataclass(slots=True)
class Outcome:
    """What became of a list of requested items, sent in one or more commands."""

    accepted: int = 0
    accepted_items: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Requests:
    """Commands to the transfer service and the inventory, waiting for each reply.

    A command is all or nothing for its receiver: one bad item refuses the whole list. A
    refused list is therefore split in halves and sent again, so one file the transfer service
    cannot handle costs a few more requests instead of every other repair.
    """

    def __init__(self, bus: Bus, timeout: float, max_batch: int = 10_000) -> None:
        self._bus = bus
        self._timeout = timeout
        self._max_batch = max_batch

    async def transfer_files(self, specs: Sequence[tr.FileTransferSpec], run_key: str) -> Outcome:
        return await self._send_all(
            TransferCommand.TRANSFER_FILES,
            lambda items: tr.TransferFiles(files=list(items)),
            specs,
            lambda s: s.lfn,
            run_key,
        )

    async def delete_files(self, specs: Sequence[tr.FileDeletionSpec], run_key: str) -> Outcome:
        return await self._send_all(
            TransferCommand.DELETE_FILES,
            lambda items: tr.DeleteFiles(files=list(items)),
            specs,
            lambda s: s.lfn,
            run_key,
        )

    async def update_replicas(
        self, updates: Sequence[inv.BlockReplicaUpdate], run_key: str
    ) -> Outcome:
        return await self._send_all(
            InventoryCommand.UPDATE_REPLICAS,
            lambda items: inv.UpdateReplicas(block_replicas=list(items)),
            updates,
            lambda u: f"{u.dataset}#{u.block}",
            run_key,
        )

    async def _send_all(
        self,
        type_: str,
        build: Callable[[Sequence[Item]], BaseModel],
        items: Sequence[Item],
        name: Callable[[Item], str],
        run_key: str,
    ) -> Outcome:
        outcome = Outcome()
        for start in range(0, len(items), self._max_batch):
            chunk = items[start : start + self._max_batch]
            await self._send(type_, build, chunk, name, f"{run_key}/{type_}/{start}", outcome)
        return outcome

    async def _send(
        self,
        type_: str,
        build: Callable[[Sequence[Item]], BaseModel],
        items: Sequence[Item],
        name: Callable[[Item], str],
        key: str,
        outcome: Outcome,
    ) -> None:
        command_id = request_id(key, len(items))
        envelope = Envelope(
            id=command_id,
            type=type_,
            source=SOURCE,
            data=build(items).model_dump(mode="json", exclude_none=True),
        )
        try:
            reply = await self._bus.request(envelope, timeout=self._timeout)
        except RequestTimeout:
            outcome.errors.append(
                f"{type_} ({len(items)} items): no answer within {self._timeout:g} s"
            )
            return
        status = reply.data.get("status")
        if status == "accepted":
            outcome.accepted += len(items)
            outcome.accepted_items.extend(name(item) for item in items)
            outcome.commands.append(command_id)
            return
        reason = str(reply.data.get("reason") or "no reason given")
        if len(items) == 1:
            outcome.errors.append(f"{type_} {name(items[0])}: refused: {reason}")
            log.warning("request refused", extra={"type": type_, "reason": reason})
            return
        half = len(items) // 2
        await self._send(type_, build, items[:half], name, f"{key}/a", outcome)
        await self._send(type_, build, items[half:], name, f"{key}/b", outcome)
