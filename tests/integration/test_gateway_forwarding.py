"""The gateway forwards /api/v1 to the right service, as the caller, and explains a service
that is down, slow or missing with a problem document: never a 500, never a hang."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration.conftest import RunningInventory
from tests.integration.test_gateway_support import (
    ADMIN_TOKEN,
    StubService,
    free_port,
    make_account,
    run_gateway,
    silent_server,
)

PROBLEM = "application/problem+json"


@pytest.fixture
def stubs() -> dict[str, StubService]:
    return {name: StubService(name) for name in ("inventory", "transfer", "consistency")}


def _apps(stubs: dict[str, StubService]) -> dict[str, Any]:
    return {name: stub.app for name, stub in stubs.items()}


async def test_paths_go_to_their_service_with_path_query_and_body_intact(
    database_url: str, stubs: dict[str, StubService]
) -> None:
    async with run_gateway(database_url, _apps(stubs)) as gateway:
        token = await make_account(gateway, "op", "operator")
        async with gateway.client(Authorization=f"Bearer {token}") as client:
            cases = [
                ("GET", "/api/v1/dataset?name=%2FA%2FB%2FRAW", "inventory"),
                ("GET", "/api/v1/transfers/summary", "transfer"),
                ("GET", "/api/v1/transfers", "transfer"),
                ("GET", "/api/v1/transfersX", "inventory"),
                ("GET", "/api/v1/consistency/sites/T2_A/runs?limit=5", "consistency"),
                ("POST", "/api/v1/transfers/held/release", "transfer"),
                ("POST", "/api/v1/sites", "inventory"),
            ]
            for method, url, service in cases:
                response = await client.request(method, url, json={"x": [1, 2]})
                assert response.status_code == 200, (url, response.text)
                echo = response.json()
                assert echo["service"] == service, url
                path, _, query = url.partition("?")
                assert echo["raw_path"] == path
                assert echo["query"] == query
                if method == "POST":
                    assert echo["body"] == '{"x":[1,2]}'
                assert response.headers["x-stub"] == service


async def test_identity_is_forwarded_and_forged_identity_headers_are_dropped(
    database_url: str, stubs: dict[str, StubService]
) -> None:
    async with run_gateway(database_url, _apps(stubs)) as gateway:
        token = await make_account(gateway, "bob", "user")
        forged = {
            "X-Dynamo-User": "root",
            "X-Dynamo-Roles": "admin",
            "X-Dynamo-Auth": "x509",
            "X-SSL-Client-S-DN": "",
            "Cookie": "session=secret",
        }
        async with gateway.client(Authorization=f"Bearer {token}", **forged) as client:
            echo = (await client.post("/api/v1/transfers/requests", json={})).json()
        headers = dict(echo["header_list"])
        names = [k for k, _ in echo["header_list"]]
        assert headers["x-dynamo-user"] == "bob"
        assert headers["x-dynamo-roles"] == "user,anonymous"
        assert headers["x-dynamo-auth"] == "token"
        for name in ("x-dynamo-user", "x-dynamo-roles", "x-dynamo-auth"):
            assert names.count(name) == 1, name
        # The caller's credentials stay at the gateway.
        assert "authorization" not in headers
        assert "cookie" not in headers
        assert "x-ssl-client-s-dn" not in headers

        async with gateway.client(**forged) as anonymous:
            echo = (await anonymous.get("/api/v1/sites")).json()
        headers = dict(echo["header_list"])
        assert "x-dynamo-user" not in headers
        assert headers["x-dynamo-roles"] == "anonymous"
        assert headers["x-dynamo-auth"] == "anonymous"


async def test_request_id_is_propagated_or_made(
    database_url: str, stubs: dict[str, StubService]
) -> None:
    async with run_gateway(database_url, _apps(stubs)) as gateway, gateway.client() as client:
        response = await client.get("/api/v1/sites", headers={"X-Request-ID": "req-42"})
        assert response.headers["x-request-id"] == "req-42"
        assert response.json()["headers"]["x-request-id"] == "req-42"

        response = await client.get("/api/v1/sites")
        made = response.headers["x-request-id"]
        assert made and response.json()["headers"]["x-request-id"] == made


async def test_a_service_that_is_down_gives_503_at_once(
    database_url: str, stubs: dict[str, StubService]
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with run_gateway(database_url, _apps(stubs), inventory_url=closed) as gateway:
        async with gateway.client() as client:
            started = time.perf_counter()
            response = await client.get("/api/v1/datasets")
            elapsed = time.perf_counter() - started
        assert response.status_code == 503
        assert response.headers["content-type"] == PROBLEM
        problem = response.json()
        assert problem["service"] == "inventory"
        assert "unavailable" in problem["detail"] and closed in problem["detail"]
        assert response.headers["retry-after"] == "5"
        assert response.headers["x-request-id"]
        assert elapsed < 1.0


async def test_a_service_that_never_answers_gives_504_after_the_read_timeout(
    database_url: str, stubs: dict[str, StubService]
) -> None:
    async with (
        silent_server() as hung,
        run_gateway(database_url, _apps(stubs), transfer_url=hung, read_timeout=0.5) as gateway,
        gateway.client() as client,
    ):
        started = time.perf_counter()
        response = await client.get("/api/v1/transfers/summary")
        elapsed = time.perf_counter() - started
    assert response.status_code == 504
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["service"] == "transfer"
    assert 0.4 < elapsed < 3.0


async def test_a_service_not_deployed_gives_503_naming_it(
    database_url: str, stubs: dict[str, StubService]
) -> None:
    async with run_gateway(database_url, _apps(stubs)) as gateway, gateway.client() as client:
        response = await client.get("/api/v1/cycles")
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert "the detox service is not deployed" in response.json()["detail"]


async def test_large_and_streamed_answers_and_head(
    database_url: str, stubs: dict[str, StubService]
) -> None:
    async with run_gateway(database_url, _apps(stubs)) as gateway, gateway.client() as client:
        big = await client.get("/api/v1/big-answer")
        assert big.status_code == 200
        assert big.content == b"0123456789" * 300_000
        streamed = await client.get("/api/v1/streamed-answer")
        assert streamed.headers["content-type"] == "application/x-ndjson"
        assert streamed.text.splitlines() == [f'{{"n": {i}}}' for i in range(50)]
        head = await client.head("/api/v1/sites")
        assert head.status_code == 200 and head.content == b""
        # The connection to the service survives all of it.
        assert (await client.get("/api/v1/sites")).json()["service"] == "inventory"


async def test_oversized_body_is_refused_before_forwarding(
    database_url: str, stubs: dict[str, StubService]
) -> None:
    async with (
        run_gateway(database_url, _apps(stubs), max_body_bytes=100) as gateway,
        gateway.client(Authorization=f"Bearer {ADMIN_TOKEN}") as client,
    ):
        response = await client.post("/api/v1/sites", content=b"x" * 101)
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert stubs["inventory"].seen == []


# --------------------------------------------------------------------------- the real inventory


async def test_real_inventory_reads_writes_and_errors_through_the_gateway(
    database_url: str, inventory: RunningInventory
) -> None:
    async with run_gateway(database_url, {"inventory": inventory.app}) as gateway:
        operator = await make_account(gateway, "ops", "operator")
        user = await make_account(gateway, "ann", "user")
        site = {"name": "T2_GW_TEST", "storage_type": "disk", "status": "ready"}
        async with gateway.client(Authorization=f"Bearer {user}") as client:
            refused = await client.post("/api/v1/sites", json={"sites": [site]})
        assert refused.status_code == 403
        assert refused.headers["content-type"] == PROBLEM
        assert refused.json()["required_role"] == "operator"

        async with gateway.client(Authorization=f"Bearer {operator}") as client:
            written = await client.post("/api/v1/sites", json={"sites": [site]})
            assert written.status_code == 200, written.text
            assert written.json()["status"] == "accepted"

        async with gateway.client() as anonymous:
            through = await anonymous.get("/api/v1/sites/T2_GW_TEST")
            direct = await inventory.client.get("/api/v1/sites/T2_GW_TEST")
            assert through.status_code == 200
            assert through.json() == direct.json()

            missing = await anonymous.get("/api/v1/sites/T2_NOWHERE")
            assert missing.status_code == 404
            assert missing.headers["content-type"] == PROBLEM
            assert "T2_NOWHERE" in missing.json()["detail"]

            invalid = await anonymous.get("/api/v1/sites?limit=0")
            assert invalid.status_code == 422
            assert invalid.headers["content-type"] == PROBLEM

            snapshot = await anonymous.get("/api/v1/snapshot")
            assert snapshot.status_code == 200
            assert snapshot.headers["content-type"].startswith("application/x-ndjson")
            assert snapshot.headers["x-dynamo-seq"]
            assert b"T2_GW_TEST" in snapshot.content

        # Anonymous writes are refused with 401, not forwarded.
        async with gateway.client() as anonymous:
            refused = await anonymous.post("/api/v1/sites", json={"sites": [site]})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
