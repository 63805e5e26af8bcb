"""The summary over seeds: medians and ranges of the shares served from disk, of the
comparison with each baseline, and of the CPU bound."""

from __future__ import annotations

from typing import Any

import pytest

from dynamo_common.simulation.seeds import seeds_table, summarise_seeds


def _run(seed: int, dynamo: float, lru: float, more: float, moved: bool) -> dict[str, Any]:
    return {
        "scenario": "s",
        "seed": seed,
        "trace": {"cpu_bound": 0.95},
        "strategies": [
            {"name": "dynamo", "summary": {"hit_rate": dynamo, "bytes_transferred": 10}},
            {"name": "lru", "summary": {"hit_rate": lru, "bytes_transferred": 20}},
        ],
        "comparison": {
            "dynamo_vs_lru": {
                "more_accesses_from_disk": more,
                "transfer_ratio": 0.5,
                "no_more_transfer": moved,
            }
        },
    }


def test_the_median_and_range_over_seeds_of_each_number() -> None:
    runs = [
        _run(1, 0.9, 0.8, 0.125, True),
        _run(2, 0.7, 0.75, -0.0667, True),
        _run(3, 0.8, 0.7, 0.1429, True),
    ]
    summary = summarise_seeds(runs)
    assert summary["seeds"] == [1, 2, 3]
    assert summary["strategies"]["dynamo"]["hit_rate"]["median"] == 0.8
    assert summary["strategies"]["lru"]["hit_rate"]["min"] == 0.7
    more = summary["comparison"]["dynamo_vs_lru"]["more_accesses_from_disk"]
    assert (more["median"], more["min"], more["max"]) == (0.125, -0.0667, 0.1429)
    assert summary["comparison"]["dynamo_vs_lru"]["no_more_transfer_on_every_seed"] is True
    rows = seeds_table(summary)
    assert rows[0] == ["seed", "dynamo from disk", "lru from disk", "CPU bound"]
    assert rows[-1] == ["median", "80.0%", "75.0%", "95.0%"]


def test_one_seed_that_moved_more_than_the_baseline_is_reported() -> None:
    runs = [_run(1, 0.9, 0.8, 0.125, True), _run(2, 0.9, 0.8, 0.125, False)]
    summary = summarise_seeds(runs)
    assert summary["comparison"]["dynamo_vs_lru"]["no_more_transfer_on_every_seed"] is False


def test_nothing_to_summarise_is_an_error() -> None:
    with pytest.raises(ValueError, match="no runs"):
        summarise_seeds([])
