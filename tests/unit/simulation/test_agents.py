"""The agents' adapters: the dealer's and detox's own cycles behind the simulator's
``Agent``, fed what their runtimes would fetch."""

from __future__ import annotations

from pathlib import Path

from dynamo_common.simulation.accesslog import ListAccessLog
from dynamo_common.simulation.agent import AccessRecord, AgentInputs, CopyRequest, load_agent
from tests.unit.simulation.support import GB, START, world

DEALER = {"plugins": {"requests": 5, "popularity": 2}, "max_pending_fraction": 0.5}


def test_the_dealer_places_an_explicit_request_at_its_site() -> None:
    model = world({"/A/B/AOD": (2, ["T2_A"])})
    agent = load_agent("dealer", DEALER, Path("."))
    request = CopyRequest(1, "/A/B/AOD", "T2_B", "AnalysisOps", START)
    decisions = agent.decide(
        model, AgentInputs(accesses=ListAccessLog([]), requests=[request]), START
    )
    assert [(c.dataset, c.block, c.site, c.group) for c in decisions.copies] == [
        ("/A/B/AOD", None, "T2_B", "AnalysisOps")
    ]
    assert decisions.decisions == 1
    # The inventory is not touched: the kernel carries out the copy.
    assert "T2_B" not in model.datasets["/A/B/AOD"].replicas


def test_the_dealer_copies_popular_data_only() -> None:
    model = world({"/Hot/B/AOD": (1, ["T2_A"]), "/Cold/B/AOD": (1, ["T2_A"])})
    agent = load_agent(
        "dealer",
        {**DEALER, "popularity_weight_per_copy": 10, "popularity_max_copies": 2},
        Path("."),
    )
    log = ListAccessLog([AccessRecord("/Hot/B/AOD", "T2_A", START - 3600, 50)])
    decisions = agent.decide(model, AgentInputs(accesses=log), START)
    assert [(c.dataset, c.site) for c in decisions.copies] == [("/Hot/B/AOD", "T2_B")]


def test_detox_deletes_at_a_full_site_and_reports_its_protected_volume(tmp_path: Path) -> None:
    model = world({f"/D{i}/B/AOD": (1, ["T2_A"]) for i in range(10)}, quota=100 * GB)
    # Ten 10 GB datasets: T2_A is 100% full.
    policy = tmp_path / "p.txt"
    policy.write_text(
        "Partition Physics\nWhen site.occupancy > 0.9\nUntil site.occupancy < 0.85\n"
        "Protect dataset.name == /D9/*\nDismiss\nOrder increasing dataset.name\n"
    )
    agent = load_agent("detox", {"policy": "p.txt"}, tmp_path)
    decisions = agent.decide(model, AgentInputs(accesses=ListAccessLog([])), START)
    assert [(d.dataset, d.block, d.site) for d in decisions.deletions] == [
        ("/D0/B/AOD", None, "T2_A"),
        ("/D1/B/AOD", None, "T2_A"),
    ]
    assert decisions.protected == {"T2_A": (10 * GB, 100 * GB), "T2_B": (0, 100 * GB)}
    assert len(model.datasets["/D0/B/AOD"].replicas) == 1
