"""The dealer's REST API on the real stack (in-process inventory, real PostgreSQL): copy
requests from creation to completion, refusals with reasons, cancellation, subscriptions,
cycle records, monitoring and enforcer compliance. A stand-in takes the transfer commands
(what the transfer service then does is the end-to-end test's business)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_dealer_support import (
    CommandLog,
    DeletionLog,
    collect,
    eventually,
    run_dealer,
)
from tests.integration.test_detox_support import seed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

GB = 10**9
TB = 10**12
A = "/Alpha/Run2024A-v1/AOD"
B = "/Beta/Run2024A-v1/AOD"
C = "/Gamma/Run2024A-v1/MINIAOD"


async def _grid(inventory: Any) -> None:
    await seed(
        inventory,
        {"T1_SOURCE": 100 * TB, "T2_US_ONE": 10 * TB, "T2_DE_TWO": 10 * TB},
        {"T1_SOURCE": [(A, 50 * GB), (B, 80 * GB), (C, 20 * GB)]},
    )


async def _complete(inventory: Any, dataset: str, site: str) -> None:
    await inventory.ok(
        "PATCH",
        "/api/v1/replicas",
        {"dataset_replicas": [{"dataset": dataset, "site": site, "complete": True}]},
    )


async def test_a_copy_request_is_placed_activated_and_completed_when_its_copy_arrives(
    inventory: Any, database_url: str
) -> None:
    await _grid(inventory)
    transfers = CommandLog()
    await transfers.start(inventory.bus)
    events: list[Any] = []
    await collect(inventory.bus, events)
    async with run_dealer(inventory, database_url) as dealer:
        made = await dealer.send(
            "POST",
            "/api/v1/dealer/requests",
            {"items": [A], "sites": ["T2_US_ONE"], "group": "AnalysisOps"},
            201,
        )
        assert made["state"] == "new" and made["resolved"] == [[A, None]]
        cycle = await dealer.cycle()
        assert cycle["accepted"] == 1 and cycle["bytes_placed"] == 50 * GB
        (decision,) = await dealer.decisions(cycle["id"], plugin="requests")
        assert (decision["decision"], decision["site"], decision["reference"]) == (
            "accepted",
            "T2_US_ONE",
            str(made["id"]),
        )
        # The inventory records the replica, empty and growing; the transfer is asked for.
        assert transfers.requests() == [(A, None, "T2_US_ONE")]
        polled = await dealer.get(f"/api/v1/dealer/requests/{made['id']}")
        assert polled["state"] == "activated"
        (destination,) = polled["destinations"]
        assert (destination["site"], destination["copied"], destination["complete"]) == (
            "T2_US_ONE",
            0,
            False,
        )
        await _complete(inventory, A, "T2_US_ONE")

        async def completed() -> bool:
            got = await dealer.get(f"/api/v1/dealer/requests/{made['id']}")
            return bool(got["state"] == "completed")

        await eventually(completed, "the request completed")
        await eventually(lambda: len(events) >= 4, "the request and cycle events")
        states = [
            (e.data["previous"], e.data["state"])
            for e in events
            if e.type == "dealer.request.updated.v1"
        ]
        assert states == [(None, "new"), ("new", "activated"), ("activated", "completed")]
        assert any(e.type == "dealer.cycle.finished.v1" for e in events)
        # A second cycle finds nothing to do for it.
        again = await dealer.cycle()
        assert again["proposals"] == 0


async def test_requests_that_cannot_be_served_are_rejected_with_their_reason(
    inventory: Any, database_url: str
) -> None:
    await _grid(inventory)
    async with run_dealer(inventory, database_url, request_max_size=100 * GB) as dealer:

        async def ask(body: dict[str, Any]) -> dict[str, Any]:
            made: dict[str, Any] = await dealer.send(
                "POST", "/api/v1/dealer/requests", {"group": "AnalysisOps", **body}, 201
            )
            assert made["state"] == "rejected", made
            return made

        unknown = await ask({"items": ["/Nothing/*/AOD", A]})
        assert unknown["reason"] == "unknown items: /Nothing/*/AOD"
        group = await ask({"items": [A], "group": "NoSuchGroup"})
        assert group["reason"] == "invalid group NoSuchGroup"
        large = await ask({"items": ["/*/Run2024A-v1/AOD"]})
        assert large["reason"].startswith("too large: 130000000000 bytes")
        nowhere = await ask({"items": [A], "sites": ["T3_*"]})
        assert nowhere["reason"] == "no matching site: T3_* names no target site"
        # Malformed bodies change nothing: 422, and no request is recorded.
        for body in (
            {"items": [], "group": "AnalysisOps"},
            {"items": [A], "group": "AnalysisOps", "n_copies": 0},
            {"items": ["/A/../B"], "group": "AnalysisOps"},
            {"items": [A], "group": "AnalysisOps", "sites": ["T2 US"]},
            {"items": [A], "group": "AnalysisOps", "colour": "red"},
        ):
            response = await dealer.client.post(
                "/api/v1/dealer/requests", json=body, headers={"X-Dynamo-User": "alice"}
            )
            assert response.status_code == 422, body
            assert response.headers["content-type"].startswith("application/problem+json")
        response = await dealer.client.post("/api/v1/dealer/requests", json={"items": [A]})
        assert response.status_code in (401, 422)
        listed = await dealer.get("/api/v1/dealer/requests")
        assert listed["total"] == 4
        assert {r["state"] for r in listed["items"]} == {"rejected"}
        # Rejected requests are never proposed.
        cycle = await dealer.cycle()
        assert cycle["proposals"] == 0


async def test_only_the_requester_or_an_admin_cancels_and_only_an_open_request(
    inventory: Any, database_url: str
) -> None:
    await _grid(inventory)
    async with run_dealer(inventory, database_url) as dealer:
        body = {"items": [B], "sites": ["T2_*"], "n_copies": 2, "group": "AnalysisOps"}
        mine = await dealer.send("POST", "/api/v1/dealer/requests", body, 201, user="alice")
        other = await dealer.send("POST", "/api/v1/dealer/requests", body, 201, user="bob")
        listed = await dealer.client.get(
            "/api/v1/dealer/requests", params={"mine": "true"}, headers={"X-Dynamo-User": "bob"}
        )
        assert [r["id"] for r in listed.json()["items"]] == [other["id"]]
        assert (await dealer.client.get("/api/v1/dealer/requests?mine=true")).status_code == 401
        await dealer.send(
            "POST", f"/api/v1/dealer/requests/{mine['id']}/cancel", None, 403, user="bob"
        )
        cancelled = await dealer.send(
            "POST", f"/api/v1/dealer/requests/{mine['id']}/cancel", None, 200, user="alice"
        )
        assert (cancelled["state"], cancelled["reason"]) == ("cancelled", "cancelled by alice")
        again = await dealer.send(
            "POST", f"/api/v1/dealer/requests/{mine['id']}/cancel", None, 409, user="alice"
        )
        assert "cannot be cancelled" in again["detail"]
        await dealer.send("POST", "/api/v1/dealer/requests/999/cancel", None, 404)
        # Bob's request (two copies among T2 sites) is served; Alice's is not.
        cycle = await dealer.cycle()
        decisions = await dealer.decisions(cycle["id"])
        assert sorted((d["reference"], d["site"]) for d in decisions) == [
            (str(other["id"]), "T2_DE_TWO"),
            (str(other["id"]), "T2_US_ONE"),
        ]
        await dealer.send(
            "POST", f"/api/v1/dealer/requests/{other['id']}/cancel", None, 200, user="admin"
        )


async def test_a_subscribed_site_follows_new_datasets_of_its_container(
    inventory: Any, database_url: str
) -> None:
    await _grid(inventory)
    await inventory.ok(
        "POST", "/api/v1/containers", {"containers": [{"name": "Run2024", "datasets": [A]}]}
    )
    transfers = CommandLog()
    await transfers.start(inventory.bus)
    async with run_dealer(inventory, database_url) as dealer:
        sub = await dealer.send(
            "POST",
            "/api/v1/dealer/subscriptions",
            {"item": "Run2024", "site": "T2_DE_TWO", "group": "AnalysisOps"},
            201,
            user="operator",
        )
        for bad, why in (
            ({"item": "Nope", "site": "T2_DE_TWO", "group": "AnalysisOps"}, "neither"),
            ({"item": A, "site": "T9_NONE", "group": "AnalysisOps"}, "unknown site"),
            ({"item": A, "site": "T2_DE_TWO", "group": "Nobody"}, "invalid group"),
        ):
            problem = await dealer.send("POST", "/api/v1/dealer/subscriptions", bad, 422)
            assert why in problem["detail"]
        duplicate = {"item": "Run2024", "site": "T2_DE_TWO", "group": "AnalysisOps"}
        await dealer.send("POST", "/api/v1/dealer/subscriptions", duplicate, 409)
        first = await dealer.cycle()
        assert [(d["dataset"], d["site"]) for d in await dealer.decisions(first["id"])] == [
            (A, "T2_DE_TWO")
        ]
        # The container grows: its new dataset follows at the next cycle.
        await inventory.ok(
            "POST", "/api/v1/containers", {"containers": [{"name": "Run2024", "datasets": [A, C]}]}
        )
        second = await dealer.cycle()
        decided = await dealer.decisions(second["id"], decision="accepted")
        assert [(d["dataset"], d["site"]) for d in decided] == [(C, "T2_DE_TWO")]
        assert sorted(transfers.requests()) == [(A, None, "T2_DE_TWO"), (C, None, "T2_DE_TWO")]
        listed = await dealer.get("/api/v1/dealer/subscriptions", site="T2_DE_TWO")
        assert [s["id"] for s in listed["items"]] == [sub["id"]]
        await dealer.send("DELETE", f"/api/v1/dealer/subscriptions/{sub['id']}", None, 204)
        await dealer.send("DELETE", f"/api/v1/dealer/subscriptions/{sub['id']}", None, 404)
        assert (await dealer.cycle())["proposals"] == 0


async def test_every_proposal_is_recorded_with_its_decision_and_a_dry_run_sends_nothing(
    inventory: Any, database_url: str, tmp_path: Path
) -> None:
    await _grid(inventory)
    transfers = CommandLog()
    await transfers.start(inventory.bus)
    async with run_dealer(inventory, database_url) as dealer:
        # The same copy asked twice (merged), and one already there (nothing to propose).
        for body in (
            {"items": [A], "sites": ["T1_SOURCE"], "group": "AnalysisOps"},
            {"items": [C], "sites": ["T2_US_ONE"], "group": "AnalysisOps"},
            {"items": [C], "sites": ["T2_US_ONE"], "group": "AnalysisOps"},
        ):
            await dealer.send("POST", "/api/v1/dealer/requests", body, 201)
        dry = await dealer.cycle(dry_run=True)
        assert dry["dry_run"] and dry["commands"]["batches"] == 0
        assert transfers.commands == []
        decisions = await dealer.decisions(dry["id"])
        by_reason = sorted((d["decision"], d["reason"]) for d in decisions)
        assert by_reason == [
            ("accepted", "placed"),
            ("merged", "merged with requests 2 (accepted)"),
        ]
        merged = next(d for d in decisions if d["decision"] == "merged")
        assert merged["site"] == "T2_US_ONE" and merged["merged_into"] is not None
        real = await dealer.cycle()
        assert real["commands"] == {"batches": 1, "pending": 0, "accepted": 1, "rejected": 0}
        assert transfers.requests() == [(C, None, "T2_US_ONE")]
        assert real["per_plugin"]["requests"] == {
            "proposed": 2,
            "accepted": 1,
            "merged": 1,
            "bytes": 20 * GB,
        }
        there = await dealer.get("/api/v1/dealer/requests/1")
        assert (there["state"], there["reason"]) == ("completed", "every copy is complete")
        page = await dealer.get("/api/v1/dealer/cycles", limit=1)
        assert page["total"] == 2 and page["items"][0]["id"] == real["id"]
        assert (await dealer.decisions(real["id"], site="T2_US_ONE", decision="accepted"))[0][
            "dataset"
        ] == C
        await dealer.get("/api/v1/dealer/cycles/999", expect=404)
        await dealer.get(f"/api/v1/dealer/cycles/{real['id']}/decisions", expect=422, decision="x")
        await dealer.send("POST", "/api/v1/dealer/cycles", {}, 401, user=None)


async def test_monitoring_shows_copies_in_flight_and_flags_the_stuck_ones(
    inventory: Any, database_url: str
) -> None:
    await _grid(inventory)
    transfers = CommandLog()
    await transfers.start(inventory.bus)
    now = [1_800_000_000.0]
    async with run_dealer(inventory, database_url, clock=lambda: now[0]) as dealer:
        for dataset, site in ((A, "T2_US_ONE"), (C, "T2_DE_TWO")):
            body = {"items": [dataset], "sites": [site], "group": "AnalysisOps"}
            await dealer.send("POST", "/api/v1/dealer/requests", body, 201)
        await dealer.cycle()
        # Three days later half of A has arrived; C stays empty.
        now[0] += 3 * 86400
        await inventory.ok(
            "PATCH",
            "/api/v1/replicas",
            {
                "block_replicas": [
                    {"dataset": A, "block": "b1", "site": "T2_US_ONE", "size": 25 * GB}
                ]
            },
        )

        async def half() -> bool:
            summary = await dealer.get("/api/v1/dealer/monitoring")
            return bool(summary["total"]["copied"] == 25 * GB)

        await eventually(half, "the progress seen")
        await dealer.runtime.check_progress()
        now[0] += 3 * 86400
        summary = await dealer.get("/api/v1/dealer/monitoring")
        assert summary["total"] == {
            "copied": 25 * GB,
            "total": 70 * GB,
            "replicas": 2,
            "stuck": 1,
        }
        assert [(s["site"], s["copied"], s["total"]) for s in summary["sites"]] == [
            ("T2_DE_TWO", 0, 20 * GB),
            ("T2_US_ONE", 25 * GB, 50 * GB),
        ]
        stuck = await dealer.get("/api/v1/dealer/monitoring/replicas", stuck="true")
        assert [(r["dataset"], r["site"], r["progress"]) for r in stuck["items"]] == [
            (C, "T2_DE_TWO", 0.0)
        ]
        everything = await dealer.get("/api/v1/dealer/monitoring/replicas")
        assert everything["total"] == 2


async def test_enforcer_compliance_is_reported_per_rule(
    inventory: Any, database_url: str, tmp_path: Path
) -> None:
    await _grid(inventory)
    rules = tmp_path / "enforcer.json"
    rules.write_text(
        json.dumps(
            {
                "partition": "Physics",
                "default_destination_group": "AnalysisOps",
                "rules": {
                    "us_miniaod": {
                        "replicas": ["dataset.name == /*/*/MINIAOD"],
                        "num_copies": 1,
                        "destinations": ["site.name == T2_US_*"],
                        "protect": True,
                    }
                },
            }
        )
    )
    transfers = CommandLog()
    await transfers.start(inventory.bus)
    async with run_dealer(inventory, database_url, enforcer_files=[rules]) as dealer:
        before = await dealer.get("/api/v1/dealer/compliance")
        assert [(r["rule"], r["there"], r["in_flight"], r["missing"]) for r in before["items"]] == [
            ("us_miniaod", 0, 0, 1)
        ]
        cycle = await dealer.cycle()
        assert [(d["dataset"], d["site"]) for d in await dealer.decisions(cycle["id"])] == [
            (C, "T2_US_ONE")
        ]

        async def in_flight() -> bool:
            page = await dealer.get("/api/v1/dealer/compliance")
            return bool(page["items"][0]["in_flight"] == 1)

        await eventually(in_flight, "the copy counted in flight")
        await _complete(inventory, C, "T2_US_ONE")

        async def there() -> bool:
            page = await dealer.get("/api/v1/dealer/compliance")
            return bool(page["items"][0]["there"] == 1 and page["items"][0]["missing"] == 0)

        await eventually(there, "the rule compliant")


async def test_last_copies_leave_a_morgue_site_and_the_most_protected_site_is_relieved(
    inventory: Any, database_url: str
) -> None:
    dead = "/Dead/Run2024A-v1/AOD"
    await seed(
        inventory,
        {"T1_SOURCE": 100 * TB, "T2_US_ONE": 10 * TB, "T2_DE_TWO": 10 * TB, "T2_DEAD": TB},
        {"T1_SOURCE": [(A, 50 * GB), (B, 80 * GB), (C, 20 * GB)], "T2_DEAD": [(dead, GB)]},
    )
    await inventory.ok(
        "POST",
        "/api/v1/sites",
        {"sites": [{"name": "T2_DEAD", "storage_type": "disk", "status": "morgue"}]},
    )
    transfers = CommandLog()
    await transfers.start(inventory.bus)
    plugins = {"undertaker": 4, "balancer": 1}
    async with run_dealer(inventory, database_url, plugins=plugins) as dealer:
        await eventually(
            lambda: dealer.runtime.readmodel.model.sites["T2_DEAD"].status.value == "morgue",
            "the morgue seen",
        )
        # Detox's last cycle: half of T1_SOURCE's quota protected, nothing elsewhere.
        dealer.protection.cycle_id = 17
        dealer.protection.sites.update(
            {"T1_SOURCE": (150 * GB, 300 * GB), "T2_US_ONE": (0, 10 * TB)}
        )
        cycle = await dealer.cycle()
        decided = await dealer.decisions(cycle["id"], decision="accepted")
        assert [(d["plugin"], d["dataset"], d["reference"]) for d in decided] == [
            ("undertaker", dead, "T2_DEAD"),
            ("balancer", B, "T1_SOURCE"),
            ("balancer", A, "T1_SOURCE"),
        ]
        # Never back to the site being emptied, nor a balanced copy next to its original.
        assert decided[0]["site"] in ("T1_SOURCE", "T2_US_ONE", "T2_DE_TWO")
        assert {d["site"] for d in decided[1:]} <= {"T2_US_ONE", "T2_DE_TWO"}
        assert cycle["warnings"] == []
        assert sorted(r[0] for r in transfers.requests()) == sorted([dead, A, B])
        # One detox cycle is balanced once: its figures predate the copies just made.
        again = await dealer.cycle()
        assert again["proposals"] == 0
        assert again["warnings"] == ["balancer: detox cycle 17 already balanced"]


async def test_deletion_requests_never_touch_a_last_copy_and_can_be_cancelled_until_carried_out(
    inventory: Any, database_url: str
) -> None:
    await seed(
        inventory,
        {"T1_SOURCE": 100 * TB, "T2_US_ONE": 10 * TB},
        {"T1_SOURCE": [(A, 50 * GB), (B, 80 * GB)], "T2_US_ONE": [(A, 50 * GB), (B, 80 * GB)]},
    )
    await inventory.ok("POST", "/api/v1/datasets", {"datasets": [{"name": C}]})
    path = "/api/v1/dealer/deletion-requests"
    async with run_dealer(inventory, database_url, plugins={"requests": 5}) as dealer:

        async def ask(body: dict[str, Any], user: str = "alice") -> dict[str, Any]:
            made: dict[str, Any] = await dealer.send("POST", path, body, 201, user=user)
            return made

        last = await ask({"dataset": A, "site": "T1_SOURCE"})
        assert last["state"] == "new"
        missing = await ask({"dataset": C, "site": "T2_US_ONE"})
        assert (missing["state"], missing["reason"]) == (
            "rejected",
            f"no replica of {C} at T2_US_ONE",
        )
        block = await ask({"dataset": A, "block": "b9", "site": "T2_US_ONE"})
        assert block["reason"] == "no replica of block b9 at T2_US_ONE"
        for bad in (
            {"dataset": "not a name", "site": "T2_US_ONE"},
            {"dataset": A, "site": "T2 US"},
            {"dataset": A, "site": "T2_US_ONE", "extra": 1},
        ):
            await dealer.send("POST", path, bad, 422)
        # The same replica asked by two people; one cancels before the cycle.
        first = await ask({"dataset": B, "site": "T2_US_ONE"})
        second = await ask({"dataset": B, "site": "T1_SOURCE"}, user="bob")
        await dealer.send("POST", f"{path}/{second['id']}/cancel", None, 403, user="alice")
        cancelled = await dealer.send("POST", f"{path}/{second['id']}/cancel", None, 200, "bob")
        assert cancelled["state"] == "cancelled"
        mine = await dealer.client.get(
            path, params={"mine": "true"}, headers={"X-Dynamo-User": "bob"}
        )
        assert [r["id"] for r in mine.json()["items"]] == [second["id"]]

        transfers = DeletionLog()
        await transfers.start(inventory.bus)
        await dealer.cycle()
        # A at T1_SOURCE is still one of two copies: carried out; B at T2_US_ONE too.
        done = {r["id"]: r for r in (await dealer.get(path, state="activated"))["items"]}
        assert set(done) == {last["id"], first["id"]}
        assert sorted(transfers.requests) == [(A, "T1_SOURCE"), (B, "T2_US_ONE")]
        await dealer.send("POST", f"{path}/{first['id']}/cancel", None, 409)
        # The inventory clears the owners (detox's convention for replicas being deleted).
        model = dealer.runtime.readmodel.model
        assert model.datasets[B].replicas["T2_US_ONE"].group.name == "None"
        # While A at T1_SOURCE is being deleted, its other copy is the last one: it stays.
        lonely = await ask({"dataset": A, "site": "T2_US_ONE"})
        assert lonely["reason"] == "the last complete copy: it stays"
        again = await ask({"dataset": A, "site": "T1_SOURCE"})
        assert again["reason"] == "the replica is already being deleted"
        # The transfer service (a stand-in here) has the inventory delete the replica.
        await inventory.ok(
            "POST",
            "/api/v1/replicas/delete",
            {"dataset_replicas": [{"dataset": A, "site": "T1_SOURCE"}]},
        )

        async def completed() -> bool:
            got = await dealer.get(f"{path}/{last['id']}")
            return bool(got["state"] == "completed")

        await eventually(completed, "the deletion request completed")


async def test_commands_left_unanswered_are_sent_again_under_the_same_ids(
    inventory: Any, database_url: str
) -> None:
    await _grid(inventory)
    async with run_dealer(inventory, database_url, command_reply_timeout=1) as dealer:
        body = {"items": [A], "sites": ["T2_US_ONE"], "group": "AnalysisOps"}
        await dealer.send("POST", "/api/v1/dealer/requests", body, 201)
        # No transfer service is listening: the inventory records the replica, the
        # transfer command times out and stays pending.
        cycle = await dealer.cycle()
        assert cycle["commands"]["pending"] == 1
        transfers = CommandLog()
        await transfers.start(inventory.bus)
        await dealer.runtime.send_pending()
        again = await dealer.get(f"/api/v1/dealer/cycles/{cycle['id']}")
        assert again["commands"] == {"batches": 1, "pending": 0, "accepted": 1, "rejected": 0}
        assert transfers.requests() == [(A, None, "T2_US_ONE")]
        # The inventory answered the repeated creation from its record: one replica.
        replicas = dealer.runtime.readmodel.model.datasets[A].replicas
        assert sorted(replicas) == ["T1_SOURCE", "T2_US_ONE"]
