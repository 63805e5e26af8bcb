"""Scenarios: what to simulate, read from a YAML, TOML or JSON file.

A scenario names the grid (a ``gridgen`` scale and seed), the simulated period, the trace
(generated, or a recorded CSV), the sites' CPU slots and bandwidth, the users' behaviour and
the strategies to compare. Every field is validated; a bad file is refused with every error
and where it is.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dynamo_common.gridgen.scale import SCALES


class ScenarioError(Exception):
    """The scenario file cannot be read or is not valid (the message says where)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GridSpec(_Model):
    scale: str = "tiny"
    seed: int = 0

    @model_validator(mode="after")
    def _known(self) -> GridSpec:
        if self.scale not in SCALES:
            raise ValueError(f"unknown scale {self.scale!r}; presets: {', '.join(SCALES)}")
        return self


class GeneratedTrace(_Model):
    """The access generator's parameters."""

    accesses_per_day: float = Field(default=3_000, gt=0)
    """Accesses per simulated day (on average: the day-night cycle and bursts vary it)."""
    zipf: float = Field(default=1.1, gt=0)
    """Popularity of existing datasets: weight 1 / rank^zipf."""
    active_fraction: float = Field(default=0.3, gt=0, le=1)
    """Datasets anyone reads at all in the period (the rest are cold)."""
    new_datasets: float = Field(default=0.03, ge=0, le=1)
    """New datasets produced during the period, as a fraction of the grid's datasets."""
    new_share: float = Field(default=0.3, ge=0, lt=1)
    """Share of the accesses that go to new datasets."""
    new_half_life_days: float = Field(default=4.0, gt=0)
    """New datasets are hot when produced and cool down with this half-life."""
    bursts: int = Field(default=10, ge=0)
    """Sudden interest in an existing dataset (a conference, a bug hunt)."""
    burst_factor: float = Field(default=30.0, ge=1)
    burst_days: float = Field(default=2.0, gt=0)
    locality: float = Field(default=0.5, ge=0, le=1)
    """Share of a dataset's accesses from its 'home' site (where its users are)."""
    daily_cycle: float = Field(default=0.3, ge=0, lt=1)
    """Amplitude of the day-night modulation."""


class CsvTrace(_Model):
    path: str
    unknown: Literal["error", "skip"] = "error"
    """A dataset or site the grid does not hold: refuse the trace, or skip the row."""


class TraceSpec(_Model):
    generate: GeneratedTrace | None = None
    csv: CsvTrace | None = None

    @model_validator(mode="after")
    def _one(self) -> TraceSpec:
        if (self.generate is None) == (self.csv is None):
            raise ValueError("give exactly one of 'generate' and 'csv'")
        return self


class TierValues(_Model):
    T0: float
    T1: float
    T2: float
    T3: float

    def of(self, site: str) -> float:
        value: float = getattr(self, site[:2]) if site[:2] in ("T0", "T1", "T2", "T3") else 0.0
        return value


class SitesSpec(_Model):
    slots: TierValues = TierValues(T0=0, T1=60, T2=30, T3=5)
    """Analysis jobs a site runs per hour (one access = one job-hour)."""
    bandwidth_gbps: TierValues = TierValues(T0=100, T1=40, T2=10, T3=2)
    """A site's WAN rate in and out; a link runs at the smaller of its two ends."""
    tape_latency_hours: float = Field(default=6.0, ge=0)
    """Staging delay before a copy from tape starts."""


class UsersSpec(_Model):
    request_probability: float = Field(default=0.1, ge=0, le=1)
    """A (dataset, site, hour) whose accesses were not all served at the users' site makes
    its users ask for a copy there with this probability (an explicit request)."""
    request_decision: Literal["hourly", "per_group"] = "hourly"
    """``hourly``: the draw is made again every hour the jobs miss, so a group that keeps
    missing asks sooner or later; ``per_group``: each (dataset, site) group of users decides
    once whether it is the kind that asks for copies (a share ``request_probability`` of
    them), and the others wait or read remotely, however long they miss."""
    request_group: str = "AnalysisOps"
    production_group: str = "DataOps"
    """Owner of newly produced datasets."""


class AgentSpec(_Model):
    agent: str
    every_hours: float = Field(default=6.0, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)


class AgentsStrategy(_Model):
    kind: Literal["agents"]
    name: str
    agents: list[AgentSpec] = Field(min_length=1)
    description: str = "the configured Dynamo agents"


class ThresholdStrategy(_Model):
    kind: Literal["lru", "static"]
    name: str
    trigger: float = Field(default=0.9, gt=0, le=1)
    target: float = Field(default=0.85, gt=0, le=1)
    description: str = ""

    @model_validator(mode="after")
    def _order(self) -> ThresholdStrategy:
        if self.target > self.trigger:
            raise ValueError("target must not be above trigger")
        return self


Strategy = Annotated[AgentsStrategy | ThresholdStrategy, Field(discriminator="kind")]


class Scenario(_Model):
    name: str
    description: str = ""
    grid: GridSpec = GridSpec()
    seed: int = 0
    days: float = Field(default=7.0, gt=0, le=400)
    warmup_days: float = Field(default=0.0, ge=0, le=60)
    """Days simulated first, with the same trace law and strategy, and not counted: the
    agents start the measured period with an access history, and the sites in the state the
    strategy keeps them in rather than the generator's."""
    start: float | None = None
    """Epoch seconds (the start of the warm-up); default: a day after the grid's newest
    dataset."""
    partition: str = "Physics"
    partitions: dict[str, str | list[str]] = Field(
        default_factory=lambda: {  # type: ignore[arg-type]
            "AnalysisOps": "blockreplica.owner == AnalysisOps and site.storage_type == DISK",
            "DataOps": "blockreplica.owner == DataOps and site.storage_type == DISK",
            "Physics": ["AnalysisOps", "DataOps"],
        }
    )
    trace: TraceSpec = TraceSpec(generate=GeneratedTrace())
    sites: SitesSpec = SitesSpec()
    users: UsersSpec = UsersSpec()
    strategies: list[Strategy] = Field(min_length=1)
    sample_hours: float = Field(default=6.0, gt=0)
    """How often occupancy is recorded."""
    check: Literal["full", "sampled", "off"] = "sampled"
    """Conservation checks: after every change (tests), at every sample, or never."""

    base: Path = Path(".")
    """Directory that relative paths in the scenario are resolved from (set on load)."""

    @model_validator(mode="after")
    def _names(self) -> Scenario:
        names = [s.name for s in self.strategies]
        if len(set(names)) != len(names):
            raise ValueError("strategy names must be unique")
        if self.partition not in self.partitions:
            raise ValueError(f"partition {self.partition!r} is not among 'partitions'")
        return self


def parse_scenario(data: Any, base: Path, source: str = "<scenario>") -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario is a mapping of fields")
    try:
        return Scenario.model_validate({**data, "base": base})
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in error['loc']) or '(top)'}: {error['msg']}"
            for error in exc.errors()
        ]
        raise ScenarioError(f"{source}: " + "; ".join(problems)) from None


def load_scenario(path: Path) -> Scenario:
    """A scenario from a ``.yaml``/``.yml``, ``.toml`` or ``.json`` file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read {path}: {exc.strerror}") from None
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ScenarioError(f"{path}: a scenario is a .yaml, .toml or .json file")
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ScenarioError(f"{path}: not valid {suffix[1:].upper()}: {exc}") from None
    return parse_scenario(data, path.parent.resolve(), str(path))


def with_overrides(
    scenario: Scenario,
    *,
    days: float | None = None,
    seed: int | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    only: list[str] | None = None,
    check: str | None = None,
    fields: dict[str, Any] | None = None,
) -> Scenario:
    """The scenario with a changed period, seed or agent options (``{"detox": {"policy":
    "/path/new.txt"}}``: every agents strategy that runs detox gets it), or any field by
    its dotted path (``{"users.request_probability": 0.03}``): the "what if"."""
    data = scenario.model_dump()
    for path, value in (fields or {}).items():
        _set_field(data, path, value)
    if days is not None:
        data["days"] = days
        data["warmup_days"] = min(data["warmup_days"], days)
    if seed is not None:
        data["seed"] = seed
    if check is not None:
        data["check"] = check
    if only:
        unknown = sorted(set(only) - {s["name"] for s in data["strategies"]})
        if unknown:
            raise ScenarioError(f"no strategy named {', '.join(unknown)}")
        data["strategies"] = [s for s in data["strategies"] if s["name"] in only]
    for agent, changes in (options or {}).items():
        found = False
        for strategy in data["strategies"]:
            for spec in strategy.get("agents", ()):
                if spec["agent"] == agent:
                    found = True
                    if "policy" in changes or "policy_text" in changes:
                        spec["options"].pop("policy", None)
                        spec["options"].pop("policy_text", None)
                    spec["options"].update(changes)
        if not found:
            raise ScenarioError(f"no strategy of the scenario runs the agent {agent!r}")
    return parse_scenario(data, scenario.base, scenario.name)


def _set_field(data: dict[str, Any], path: str, value: Any) -> None:
    """Set the scenario field at dotted ``path``; a path the scenario has no field for is an
    error naming the fields there are (the value is checked when the scenario is parsed)."""
    *parents, leaf = path.split(".")
    node: Any = data
    walked: list[str] = []
    for part in parents:
        child = node.get(part) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            known = ", ".join(sorted(node)) if isinstance(node, dict) else "none"
            where = ".".join(walked) or "the scenario"
            raise ScenarioError(f"{path}: {where} has no section {part!r} (fields: {known})")
        walked.append(part)
        node = child
    if not isinstance(node, dict) or leaf not in node or leaf in ("strategies", "base"):
        known = ", ".join(sorted(k for k in node if k not in ("strategies", "base")))
        where = ".".join(walked) or "the scenario"
        raise ScenarioError(f"{path}: {where} has no field {leaf!r} (fields: {known})")
    node[leaf] = value
