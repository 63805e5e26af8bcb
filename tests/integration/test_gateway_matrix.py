"""The authorization matrix: every endpoint of the merged OpenAPI document, called by every
role, with public reads on and off, is let through or refused exactly as the permission table
says; and no write of any service is left to the table's closed default."""

from __future__ import annotations

import re
from typing import Any

import pytest

from dynamo_gateway.service.permissions import PermissionTable
from dynamo_gateway.service.roles import Role
from tests.integration.test_gateway_support import (
    ADMIN_TOKEN,
    ROLES,
    StubService,
    make_account,
    run_gateway,
    service_openapi,
)

SERVICES = ("inventory", "transfer", "consistency", "detox")
METHODS = ("get", "post", "put", "patch", "delete")

# A few decisions spelled out independently of the table, so that a wrong table entry (not
# only a wrong enforcement of it) fails this test.
EXPECTED = {
    ("GET", "/api/v1/datasets"): "read",
    ("GET", "/api/v1/transfers/held"): "read",
    ("POST", "/api/v1/transfers/requests"): "user",
    ("POST", "/api/v1/transfers/deletions"): "user",
    ("POST", "/api/v1/transfers/held/release"): "operator",
    ("POST", "/api/v1/sites"): "operator",
    ("POST", "/api/v1/replicas/delete"): "operator",
    ("POST", "/api/v1/partitions"): "operator",
    ("POST", "/api/v1/consistency/sites/{site}/approve"): "operator",
    ("POST", "/api/v1/cycles"): "operator",
    ("POST", "/api/v1/test-runs"): "user",
    ("DELETE", "/api/v1/locks/{lock_id}"): "user",
    ("GET", "/api/v1/decisions"): "read",
    ("GET", "/api/v1/auth/whoami"): "anonymous",
    ("POST", "/api/v1/auth/tokens"): "user",
    ("GET", "/api/v1/auth/accounts"): "admin",
    ("POST", "/api/v1/auth/accounts"): "admin",
    ("PATCH", "/api/v1/auth/accounts/{name}"): "admin",
}


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


@pytest.mark.parametrize("public_reads", [True, False], ids=["public-reads", "private-reads"])
async def test_every_endpoint_for_every_role(database_url: str, public_reads: bool) -> None:
    stubs = {name: StubService(name, openapi=service_openapi(name)) for name in SERVICES}
    apps = {name: stub.app for name, stub in stubs.items()}
    async with run_gateway(database_url, apps, public_reads=public_reads) as gateway:
        tokens: dict[str, str | None] = {"anonymous": None, "admin": ADMIN_TOKEN}
        for role in ("user", "operator"):
            tokens[role] = await make_account(gateway, f"matrix-{role}", role)
        async with gateway.client() as client:
            document = (await client.get("/openapi.json")).json()
        table = PermissionTable(public_reads=public_reads)
        read_role = "anonymous" if public_reads else "user"

        operations = [
            (method.upper(), path, operation)
            for path, item in document["paths"].items()
            for method in METHODS
            if isinstance(operation := item.get(method), dict)
        ]
        paths = {(m, p) for m, p, _ in operations}
        for key in EXPECTED:
            assert key in paths, f"{key} is not in the merged document"
        # Every service's every endpoint is in the matrix.
        for name in SERVICES:
            for path in service_openapi(name)["paths"]:
                assert path in document["paths"], (name, path)

        checked = 0
        for method, path, operation in operations:
            decision = table.decide(method, path)
            if method not in ("GET", "HEAD"):
                assert decision.explicit, f"{method} {path} has no rule in the permission table"
            need = decision.need.label
            expected = EXPECTED.get((method, path))
            if expected is not None:
                assert need == (read_role if expected == "read" else expected), (method, path)
            assert operation["x-dynamo-min-role"] == need, (method, path)

            for role in ROLES:
                headers = {"Authorization": f"Bearer {tokens[role]}"} if tokens[role] else {}
                async with gateway.client(**headers) as caller:
                    response = await caller.request(method, _concrete(path), json={})
                allowed = Role.parse(role) >= decision.need
                where = f"{role} {method} {path} -> {response.status_code} {response.text[:200]}"
                if allowed:
                    assert response.status_code not in (401, 403), where
                elif role == "anonymous":
                    assert response.status_code == 401, where
                    assert response.headers["www-authenticate"].startswith("Bearer"), where
                else:
                    assert response.status_code == 403, where
                    assert response.json()["required_role"] == need, where
                if allowed and not path.startswith("/api/v1/auth"):
                    echo = response.json()
                    assert echo["method"] == method, where
                    assert echo["headers"]["x-dynamo-roles"].split(",")[0] == role, where
                checked += 1
        assert checked == 4 * len(operations)
        assert len(operations) > 40


async def test_an_unlisted_write_is_for_admins_only(database_url: str) -> None:
    stubs = {name: StubService(name) for name in SERVICES}
    apps = {name: stub.app for name, stub in stubs.items()}
    async with run_gateway(database_url, apps) as gateway:
        operator = await make_account(gateway, "op", "operator")
        async with gateway.client(Authorization=f"Bearer {operator}") as client:
            response = await client.post("/api/v1/something/new", json={})
            assert response.status_code == 403
            assert response.json()["required_role"] == "admin"
        async with gateway.client(Authorization=f"Bearer {ADMIN_TOKEN}") as client:
            response = await client.post("/api/v1/something/new", json={})
            assert response.status_code == 200
            assert response.json()["service"] == "inventory"


def _all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        for value in node.values():
            found += _all_refs(value)
        return found
    if isinstance(node, list):
        return [ref for item in node for ref in _all_refs(item)]
    return []


async def test_the_merged_openapi_document(database_url: str) -> None:
    documents = {name: service_openapi(name) for name in SERVICES}
    stubs = {name: StubService(name, openapi=documents[name]) for name in SERVICES}
    apps = {name: stub.app for name, stub in stubs.items()}
    async with run_gateway(database_url, apps) as gateway, gateway.client() as client:
        response = await client.get("/openapi.json")
        assert response.status_code == 200
        merged = response.json()
        docs = await client.get("/docs")
        assert docs.status_code == 200 and "/openapi.json" in docs.text

    assert merged["openapi"].startswith("3.1")
    for name, document in documents.items():
        for path, item in document["paths"].items():
            for method in METHODS:
                if method in item:
                    assert method in merged["paths"][path], (name, method, path)
    assert "/api/v1/auth/whoami" in merged["paths"]
    assert "/api/v1/{path}" not in merged["paths"]
    assert merged["x-dynamo-services"]["inventory"]["available"] is True
    assert merged["x-dynamo-services"]["dealer"] == {"available": False, "reason": "not deployed"}

    # Every reference resolves, whatever was renamed to keep services' schemas apart.
    for ref in set(_all_refs(merged)):
        kind, name = ref.removeprefix("#/components/").split("/")
        assert name in merged["components"][kind], ref
    # Operation ids stay unique across services.
    ids = [
        op["operationId"]
        for item in merged["paths"].values()
        for method, op in item.items()
        if method in METHODS and "operationId" in op
    ]
    assert len(ids) == len(set(ids))
    sites = merged["paths"]["/api/v1/sites"]
    assert sites["get"]["security"][0] == {}
    assert sites["post"]["x-dynamo-min-role"] == "operator"
    assert "403" in sites["post"]["responses"] and "503" in sites["post"]["responses"]
    assert merged["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


async def test_the_merged_document_leaves_out_a_service_that_is_down(database_url: str) -> None:
    documents = {name: service_openapi(name) for name in ("inventory",)}
    apps = {"inventory": StubService("inventory", openapi=documents["inventory"]).app}
    async with (
        run_gateway(
            database_url, apps, transfer_url="http://127.0.0.1:9", consistency_url=""
        ) as gateway,
        gateway.client() as client,
    ):
        merged = (await client.get("/openapi.json")).json()
    assert "/api/v1/datasets" in merged["paths"]
    assert "/api/v1/transfers/summary" not in merged["paths"]
    assert merged["x-dynamo-services"]["transfer"]["available"] is False
    assert "transfer" in merged["info"]["description"]
