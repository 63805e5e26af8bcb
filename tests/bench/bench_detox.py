"""(4) Detox: a full cycle against a plain loop over the same predicates, and parsing a
campaign file.

* ``detox.cycle``: ``run_cycle`` on the synthetic grid (``tenth``, or ``cms`` when asked)
  with a 30-line policy in the style of the production Physics one, attribute tables filled
  (popularity, locks, enforcer protection); the record's decisions included. The floor is a
  plain Python loop applying the same precompiled predicates (the bound rules, each one
  closure) to the same dataset replicas, first match wins: the evaluation alone, with no
  partition, no blocks, no iteration and no record.
* ``detox.parse_campaign``: a 10,000-line campaign policy (literal dataset names, some per
  site) through ``parse_detox_policy``; the floor splits the same lines into words.
"""

from __future__ import annotations

import cProfile
import gc
import random
import time
from collections.abc import Callable
from typing import Any

from dynamo_common import gridgen
from dynamo_common.model.objects import DatasetReplica, Inventory, Partition
from dynamo_common.policy.detox import DetoxPolicy, parse_detox_policy
from dynamo_common.policy.variables import SiteContext
from dynamo_detox.service.bound import bind_policy
from dynamo_detox.service.engine import CycleConfig, CycleOutcome, run_cycle
from tests.bench.report import Result, Target, log, profile_summary, result

SEED = 7
DAY = 86400.0
CYCLE_TARGET = Target(value=3.0, ratio=2.0, direction="max")
PARSE_TARGET = Target(value=1.0, direction="max")
CAMPAIGN_LINES = 10_000

POLICY = """\
# Physics: the production policy's shape (detox/Physics.txt), on the synthetic grid
Partition Physics
On site.name in [T0_* T1_*_Disk T2_* T3_*]
When site.occupancy > 0.9
When site.status == MORGUE
Until site.status != MORGUE and site.occupancy < 0.85
Ignore site.name == T*_MSS
ProtectBlock blockreplica.is_locked
ProtectBlock blockreplica.is_last_transfer_source
Delete dataset.status == DEPRECATED and dataset.last_update older_than 400 days ago
Delete dataset.status == INVALID and dataset.last_update older_than 600 days ago
Protect replica.incomplete and replica.last_block_created newer_than 14 days ago
Protect dataset.on_tape == PARTIAL
Protect replica.enforcer_protected
Protect dataset.name == /*/*/RAW and dataset.on_tape != FULL
DismissBlock dataset.name == /*/*/RECO and dataset.last_update older_than 90 days ago and blockreplica.owner == DataOps
ProtectBlock dataset.on_tape == NONE and blockreplica.owner == DataOps
DismissBlock dataset.name == /*/*/RAW and blockreplica.last_update older_than 60 days ago
Protect dataset.on_protected_site and replica.num_full_disk_copy_common_owner < 2
Protect dataset.on_tape != FULL and replica.num_full_other_copy_common_owner < 1
Dismiss dataset.usage_rank > 300 and dataset.name != /*/*/MINIAOD*
Dismiss dataset.last_update older_than 150 days ago and replica.num_access == 0 and dataset.name != /*/*/MINIAOD*
Protect dataset.name == /*/*/MINIAOD* and dataset.num_full_disk_copy < 3
Protect dataset.release == CMSSW_10_6_* and dataset.num_full_disk_copy < 2
Dismiss dataset.name == /*/*/*SIM and replica.size > 2TB
Protect dataset.last_access newer_than 30 days ago
Dismiss replica.num_full_other_copy_common_owner > 2
Protect replica.num_access > 100
Dismiss
Order decreasing dataset.usage_rank increasing replica.size
"""  # noqa: E501


def _partitions(model: Inventory) -> None:
    for name in ("AnalysisOps", "DataOps"):
        condition = f"blockreplica.owner == {name} and site.storage_type == DISK"
        model.partitions[name] = Partition(name, condition)
    model.partitions["Physics"] = Partition("Physics", None, ("AnalysisOps", "DataOps"))


def _attributes(model: Inventory, now: float) -> dict[str, dict[Any, Any]]:
    """Popularity for every dataset, accesses for a third of the replicas, a lock on one
    block replica in 200, enforcer protection on one replica in 50 (deterministic)."""
    rng = random.Random(SEED)
    datasets = list(model.datasets.values())
    replicas = [r for d in datasets for r in d.replicas.values()]
    block_replicas = [br for r in replicas for br in r.block_replicas.values()]
    accessed = rng.sample(replicas, len(replicas) // 3)
    locked = rng.sample(block_replicas, len(block_replicas) // 200)
    enforced = rng.sample(replicas, len(replicas) // 50)
    return {
        "dataset.usage_rank": {d: rng.uniform(-50.0, 600.0) for d in datasets},
        "dataset.last_access": {d: now - rng.uniform(0.0, 500.0) * DAY for d in datasets},
        "replica.num_access": {r: rng.randrange(1, 300) for r in accessed},
        "blockreplica.is_locked": dict.fromkeys(locked, True),
        "replica.enforcer_protected": dict.fromkeys(enforced, True),
        "dataset.on_protected_site": {},
    }


def _targets(
    policy: DetoxPolicy, model: Inventory, now: float, attributes: Any
) -> list[DatasetReplica]:
    bound = bind_policy(policy, now=now, attributes=attributes)
    sites = []
    for site in model.sites.values():
        on = bound.on
        if on is None or on is True or (on is not False and on(SiteContext(site, "Physics"))):
            sites.append(site)
    return [r for site in sites for r in site.dataset_replicas.values()]


def plain_loop(
    policy: DetoxPolicy, replicas: list[DatasetReplica], now: float, attributes: Any
) -> int:
    """The floor: the bound rules' predicates over the same replicas, first match wins."""
    bound = bind_policy(policy, now=now, attributes=attributes)
    tests = [rule.test for _, rules in bound.flat_steps for rule in rules]
    tests = [t if t is not None else (lambda r: True) for t in tests]
    decided = 0
    for replica in replicas:
        for test in tests:
            if test(replica):
                decided += 1
                break
    return decided


def full_cycle(model: Inventory, policy: DetoxPolicy, attributes: Any, now: float) -> CycleOutcome:
    outcome = run_cycle(model, policy, attributes, now, CycleConfig(volume_step=0.02))
    if not outcome.decisions:
        raise RuntimeError("the cycle decided nothing")
    return outcome


def _timed(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def campaign(lines: int = CAMPAIGN_LINES) -> str:
    """A deletion campaign: a policy naming thousands of datasets, some only at one site."""
    body = [
        f"Delete dataset.name == /Campaign{i}/Run2016{chr(65 + i % 8)}-07Aug17-v{i % 3 + 1}/AOD"
        + (f" and site.name == T2_US_Site{i % 40}" if i % 4 == 0 else "")
        for i in range(lines - 6)
    ]
    head = ["# campaign", "Partition Physics", "When always", "Until never"]
    return "\n".join([*head, *body, "Protect", "Order increasing replica.size", ""])


def _cycle(scale: str, repetitions: int, profile: bool) -> Result:
    log(f"detox: building the {scale} grid")
    model = gridgen.to_inventory(gridgen.generate(scale, seed=SEED))
    _partitions(model)
    # As in a service after its cold start: the model is frozen out of the collector.
    gc.collect()
    gc.freeze()
    try:
        now = max(d.last_update for d in model.datasets.values()) + 30 * DAY
        policy = parse_detox_policy(POLICY, file="Physics.txt")
        attributes = _attributes(model, now)
        replicas = _targets(policy, model, now, attributes)
        outcome = full_cycle(model, policy, attributes, now)
        cycles: list[float] = []
        floors: list[float] = []
        for _ in range(repetitions):
            floors.append(_timed(lambda: plain_loop(policy, replicas, now, attributes)))
            cycles.append(_timed(lambda: full_cycle(model, policy, attributes, now)))
        measured = result(
            "detox.cycle",
            scale,
            cycles,
            "s",
            floor_runs=floors,
            floor_unit="s",
            floor_label="plain loop: the same bound predicates over the same replicas",
            target=CYCLE_TARGET,
            details={
                "policy_lines": policy.num_lines,
                "replicas_at_target_sites": len(replicas),
                "decisions": len(outcome.decisions),
                "deletions": len(outcome.deletions),
                "bytes_deleted": outcome.deleted_bytes,
                "sites_triggered": sum(1 for s in outcome.sites if s.triggered),
                "iterations": outcome.iterations,
            },
        )
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            full_cycle(model, policy, attributes, now)
            profiler.disable()
            text, top = profile_summary(profiler)
            measured.details["profile_top"] = top
            measured.details["profile_text"] = text
        return measured
    finally:
        gc.unfreeze()


def _parse(repetitions: int) -> Result:
    text = campaign()
    lines = text.splitlines()
    parses: list[float] = []
    splits: list[float] = []
    for _ in range(repetitions):
        splits.append(_timed(lambda: [line.split() for line in lines]))
        parses.append(_timed(lambda: parse_detox_policy(text, file="campaign.txt")))
    return result(
        "detox.parse_campaign",
        "-",
        parses,
        "s",
        floor_runs=splits,
        floor_unit="s",
        floor_label="str.split of the same lines",
        target=PARSE_TARGET,
        details={"lines": len(lines)},
    )


def run(scale: str, repetitions: int = 3, profile: bool = False) -> list[Result]:
    cycle_scale = "cms" if scale == "cms" else "tenth"
    return [_cycle(cycle_scale, repetitions, profile), _parse(repetitions)]
