"""Scenario files and the ``dynamo simulate`` command: bad input is refused with where and
why, and a run writes the JSON, the PNGs and the HTML report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dynamo_common.cli import app
from dynamo_common.simulation.agent import AgentError, load_agent
from dynamo_common.simulation.scenario import ScenarioError, load_scenario

SCENARIOS = Path(__file__).parents[3] / "libs/common/src/dynamo_common/simulation/scenarios"
runner = CliRunner()


def test_the_example_scenarios_load() -> None:
    for path in sorted(SCENARIOS.glob("*.yaml")):
        scenario = load_scenario(path)
        assert scenario.strategies and scenario.base == SCENARIOS


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nstrategies: []\n", "strategies: List should have at least 1 item"),
        ("name: x\ngrid: {scale: huge}\nstrategies: [{kind: lru, name: l}]\n", "unknown scale"),
        ("name: x\ncolour: red\nstrategies: [{kind: lru, name: l}]\n", "colour: Extra inputs"),
        (
            "name: x\nstrategies: [{kind: lru, name: l}, {kind: static, name: l}]\n",
            "strategy names must be unique",
        ),
        ("name: x\nstrategies: [{kind: lru, name: l, trigger: 0.8, target: 0.9}]\n", "target"),
        (
            "name: x\ntrace: {generate: {}, csv: {path: a.csv}}\n"
            "strategies: [{kind: lru, name: l}]\n",
            "exactly one of",
        ),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_a_bad_scenario_is_refused_with_where_and_why(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)


def test_scenarios_may_be_toml_or_json(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text('name = "t"\n[[strategies]]\nkind = "lru"\nname = "l"\n')
    (tmp_path / "s.json").write_text(
        '{"name": "j", "strategies": [{"kind": "static", "name": "s"}]}'
    )
    assert load_scenario(tmp_path / "s.toml").strategies[0].kind == "lru"
    assert load_scenario(tmp_path / "s.json").strategies[0].kind == "static"
    (tmp_path / "s.ini").write_text("x")
    with pytest.raises(ScenarioError, match=r"\.yaml, \.toml or \.json"):
        load_scenario(tmp_path / "s.ini")


def test_agents_are_found_by_entry_point_and_check_their_options(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="no agent 'nobody' is installed"):
        load_agent("nobody", {}, tmp_path)
    with pytest.raises(AgentError, match="dealer: unknown options colour"):
        load_agent("dealer", {"colour": "red"}, tmp_path)
    with pytest.raises(AgentError, match="detox: a 'policy' file"):
        load_agent("detox", {}, tmp_path)
    (tmp_path / "bad.txt").write_text("Partition Physics\nWhen site.occupancy >> 0.9\n")
    with pytest.raises(AgentError, match=r"bad.txt:2:"):
        load_agent("detox", {"policy": "bad.txt"}, tmp_path)
    with pytest.raises(AgentError, match="cannot read"):
        load_agent("detox", {"policy": "missing.txt"}, tmp_path)


def test_simulate_writes_the_json_the_plots_and_the_html(tmp_path: Path) -> None:
    out = tmp_path / "report"
    trace = tmp_path / "trace.csv"
    result = runner.invoke(
        app,
        [
            "simulate",
            str(SCENARIOS / "tiny.yaml"),
            "--out",
            str(out),
            "--days",
            "2",
            "--quiet",
            "--export-trace",
            str(trace),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "served from disk" in result.stdout
    data = json.loads((out / "result.json").read_text())
    assert [s["name"] for s in data["strategies"]] == ["dynamo", "lru", "static"]
    for png in ("occupancy.png", "hit_rate.png", "transfers.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert "<table>" in page and "occupancy.png" in page
    assert trace.read_text().startswith("time,dataset,site,accesses\n")


def test_simulate_refuses_a_bad_scenario_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nstrategies: [{kind: lru, name: l, trigger: 2}]\n")
    result = runner.invoke(app, ["simulate", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "strategies.0.lru.trigger" in result.output
    assert not (tmp_path / "o").exists()


def test_simulate_refuses_a_what_if_for_an_agent_the_scenario_does_not_run(
    tmp_path: Path,
) -> None:
    result = runner.invoke(
        app,
        [
            "simulate",
            str(SCENARIOS / "tiny.yaml"),
            "--only",
            "lru",
            "--option",
            "dealer.popularity_half_life_days=3",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2
    assert "no strategy of the scenario runs the agent 'dealer'" in result.output


def test_simulate_over_several_seeds_reports_each_and_the_median(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        [
            "simulate",
            str(SCENARIOS / "tiny.yaml"),
            "--out",
            str(out),
            "--days",
            "1",
            "--seeds",
            "3",
            "--only",
            "dynamo",
            "--only",
            "lru",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "seeds.json").read_text())
    assert summary["seeds"] == [7, 8, 9]
    per_seed = []
    for seed in (7, 8, 9):
        data = json.loads((out / f"seed-{seed}" / "result.json").read_text())
        assert data["seed"] == seed
        per_seed.append(data["comparison"]["dynamo_vs_lru"]["more_accesses_from_disk"])
    more = summary["comparison"]["dynamo_vs_lru"]["more_accesses_from_disk"]
    assert more["per_seed"] == per_seed
    assert more["median"] == sorted(per_seed)[1]
    assert "median" in result.stdout and "over 3 seeds" in result.stdout


def test_simulate_refuses_a_trace_export_over_several_seeds(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "simulate",
            str(SCENARIOS / "tiny.yaml"),
            "--seeds",
            "2",
            "--export-trace",
            str(tmp_path / "t.csv"),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code != 0
    assert "--export-trace" in result.output
    assert not (tmp_path / "o").exists() and not (tmp_path / "t.csv").exists()
