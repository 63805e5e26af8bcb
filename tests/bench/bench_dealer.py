"""Dealer: a full cycle with every plugin on, against a sort and greedy pass over the same
candidates.

* ``dealer.cycle``: ``run_cycle`` on the synthetic grid (``tenth``, or ``cms`` when asked),
  sites 50-95% full: 1,000 copy requests (patterns, blocks, several copies), 200
  subscriptions, 100,000 access records over 5,000 datasets, three enforcer rules, the
  protected volume of a detox cycle for the balancer, two sites being emptied (the grid's
  morgue site and one evacuated), a placement veto. Includes the partition usage, every
  plugin, validation, merging, destination draws and the decisions.
* The floor: the candidates the plugins proposed (the same list, built once), sorted by
  priority and greedily assigned, each to the site with the most free space under its quota,
  in plain Python over plain dicts: no validation, no merging, no vetoes, no record.
"""

from __future__ import annotations

import cProfile
import gc
import json
import random
import time
from collections.abc import Callable
from dataclasses import replace

from dynamo_common import gridgen
from dynamo_common.messages.types import SiteStatus, StorageType
from dynamo_common.model.objects import Inventory, Partition
from dynamo_common.policy.enforcer import parse_enforcer_rules
from dynamo_common.policy.partitions import site_usage
from dynamo_dealer.service.cycle import CycleInputs, CycleOutput, DealerConfig, run_cycle
from dynamo_dealer.service.engine import EngineConfig
from dynamo_dealer.service.placement import parse_vetoes
from dynamo_dealer.service.plugins import requests as rq
from dynamo_dealer.service.plugins.popularity import Access, PopularityRules
from dynamo_dealer.service.plugins.subscriptions import SubscriptionSpec
from dynamo_dealer.service.plugins.undertaker import UndertakerRules
from dynamo_dealer.service.proposals import Proposal
from dynamo_dealer.service.sites import SiteRules
from dynamo_dealer.settings import DEFAULT_PLUGINS
from tests.bench.report import Result, Target, log, profile_summary, result

SEED = 11
DAY = 86400.0
TARGET = Target(value=3.0, direction="max")

ENFORCER = {
    "partition": "Physics",
    "default_destination_group": "AnalysisOps",
    "rules": {
        "miniaod_t1": {
            "replicas": ["dataset.name == /*/*/MINIAOD*"],
            "num_copies": 1,
            "destinations": ["site.name == T1_*_Disk"],
            "protect": True,
        },
        "nanoaod_two_t2": {
            "replicas": ["dataset.name == /*/*/NANOAOD*"],
            "num_copies": 2,
            "destinations": ["site.name == T2_*"],
        },
        "raw_us": {
            "replicas": ["dataset.name == /*/*/RAW"],
            "num_copies": 1,
            "destinations": ["site.name == T2_US_*"],
            "sources": ["site.storage_type == DISK"],
        },
    },
}


def _partitions(model: Inventory) -> None:
    for name in ("AnalysisOps", "DataOps"):
        condition = f"blockreplica.owner == {name} and site.storage_type == DISK"
        model.partitions[name] = Partition(name, condition)
    model.partitions["Physics"] = Partition("Physics", None, ("AnalysisOps", "DataOps"))


def _inputs(model: Inventory, now: float) -> tuple[CycleInputs, str]:
    rng = random.Random(SEED)
    names = sorted(model.datasets)
    disk = sorted(
        s.name
        for s in model.sites.values()
        if s.storage_type is StorageType.DISK and s.status is SiteStatus.READY
    )
    requests = []
    for index in range(1000):
        kind = index % 4
        name = rng.choice(names)
        if kind == 0:
            items: tuple[tuple[str, str | None], ...] = ((name, None),)
        elif kind == 1:
            block = rng.choice(sorted(model.datasets[name].blocks) or [""])
            items = ((name, block),) if block else ((name, None),)
        else:
            items = tuple((n, None) for n in rng.sample(names, 3))
        sites = (rng.choice(disk),) if kind != 3 else ("T2_*",)
        requests.append(rq.RequestSpec(index + 1, "AnalysisOps", items, sites, 1 + (kind == 3)))
    subscriptions = [
        SubscriptionSpec(i + 1, rng.choice(names), rng.choice(disk), "AnalysisOps")
        for i in range(200)
    ]
    popular = rng.sample(names, 5000)
    accesses = [
        Access(rng.choice(popular), now - rng.uniform(0, 60) * DAY, rng.randrange(1, 40))
        for _ in range(100_000)
    ]
    protected = {
        s: (
            int(model.sites[s].quotas.get("Physics", 0) * rng.uniform(0.1, 0.8)),
            model.sites[s].quotas.get("Physics", 0),
        )
        for s in disk
    }
    evacuate = rng.choice([s for s in disk if s.startswith("T2_")])
    return (
        CycleInputs(
            requests=requests,
            subscriptions=subscriptions,
            accesses=accesses,
            protected=protected,
        ),
        evacuate,
    )


def _config(evacuate: str) -> DealerConfig:
    return DealerConfig(
        engine=EngineConfig(
            sites=SiteRules(
                partition="Physics",
                patterns=("T1_*_Disk", "T2_*"),
                target_occupancy=0.93,
                max_pending_fraction=0.1,
                max_site_volume=50 * 10**12,
            ),
            max_cycle_volume=1000 * 10**12,
        ),
        plugins=dict(DEFAULT_PLUGINS),
        popularity=PopularityRules("AnalysisOps", half_life_days=7, weight_per_copy=200),
        undertaker=UndertakerRules(evacuate=frozenset({evacuate}), default_group="AnalysisOps"),
        enforcers=(parse_enforcer_rules(json.dumps(ENFORCER), file="rules.json"),),
        vetoes=tuple(
            parse_vetoes({"no-HI-in-US": "dataset.name == /HI*/*/* and site.name == T2_US_*"})
        ),
    )


def greedy(model: Inventory, proposals: list[Proposal], partition: str) -> int:
    """The floor: the same candidates sorted by priority, each to the site with the most free
    space under its quota (a linear scan over plain dicts)."""
    usage = site_usage(model)
    free = {
        name: used_quota[partition][1] * 0.93 - used_quota[partition][0]
        for name, used_quota in usage.items()
        if partition in used_quota
    }
    placed = 0
    for proposal in sorted(proposals, key=lambda p: (-p.priority, -p.weight)):
        dataset = model.datasets.get(proposal.dataset)
        if dataset is None:
            continue
        size = dataset.size
        best = max(free, key=free.__getitem__)
        if free[best] >= size:
            free[best] -= size
            placed += 1
    return placed


def _timed(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _cycle(scale: str, repetitions: int, profile: bool) -> Result:
    log(f"dealer: building the {scale} grid")
    model = gridgen.to_inventory(gridgen.generate(scale, seed=SEED))
    _partitions(model)
    gc.collect()
    gc.freeze()
    try:
        now = max(d.last_update for d in model.datasets.values()) + DAY
        inputs, evacuate = _inputs(model, now)
        config = _config(evacuate)
        output = run_cycle(model, inputs, config, now)
        if not output.result.placements:
            raise RuntimeError("the cycle placed nothing")
        # The same candidates for the floor: what the plugins proposed.
        candidates = [o.proposal for o in output.result.outcomes]
        cycles: list[float] = []
        floors: list[float] = []

        def cycle() -> CycleOutput:
            return run_cycle(model, inputs, replace(config), now)

        for _ in range(repetitions):
            floors.append(_timed(lambda: greedy(model, candidates, "Physics")))
            cycles.append(_timed(cycle))
        counts = {d.value: output.result.count(d) for d in type(output.result.outcomes[0].decision)}
        measured = result(
            "dealer.cycle",
            scale,
            cycles,
            "s",
            floor_runs=floors,
            floor_unit="s",
            floor_label="sort + greedy most-free-site pass over the same candidates",
            target=TARGET,
            details={
                "proposals": len(candidates),
                "per_plugin": output.proposed,
                "decisions": counts,
                "bytes_placed": output.result.volume,
                "compliance_rules": len(output.compliance),
            },
        )
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            cycle()
            profiler.disable()
            text, top = profile_summary(profiler)
            measured.details["profile_top"] = top
            measured.details["profile_text"] = text
        return measured
    finally:
        gc.unfreeze()


def run(scale: str, repetitions: int = 3, profile: bool = False) -> list[Result]:
    return [_cycle("cms" if scale == "cms" else "tenth", repetitions, profile)]


if __name__ == "__main__":
    for r in run("tenth", 3, profile=True):
        print(
            r.name,
            r.value,
            r.floor,
            r.ratio,
            r.met,
            json.dumps(r.details.get("per_plugin")),
            r.details.get("decisions"),
            r.details.get("proposals"),
        )
        print(r.details.get("profile_text", "")[:3000])
