"""One scenario over several trace seeds: a policy that wins on one seed may lose on the
next, so a comparison worth acting on gives the median and the range over seeds."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def summarise_seeds(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``runs``: the ``result.json`` of each seed's run of one scenario. Per strategy, the
    share served from disk and the bytes transferred; per comparison, the relative number of
    extra accesses from disk and the transfer ratio; and the CPU bound: each as median, min
    and max over the seeds, with the per-seed values."""
    if not runs:
        raise ValueError("no runs to summarise")
    names = [s["name"] for s in runs[0]["strategies"]]
    strategies: dict[str, Any] = {}
    for name in names:
        summaries = [
            next(s["summary"] for s in run["strategies"] if s["name"] == name) for run in runs
        ]
        hit_rates = [float(m["hit_rate"]) for m in summaries]
        transferred = [float(m["bytes_transferred"]) for m in summaries]
        strategies[name] = {
            "hit_rate": {**_spread(hit_rates), "per_seed": hit_rates},
            "bytes_transferred": {**_spread(transferred), "per_seed": transferred},
        }
    comparisons: dict[str, Any] = {}
    for key in runs[0]["comparison"]:
        more = [run["comparison"][key]["more_accesses_from_disk"] for run in runs]
        ratio = [run["comparison"][key]["transfer_ratio"] for run in runs]
        entry: dict[str, Any] = {"seeds": len(runs)}
        if all(v is not None for v in more):
            entry["more_accesses_from_disk"] = {**_spread(more), "per_seed": more}
        if all(v is not None for v in ratio):
            entry["transfer_ratio"] = {**_spread(ratio), "per_seed": ratio}
        entry["no_more_transfer_on_every_seed"] = all(
            run["comparison"][key]["no_more_transfer"] for run in runs
        )
        comparisons[key] = entry
    bounds = [float(run["trace"]["cpu_bound"]) for run in runs]
    return {
        "scenario": runs[0]["scenario"],
        "seeds": [run["seed"] for run in runs],
        "cpu_bound": {**_spread(bounds), "per_seed": bounds},
        "strategies": strategies,
        "comparison": comparisons,
    }


def seeds_table(summary: dict[str, Any]) -> list[list[str]]:
    """Rows for the terminal: a header, one row per seed, then the median."""
    names = list(summary["strategies"])
    rows = [["seed", *(f"{n} from disk" for n in names), "CPU bound"]]
    for i, seed in enumerate(summary["seeds"]):
        rows.append(
            [
                str(seed),
                *(f"{summary['strategies'][n]['hit_rate']['per_seed'][i]:.1%}" for n in names),
                f"{summary['cpu_bound']['per_seed'][i]:.1%}",
            ]
        )
    rows.append(
        [
            "median",
            *(f"{summary['strategies'][n]['hit_rate']['median']:.1%}" for n in names),
            f"{summary['cpu_bound']['median']:.1%}",
        ]
    )
    return rows
