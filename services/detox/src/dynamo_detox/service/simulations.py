"""The "what if" runs of the decision simulator: a packaged scenario with a changed detox policy,
queued, and run one at a time in a worker thread (the simulation is CPU-bound and must never
hold the event loop)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

import dynamo_common.simulation as simulation
from dynamo_common.policy.detox import parse_detox_policy
from dynamo_common.simulation.agent import AgentError
from dynamo_common.simulation.kernel import ConservationError
from dynamo_common.simulation.runner import run_scenario
from dynamo_common.simulation.scenario import (
    AgentsStrategy,
    Scenario,
    ScenarioError,
    load_scenario,
    with_overrides,
)
from dynamo_common.simulation.trace import TraceError

log = logging.getLogger("dynamo.detox.simulations")

SCENARIOS_DIR: Final = Path(simulation.__file__).parent / "scenarios"
MAX_DAYS: Final = 14
"""The longest run the API accepts: a web request should not occupy the worker for hours."""
DETOX: Final = "detox"
RETRY_SECONDS: Final = 5.0
INTERRUPTED: Final = "interrupted: the detox service stopped while the simulation ran"


class UnknownScenario(LookupError):
    pass


class Cancelled(Exception):
    """The service is stopping: the run is abandoned between two strategies."""


def packaged_scenarios() -> dict[str, Path]:
    """The scenarios shipped with the simulator, by file stem (``tiny``)."""
    return {
        path.stem: path
        for path in sorted(SCENARIOS_DIR.iterdir())
        if path.suffix in (".yaml", ".yml", ".toml", ".json")
    }


def load_packaged(name: str) -> Scenario:
    path = packaged_scenarios().get(name)
    if path is None:
        known = ", ".join(packaged_scenarios()) or "none"
        raise UnknownScenario(f"no scenario {name!r} (known: {known})")
    return load_scenario(path)


def detox_policy_text(scenario: Scenario) -> str | None:
    """The policy text the scenario's first detox agent runs (``None``: no detox agent)."""
    for strategy in scenario.strategies:
        if not isinstance(strategy, AgentsStrategy):
            continue
        for spec in strategy.agents:
            if spec.agent != DETOX:
                continue
            if "policy_text" in spec.options:
                return str(spec.options["policy_text"])
            if "policy" in spec.options:
                path = Path(str(spec.options["policy"]))
                if not path.is_absolute():
                    path = scenario.base / path
                try:
                    return path.read_text(encoding="utf-8")
                except OSError as exc:
                    raise ScenarioError(f"cannot read {path}: {exc.strerror}") from None
    return None


@dataclass(frozen=True, slots=True)
class ScenarioInfo:
    name: str
    title: str
    description: str
    days: float
    warmup_days: float
    seed: int
    grid: str
    strategies: list[str]
    policy: str | None


def scenario_info(name: str) -> ScenarioInfo:
    scenario = load_packaged(name)
    return ScenarioInfo(
        name=name,
        title=scenario.name,
        description=scenario.description,
        days=scenario.days,
        warmup_days=scenario.warmup_days,
        seed=scenario.seed,
        grid=scenario.grid.scale,
        strategies=[s.name for s in scenario.strategies],
        policy=detox_policy_text(scenario),
    )


@dataclass(frozen=True, slots=True)
class SimulationSpec:
    """What a run was asked for: enough to prepare it again in the worker."""

    scenario: str
    policy: str | None
    """A replacement detox policy text; ``None`` runs the scenario's own."""
    days: float | None
    seed: int | None


@dataclass(frozen=True, slots=True)
class Prepared:
    scenario: Scenario
    days: float
    seed: int
    policy: str | None
    """The detox policy text that will run (the replacement or the scenario's own)."""


def prepare(spec: SimulationSpec) -> Prepared:
    """The scenario with the requested changes. Raises ``UnknownScenario``, ``PolicyErrors``
    (every error of the policy text, line and column) or ``ScenarioError``."""
    base = load_packaged(spec.scenario)
    options: dict[str, dict[str, Any]] = {}
    if spec.policy is not None:
        # Parsed here rather than in the agent's factory: the errors come back as a list
        # with line and column, not as one message from inside the run.
        parse_detox_policy(spec.policy, file="policy")
        options[DETOX] = {"policy_text": spec.policy}
    # Without a period, the scenario's own, cut to what the API accepts (the benchmark
    # scenario runs a month).
    days = spec.days if spec.days is not None else min(base.days, MAX_DAYS)
    if days > MAX_DAYS:
        raise ScenarioError(f"at most {MAX_DAYS} days, not {days:g}")
    scenario = with_overrides(base, days=days, seed=spec.seed, options=options)
    return Prepared(
        scenario=scenario,
        days=scenario.days,
        seed=scenario.seed,
        policy=spec.policy if spec.policy is not None else detox_policy_text(scenario),
    )


def run_simulation(spec: SimulationSpec, progress: Callable[[str], None]) -> dict[str, Any]:
    """The result JSON of the simulator's report (metrics and series per strategy)."""
    prepared = prepare(spec)
    result: dict[str, Any] = run_scenario(prepared.scenario, progress=progress).to_json()
    return result


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, ConservationError):
        return f"conservation check failed: {exc}"
    if isinstance(exc, ScenarioError | AgentError | TraceError | UnknownScenario):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    spec: SimulationSpec


class SimulationStore(Protocol):
    async def claim_next(self, now: datetime) -> Claimed | None: ...

    async def finish(self, run_id: int, result: dict[str, Any], now: datetime) -> None: ...

    async def fail(self, run_id: int, error: str, now: datetime) -> None: ...


Runner = Callable[[SimulationSpec, Callable[[str], None]], dict[str, Any]]


class SimulationWorker:
    """Runs queued simulations one at a time, oldest first, in one worker thread. The queue
    is the database: runs queued before a restart are run after it."""

    def __init__(self, store: SimulationStore, runner: Runner = run_simulation) -> None:
        self.store = store
        self.runner = runner
        self.progress: dict[int, str] = {}
        """The running simulation's last progress line (kept in memory: it changes often)."""
        self._wake = asyncio.Event()
        self._cancel = threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detox-simulation")

    def wake(self) -> None:
        self._wake.set()

    def _run(self, claimed: Claimed) -> dict[str, Any]:
        def progress(line: str) -> None:
            # Between strategies: the only point where a stopping service can abandon a run.
            if self._cancel.is_set():
                raise Cancelled(INTERRUPTED)
            self.progress[claimed.id] = line

        return self.runner(claimed.spec, progress)

    async def loop(self) -> None:
        while True:
            try:
                await self._next()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database went away: the queue is still there when it comes back.
                log.exception("the simulation queue could not be read or written")
                await asyncio.sleep(RETRY_SECONDS)

    async def _next(self) -> None:
        # Cleared before looking, so that a run queued while we look wakes the next wait.
        self._wake.clear()
        claimed = await self.store.claim_next(datetime.now(UTC))
        if claimed is None:
            await self._wake.wait()
            return
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._run, claimed
            )
        except asyncio.CancelledError:
            # The record stays "running": the next start marks it interrupted.
            self._cancel.set()
            raise
        except Exception as exc:
            if not isinstance(exc, ScenarioError | AgentError | TraceError):
                log.exception("simulation %d failed", claimed.id)
            await self.store.fail(claimed.id, failure_reason(exc), datetime.now(UTC))
        else:
            await self.store.finish(claimed.id, result, datetime.now(UTC))
        finally:
            self.progress.pop(claimed.id, None)

    def stop(self) -> None:
        self._cancel.set()
        self._executor.shutdown(wait=False, cancel_futures=True)
