"""One terminal line per notable thing the agents do, from the events they publish on the
in-process bus (and, for the details an event does not carry, their APIs)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import httpx

from dynamo_common.bus.base import Bus, Delivery, QueueSpec, Subscription
from dynamo_common.messages import consistency as cons
from dynamo_common.messages import dealer as dl
from dynamo_common.messages import detox as dx
from dynamo_common.messages import transfer as tr
from dynamo_common.messages.registry import (
    ConsistencyEvent,
    DealerEvent,
    DetoxEvent,
    TransferEvent,
)

__all__ = ["ProgressReporter", "human_bytes"]

log = logging.getLogger("dynamo.standalone")

QUEUE = "standalone.progress"
_BINDINGS = (
    DetoxEvent.CYCLE_FINISHED,
    ConsistencyEvent.RUN_FINISHED,
    TransferEvent.FILE_DONE,
    TransferEvent.REPLICA_COMPLETED,
    DealerEvent.CYCLE_FINISHED,
)


def human_bytes(value: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


class ProgressReporter:
    """Follows the agents' events and says what happened, e.g. "detox deleted 12 replicas
    (310.2 kB) at T2_DE_DESY" or "consistency repaired /store/... at T2_US_MIT"."""

    def __init__(
        self,
        bus: Bus,
        urls: dict[str, str],
        say: Callable[[str], None],
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.bus = bus
        self.urls = urls
        self.say = say
        self.http = http or httpx.AsyncClient(timeout=10.0)
        self._owned_http = http is None
        self.subscription: Subscription | None = None
        self.flusher: asyncio.Task[None] | None = None
        self.copies: dict[tuple[str, str], list[int]] = {}
        """(dataset, site) -> [blocks, bytes] copied since the last summary."""
        self.repairs: set[tuple[str, str]] = set()
        """(lfn, site) consistency asked to copy again, until the copy is done."""
        self.copied: OrderedDict[tuple[str, str], str | None] = OrderedDict()
        """Recent single-file copies (lfn, site) -> source: the copy may be done before the
        check that asked for it has published its result."""

    async def start(self) -> None:
        await self.bus.declare_queue(
            QueueSpec(QUEUE, tuple(("events", str(key)) for key in _BINDINGS))
        )
        self.subscription = await self.bus.consume(QUEUE, self._handle)
        self.flusher = asyncio.create_task(self._flush_copies_forever(), name="progress-copies")

    async def stop(self) -> None:
        if self.flusher is not None:
            self.flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.flusher
        if self.subscription is not None:
            await self.subscription.cancel()
        if self._owned_http:
            await self.http.aclose()

    async def _handle(self, delivery: Delivery) -> None:
        # Never raise: a line not printed must not turn into a redelivered message.
        try:
            await self._report(delivery.routing_key, delivery.envelope.data)
        except Exception as exc:
            log.debug("progress: %s not reported: %r", delivery.routing_key, exc)

    async def _report(self, key: str, data: dict[str, Any]) -> None:
        if key == DetoxEvent.CYCLE_FINISHED:
            await self._detox(dx.CycleFinished.model_validate(data))
        elif key == ConsistencyEvent.RUN_FINISHED:
            await self._consistency(cons.ConsistencyRunFinished.model_validate(data))
        elif key == TransferEvent.FILE_DONE:
            self._file_done(tr.FileDone.model_validate(data))
        elif key == TransferEvent.REPLICA_COMPLETED:
            done = tr.ReplicaCompleted.model_validate(data)
            entry = self.copies.setdefault((done.dataset, done.site), [0, 0])
            entry[0] += 1
            entry[1] += done.bytes
        elif key == DealerEvent.CYCLE_FINISHED:
            await self._dealer(dl.DealerCycleFinished.model_validate(data))

    async def _flush_copies_forever(self, every: float = 3.0, shown: int = 4) -> None:
        """Copies come block by block, dozens a second: one line per dataset and site, a few
        at a time, the rest counted."""
        who = "dealer" if "dealer" in self.urls else "transfer"
        while True:
            await asyncio.sleep(every)
            copies, self.copies = self.copies, {}
            items = sorted(copies.items())
            for (dataset, site), (blocks, size) in items[:shown]:
                self.say(
                    f"[cyan]{who}[/] copied {dataset} to {site} "
                    f"({blocks} block{'s' if blocks > 1 else ''}, {human_bytes(size)})"
                )
            if len(items) > shown:
                rest = items[shown:]
                size = sum(entry[1] for _, entry in rest)
                sites = len({site for (_, site), _ in rest})
                self.say(
                    f"[cyan]{who}[/] copied {len(rest)} more dataset replicas to {sites} "
                    f"site{'s' if sites > 1 else ''} ({human_bytes(size)})"
                )

    async def _get(self, service: str, path: str, **params: Any) -> Any:
        response = await self.http.get(f"{self.urls[service]}{path}", params=params)
        response.raise_for_status()
        return response.json()

    async def _dealer(self, cycle: dl.DealerCycleFinished) -> None:
        if cycle.status == "failed":
            self.say(f"[red]dealer[/] cycle {cycle.cycle_id} failed: {cycle.error}")
            return
        if cycle.dry_run or not cycle.accepted:
            return
        why = ""
        with contextlib.suppress(httpx.HTTPError, KeyError, TypeError, ValueError):
            detail = await self._get("dealer", f"/api/v1/dealer/cycles/{cycle.cycle_id}")
            plugins = {
                name: int(counts.get("accepted", 0))
                for name, counts in detail["per_plugin"].items()
                if counts.get("accepted")
            }
            why = ": " + ", ".join(f"{name} {n}" for name, n in sorted(plugins.items()))
        self.say(
            f"[cyan]dealer[/] cycle {cycle.cycle_id} placed {cycle.accepted} copies "
            f"({human_bytes(cycle.bytes_placed)}){why}"
        )

    async def _detox(self, cycle: dx.CycleFinished) -> None:
        if cycle.kind != "real":
            return
        if cycle.status == "failed":
            self.say(f"[red]detox[/] cycle {cycle.cycle_id} failed: {cycle.error}")
            return
        if not cycle.replicas_deleted:
            return
        sites = await self._get(
            "detox", f"/api/v1/cycles/{cycle.cycle_id}/sites", triggered="true", limit=1000
        )
        for site in sites["items"]:
            if not site["deleted"]:
                continue
            before, after = site["occupancy_before"] or 0, site["occupancy_after"] or 0
            self.say(
                f"[magenta]detox[/] deleted {human_bytes(site['deleted'])} at {site['site']} "
                f"({before:.0%} -> {after:.0%} of its {cycle.partition} quota)"
            )

    async def _consistency(self, run: cons.ConsistencyRunFinished) -> None:
        if run.status == "failed":
            self.say(f"[red]consistency[/] check of {run.site} failed: {run.reason}")
            return
        if run.transfers_requested:
            missing = await self._get(
                "consistency", f"/api/v1/consistency/runs/{run.run_id}/missing", limit=1000
            )
            for item in missing["items"]:
                if not item["acted"]:
                    continue
                key = (item["path"], run.site)
                self.say(
                    f"[yellow]consistency[/] {item['path']} is missing at {run.site} "
                    "(seen twice): asked for a new copy"
                )
                if key in self.copied:
                    self._repaired(key, self.copied.pop(key))
                else:
                    self.repairs.add(key)
        elif run.missing_files:
            self.say(
                f"[yellow]consistency[/] {run.missing_files} file(s) missing at {run.site}: "
                "acting if the next check finds them missing too"
            )
        if run.deletions_requested:
            self.say(
                f"[yellow]consistency[/] {run.deletions_requested} orphan file(s) at "
                f"{run.site}: asked for their deletion"
            )

    def _file_done(self, done: tr.FileDone) -> None:
        if done.kind != "transfer":
            return
        key = (done.lfn, done.site)
        if key in self.repairs:
            self.repairs.discard(key)
            self._repaired(key, done.source)
            return
        self.copied[key] = done.source
        while len(self.copied) > 10_000:
            self.copied.popitem(last=False)

    def _repaired(self, key: tuple[str, str], source: str | None) -> None:
        lfn, site = key
        self.say(f"[green]consistency[/] repaired {lfn} at {site} (copied from {source})")
