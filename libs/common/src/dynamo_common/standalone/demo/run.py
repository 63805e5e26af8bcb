"""The demo's script: seed the grid once (before the agents start, so their first cycles see
it), stage what the newcomer should watch (an accident for consistency, a subscription for the
dealer), then keep users reading data (popularity) for as long as the instance runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import httpx

from dynamo_common.bus.base import Bus
from dynamo_common.standalone.demo.activity import (
    AccessGenerator,
    hand_removals,
    post_accesses_forever,
    subscription_target,
)
from dynamo_common.standalone.demo.grid import FULL_SITE, DemoGrid, build_grid
from dynamo_common.standalone.demo.production import produce_forever, production_dataset
from dynamo_common.standalone.demo.schedules import instance_policies
from dynamo_common.standalone.demo.seed import seed_grid
from dynamo_common.standalone.demo.state import DemoState, save_state

__all__ = [
    "DEMO_SEED",
    "production_forever",
    "seed_demo",
    "sites_root",
    "stage_demo",
    "users_forever",
]

DEMO_SEED = 2018
ACCESS_INTERVAL = 10.0
PRODUCTION_INTERVAL = 45.0


def sites_root(data_dir: Path) -> Path:
    return data_dir.resolve() / "sites"


async def seed_demo(
    bus: Bus, data_dir: Path, state: DemoState | None, say: Callable[[str], None]
) -> DemoState:
    """Seed the grid unless it is there; returns the state to go on with."""
    if state is not None and state.phase == "seeded":
        say("demo data already there (not seeding again)")
        return state
    seed = DEMO_SEED if state is None else state.seed
    grid = build_grid(seed)
    save_state(data_dir, DemoState("seeding", seed, len(grid.datasets)))
    if state is not None:
        say("resuming the demo's seeding, which was interrupted")
    partitions = (instance_policies(data_dir) / "partitions.txt").read_text(encoding="utf-8")
    await seed_grid(bus, grid, sites_root(data_dir), partitions, say=say)
    seeded = DemoState("seeded", seed, len(grid.datasets))
    save_state(data_dir, seeded)
    say(
        f"[bold]demo grid ready[/]: {len(grid.sites)} sites, {len(grid.datasets)} datasets; "
        f"{FULL_SITE} is above 90% of its quota (detox will free it)"
    )
    return seeded


async def stage_demo(
    data_dir: Path,
    state: DemoState,
    urls: dict[str, str],
    token: str | None,
    say: Callable[[str], None],
) -> DemoState:
    """Once per instance: a file removed by hand, and a dealer subscription."""
    if state.staged:
        return state
    grid = build_grid(state.seed)
    _remove_a_file(grid, sites_root(data_dir), say)
    if "dealer" in urls:
        url, headers = _endpoint(urls, token, "dealer", "/api/v1/dealer/subscriptions")
        dataset, site = subscription_target(grid)
        body = {"item": dataset, "site": site, "group": "AnalysisOps"}
        try:
            await _post_until_taken(url, body, headers)
            say(f"[cyan]demo[/]: subscribed {site} to {dataset} (the dealer will copy it)")
        except httpx.HTTPError as exc:
            say(f"[yellow]demo[/]: the dealer did not take the subscription: {exc}")
    staged = DemoState(state.phase, state.seed, state.datasets, staged=True)
    save_state(data_dir, staged)
    return staged


async def users_forever(
    state: DemoState, urls: dict[str, str], token: str | None, say: Callable[[str], None]
) -> None:
    """Access records every few seconds, until cancelled."""
    if "detox" not in urls:
        return
    url, headers = _endpoint(urls, token, "detox", "/api/v1/popularity/accesses")
    async with httpx.AsyncClient(timeout=30.0) as http:
        await post_accesses_forever(
            http,
            url,
            headers,
            AccessGenerator(build_grid(state.seed), seed=state.seed),
            interval=ACCESS_INTERVAL,
            warn=lambda text: say(f"[yellow]demo[/]: {text}"),
        )


async def production_forever(
    bus: Bus,
    data_dir: Path,
    state: DemoState,
    urls: dict[str, str],
    say: Callable[[str], None],
) -> None:
    """New blocks of the dataset in production, until cancelled."""
    dataset = production_dataset(build_grid(state.seed))
    if dataset is None:
        return
    await produce_forever(
        bus, dataset, sites_root(data_dir), urls["inventory"], say, interval=PRODUCTION_INTERVAL
    )


async def _post_until_taken(
    url: str, body: dict[str, str], headers: dict[str, str], within: float = 120.0
) -> None:
    """POST, again while the service answers 503 (it is still loading its copy of the
    inventory) or cannot be reached; any other error is final."""
    deadline = asyncio.get_running_loop().time() + within
    async with httpx.AsyncClient(timeout=30.0) as http:
        while True:
            try:
                response = await http.post(url, json=body, headers=headers)
                if response.status_code != 503:
                    response.raise_for_status()
                    return
                error: httpx.HTTPError = httpx.HTTPStatusError(
                    f"503 from {url}: {response.text[:200]}",
                    request=response.request,
                    response=response,
                )
            except httpx.TransportError as exc:
                error = exc
            if asyncio.get_running_loop().time() > deadline:
                raise error
            await asyncio.sleep(2.0)


def _endpoint(
    urls: dict[str, str], token: str | None, service: str, path: str
) -> tuple[str, dict[str, str]]:
    """Through the front door with the admin token, as any client would; straight to the
    service (which then takes the caller's name from a header) when there is no gateway."""
    if "gateway" in urls and token:
        return f"{urls['gateway']}{path}", {"Authorization": f"Bearer {token}"}
    return f"{urls[service]}{path}", {"X-Dynamo-User": "demo", "X-Dynamo-Roles": "admin"}


def _remove_a_file(grid: DemoGrid, root: Path, say: Callable[[str], None]) -> None:
    for removal in hand_removals(grid):
        path = removal.path(root)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            say(
                f"[yellow]demo[/]: removed {removal.lfn} from {removal.site} by hand; "
                "consistency will notice on two checks in a row and restore it"
            )
            return
