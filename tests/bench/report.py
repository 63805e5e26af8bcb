"""Benchmark results: one record per measurement, beside its floor, printed and saved as JSON."""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import statistics
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

RESULTS_DIR = Path(__file__).parent / "results"
LATEST = RESULTS_DIR / "latest.json"

Direction = Literal["min", "max"]
"""``min``: the value must be at least the target (a rate); ``max``: at most (a time, bytes)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A bar for ``value`` and, optionally, for ``ratio`` (value / floor)."""

    value: float | None = None
    ratio: float | None = None
    direction: Direction = "min"

    def met(self, value: float, ratio: float | None) -> bool:
        def ok(actual: float, bar: float) -> bool:
            return actual >= bar if self.direction == "min" else actual <= bar

        if self.value is not None and not ok(value, self.value):
            return False
        return self.ratio is None or (ratio is not None and ok(ratio, self.ratio))

    def describe(self, unit: str) -> str:
        sign = ">=" if self.direction == "min" else "<="
        parts = []
        if self.value is not None:
            parts.append(f"{sign} {_num(self.value)} {unit}")
        if self.ratio is not None:
            parts.append(f"ratio {sign} {self.ratio:g}")
        return "; ".join(parts) or "-"


@dataclass(slots=True)
class Result:
    name: str
    scale: str
    value: float
    unit: str
    floor: float | None
    floor_unit: str | None
    floor_label: str | None
    ratio: float | None
    target: str
    met: bool | None
    runs: list[float] = field(default_factory=list)
    floor_runs: list[float] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def result(
    name: str,
    scale: str,
    runs: list[float],
    unit: str,
    *,
    floor_runs: list[float] | None = None,
    floor_unit: str | None = None,
    floor_label: str | None = None,
    target: Target | None = None,
    details: dict[str, Any] | None = None,
) -> Result:
    """The median of ``runs`` against the median of ``floor_runs`` (ratio = value / floor)."""
    value = statistics.median(runs)
    floor = statistics.median(floor_runs) if floor_runs else None
    ratio = value / floor if floor else None
    return Result(
        name=name,
        scale=scale,
        value=value,
        unit=unit,
        floor=floor,
        floor_unit=floor_unit if floor is not None else None,
        floor_label=floor_label if floor is not None else None,
        ratio=ratio,
        target=target.describe(unit) if target else "-",
        met=target.met(value, ratio) if target else None,
        runs=list(runs),
        floor_runs=list(floor_runs or []),
        details={**(details or {}), "load_average": [round(x, 2) for x in os.getloadavg()]},
    )


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:,.2f}"
    return f"{value:.4g}"


def print_table(results: Iterable[Result], console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=max(console.width, 200))
    table = Table(title="Dynamo benchmarks (medians of the runs; ratio = value / floor)")
    for column, justify in (
        ("benchmark", "left"),
        ("scale", "left"),
        ("value", "right"),
        ("floor", "right"),
        ("floor measured", "left"),
        ("ratio", "right"),
        ("target", "left"),
        ("met", "center"),
    ):
        wrap = column in ("floor measured", "target")
        table.add_column(column, justify=justify, no_wrap=not wrap)  # type: ignore[arg-type]
    for r in results:
        floor = f"{_num(r.floor)} {r.floor_unit}" if r.floor is not None else "-"
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        met = "-" if r.met is None else ("[green]yes[/]" if r.met else "[red]NO[/]")
        table.add_row(
            r.name,
            r.scale,
            f"{_num(r.value)} {r.unit}",
            floor,
            r.floor_label or "-",
            ratio,
            r.target,
            met,
        )
    console.print(table)


def write_json(results: Iterable[Result], path: Path = LATEST) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return path


_LOG = Console(stderr=True)


def log(message: str) -> None:
    _LOG.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}", soft_wrap=True)


def profile_summary(profiler: cProfile.Profile, top: int = 20) -> tuple[str, list[dict[str, Any]]]:
    """The profile as text and as the ``top`` functions by own time, with their share of the
    total."""
    stats = pstats.Stats(profiler)
    total: float = stats.total_tt  # type: ignore[attr-defined]
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    raw = stats.stats  # type: ignore[attr-defined]
    entries = [
        {
            "function": f"{func} ({filename.rsplit('/', 1)[-1]}:{line})",
            "calls": ncalls,
            "own_s": round(tottime, 4),
            "own_share": round(tottime / total, 3) if total else 0.0,
            "cumulative_s": round(cumtime, 4),
            "cumulative_share": round(cumtime / total, 3) if total else 0.0,
        }
        for (filename, line, func), (_, ncalls, tottime, cumtime, _) in raw.items()
    ]
    entries.sort(key=lambda e: e["own_s"], reverse=True)  # type: ignore[arg-type,return-value]
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue(), entries[:top]
