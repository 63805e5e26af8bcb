"""Sign-in at the gateway: OIDC tokens checked against the issuer's own keys, local API tokens
hashed at rest, certificate DNs believed only from a trusted proxy; and every refusal says why."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from dynamo_common.settings import to_asyncpg_dsn
from tests.integration.test_gateway_support import (
    ADMIN_TOKEN,
    CLIENT_ADDRESS,
    PROXY_ADDRESS,
    RunningGateway,
    StubService,
    TestIssuer,
    make_account,
    run_gateway,
)

PROBLEM = "application/problem+json"


@pytest.fixture
def issuer() -> TestIssuer:
    return TestIssuer()


@pytest.fixture
def stubs() -> dict[str, StubService]:
    return {name: StubService(name) for name in ("inventory", "transfer", "consistency")}


def _apps(stubs: dict[str, StubService]) -> dict[str, Any]:
    return {name: stub.app for name, stub in stubs.items()}


async def _whoami(gateway: RunningGateway, address: str = CLIENT_ADDRESS, **headers: str) -> Any:
    async with gateway.client(address, **headers) as client:
        return await client.get("/api/v1/auth/whoami")


def _refused(response: Any, words: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM
    assert words in response.json()["detail"], response.json()["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer")


# --------------------------------------------------------------------------- OIDC tokens


async def test_a_valid_token_signs_in_with_the_mapped_role(
    database_url: str, stubs: dict[str, StubService], issuer: TestIssuer
) -> None:
    async with run_gateway(database_url, _apps(stubs), issuer=issuer) as gateway:
        plain = await _whoami(gateway, Authorization=f"Bearer {issuer.token('alice')}")
        assert plain.status_code == 200, plain.text
        assert plain.json() | {"roles": None} == {
            "name": "idp:alice",
            "role": "user",
            "roles": None,
            "method": "jwt",
            "account": None,
            "detail": issuer.url,
            "public_reads": True,
        }
        boss = issuer.token("carol", groups=["/dynamo/users", "/dynamo/operators"])
        response = await _whoami(gateway, Authorization=f"Bearer {boss}")
        assert response.json()["role"] == "operator"

        # The operator's token goes through to a service, as them.
        async with gateway.client(Authorization=f"Bearer {boss}") as client:
            echo = (await client.post("/api/v1/transfers/held/release", json={})).json()
        assert echo["headers"]["x-dynamo-user"] == "idp:carol"
        assert echo["headers"]["x-dynamo-roles"] == "operator,user,anonymous"
        # The key set was fetched once (discovery, then JWKS) and reused.
        assert issuer.jwks_requests == 1


async def test_token_refusals_say_why(
    database_url: str, stubs: dict[str, StubService], issuer: TestIssuer
) -> None:
    other = TestIssuer(url="http://other-idp.test")
    async with run_gateway(database_url, _apps(stubs), issuer=issuer, jwt_leeway=5) as gateway:
        now = int(time.time())
        expired = issuer.token(exp=now - 60, iat=now - 700)
        _refused(await _whoami(gateway, Authorization=f"Bearer {expired}"), "expired")

        # Within the leeway, a just-expired token is still good (clock skew).
        just = issuer.token(exp=now - 2, iat=now - 600)
        assert (await _whoami(gateway, Authorization=f"Bearer {just}")).status_code == 200

        wrong_audience = issuer.token(aud="someone-else")
        _refused(await _whoami(gateway, Authorization=f"Bearer {wrong_audience}"), "audience")

        unknown_issuer = other.token()
        _refused(
            await _whoami(gateway, Authorization=f"Bearer {unknown_issuer}"),
            "not accepted",
        )

        # Signed by a key the issuer does not publish, under its key id: a forgery.
        forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = issuer.token("mallory", key=forger, groups=["/dynamo/admins"])
        _refused(await _whoami(gateway, Authorization=f"Bearer {forged}"), "invalid token")

        unknown_key = issuer.token(kid="key-2")
        _refused(await _whoami(gateway, Authorization=f"Bearer {unknown_key}"), "key-2")

        no_expiry = issuer.token(exp=None)
        _refused(await _whoami(gateway, Authorization=f"Bearer {no_expiry}"), "exp")

        _refused(await _whoami(gateway, Authorization="Bearer not-a-token"), "neither")
        _refused(await _whoami(gateway, Authorization="Basic dXNlcjpwYXNz"), "Bearer")

        # A refused token is never downgraded to anonymous, even for a public read.
        async with gateway.client(Authorization=f"Bearer {expired}") as client:
            response = await client.get("/api/v1/sites")
        assert response.status_code == 401
        assert stubs["inventory"].seen == []


async def test_rotated_keys_are_fetched_again(
    database_url: str, stubs: dict[str, StubService], issuer: TestIssuer
) -> None:
    async with run_gateway(
        database_url,
        _apps(stubs),
        issuer=issuer,
        jwks_min_refresh_seconds=0,
    ) as gateway:
        assert (await _whoami(gateway, Authorization=f"Bearer {issuer.token()}")).status_code == 200
        issuer.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        issuer.kid = "key-2"
        response = await _whoami(gateway, Authorization=f"Bearer {issuer.token()}")
        assert response.status_code == 200, response.text
        assert issuer.jwks_requests == 2


# --------------------------------------------------------------------------- local accounts


async def test_api_tokens_sign_in_and_are_hashed_at_rest(
    database_url: str, stubs: dict[str, StubService], issuer: TestIssuer
) -> None:
    async with run_gateway(database_url, _apps(stubs)) as gateway:
        token = await make_account(gateway, "svc-dealer", "operator")
        response = await _whoami(gateway, Authorization=f"Bearer {token}")
        assert response.status_code == 200
        assert response.json()["name"] == "svc-dealer"
        assert response.json()["role"] == "operator"
        assert response.json()["method"] == "token"

        key_id = token.split("_")[1]
        secret = token.split("_", 2)[2]
        conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
        try:
            stored = await conn.fetchrow("SELECT * FROM gateway.tokens WHERE id = $1", key_id)
        finally:
            await conn.close()
        assert stored is not None
        assert secret not in stored["hash"] and token not in stored["hash"]
        assert stored["hash"].startswith("scrypt$")

        # A token that differs in its secret only is refused.
        wrong = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
        _refused(await _whoami(gateway, Authorization=f"Bearer {wrong}"), "unknown or revoked")
        _refused(await _whoami(gateway, Authorization="Bearer dyn_nothing"), "malformed")

        # A user makes a token of their own, lists it, revokes it; it stops working at once.
        async with gateway.client(Authorization=f"Bearer {token}") as client:
            made = await client.post("/api/v1/auth/tokens", json={"description": "laptop"})
            assert made.status_code == 201, made.text
            second = made.json()["token"]
            listed = (await client.get("/api/v1/auth/tokens")).json()
            assert {t["description"] for t in listed} == {"", "laptop"}
            assert all("token" not in t and "hash" not in t for t in listed)
        assert (await _whoami(gateway, Authorization=f"Bearer {second}")).status_code == 200
        async with gateway.client(Authorization=f"Bearer {token}") as client:
            gone = await client.delete(f"/api/v1/auth/tokens/{made.json()['id']}")
            assert gone.status_code == 204
        _refused(await _whoami(gateway, Authorization=f"Bearer {second}"), "unknown or revoked")


async def test_a_new_token_used_by_many_connections_at_once_is_hashed_once(
    database_url: str, stubs: dict[str, StubService], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dynamo_gateway.auth

    calls: list[str] = []
    real = dynamo_gateway.auth.verify_secret

    def counting(secret: str, hashed: str) -> bool:
        calls.append(secret)
        return real(secret, hashed)

    monkeypatch.setattr(dynamo_gateway.auth, "verify_secret", counting)
    async with run_gateway(database_url, _apps(stubs)) as gateway:
        token = await make_account(gateway, "burst", "user")
        responses = await asyncio.gather(
            *(_whoami(gateway, Authorization=f"Bearer {token}") for _ in range(20))
        )
        assert {r.json()["name"] for r in responses} == {"burst"}
        assert len(calls) == 1


async def test_disabled_accounts_expired_tokens_and_other_peoples_tokens(
    database_url: str, stubs: dict[str, StubService], issuer: TestIssuer
) -> None:
    async with run_gateway(database_url, _apps(stubs)) as gateway:
        alice = await make_account(gateway, "alice", "user")
        bob = await make_account(gateway, "bob", "user")
        async with gateway.client(Authorization=f"Bearer {bob}") as client:
            bobs = (await client.get("/api/v1/auth/tokens")).json()
        async with gateway.client(Authorization=f"Bearer {alice}") as client:
            # Bob's token is not Alice's to revoke, nor to learn about.
            response = await client.delete(f"/api/v1/auth/tokens/{bobs[0]['id']}")
            assert response.status_code == 404
            # Users cannot make accounts.
            response = await client.post("/api/v1/auth/accounts", json={"name": "eve"})
            assert response.status_code == 403
            assert response.json()["required_role"] == "admin"

        async with gateway.client(Authorization=f"Bearer {ADMIN_TOKEN}") as admin:
            response = await admin.patch("/api/v1/auth/accounts/bob", json={"disabled": True})
            assert response.status_code == 200
            assert response.json()["disabled"] is True
        _refused(await _whoami(gateway, Authorization=f"Bearer {bob}"), "disabled")

        async with gateway.client(Authorization=f"Bearer {alice}") as client:
            made = await client.post("/api/v1/auth/tokens", json={"expires_in_days": 1})
        short = made.json()["token"]
        conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
        try:
            await conn.execute(
                "UPDATE gateway.tokens SET expires = now() - interval '1 minute' WHERE id = $1",
                made.json()["id"],
            )
        finally:
            await conn.close()
        _refused(await _whoami(gateway, Authorization=f"Bearer {short}"), "expired")


async def test_the_bootstrap_admin_token(
    database_url: str, stubs: dict[str, StubService], issuer: TestIssuer
) -> None:
    async with run_gateway(database_url, _apps(stubs)) as gateway:
        response = await _whoami(gateway, Authorization=f"Bearer {ADMIN_TOKEN}")
        assert response.json()["role"] == "admin"
        assert response.json()["method"] == "bootstrap"
        _refused(await _whoami(gateway, Authorization=f"Bearer {ADMIN_TOKEN}x"), "neither")


async def test_a_bootstrap_token_is_made_once_in_a_private_file(
    database_url: str, stubs: dict[str, StubService], issuer: TestIssuer, tmp_path: Any
) -> None:
    path = tmp_path / "admin-token"
    async with run_gateway(
        database_url, _apps(stubs), admin_token="", admin_token_file=path
    ) as gateway:
        token = path.read_text().strip()
        assert path.stat().st_mode & 0o777 == 0o600
        assert (await _whoami(gateway, Authorization=f"Bearer {token}")).json()["role"] == "admin"
    async with run_gateway(
        database_url, _apps(stubs), admin_token="", admin_token_file=path
    ) as gateway:
        assert path.read_text().strip() == token
        assert (await _whoami(gateway, Authorization=f"Bearer {token}")).json()["role"] == "admin"


# --------------------------------------------------------------------------- certificates


USER_DN = "/DC=org/DC=example/OU=People/CN=Jane Doe"
RFC2253_DN = "CN=Jane Doe,OU=People,DC=example,DC=org"


async def test_a_dn_from_a_trusted_proxy_signs_in_and_proxies_map_to_their_owner(
    database_url: str, stubs: dict[str, StubService], issuer: TestIssuer
) -> None:
    async with run_gateway(database_url, _apps(stubs)) as gateway:
        await make_account(gateway, "jane", "operator", dns=[USER_DN])
        for dn in (
            USER_DN,
            RFC2253_DN,
            USER_DN + "/CN=1234567890",
            USER_DN + "/CN=proxy/CN=proxy",
            "CN=987654,CN=limited proxy," + RFC2253_DN,
        ):
            response = await _whoami(
                gateway,
                PROXY_ADDRESS,
                **{"X-SSL-Client-S-DN": dn, "X-SSL-Client-Verify": "SUCCESS"},
            )
            assert response.status_code == 200, (dn, response.text)
            body = response.json()
            assert (body["name"], body["role"], body["method"]) == ("jane", "operator", "x509")
            assert body["detail"] == USER_DN

        async with gateway.client(PROXY_ADDRESS, **{"X-SSL-Client-S-DN": USER_DN}) as client:
            echo = (await client.post("/api/v1/sites", json={})).json()
        assert echo["headers"]["x-dynamo-user"] == "jane"
        assert "x-ssl-client-s-dn" not in echo["headers"]


async def test_dn_refusals(
    database_url: str, stubs: dict[str, StubService], issuer: TestIssuer
) -> None:
    async with run_gateway(database_url, _apps(stubs)) as gateway:
        await make_account(gateway, "jane", "operator", dns=[USER_DN])
        # The same header from anywhere but the trusted proxy is refused, not believed.
        response = await _whoami(gateway, CLIENT_ADDRESS, **{"X-SSL-Client-S-DN": USER_DN})
        _refused(response, "not a trusted proxy")
        async with gateway.client(CLIENT_ADDRESS, **{"X-SSL-Client-S-DN": USER_DN}) as client:
            assert (await client.post("/api/v1/sites", json={})).status_code == 401
        assert stubs["inventory"].seen == []

        unknown = "/DC=org/DC=example/OU=People/CN=Someone Else"
        _refused(
            await _whoami(gateway, PROXY_ADDRESS, **{"X-SSL-Client-S-DN": unknown}),
            "no account",
        )
        _refused(
            await _whoami(
                gateway,
                PROXY_ADDRESS,
                **{"X-SSL-Client-S-DN": USER_DN, "X-SSL-Client-Verify": "FAILED:expired"},
            ),
            "could not verify",
        )
        _refused(
            await _whoami(gateway, PROXY_ADDRESS, **{"X-SSL-Client-S-DN": "/CN=proxy"}),
            "no owner",
        )
        # No certificate at all (the proxy sends an empty header): anonymous.
        response = await _whoami(gateway, PROXY_ADDRESS, **{"X-SSL-Client-S-DN": ""})
        assert response.json()["method"] == "anonymous"

        # Unmapped, the DN no longer signs in (cached identities are dropped).
        async with gateway.client(Authorization=f"Bearer {ADMIN_TOKEN}") as admin:
            response = await admin.post(
                "/api/v1/auth/accounts/jane/dns/delete", json={"dns": [RFC2253_DN]}
            )
            assert response.json() == {"account": "jane", "dns": []}
        _refused(
            await _whoami(gateway, PROXY_ADDRESS, **{"X-SSL-Client-S-DN": USER_DN}), "no account"
        )


async def test_a_dn_maps_to_one_account_only(
    database_url: str, stubs: dict[str, StubService], issuer: TestIssuer
) -> None:
    async with run_gateway(database_url, _apps(stubs)) as gateway:
        await make_account(gateway, "jane", "user", dns=[USER_DN])
        await make_account(gateway, "joe", "user")
        async with gateway.client(Authorization=f"Bearer {ADMIN_TOKEN}") as admin:
            response = await admin.post(
                "/api/v1/auth/accounts/joe/dns", json={"dns": [RFC2253_DN, "/CN=joe"]}
            )
            assert response.status_code == 409
            assert response.json()["dns"] == [USER_DN]
            joe = (await admin.get("/api/v1/auth/accounts/joe")).json()
            assert joe["dns"] == []  # nothing of a refused request is kept
            response = await admin.post("/api/v1/auth/accounts/joe/dns", json={"dns": ["junk"]})
            assert response.status_code == 422


async def test_reads_need_sign_in_when_public_reads_is_off(
    database_url: str, stubs: dict[str, StubService], issuer: TestIssuer
) -> None:
    async with run_gateway(database_url, _apps(stubs), public_reads=False) as gateway:
        token = await make_account(gateway, "reader", "user")
        async with gateway.client() as anonymous:
            response = await anonymous.get("/api/v1/datasets")
            assert response.status_code == 401
            assert response.json()["required_role"] == "user"
            # whoami stays open: it is how a client learns it must sign in.
            assert (await anonymous.get("/api/v1/auth/whoami")).json()["public_reads"] is False
        async with gateway.client(Authorization=f"Bearer {token}") as client:
            assert (await client.get("/api/v1/datasets")).status_code == 200
