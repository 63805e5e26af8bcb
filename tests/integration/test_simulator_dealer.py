"""The simulator's dealer agent and the running dealer service decide the same: on the same
inventory (the service's own snapshot), the same copy requests, access records, options and
clock, the agent's cycle n copies exactly what the service's cycle n asks the transfer
service to copy, for the same plugins and references, and refuses the same proposals for the
same reasons. The service runs on real PostgreSQL and RabbitMQ.

Equality alone could be trivial (both doing nothing, or ignoring an option): each test also
shows that another value of an option the service was given (the popularity half-life, the
target occupancy), the absence of the requests, or an agent that had not balanced yet,
changes the agent's decisions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from dynamo_common.model.objects import Inventory
from dynamo_common.model.snapshot import load_lines
from dynamo_common.simulation.accesslog import ListAccessLog
from dynamo_common.simulation.agent import AccessRecord, AgentInputs, CopyRequest, load_agent
from dynamo_dealer.repository import store
from dynamo_dealer.service.plugins.popularity import Access
from tests.integration.conftest import RunningInventory
from tests.integration.test_dealer_support import CommandLog, RunningDealer, run_dealer
from tests.integration.test_detox_support import GB, seed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HOUR = 3600.0
DAY = 86400.0
HOT, HOT2, WARM, OLD = "/Hot/Run-v1/AOD", "/Hot2/Run-v1/AOD", "/Warm/Run-v1/AOD", "/Old/Run-v1/AOD"
REQUESTED, SMALL = "/Requested/Run-v1/AOD", "/Small/Run-v1/AOD"
# Shared by the service and the agent: 50% of a quota may be in flight, so the per-site
# pending cap does not hide what occupancy and popularity decide.
COMMON: dict[str, Any] = {"max_pending_fraction": 0.5}


def _grid() -> tuple[dict[str, int], dict[str, list[tuple[str, int]]]]:
    """T2_SRC holds every candidate; T2_A, T2_B and T2_C have 73, 43 and 23 GB of room under
    the 93% target; T2_FULL (94%) is already above it."""
    candidates = [
        (HOT, 10 * GB),
        (HOT2, 8 * GB),
        (WARM, 6 * GB),
        (OLD, 5 * GB),
        (REQUESTED, 15 * GB),
        (SMALL, 2 * GB),
    ]
    quotas = {
        "T2_SRC": 1000 * GB,
        "T2_A": 100 * GB,
        "T2_B": 100 * GB,
        "T2_C": 100 * GB,
        "T2_FULL": 100 * GB,
    }
    return quotas, {
        "T2_SRC": candidates,
        "T2_A": [("/FillA/Run-v1/AOD", 20 * GB)],
        "T2_B": [("/FillB/Run-v1/AOD", 50 * GB)],
        "T2_C": [("/FillC/Run-v1/AOD", 70 * GB)],
        "T2_FULL": [("/FillFull/Run-v1/AOD", 94 * GB)],
    }


def _accesses(now: float) -> list[AccessRecord]:
    """With a 7-day half-life only HOT wants more copies (weight about 260: three); with 30
    days HOT2 and WARM want a second one too, and OLD's heavy use 70 days ago would (weight
    about 200) were it not outside the 60-day window both read."""
    return [
        AccessRecord(HOT, "T2_SRC", now - 2 * HOUR, 200),
        AccessRecord(HOT, "T2_SRC", now - 30 * HOUR, 70),
        AccessRecord(HOT2, "T2_SRC", now - 3 * DAY, 120),
        AccessRecord(WARM, "T2_SRC", now - 14 * DAY, 150),
        AccessRecord(OLD, "T2_SRC", now - 70 * DAY, 1000),
        AccessRecord(OLD, "T2_SRC", now - 40 * DAY, 3),
    ]


async def _snapshot(inventory: RunningInventory) -> Inventory:
    response = await inventory.client.get("/api/v1/snapshot")
    assert response.status_code == 200, response.text
    return load_lines(response.content.splitlines())


def _decide(
    model: Inventory,
    options: dict[str, Any],
    records: list[AccessRecord],
    now: float,
    requests: list[CopyRequest] | None = None,
) -> tuple[Any, Any]:
    """A fresh agent's first cycle: (its decisions, the agent, whose ``last`` is the cycle's
    every outcome)."""
    agent: Any = load_agent("dealer", options, Path("."))
    inputs = AgentInputs(accesses=ListAccessLog(records), requests=requests or [])
    return agent.decide(model, inputs, now), agent


def _copies(decisions: Any) -> list[tuple[str, str | None, str, str, str]]:
    return sorted((c.dataset, c.block, c.site, c.group, c.reference) for c in decisions.copies)


async def _service_cycle(
    dealer: RunningDealer, transfers: CommandLog
) -> tuple[dict[str, Any], list[tuple[str, str | None, str, str, str]], list[dict[str, Any]]]:
    """Run the service's cycle: (the cycle, the copies it asked of the transfer service, its
    recorded decisions)."""
    cycle = await dealer.cycle()
    # The first cycle of a fresh dealer: its id seeds its draws, as the agent's first cycle.
    assert cycle["id"] == 1
    prefix = f"dealer cycle {cycle['id']} "
    copies = []
    for command in transfers.commands:
        for r in command["requests"]:
            assert r["reference"].startswith(prefix), r
            copies.append(
                (r["dataset"], r.get("block"), r["site"], r["group"], r["reference"][len(prefix) :])
            )
    return cycle, sorted(copies), await dealer.decisions(cycle["id"])


def _same_outcomes(recorded: list[dict[str, Any]], agent: Any) -> None:
    """The service's record of every proposal, in order, against the agent's cycle."""
    output = agent.last
    assert output is not None
    assert [
        (
            d["index"],
            d["plugin"],
            d["reference"],
            d["dataset"],
            d["block"],
            d["requested_site"],
            d["site"],
            d["group"],
            d["decision"],
            d["reason"],
            d["proposal_reason"],
            d["volume"],
            d["merged_into"],
        )
        for d in sorted(recorded, key=lambda d: d["index"])
    ] == [
        (
            i,
            o.proposal.plugin,
            o.proposal.reference,
            o.proposal.dataset,
            o.proposal.block,
            o.proposal.site,
            o.site,
            o.proposal.group,
            o.decision.value,
            o.reason,
            o.proposal.reason,
            o.volume,
            o.merged_into,
        )
        for i, o in enumerate(output.result.outcomes)
    ]


@pytest.mark.parametrize(("half_life", "other"), [(7.0, 30.0), (30.0, 7.0)])
async def test_where_popularity_decides_the_simulator_copies_what_the_service_copies(
    inventory_on_rabbitmq: RunningInventory, database_url: str, half_life: float, other: float
) -> None:
    inventory = inventory_on_rabbitmq
    await seed(inventory, *_grid())
    now = float(int(time.time())) + 60.0
    records = _accesses(now)
    transfers = CommandLog()
    await transfers.start(inventory.bus)
    model = await _snapshot(inventory)
    options = {**COMMON, "plugins": {"popularity": 2}, "popularity_half_life_days": half_life}
    simulated, agent = _decide(model, options, records, now)

    async with run_dealer(
        inventory,
        database_url,
        clock=lambda: now,
        plugins={"popularity": 2},
        popularity_half_life_days=half_life,
        **COMMON,
    ) as dealer:
        dealer.accesses.records += [Access(r.dataset, r.time, r.count) for r in records]
        cycle, service_copies, recorded = await _service_cycle(dealer, transfers)

    assert cycle["commands"]["accepted"] == cycle["accepted"] > 0
    assert _copies(simulated) == service_copies
    _same_outcomes(recorded, agent)
    assert simulated.decisions == cycle["proposals"]
    # What popularity wants under this half-life, nowhere above the target occupancy, and
    # nothing from the use of OLD outside the window.
    wanted = {HOT: 2} if half_life == 7.0 else {HOT: 2, HOT2: 1, WARM: 1}
    placed: dict[str, int] = {}
    for dataset, block, site, group, reference in service_copies:
        assert (block, group) == (None, "AnalysisOps")
        assert reference.startswith("popularity:weight ")
        assert site in {"T2_A", "T2_B", "T2_C"}
        placed[dataset] = placed.get(dataset, 0) + 1
    assert placed == wanted

    # Not trivially equal: the other half-life changes the agent's copies.
    changed, _ = _decide(model, {**options, "popularity_half_life_days": other}, records, now)
    assert _copies(changed) != service_copies


async def test_where_requests_decide_the_simulator_places_and_refuses_what_the_service_does(
    inventory_on_rabbitmq: RunningInventory, database_url: str
) -> None:
    inventory = inventory_on_rabbitmq
    await seed(inventory, *_grid())
    now = float(int(time.time())) + 60.0
    records = _accesses(now)
    transfers = CommandLog()
    await transfers.start(inventory.bus)
    # Only T2_C has room among the targets: what a request takes there, popularity lacks.
    plugins = {"requests": 5, "popularity": 2}
    excluded = ["T2_A", "T2_B"]

    async with run_dealer(
        inventory,
        database_url,
        clock=lambda: now,
        plugins=plugins,
        excluded_sites=excluded,
        **COMMON,
    ) as dealer:
        dealer.accesses.records += [Access(r.dataset, r.time, r.count) for r in records]
        asked = [(REQUESTED, "T2_C"), (SMALL, "T2_FULL")]
        requests = []
        for dataset, site in asked:
            made = await dealer.send(
                "POST",
                "/api/v1/dealer/requests",
                {"items": [dataset], "sites": [site], "group": "AnalysisOps"},
                201,
            )
            # Accepted for the cycle to decide: T2_FULL is a target site, only too full now.
            assert made["state"] == "new", made
            requests.append(CopyRequest(made["id"], dataset, site, "AnalysisOps", now))
        # The service's own snapshot of the inventory, as its cycle will see it.
        model = await _snapshot(inventory)
        options = {**COMMON, "plugins": plugins, "excluded_sites": excluded}
        simulated, agent = _decide(model, options, records, now, requests)
        cycle, service_copies, recorded = await _service_cycle(dealer, transfers)
        states = {
            r.id: (await dealer.get(f"/api/v1/dealer/requests/{r.id}"))["state"] for r in requests
        }

    assert _copies(simulated) == service_copies
    _same_outcomes(recorded, agent)
    assert simulated.decisions == cycle["proposals"]
    placed, refused = requests
    # The first request lands at its site and is the only copy: its 15 GB leave T2_C too
    # little room for HOT, and the request at a site above the target gets nothing from
    # either, for the same reason.
    assert service_copies == [(REQUESTED, None, "T2_C", "AnalysisOps", f"requests:{placed.id}")]
    (refusal,) = [d for d in recorded if d["plugin"] == "requests" and d["decision"] != "accepted"]
    assert (refusal["reference"], refusal["requested_site"]) == (str(refused.id), "T2_FULL")
    assert "above the target" in refusal["reason"]
    # Deferred, not rejected: this cycle's placement, not the site, leaves no room.
    assert [d["decision"] for d in recorded if d["dataset"] == HOT] == ["deferred", "deferred"]
    assert states == {placed.id: "activated", refused.id: "new"}

    # Not trivially equal: without the requests popularity gets T2_C, and a higher target
    # occupancy lets the small request into T2_FULL.
    without, _ = _decide(model, options, records, now)
    assert (HOT, None, "T2_C", "AnalysisOps") in [c[:4] for c in _copies(without)]
    roomier, _ = _decide(model, {**options, "target_occupancy": 0.97}, records, now, requests)
    assert (SMALL, None, "T2_FULL", "AnalysisOps", f"requests:{refused.id}") in _copies(roomier)


async def test_where_the_balancer_decides_both_balance_once_from_one_detox_cycle(
    inventory_on_rabbitmq: RunningInventory, database_url: str
) -> None:
    """The same detox outcome over two dealer cycles: the service balances from it once (it
    records which detox cycle it balanced from); the agent, handed it again by the
    simulator until detox runs anew, must not copy more last copies for nothing."""
    inventory = inventory_on_rabbitmq
    last_copies = [(f"/Last{i}/Run-v1/AOD", (11 - i) * GB) for i in range(1, 4)]
    await seed(
        inventory,
        {"T2_A": 100 * GB, "T2_B": 100 * GB, "T2_C": 100 * GB},
        {
            "T2_A": last_copies,
            "T2_B": [("/Shared/Run-v1/AOD", 5 * GB)],
            "T2_C": [("/Shared/Run-v1/AOD", 5 * GB)],
        },
    )
    now = float(int(time.time())) + 60.0
    transfers = CommandLog()
    await transfers.start(inventory.bus)
    # T2_A 30% protected, the others 5%: two of its last copies (10 and 9 GB) bring the
    # spread under the 0.1 threshold.
    protected = {
        "T2_A": (30 * GB, 100 * GB),
        "T2_B": (5 * GB, 100 * GB),
        "T2_C": (5 * GB, 100 * GB),
    }
    plugins = {"balancer": 1}
    options = {**COMMON, "plugins": plugins}
    agent: Any = load_agent("dealer", options, Path("."))

    async with run_dealer(
        inventory, database_url, clock=lambda: now, plugins=plugins, **COMMON
    ) as dealer:
        dealer.protection.cycle_id, dealer.protection.sites = 4, dict(protected)
        per_cycle = []
        for n in (1, 2):
            model = await _snapshot(inventory)
            async with dealer.runtime.pool.acquire() as conn:
                placed = await store.placed_keys(conn)
            inputs = AgentInputs(ListAccessLog([]), protected=protected, placed=placed)
            simulated = agent.decide(model, inputs, now)
            transfers.commands.clear()
            cycle = await dealer.cycle()
            assert cycle["id"] == n
            copies = sorted(
                (r["dataset"], r.get("block"), r["site"], r["group"], r["reference"].split()[-1])
                for c in transfers.commands
                for r in c["requests"]
            )
            assert _copies(simulated) == copies, f"cycle {n}"
            _same_outcomes(await dealer.decisions(n), agent)
            per_cycle.append((copies, cycle, model, placed))

    (first, _, _, _), (second, cycle2, model2, placed2) = per_cycle
    assert [c[0] for c in first] == ["/Last1/Run-v1/AOD", "/Last2/Run-v1/AOD"]
    assert {c[2] for c in first} <= {"T2_B", "T2_C"}
    assert all(c[4] == "balancer:T2_A" for c in first)
    assert second == []
    assert "balancer: detox cycle 4 already balanced" in cycle2["warnings"]
    # Not trivially equal: an agent that had not balanced yet would copy the third one.
    fresh: Any = load_agent("dealer", options, Path("."))
    again = fresh.decide(
        model2, AgentInputs(ListAccessLog([]), protected=protected, placed=placed2), now
    )
    assert [c.dataset for c in again.copies] == ["/Last3/Run-v1/AOD"]
