"""Running a scenario: one grid and one trace, every strategy over them in turn."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dynamo_common import gridgen
from dynamo_common.gridgen.grid import Grid
from dynamo_common.simulation.kernel import Kernel
from dynamo_common.simulation.metrics import Metrics
from dynamo_common.simulation.scenario import AgentsStrategy, Scenario, ThresholdStrategy
from dynamo_common.simulation.strategies import describe, make_driver
from dynamo_common.simulation.trace import Trace, generate_trace, read_csv_trace
from dynamo_common.simulation.world import (
    build_inventory,
    decided_by_owner,
    grid_view,
    membership,
    site_params,
    start_time,
)

Progress = Callable[[str], None]


@dataclass(slots=True)
class StrategyResult:
    name: str
    kind: str
    description: str
    metrics: Metrics


@dataclass(slots=True)
class SimulationResult:
    scenario: Scenario
    start: float
    trace: Trace
    strategies: list[StrategyResult] = field(default_factory=list)
    setup_seconds: float = 0.0

    def measured_accesses(self) -> int:
        warm = round(self.scenario.warmup_days * 24)
        return int(self.trace.count[self.trace.hour >= warm].sum())

    def cpu_bound(self) -> float:
        """The share of the measured accesses the grid's analysis slots could serve if every
        site held every dataset: no placement does better, so it tells how much room the
        strategies have (a goal of "N% more than LRU" is out of reach when LRU's share times
        1 + N% exceeds it)."""
        warm = round(self.scenario.warmup_days * 24)
        slots = sum(self.scenario.sites.slots.of(name) for name in self.trace.sites)
        per_hour = self.trace.per_hour()[warm:]
        total = int(per_hour.sum())
        if total == 0:
            return 1.0
        return float(np.minimum(per_hour, slots).sum()) / total

    def comparison(self) -> dict[str, Any]:
        """The configured agents against LRU and static: how many more accesses served from
        disk (relative), and the transfer volume beside it."""
        by_kind: dict[str, StrategyResult] = {}
        for s in self.strategies:
            by_kind.setdefault(s.kind, s)
        out: dict[str, Any] = {}
        agents = by_kind.get("agents")
        if agents is None:
            return out
        for other in ("lru", "static"):
            base = by_kind.get(other)
            if base is None:
                continue
            a, b = agents.metrics, base.metrics
            out[f"{agents.name}_vs_{base.name}"] = {
                "hit_rate": [round(a.hit_rate, 6), round(b.hit_rate, 6)],
                "more_accesses_from_disk": round(a.hits / b.hits - 1.0, 6) if b.hits else None,
                "hit_rate_points": round(a.hit_rate - b.hit_rate, 6),
                "bytes_transferred": [a.bytes_transferred, b.bytes_transferred],
                "transfer_ratio": (
                    round(a.bytes_transferred / b.bytes_transferred, 4)
                    if b.bytes_transferred
                    else None
                ),
                "no_more_transfer": a.bytes_transferred <= b.bytes_transferred,
            }
        return out

    def to_json(self) -> dict[str, Any]:
        s = self.scenario
        return {
            "scenario": s.name,
            "description": s.description,
            "grid": {"scale": s.grid.scale, "seed": s.grid.seed},
            "seed": s.seed,
            "days": s.days,
            "start": self.start,
            "warmup_days": s.warmup_days,
            "trace": {
                "accesses": self.measured_accesses(),
                "accesses_with_warmup": self.trace.total,
                "records": len(self.trace.count),
                "datasets_produced": len(self.trace.new),
                "rows_skipped": self.trace.skipped,
                "cpu_bound": round(self.cpu_bound(), 6),
            },
            "setup_seconds": round(self.setup_seconds, 3),
            "strategies": [
                {
                    "name": r.name,
                    "kind": r.kind,
                    "description": r.description,
                    "summary": r.metrics.summary(),
                    "series": r.metrics.series(),
                }
                for r in self.strategies
            ],
            "comparison": self.comparison(),
        }


def make_trace(scenario: Scenario, grid: Grid, start: float) -> Trace:
    model = build_inventory(grid, scenario)
    params = site_params(model, scenario)
    view = grid_view(model, params)
    spec = scenario.trace
    if spec.generate is not None:
        return generate_trace(
            spec.generate, view, scenario.days + scenario.warmup_days, scenario.seed
        )
    assert spec.csv is not None
    path = Path(spec.csv.path)
    if not path.is_absolute():
        path = scenario.base / path
    names = sorted(model.datasets)
    return read_csv_trace(
        spec.csv, path, names, view.sites, start, scenario.days + scenario.warmup_days
    )


def run_strategy(
    scenario: Scenario,
    grid: Grid,
    trace: Trace,
    start: float,
    strategy: AgentsStrategy | ThresholdStrategy,
) -> StrategyResult:
    model = build_inventory(grid, scenario)
    params = site_params(model, scenario)
    driver = make_driver(strategy, scenario.base)
    kernel = Kernel(
        model,
        params,
        membership(model, scenario.partition),
        trace,
        start,
        tape_latency=scenario.sites.tape_latency_hours * 3600.0,
        request_probability=scenario.users.request_probability,
        request_group=scenario.users.request_group,
        production_group=scenario.users.production_group,
        seed=scenario.seed,
        check=scenario.check,
        sample_hours=scenario.sample_hours,
        owner_only=decided_by_owner(model, scenario.partition),
        requests_per_group=scenario.users.request_decision == "per_group",
    )
    started = time.perf_counter()
    every = max(1, round(scenario.sample_hours))
    warm = round(scenario.warmup_days * 24)
    for hour in range(trace.hours):
        kernel.advance(hour)
        if hour == warm and warm:
            # The measured period starts here: the warm-up's numbers are dropped.
            before = kernel.metrics
            kernel.metrics = Metrics(kernel.now, before.sites)
            kernel.metrics.warmup_hours = before.simulated_hours
            kernel.metrics.warmup_agent_seconds = sum(c.wall for c in before.cycles)
        driver.act(kernel)
        kernel.run_jobs()
        kernel.hourly()
        if hour >= warm and (hour - warm) % every == 0:
            kernel.sample()
    kernel.advance(trace.hours)
    kernel.sample()
    kernel.metrics.wall_seconds = time.perf_counter() - started
    return StrategyResult(strategy.name, strategy.kind, describe(strategy), kernel.metrics)


def run_scenario(scenario: Scenario, progress: Progress | None = None) -> SimulationResult:
    say = progress or (lambda _: None)
    began = time.perf_counter()
    say(f"building the {scenario.grid.scale} grid (seed {scenario.grid.seed})")
    grid = gridgen.generate(scenario.grid.scale, seed=scenario.grid.seed)
    start = start_time(grid, scenario)
    trace = make_trace(scenario, grid, start)
    say(
        f"trace: {trace.total:,} accesses in {len(trace.count):,} records over "
        f"{math.ceil(scenario.days + scenario.warmup_days)} days "
        f"({scenario.warmup_days:g} of warm-up), {len(trace.new)} datasets produced"
    )
    result = SimulationResult(scenario, start, trace)
    result.setup_seconds = time.perf_counter() - began
    for strategy in scenario.strategies:
        say(f"strategy {strategy.name}: simulating")
        outcome = run_strategy(scenario, grid, trace, start, strategy)
        m = outcome.metrics
        say(
            f"strategy {strategy.name}: {m.hit_rate:.1%} of accesses from disk, "
            f"{m.bytes_transferred / 1e12:.1f} TB transferred, "
            f"{m.bytes_deleted / 1e12:.1f} TB deleted, {m.wall_seconds:.1f} s"
        )
        result.strategies.append(outcome)
    return result
