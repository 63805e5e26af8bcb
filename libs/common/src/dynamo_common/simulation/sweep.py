"""One scenario field (or agent option) over several values, each over several seeds: the
answer to "from which request rate, threshold or half-life on does Dynamo pay off?"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from dynamo_common.simulation.scenario import Scenario, ScenarioError, with_overrides

SCENARIO_SECTIONS = frozenset(Scenario.model_fields) - {"strategies", "base"}


def parse_vary(text: str) -> tuple[str, list[Any]]:
    """``KEY=V1,V2,...`` into (key, values); each value is read as JSON where it can be
    (numbers, true/false), else kept as text."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not raw.strip():
        raise ScenarioError(f"--vary takes KEY=V1,V2,..., not {text!r}")
    values: list[Any] = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            raise ScenarioError(f"--vary {key}: an empty value in {raw!r}")
        try:
            values.append(json.loads(item))
        except json.JSONDecodeError:
            values.append(item)
    if len(set(map(repr, values))) != len(values):
        raise ScenarioError(f"--vary {key}: a value is given twice")
    return key, values


def vary(scenario: Scenario, key: str, value: Any) -> Scenario:
    """The scenario with ``key`` set to ``value``: a dotted scenario field
    (``users.request_probability``, ``trace.generate.zipf``) or an agent option
    (``dealer.popularity_max_copies``, ``detox.policy``)."""
    head = key.split(".", 1)[0]
    if head in SCENARIO_SECTIONS:
        return with_overrides(scenario, fields={key: value})
    agent, dot, name = key.partition(".")
    if not dot or not name:
        raise ScenarioError(
            f"--vary {key}: neither a scenario field ({', '.join(sorted(SCENARIO_SECTIONS))}) "
            "nor AGENT.OPTION"
        )
    return with_overrides(scenario, options={agent: {name: value}})


def sweep_table(summary: dict[str, Any]) -> list[list[str]]:
    """Rows for the terminal: one per value, the median share from disk of each strategy,
    then each comparison's median and range."""
    points = summary["points"]
    names = list(points[0]["seeds"]["strategies"])
    comparisons = list(points[0]["seeds"]["comparison"])
    rows = [
        [
            summary["key"],
            *(f"{n} from disk" for n in names),
            *(c.replace("_", " ") for c in comparisons),
            "CPU bound",
        ]
    ]
    for point in points:
        seeds = point["seeds"]
        cells = [json.dumps(point["value"])]
        cells += [f"{seeds['strategies'][n]['hit_rate']['median']:.1%}" for n in names]
        for c in comparisons:
            more = seeds["comparison"][c].get("more_accesses_from_disk")
            cells.append(
                f"{more['median']:+.1%} ({more['min']:+.1%}..{more['max']:+.1%})" if more else "-"
            )
        cells.append(f"{seeds['cpu_bound']['median']:.1%}")
        rows.append(cells)
    return rows


def sweep_png(summary: dict[str, Any], path: Path) -> Path:
    """The median share served from disk of each strategy against the value, with the
    range over seeds as a band."""
    points = summary["points"]
    labels = [json.dumps(p["value"]) for p in points]
    numeric = all(isinstance(p["value"], int | float) for p in points)
    xs: list[float] = [float(p["value"]) for p in points] if numeric else list(range(len(points)))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in points[0]["seeds"]["strategies"]:
        rates = [p["seeds"]["strategies"][name]["hit_rate"] for p in points]
        ax.plot(xs, [100 * r["median"] for r in rates], marker="o", label=name)
        ax.fill_between(
            xs, [100 * r["min"] for r in rates], [100 * r["max"] for r in rates], alpha=0.15
        )
    ax.plot(
        xs,
        [100 * p["seeds"]["cpu_bound"]["median"] for p in points],
        linestyle=":",
        color="black",
        label="CPU bound",
    )
    if not numeric:
        ax.set_xticks(xs, labels)
    ax.set_xlabel(summary["key"])
    ax.set_ylabel("accesses served from disk (%)")
    ax.set_title(f"{summary['scenario']}: median over {len(summary['seeds'])} seeds", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
