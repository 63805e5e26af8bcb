"""The simulated grid: the inventory built from ``gridgen``, its partitions, and each site's
capacity (its quota in the simulated partition), CPU slots and bandwidth."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dynamo_common import gridgen
from dynamo_common.gridgen.grid import Grid
from dynamo_common.messages.types import DatasetStatus, SiteStatus, StorageType
from dynamo_common.model.objects import Inventory, Partition
from dynamo_common.policy.compiler import Pred
from dynamo_common.policy.partitions import _decided_by_owner, compile_partitions
from dynamo_common.simulation.scenario import Scenario
from dynamo_common.simulation.trace import GridView

HOUR = 3600.0
GBPS = 1e9 / 8


@dataclass(frozen=True, slots=True)
class SiteParams:
    name: str
    disk: bool
    capacity: int
    """The site's quota in the simulated partition (0: none)."""
    slots: int
    """Jobs per hour."""
    bandwidth: float
    """Bytes per second."""


def start_time(grid: Grid, scenario: Scenario) -> float:
    if scenario.start is not None:
        return scenario.start
    newest = max(d.last_update for d in grid.datasets)
    return float(math.ceil((newest + 86400.0) / HOUR) * HOUR)


def build_inventory(grid: Grid, scenario: Scenario) -> Inventory:
    model = gridgen.to_inventory(grid)
    for name, value in scenario.partitions.items():
        if isinstance(value, list):
            model.partitions[name] = Partition(name, None, tuple(value))
        else:
            model.partitions[name] = Partition(name, value)
    return model


def membership(model: Inventory, partition: str) -> Pred:
    """Whether a block replica counts in ``partition`` (the partition code detox uses)."""
    return compile_partitions(model.partitions).membership(partition)


def decided_by_owner(model: Inventory, partition: str) -> bool:
    """Whether membership depends only on the replica's site and owner (then it can be
    remembered per site and owner)."""
    pset = compile_partitions(model.partitions)
    for base in pset[partition].bases:
        condition = pset[base].condition
        if condition is not None and not _decided_by_owner(condition):
            return False
    return True


def site_params(model: Inventory, scenario: Scenario) -> list[SiteParams]:
    out = []
    for name in sorted(model.sites):
        site = model.sites[name]
        disk = site.storage_type is StorageType.DISK
        # Jobs run only at ready sites; a site in waitroom or morgue keeps its data.
        ready = site.status is SiteStatus.READY
        out.append(
            SiteParams(
                name=name,
                disk=disk,
                capacity=site.quotas.get(scenario.partition, 0) if disk else 0,
                slots=int(scenario.sites.slots.of(name)) if disk and ready else 0,
                bandwidth=scenario.sites.bandwidth_gbps.of(name) * GBPS
                or scenario.sites.bandwidth_gbps.T1 * GBPS,
            )
        )
    return out


def grid_view(model: Inventory, params: list[SiteParams]) -> GridView:
    # Readable: valid, and every block complete somewhere (disk or tape). Data that no site
    # holds whole cannot be read under any strategy and would only dilute the comparison.
    readable = sorted(
        name
        for name, d in model.datasets.items()
        if d.status in (DatasetStatus.VALID, DatasetStatus.PRODUCTION)
        and d.blocks
        and all(any(br.is_complete for br in b.replicas) for b in d.blocks.values())
    )
    templates = []
    for name in readable:
        dataset = model.datasets[name]
        blocks = sorted(dataset.blocks.values(), key=lambda b: b.name)
        templates.append(
            (dataset.tier, tuple(b.size for b in blocks), tuple(b.num_files for b in blocks))
        )
    cpu = [p for p in params if p.slots > 0]
    production = [
        p.name
        for p in params
        if p.disk and p.capacity > 0 and model.sites[p.name].status is SiteStatus.READY
    ]
    return GridView(
        datasets=readable,
        templates=templates,
        sites=[p.name for p in cpu],
        site_weights=[float(p.slots) for p in cpu],
        production_sites=production,
    )
