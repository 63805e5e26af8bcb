"""Detox with the inventory in-process on real PostgreSQL and the in-process bus: a site over
90% gets back under 85%, the commands are right, the inventory shows the owners cleared, the
record explains every decision; test runs change nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dynamo_common.messages.envelope import Envelope
from tests.factories import grid
from tests.integration.test_detox_support import (
    GB,
    FakeTransfer,
    collect_events,
    eventually,
    replica_group,
    run_detox,
    seed,
    site_usage,
)

POLICY = """\
Partition Physics
When site.occupancy > 0.9
Until site.occupancy < 0.85
Protect dataset.name == /Keep/*/*
Dismiss
Order increasing dataset.name
"""

FULL = {f"/D{i:02d}/Run-v1/AOD": 5 * GB for i in range(17)}
FULL.update({"/Keep/Run-v1/AOD": 5 * GB, "/Keep/Other-v1/AOD": 5 * GB})


async def _grid(inventory: Any) -> None:
    # T2_FULL: 19 x 5 GB = 95 GB of 100 GB. T2_FINE: 50 of 100 GB.
    await seed(
        inventory,
        {"T2_FULL": 100 * GB, "T2_FINE": 100 * GB},
        {
            "T2_FULL": list(FULL.items()),
            "T2_FINE": [(f"/F{i:02d}/Run-v1/AOD", 10 * GB) for i in range(5)],
        },
    )


def _policy(tmp_path: Path, text: str = POLICY) -> Path:
    path = tmp_path / "Physics.txt"
    path.write_text(text)
    return path


async def test_a_site_over_90_percent_gets_back_under_85(
    inventory: Any, database_url: str, tmp_path: Path
) -> None:
    await _grid(inventory)
    assert (await site_usage(inventory, "T2_FULL"))["occupancy"] == 0.95
    transfer = FakeTransfer()
    await transfer.start(inventory.bus)
    events: list[Envelope] = []
    await collect_events(inventory.bus, events)
    async with run_detox(inventory, database_url, [_policy(tmp_path)]) as detox:
        cycle = await detox.cycle()

        # The three first candidates in the policy's order, enough for 80 GB < 85 GB.
        gone = ["/D00/Run-v1/AOD", "/D01/Run-v1/AOD", "/D02/Run-v1/AOD"]
        assert cycle["replicas_deleted"] == 3
        assert cycle["bytes_deleted"] == 15 * GB
        assert cycle["sites_triggered"] == 1
        assert cycle["commands"] == {"batches": 1, "pending": 0, "accepted": 3, "rejected": 0}
        assert cycle["policy_text"] == POLICY
        assert cycle["missing_providers"] == []

        # The transfer service was asked to remove the files of those replicas, whole.
        assert transfer.requests == [(name, None, "T2_FULL") for name in gone]
        assert all(
            r.reference == f"detox cycle {cycle['id']}"
            for c in transfer.commands
            for r in c.requests
        )

        # The inventory shows them as being deleted (owner cleared), the others untouched.
        for name in gone:
            assert await replica_group(inventory, name, "T2_FULL") == "None"
        assert await replica_group(inventory, "/D03/Run-v1/AOD", "T2_FULL") == "AnalysisOps"
        usage = await site_usage(inventory, "T2_FULL")
        assert usage["used"] == 80 * GB and usage["occupancy"] < 0.85

        # The record per site.
        sites = await detox.get(f"/api/v1/cycles/{cycle['id']}/sites")
        by_site = {s["site"]: s for s in sites["items"]}
        expected = {
            "quota": 100 * GB,
            "used_before": 95 * GB,
            "used_after": 80 * GB,
            "occupancy_before": 0.95,
            "occupancy_after": 0.8,
            "deleted": 15 * GB,
            "protected": 10 * GB,
            "triggered": True,
            "stopped": True,
        }
        assert {k: by_site["T2_FULL"][k] for k in expected} == expected
        assert not by_site["T2_FINE"]["triggered"] and by_site["T2_FINE"]["deleted"] == 0

        # Every decision at the site, with the line that decided it and its text.
        decisions = await detox.get(
            f"/api/v1/cycles/{cycle['id']}/sites/T2_FULL/decisions", limit=100
        )
        assert decisions["total"] == 19
        summary = sorted({(d["decision"], d["line"], d["rule"]) for d in decisions["items"]})
        assert summary == [
            ("delete", 5, "Dismiss"),
            ("keep", 5, "Dismiss"),
            ("protect", 4, "Protect dataset.name == /Keep/*/*"),
        ]
        deleted = await detox.get(
            f"/api/v1/cycles/{cycle['id']}/sites/T2_FULL/decisions", decision="delete"
        )
        assert [d["dataset"] for d in deleted["items"]] == gone
        assert all(d["iteration"] >= 1 for d in deleted["items"])

        # The deletion list, as text and as JSON.
        text = await detox.get(f"/api/v1/cycles/{cycle['id']}/deletions.txt")
        assert text.splitlines() == [f"T2_FULL {name} {5 * GB}" for name in gone]
        listed = await detox.get(f"/api/v1/cycles/{cycle['id']}/deletions.json")
        assert [(d["site"], d["dataset"], d["size"], d["line"]) for d in listed] == [
            ("T2_FULL", name, 5 * GB, 5) for name in gone
        ]

        # Why was /D01 deleted at T2_FULL?
        found = await detox.get("/api/v1/decisions", dataset="/D01/Run-v1/AOD")
        assert [(d["cycle_id"], d["site"], d["decision"], d["rule"]) for d in found["items"]] == [
            (cycle["id"], "T2_FULL", "delete", "Dismiss")
        ]
        assert (await detox.get("/api/v1/decisions", dataset="/D0?/*", decision="delete"))[
            "total"
        ] == 3

        # Cycles are listed, and announced on the bus with their totals.
        listing = await detox.get("/api/v1/cycles", kind="real")
        assert [c["id"] for c in listing["items"]] == [cycle["id"]]
        await eventually(lambda: len(events) >= 2, "detox events")
        started, finished = events[0], events[-1]
        assert started.type == "detox.cycle.started.v1"
        assert finished.type == "detox.cycle.finished.v1"
        assert finished.data["replicas_deleted"] == 3
        assert finished.data["bytes_deleted"] == 15 * GB
        assert finished.data["status"] == "done"

        # A second cycle finds the site under its trigger: nothing more goes.
        again = await detox.cycle()
        assert again["replicas_deleted"] == 0
        assert len(transfer.commands) == 1


async def test_a_test_run_changes_nothing_and_compares_with_the_last_real_cycle(
    inventory: Any, database_url: str, tmp_path: Path
) -> None:
    await _grid(inventory)
    transfer = FakeTransfer()
    await transfer.start(inventory.bus)
    async with run_detox(inventory, database_url, [_policy(tmp_path)]) as detox:
        real = await detox.cycle()
        snapshot = (await inventory.client.get("/api/v1/snapshot")).content

        # A campaign: everything at T2_FINE, and the /Keep datasets too.
        campaign = POLICY.replace("When site.occupancy > 0.9", "When site.name == T2_FINE")
        campaign = campaign.replace("Until site.occupancy < 0.85", "Until never")
        campaign = campaign.replace("Protect dataset.name == /Keep/*/*\n", "")
        test = await detox.test_run(campaign)
        assert test["kind"] == "test" and test["commands"] is None
        assert test["replicas_deleted"] == 5

        # Nothing was sent, nothing changed, the real cycles are as they were.
        assert len(transfer.commands) == 1
        assert (await inventory.client.get("/api/v1/snapshot")).content == snapshot
        assert [c["id"] for c in (await detox.get("/api/v1/cycles", kind="real"))["items"]] == [
            real["id"]
        ]
        in_real = await detox.get("/api/v1/decisions", dataset="/F00/Run-v1/AOD")
        assert [(d["cycle_id"], d["decision"]) for d in in_real["items"]] == [(real["id"], "keep")]
        tested = await detox.get("/api/v1/decisions", dataset="/F00/Run-v1/AOD", kind="test")
        assert [(d["cycle_id"], d["decision"]) for d in tested["items"]] == [(test["id"], "delete")]

        # Against the real cycle: 5 more deletions at T2_FINE, 3 fewer at T2_FULL.
        comparison = await detox.get(f"/api/v1/test-runs/{test['id']}/compare")
        assert comparison["real_cycle"] == real["id"]
        assert (comparison["additional"], comparison["kept"]) == (5, 3)
        assert (comparison["additional_bytes"], comparison["kept_bytes"]) == (50 * GB, 15 * GB)
        kept = await detox.get(f"/api/v1/test-runs/{test['id']}/compare", change="kept")
        assert [
            (r["site"], r["dataset"], r["real_bytes"], r["test_bytes"]) for r in kept["items"]
        ] == [("T2_FULL", f"/D{i:02d}/Run-v1/AOD", 5 * GB, 0) for i in range(3)]


async def test_test_run_policy_errors_come_back_all_at_once(
    inventory: Any, database_url: str, tmp_path: Path
) -> None:
    await _grid(inventory)
    async with run_detox(inventory, database_url, [_policy(tmp_path)]) as detox:
        problem = await detox.send(
            "POST",
            "/api/v1/test-runs",
            {"policy": "Partition Physics\nWhen site.occupancy > x\nDismis\n"},
            422,
        )
        assert [e["text"] for e in problem["errors"]] == [
            "policy:1:1: the policy needs an 'Until' line (the stop condition)",
            "policy:1:1: the policy needs a default decision (an action alone on its line, "
            "e.g. 'Dismiss')",
            "policy:2:23: expected a number (a size may carry a unit, as in 1.5TB), found 'x'",
            "policy:3:1: unknown statement 'Dismis'; did you mean 'Dismiss'?",
        ]
        assert (await detox.get("/api/v1/cycles"))["total"] == 0
        await detox.send("POST", "/api/v1/test-runs", {"policy": POLICY}, 401, user=None)
        await detox.send("POST", "/api/v1/cycles", {"partition": "Nope"}, 404)


async def test_locks_protect_and_only_their_owner_or_an_admin_changes_them(
    inventory: Any, database_url: str, tmp_path: Path
) -> None:
    await _grid(inventory)
    transfer = FakeTransfer()
    await transfer.start(inventory.bus)
    policy = POLICY.replace(
        "Protect dataset.name", "ProtectBlock blockreplica.is_locked\nProtect dataset.name"
    )
    async with run_detox(inventory, database_url, [_policy(tmp_path, policy)]) as detox:
        lock = await detox.send(
            "POST",
            "/api/v1/locks",
            {"dataset": "/D0[0-1]*", "sites": "T2_*", "until": "2999-01-01T00:00:00Z"},
            201,
        )
        # '[' is a plain character in patterns: this lock names nothing.
        second = await detox.send(
            "POST",
            "/api/v1/locks",
            {
                "dataset": "/D00/*/AOD",
                "sites": "T2_FULL",
                "until": "2999-01-01T00:00:00Z",
                "comment": "analysis in progress",
            },
            201,
        )
        assert second["owner"] == "alice" and second["active"]
        await detox.send(
            "POST",
            "/api/v1/locks",
            {"dataset": "/D01/*/AOD", "until": "2000-01-01T00:00:00Z"},
            422,
        )
        await detox.send(
            "POST",
            "/api/v1/locks",
            {"dataset": "/D01/*/AOD", "until": "2999-01-01T00:00:00Z"},
            401,
            user=None,
        )

        cycle = await detox.cycle()
        deleted = await detox.get("/api/v1/decisions", dataset="/D0*", decision="delete")
        assert sorted(d["dataset"] for d in deleted["items"]) == [
            "/D01/Run-v1/AOD",
            "/D02/Run-v1/AOD",
            "/D03/Run-v1/AOD",
        ]
        protected = await detox.get("/api/v1/decisions", dataset="/D00/Run-v1/AOD")
        assert [(d["decision"], d["rule"]) for d in protected["items"]] == [
            ("protect", "ProtectBlock blockreplica.is_locked")
        ]
        assert cycle["replicas_deleted"] == 3

        # Extend: not by bob; by alice or an admin.
        later = {"until": "3000-01-01T00:00:00Z"}
        await detox.send("PATCH", f"/api/v1/locks/{second['id']}", later, 403, user="bob")
        extended = await detox.send("PATCH", f"/api/v1/locks/{second['id']}", later, 200)
        assert extended["until"].startswith("3000-01-01")
        await detox.send(
            "PATCH", f"/api/v1/locks/{second['id']}", {**later, "comment": "x"}, 200, user="admin"
        )
        listed = await detox.get("/api/v1/locks", owner="alice")
        assert [lk["id"] for lk in listed["items"]] == [lock["id"], second["id"]]
        await detox.send("DELETE", f"/api/v1/locks/{second['id']}", None, 403, user="bob")
        released = await detox.send("DELETE", f"/api/v1/locks/{second['id']}", None, 200)
        assert not released["active"] and released["released"]
        await detox.send("DELETE", f"/api/v1/locks/{second['id']}", None, 409)
        assert (await detox.get("/api/v1/locks"))["total"] == 1
        assert (await detox.get("/api/v1/locks", active=False))["total"] == 2
        await detox.get("/api/v1/locks/999", expect=404)


async def test_a_user_may_lock_only_their_own_user_data(
    inventory: Any, database_url: str, tmp_path: Path
) -> None:
    await _grid(inventory)
    await inventory.ok(
        "POST", "/api/v1/datasets", {"datasets": [grid.dataset("/bob/ntuples/USER")]}
    )
    until = "2999-01-01T00:00:00Z"
    async with run_detox(inventory, database_url, [_policy(tmp_path)]) as detox:
        mine = await detox.send(
            "POST", "/api/v1/locks", {"dataset": "/alice/*/USER", "until": until}, 201
        )
        assert mine["owner"] == "alice"
        # Refused whether or not the other user has data yet (carol has none): the lock
        # would cover what they write later.
        refused_patterns = {
            "/bob/ntuples/USER": "'bob'",
            "/b*/*/USER": "'b*'",
            "/*": "'*'",
            "/car*/*/USER": "'car*'",
            "/?arol/*/USER*": "'?arol'",
            "/alice*/*/USER": "'alice*'",
            "/*/*/*": "'*'",
            # Meant for official data, but a user named D01 could write /D01/x/USER.
            "/D01/*": "'D01'",
        }
        for pattern, first in refused_patterns.items():
            refused = await detox.send(
                "POST", "/api/v1/locks", {"dataset": pattern, "until": until}, 403
            )
            detail = refused["detail"]
            assert "another user's data" in detail, refused
            assert f"its first part {first} is not your user name" in detail, refused
            assert "must name your own namespace: /alice/..." in detail, refused
        # Refusals change nothing: only alice's own lock exists, released or not.
        everything = await detox.get("/api/v1/locks", active=False)
        assert [lk["dataset"] for lk in everything["items"]] == ["/alice/*/USER"]
        # Official data is anyone's to lock once the tier rules out USER; an admin may lock
        # user data too.
        await detox.send("POST", "/api/v1/locks", {"dataset": "/D01/*/AOD", "until": until}, 201)
        await detox.send(
            "POST",
            "/api/v1/locks",
            {"dataset": "/bob/ntuples/USER", "until": until},
            201,
            user="admin",
        )
        assert (await detox.get("/api/v1/locks"))["total"] == 3


async def test_popularity_ingested_through_the_api_drives_the_policy(
    inventory: Any, database_url: str, tmp_path: Path
) -> None:
    await _grid(inventory)
    async with run_detox(inventory, database_url, [_policy(tmp_path)]) as detox:
        records = [
            {
                "dataset": "/F01/Run-v1/AOD",
                "site": "T2_FINE",
                "time": "2999-01-01T00:00:00Z",
                "count": 7,
            },
            {"dataset": "/F01/Run-v1/AOD", "site": "T2_FINE", "time": "2999-01-02T00:00:00Z"},
            {"dataset": "/F02/Run-v1/AOD", "site": "T2_FULL", "time": "2999-01-01T00:00:00Z"},
        ]
        stored = await detox.send("POST", "/api/v1/popularity/accesses", {"records": records}, 200)
        assert stored == {"stored": 3}
        await detox.send(
            "POST",
            "/api/v1/popularity/accesses",
            {"records": [{"dataset": "bad", "site": "T2_FINE", "time": "2999-01-01T00:00:00Z"}]},
            422,
        )
        popular = await detox.get("/api/v1/popularity", dataset="/F*")
        assert [(p["dataset"], p["window_accesses"]) for p in popular["items"]] == [
            ("/F01/Run-v1/AOD", 8),
            ("/F02/Run-v1/AOD", 1),
        ]
        # Accesses in the future: in the window whatever today is.
        test = await detox.test_run(
            "Partition Physics\nOn site.name == T2_FINE\nWhen always\nUntil never\n"
            "Protect replica.num_access > 5 and dataset.last_access newer_than 1 week ago\n"
            "Dismiss dataset.usage_rank > -1000000\nProtect\n"
        )
        decisions = await detox.get(f"/api/v1/cycles/{test['id']}/sites/T2_FINE/decisions")
        assert {d["dataset"]: d["decision"] for d in decisions["items"]} == {
            "/F00/Run-v1/AOD": "delete",
            "/F01/Run-v1/AOD": "protect",
            "/F02/Run-v1/AOD": "delete",
            "/F03/Run-v1/AOD": "delete",
            "/F04/Run-v1/AOD": "delete",
        }
        assert test["missing_providers"] == []


class _Feed:
    """Another popularity source (a monitoring feed), plugged in instead of the API's records."""

    def __init__(self) -> None:
        self.windows: list[float] = []

    async def summaries(self, window_start: float) -> list[Any]:
        from dynamo_detox.service.popularity import AccessSummary

        self.windows.append(window_start)
        return [AccessSummary("/F03/Run-v1/AOD", "T2_FINE", window_start + 10, 50)]


async def test_a_pluggable_popularity_source(
    inventory: Any, database_url: str, tmp_path: Path
) -> None:
    await _grid(inventory)
    feed = _Feed()
    async with run_detox(
        inventory, database_url, [_policy(tmp_path)], popularity_source=feed
    ) as detox:
        test = await detox.test_run(
            "Partition Physics\nOn site.name == T2_FINE\nWhen always\nUntil never\n"
            "Protect replica.num_access > 0\nDismiss\n"
        )
        kept = await detox.get(
            f"/api/v1/cycles/{test['id']}/sites/T2_FINE/decisions", decision="protect"
        )
        assert [d["dataset"] for d in kept["items"]] == ["/F03/Run-v1/AOD"]
        assert len(feed.windows) == 1
