"""The dealer's inputs from detox come through detox's API, never its tables: the raw access
records (weighed by age in the dealer) and the protected volume per site of detox's last
real cycle (the balancer's input)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dynamo_dealer.sources import DetoxAccesses, DetoxProtection, Protected
from tests.integration.test_detox_support import run_detox, seed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TB = 10**12
POLICY = """\
Partition Physics
When site.occupancy > 0.9
Until site.occupancy < 0.85
Protect dataset.name == /Keep/*/*
Dismiss
"""


async def test_access_records_and_the_last_detox_cycle_come_from_detox_api(
    inventory: Any, database_url: str, tmp_path: Path
) -> None:
    await seed(
        inventory,
        {"T2_A": 10 * TB, "T2_B": 10 * TB},
        {
            "T2_A": [("/Keep/R-v1/AOD", 4 * TB), ("/Drop/R-v1/AOD", 5 * TB)],
            "T2_B": [("/Keep/R-v1/AOD", 4 * TB)],
        },
    )
    policy = tmp_path / "Physics.txt"
    policy.write_text(POLICY)
    async with run_detox(inventory, database_url, [policy]) as detox:
        now = datetime.now(UTC)
        records = [
            {
                "dataset": "/Keep/R-v1/AOD",
                "site": "T2_A",
                "time": (now - timedelta(days=d)).isoformat(),
                "count": d + 1,
            }
            for d in range(5)
        ]
        await detox.send("POST", "/api/v1/popularity/accesses", {"records": records}, 200)
        accesses = DetoxAccesses(detox.client, "http://detox")
        got = await accesses.accesses((now - timedelta(days=2, hours=1)).timestamp())
        assert sorted(a.count for a in got) == [1, 2, 3]
        assert {a.dataset for a in got} == {"/Keep/R-v1/AOD"}
        problem = await detox.client.get("/api/v1/popularity/accesses")
        assert problem.status_code == 422

        protection = DetoxProtection(detox.client, "http://detox")
        assert await protection.protected() == Protected()
        cycle = await detox.cycle()
        protected = await protection.protected()
        assert protected.cycle_id == cycle["id"]
        assert protected.sites == {"T2_A": (4 * TB, 10 * TB), "T2_B": (4 * TB, 10 * TB)}
    assert await DetoxAccesses(detox.client, "").accesses(0) == []
