"""The gateway's pure parts: permission table, routing, DNs, token hashing, OpenAPI merging."""

from __future__ import annotations

from typing import Any

import pytest

from dynamo_gateway.service import tokens
from dynamo_gateway.service.dn import DnError, normalise_dn, parse_dn
from dynamo_gateway.service.openapi import merge_documents
from dynamo_gateway.service.permissions import (
    PERMISSIONS,
    READ,
    PermissionTable,
    compile_pattern,
)
from dynamo_gateway.service.roles import Role
from dynamo_gateway.service.routing import RouteTable

# --------------------------------------------------------------------------- permissions


def test_patterns_match_one_segment_or_the_rest() -> None:
    one = compile_pattern("/api/v1/sites/{name}")
    assert one.match("/api/v1/sites/T2_A")
    assert not one.match("/api/v1/sites/T2_A/replicas")
    assert not one.match("/api/v1/sites/")
    rest = compile_pattern("/api/v1/{path:path}")
    assert rest.match("/api/v1/a/b/c")
    assert not rest.match("/api/v2/a")
    literal = compile_pattern("/api/v1/files.remove")
    assert not literal.match("/api/v1/filesXremove")


def test_reads_follow_public_reads_and_unlisted_writes_are_for_admins() -> None:
    public = PermissionTable(public_reads=True)
    private = PermissionTable(public_reads=False)
    assert public.decide("GET", "/api/v1/datasets").need == Role.ANONYMOUS
    assert private.decide("GET", "/api/v1/datasets").need == Role.USER
    assert public.decide("HEAD", "/api/v1/datasets").need == Role.ANONYMOUS
    decision = public.decide("POST", "/api/v1/no/such/thing")
    assert decision.need == Role.ADMIN and not decision.explicit
    assert public.decide("DELETE", "/api/v1/datasets").need == Role.ADMIN
    # Admin-only reads of the gateway are not opened by the catch-all read rule.
    assert public.decide("GET", "/api/v1/auth/accounts").need == Role.ADMIN
    assert public.decide("get", "/api/v1/auth/whoami").need == Role.ANONYMOUS


def test_roles_are_ordered_and_granted_downwards() -> None:
    assert Role.ADMIN > Role.OPERATOR > Role.USER > Role.ANONYMOUS
    assert Role.OPERATOR.granted() == ["operator", "user", "anonymous"]
    assert Role.parse(" Admin ") == Role.ADMIN
    with pytest.raises(ValueError, match="unknown role"):
        Role.parse("root")


def test_no_rule_is_shadowed_by_an_earlier_one() -> None:
    table = PermissionTable(public_reads=True)
    for rule in PERMISSIONS:
        example = rule.pattern.replace("{path:path}", "a/b").replace("{", "").replace("}", "")
        for method in rule.methods:
            assert table.decide(method, example).rule is rule, (method, rule.pattern)
    assert all(rule.need == READ or isinstance(rule.need, Role) for rule in PERMISSIONS)


# --------------------------------------------------------------------------- routing


def test_longest_prefix_on_whole_segments_and_default() -> None:
    table = RouteTable(
        {"/api/v1/transfers": "transfer", "/api/v1/transfers/special": "other"}, "inventory"
    )
    assert table.service_for("/api/v1/transfers") == "transfer"
    assert table.service_for("/api/v1/transfers/held") == "transfer"
    assert table.service_for("/api/v1/transfers/special/x") == "other"
    assert table.service_for("/api/v1/transfersX") == "inventory"
    assert table.service_for("/api/v1/sites") == "inventory"
    assert table.services() == ["inventory", "other", "transfer"]
    with pytest.raises(ValueError):
        RouteTable({"/api/v1/x/": "x"}, "inventory")


# --------------------------------------------------------------------------- DNs


@pytest.mark.parametrize(
    "given",
    [
        "/DC=ch/DC=cern/OU=Users/CN=jdoe/CN=123456/CN=John Doe",
        "CN=John Doe,CN=123456,CN=jdoe,OU=Users,DC=cern,DC=ch",
        "/DC=ch/DC=cern/OU=Users/CN=jdoe/CN=123456/CN=John Doe/CN=2093810212",
        "/DC=ch/DC=cern/OU=Users/CN=jdoe/CN=123456/CN=John Doe/CN=proxy/CN=proxy",
        "CN=limited proxy,CN=John Doe,CN=123456,CN=jdoe,OU=Users,DC=cern,DC=ch",
    ],
)
def test_dn_forms_and_proxies_normalise_to_the_owner(given: str) -> None:
    # The CN=123456 in the middle is CERN's account number, not a proxy: it stays.
    assert normalise_dn(given) == "/DC=ch/DC=cern/OU=Users/CN=jdoe/CN=123456/CN=John Doe"


def test_rfc2253_escapes() -> None:
    assert parse_dn(r"CN=Doe\, Jane,O=Caf\C3\A9,C=FR") == ["C=FR", "O=Café", "CN=Doe, Jane"]
    assert normalise_dn(r"CN=a\+b,O=x") == "/O=x/CN=a+b"


@pytest.mark.parametrize("bad", ["", "   ", "/CN=proxy", "/justtext", "CN=,O=x", r"CN=\FF,O=x"])
def test_unusable_dns_are_refused(bad: str) -> None:
    with pytest.raises(DnError):
        normalise_dn(bad)


# --------------------------------------------------------------------------- tokens


def test_tokens_are_hashed_with_salt_and_verified_in_constant_time() -> None:
    made = tokens.new_token(n=2**10)
    key_id, secret = tokens.split_token(made.token) or ("", "")
    assert key_id == made.key_id
    assert secret not in made.hashed
    assert tokens.verify_secret(secret, made.hashed)
    assert not tokens.verify_secret(secret + "x", made.hashed)
    # The same secret hashes differently each time (salt).
    assert tokens.hash_secret(secret, n=2**10) != tokens.hash_secret(secret, n=2**10)
    assert not tokens.verify_secret(secret, "md5$whatever")
    assert not tokens.verify_secret(secret, "scrypt$bad")
    assert tokens.split_token("dyn_short_x") is None
    assert tokens.looks_like_token(made.token)
    assert tokens.cache_key(made.token) != made.token


# --------------------------------------------------------------------------- OpenAPI


def _doc(paths: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    return {"openapi": "3.1.0", "info": {}, "paths": paths, "components": {"schemas": schemas}}


def _op(ref: str, operation_id: str) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "tags": ["t"],
        "responses": {"200": {"content": {"application/json": {"schema": {"$ref": ref}}}}},
    }


def test_merge_renames_conflicting_schemas_and_keeps_shared_ones() -> None:
    shared = {"type": "object", "title": "Shared"}
    inventory = _doc(
        {"/api/v1/sites": {"get": _op("#/components/schemas/Page", "list")}},
        {"Page": {"type": "object", "title": "inventory page"}, "Shared": shared},
    )
    transfer = _doc(
        {
            "/api/v1/transfers/held": {"get": _op("#/components/schemas/Page", "list")},
            # Not the transfer service's to describe: the route table sends it elsewhere.
            "/api/v1/sites/{name}": {"get": _op("#/components/schemas/Shared", "x")},
        },
        {"Page": {"type": "object", "title": "transfer page"}, "Shared": shared},
    )
    routes = RouteTable({"/api/v1/transfers": "transfer"}, "inventory")
    merged = merge_documents(
        _doc({}, {}),
        {"inventory": inventory, "transfer": transfer},
        service_for=lambda p: "gateway" if p.startswith("/api/v1/auth") else routes.service_for(p),
        own_service="gateway",
        permissions=PermissionTable(public_reads=True),
        unavailable={"detox": "not deployed"},
    )
    schemas = merged["components"]["schemas"]
    assert schemas["Page"]["title"] == "inventory page"
    assert schemas["TransferPage"]["title"] == "transfer page"
    assert "TransferShared" not in schemas
    held = merged["paths"]["/api/v1/transfers/held"]["get"]
    assert held["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] == (
        "#/components/schemas/TransferPage"
    )
    assert held["operationId"] == "transfer_list"
    assert "/api/v1/sites/{name}" not in merged["paths"]
    assert merged["x-dynamo-services"]["detox"]["available"] is False
    assert held["x-dynamo-min-role"] == "anonymous"
