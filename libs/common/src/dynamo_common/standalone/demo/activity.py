"""The demo's life: users reading data (access records, which make data popular for the dealer
and unpopular for detox), and an accident (a file removed by hand from a site's storage, for
consistency to find and repair)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from dynamo_common.messages.types import DatasetStatus
from dynamo_common.standalone.demo.grid import FULL_SITE, DemoDataset, DemoGrid
from dynamo_common.standalone.demo.production import SUBSCRIBER, production_dataset
from dynamo_common.standalone.demo.seed import site_directory

__all__ = [
    "AccessGenerator",
    "HandRemoval",
    "hand_removals",
    "post_accesses_forever",
    "subscription_target",
]

_HOT_TIERS = ("MINIAOD", "MINIAODSIM", "NANOAOD", "NANOAODSIM")


class AccessGenerator:
    """Access records with a realistic skew: a few hot datasets read a lot (a Zipf law over
    a fixed ranking), a long tail read now and then, most never."""

    def __init__(self, grid: DemoGrid, seed: int = 0, hot: int = 20, tail: int = 10) -> None:
        self.rng = random.Random(seed)
        candidates = [d for d in grid.datasets if d.name.rsplit("/", 1)[1] in _HOT_TIERS]
        ranked = random.Random(seed).sample(candidates, min(hot, len(candidates)))
        self.hot: list[DemoDataset] = ranked
        self.others = [d for d in grid.datasets if d not in set(ranked)]
        self.tail = tail

    def records(self, now: datetime) -> list[dict[str, Any]]:
        """One round of accesses, as the body items of ``POST /api/v1/popularity/accesses``."""
        out = []
        for rank, dataset in enumerate(self.hot, 1):
            count = max(1, round(self.rng.expovariate(1.0) * 200 / rank))
            out.append(self._record(dataset, now, count))
        for dataset in self.rng.sample(self.others, min(self.tail, len(self.others))):
            out.append(self._record(dataset, now, 1))
        return out

    def _record(self, dataset: DemoDataset, now: datetime, count: int) -> dict[str, Any]:
        site = self.rng.choice(dataset.disk_sites)
        return {"dataset": dataset.name, "site": site, "time": now.isoformat(), "count": count}


async def post_accesses_forever(
    http: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    generator: AccessGenerator,
    *,
    interval: float = 10.0,
    warn: Callable[[str], None] = lambda _: None,
) -> None:
    """Post a round of accesses every ``interval`` seconds until cancelled; a failure is
    reported once and retried on the next round (the service may still be loading)."""
    failing = False
    while True:
        try:
            response = await http.post(
                url,
                json={"records": generator.records(datetime.now(UTC))},
                headers=headers,
            )
            response.raise_for_status()
            failing = False
        except httpx.HTTPError as exc:
            if not failing:
                warn(f"access records not accepted ({exc}); retrying")
            failing = True
        await asyncio.sleep(interval)


@dataclass(frozen=True, slots=True)
class HandRemoval:
    site: str
    dataset: str
    lfn: str

    def path(self, sites_root: Path) -> Path:
        return site_directory(sites_root, self.site) / self.lfn.lstrip("/")


def hand_removals(grid: DemoGrid) -> Iterator[HandRemoval]:
    """Files whose loss consistency can repair and nothing else will undo: of a complete,
    valid dataset with another disk copy, away from the site detox is about to free."""
    for dataset in grid.datasets:
        if dataset.status is not DatasetStatus.VALID or len(dataset.disk_sites) < 2:
            continue
        if FULL_SITE in dataset.disk_sites:
            continue
        first = dataset.blocks[0].files[0]
        yield HandRemoval(dataset.disk_sites[0], dataset.name, first.lfn)


def subscription_target(grid: DemoGrid) -> tuple[str, str]:
    """(dataset, site) for the demo's subscription: the dataset in production (its new
    blocks follow), else a valid analysis dataset the site does not hold yet."""
    produced = production_dataset(grid)
    if produced is not None:
        return produced.name, SUBSCRIBER
    for dataset in grid.datasets:
        if (
            dataset.status is DatasetStatus.VALID
            and dataset.group == "AnalysisOps"
            and SUBSCRIBER not in dataset.disk_sites
            and FULL_SITE not in dataset.disk_sites
        ):
            return dataset.name, SUBSCRIBER
    raise ValueError("the demo grid has no dataset to subscribe to")
