"""Sweeps: a scenario field or an agent option over several values, each over seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dynamo_common.cli import app
from dynamo_common.simulation.scenario import ScenarioError, load_scenario
from dynamo_common.simulation.sweep import parse_vary, vary

SCENARIOS = Path(__file__).parents[3] / "libs/common/src/dynamo_common/simulation/scenarios"
runner = CliRunner()


def test_values_are_read_as_json_where_they_can_be() -> None:
    assert parse_vary("users.request_probability=0, 0.1,1") == (
        "users.request_probability",
        [0, 0.1, 1],
    )
    assert parse_vary("users.request_decision=hourly,per_group") == (
        "users.request_decision",
        ["hourly", "per_group"],
    )


@pytest.mark.parametrize("text", ["users.request_probability", "=1,2", "x=", "x=1,,2", "x=1,1"])
def test_a_malformed_sweep_is_refused(text: str) -> None:
    with pytest.raises(ScenarioError, match="--vary"):
        parse_vary(text)


def test_a_scenario_field_and_an_agent_option_can_be_varied() -> None:
    tiny = load_scenario(SCENARIOS / "tiny.yaml")
    assert vary(tiny, "users.request_probability", 0.5).users.request_probability == 0.5
    assert vary(tiny, "trace.generate.zipf", 1.4).trace.generate.zipf == 1.4  # type: ignore[union-attr]
    changed = vary(tiny, "dealer.popularity_max_copies", 7)
    (dynamo,) = [s for s in changed.strategies if s.name == "dynamo"]
    (dealer,) = [a for a in dynamo.agents if a.agent == "dealer"]  # type: ignore[union-attr]
    assert dealer.options["popularity_max_copies"] == 7
    assert tiny.users.request_probability == 0.1  # the original is unchanged


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("users.nope", 1, "users has no field 'nope'"),
        ("users.request_probability", 2, "less than or equal to 1"),
        ("trace.generate.zipf.x", 1, "has no section 'zipf'"),
        ("cleaner.option", 1, "no strategy of the scenario runs the agent 'cleaner'"),
        ("nothing", 1, "neither a scenario field"),
    ],
)
def test_a_sweep_of_something_the_scenario_lacks_is_refused(
    key: str, value: object, message: str
) -> None:
    tiny = load_scenario(SCENARIOS / "tiny.yaml")
    with pytest.raises(ScenarioError, match=message):
        vary(tiny, key, value)


def test_simulate_sweeps_a_value_over_seeds_and_writes_the_summary_and_plot(
    tmp_path: Path,
) -> None:
    out = tmp_path / "sweep"
    result = runner.invoke(
        app,
        [
            "simulate",
            str(SCENARIOS / "tiny.yaml"),
            "--days",
            "1",
            "--seeds",
            "2",
            "--vary",
            "users.request_probability=0,0.5",
            "--only",
            "dynamo",
            "--only",
            "lru",
            "--quiet",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["key"] == "users.request_probability"
    assert [p["value"] for p in summary["points"]] == [0, 0.5]
    for point in summary["points"]:
        for seed in (7, 8):
            run = json.loads(
                (out / f"users.request_probability={point['value']}" / f"seed-{seed}")
                .joinpath("result.json")
                .read_text()
            )
            assert run["seed"] == seed
        assert point["seeds"]["seeds"] == [7, 8]
    # Without explicit requests, LRU makes no copies at all.
    assert summary["points"][0]["seeds"]["strategies"]["lru"]["bytes_transferred"]["max"] == 0
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "users.request_probability" in result.stdout


def test_a_bad_value_in_a_sweep_is_refused_before_anything_runs(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    result = runner.invoke(
        app,
        [
            "simulate",
            str(SCENARIOS / "tiny.yaml"),
            "--vary",
            "users.request_probability=0.1,7",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 2
    assert "less than or equal to 1" in result.output
    assert not out.exists()
