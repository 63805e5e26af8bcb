"""The simulator's detox agent and the running detox service decide the same: on the same
inventory (the service's own snapshot), the same policy (the simulator's default Physics
policy), the same access records and the same clock, the simulator deletes exactly the
replicas the service's real cycle asks the transfer service to delete, for the same rules."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dynamo_common.model.snapshot import load_lines
from dynamo_common.simulation.accesslog import ListAccessLog
from dynamo_common.simulation.agent import AccessRecord, AgentInputs, load_agent
from tests.integration.test_detox_support import GB, FakeTransfer, run_detox, seed

POLICY = (
    Path(__file__).parents[2]
    / "libs/common/src/dynamo_common/simulation/scenarios/policies/Physics.txt"
)
HOUR = 3600.0


def _grid() -> tuple[dict[str, int], dict[str, list[tuple[str, int]]]]:
    full = [(f"/D{i:02d}/Run-v1/AOD", 5 * GB) for i in range(17)] + [("/Keep/Run-v1/AOD", 10 * GB)]
    busy = [(f"/D{i:02d}/Run-v1/AOD", 5 * GB) for i in range(5, 13)]
    busy += [(f"/E{i:02d}/Run-v1/MINIAOD", 5 * GB + i * GB // 10) for i in range(10)]
    fine = [(f"/F{i:02d}/Run-v1/AOD", 10 * GB) for i in range(5)]
    quotas = {"T2_FULL": 100 * GB, "T2_BUSY": 100 * GB, "T2_FINE": 100 * GB}
    return quotas, {"T2_FULL": full, "T2_BUSY": busy, "T2_FINE": fine}


def _accesses(now: float) -> list[AccessRecord]:
    """Recent heavy use of a few datasets, older light use of others, none of the rest."""
    records = []
    for i in (3, 4, 7):
        records.append(AccessRecord(f"/D{i:02d}/Run-v1/AOD", "T2_FULL", now - 5 * HOUR, 40))
    for i in range(0, 10, 2):
        records.append(
            AccessRecord(f"/E{i:02d}/Run-v1/MINIAOD", "T2_BUSY", now - (20 + i) * 24 * HOUR, i + 1)
        )
    records.append(AccessRecord("/D09/Run-v1/AOD", "T2_BUSY", now - 3 * 24 * HOUR, 7))
    return records


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


async def test_the_simulator_and_the_running_detox_service_make_the_same_decisions(
    inventory: Any, database_url: str
) -> None:
    quotas, replicas = _grid()
    await seed(inventory, quotas, replicas)
    now = float(int(time.time())) + 60.0
    records = _accesses(now)
    transfer = FakeTransfer()
    await transfer.start(inventory.bus)

    # The simulator's agent on the inventory's own snapshot, taken before the cycle.
    snapshot = await inventory.client.get("/api/v1/snapshot")
    assert snapshot.status_code == 200
    model = load_lines(snapshot.content.splitlines())
    agent: Any = load_agent("detox", {"policy": str(POLICY), "volume_step": 0.02}, Path("."))
    simulated = agent.decide(model, AgentInputs(accesses=ListAccessLog(records)), now)

    async with run_detox(inventory, database_url, [POLICY], clock=lambda: now) as detox:
        stored = await detox.send(
            "POST",
            "/api/v1/popularity/accesses",
            {
                "records": [
                    {"dataset": r.dataset, "site": r.site, "time": _iso(r.time), "count": r.count}
                    for r in records
                ]
            },
            200,
        )
        assert stored["stored"] == len(records)
        cycle = await detox.cycle()

        # The same replicas go: what the service asked the transfer service to delete.
        assert cycle["replicas_deleted"] > 0
        service_deletions = transfer.requests
        simulator_deletions = sorted((d.dataset, d.block, d.site) for d in simulated.deletions)
        assert simulator_deletions == service_deletions
        # Both full sites were triggered; the recently used datasets stayed.
        assert {site for _, _, site in service_deletions} == {"T2_FULL", "T2_BUSY"}
        for i in (3, 4, 7):
            assert (f"/D{i:02d}/Run-v1/AOD", None, "T2_FULL") not in service_deletions

        # For the same reasons: the service's record, line by line, against the agent's.
        listed = await detox.get(f"/api/v1/cycles/{cycle['id']}/deletions.json")
        outcome = agent.last
        assert outcome is not None
        assert sorted((d["site"], d["dataset"], d["size"], d["line"]) for d in listed) == sorted(
            (d.site, d.dataset, d.size, d.line) for d in outcome.deletions
        )
        sites = await detox.get(f"/api/v1/cycles/{cycle['id']}/sites")
        assert {s["site"]: (s["used_after"], s["protected"]) for s in sites["items"]} == {
            s.site: (s.used_after, s.protected) for s in outcome.sites
        }
        assert simulated.protected == {
            s["site"]: (s["protected"], s["quota"]) for s in sites["items"]
        }
