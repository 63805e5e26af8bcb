"""Who is calling: bearer tokens (OIDC JWTs, local API tokens, the bootstrap admin token) and
certificate DNs passed by a trusted TLS proxy.

Credentials that are present but wrong are refused (401), never downgraded to anonymous: a
script with an expired token must learn so, not silently lose its rights.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import asyncpg
import httpx
import jwt

from dynamo_gateway.repository import accounts as repo
from dynamo_gateway.service.dn import DnError, normalise_dn
from dynamo_gateway.service.roles import ANONYMOUS, Identity, Role
from dynamo_gateway.service.tokens import cache_key, looks_like_token, split_token, verify_secret
from dynamo_gateway.settings import GatewaySettings, OidcIssuer

log = logging.getLogger("dynamo.gateway.auth")

BOOTSTRAP_ACCOUNT = "admin"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AuthError(Exception):
    """Credentials were presented and refused (401)."""

    def __init__(self, detail: str, *, code: str = "invalid_token") -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code

    @property
    def www_authenticate(self) -> str:
        # RFC 6750 §3: tells a client that its bearer token, not its request, is the problem.
        description = self.detail.replace('"', "'")
        return f'Bearer error="{self.code}", error_description="{description}"'


# --------------------------------------------------------------------------- JWKS


@dataclass(slots=True)
class _KeySet:
    keys: jwt.PyJWKSet | None
    fetched: float


class JwksCache:
    """Each issuer's signing keys, fetched with the gateway's async client (PyJWKClient would
    block the event loop with urllib), kept ``ttl`` seconds, and refetched early when a token
    names a key id the set lacks (key rotation), at most every ``min_refresh`` seconds."""

    def __init__(
        self, http: httpx.AsyncClient, *, ttl: float, min_refresh: float, timeout: float = 5.0
    ) -> None:
        self._http = http
        self._ttl = ttl
        self._min_refresh = min_refresh
        self._timeout = timeout
        self._sets: dict[str, _KeySet] = {}
        self._jwks_urls: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def key(self, issuer: OidcIssuer, kid: str | None) -> jwt.PyJWK:
        entry = self._sets.get(issuer.issuer)
        now = time.monotonic()
        if entry is None or now - entry.fetched > self._ttl:
            entry = await self._refresh(issuer, entry)
        found = _find(entry.keys, kid)
        if found is None and time.monotonic() - entry.fetched >= self._min_refresh:
            entry = await self._refresh(issuer, entry, force=True)
            found = _find(entry.keys, kid)
        if found is None:
            raise AuthError(f"no key {kid!r} in the key set of {issuer.issuer}")
        return found

    async def _refresh(
        self, issuer: OidcIssuer, seen: _KeySet | None, *, force: bool = False
    ) -> _KeySet:
        lock = self._locks.setdefault(issuer.issuer, asyncio.Lock())
        async with lock:
            current = self._sets.get(issuer.issuer)
            if current is not None and current is not seen:
                return current  # another request refreshed it meanwhile
            try:
                keys = jwt.PyJWKSet.from_dict(await self._fetch(issuer))
            except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
                log.warning("cannot fetch the keys of %s: %r", issuer.issuer, exc)
                if current is not None and current.keys is not None and not force:
                    return current  # an identity provider hiccup must not lock everyone out
                # Remember the failure too, so that a dead issuer is not asked on every request.
                entry = _KeySet(keys=current.keys if current else None, fetched=time.monotonic())
                self._sets[issuer.issuer] = entry
                if entry.keys is None:
                    raise AuthError(
                        f"the keys of issuer {issuer.issuer} cannot be fetched",
                        code="invalid_token",
                    ) from None
                return entry
            entry = _KeySet(keys=keys, fetched=time.monotonic())
            self._sets[issuer.issuer] = entry
            return entry

    async def _fetch(self, issuer: OidcIssuer) -> dict[str, Any]:
        url = issuer.jwks_url or self._jwks_urls.get(issuer.issuer)
        if not url:
            discovery = issuer.issuer.rstrip("/") + "/.well-known/openid-configuration"
            response = await self._http.get(discovery, timeout=self._timeout)
            response.raise_for_status()
            url = str(response.json()["jwks_uri"])
            self._jwks_urls[issuer.issuer] = url
        response = await self._http.get(url, timeout=self._timeout)
        response.raise_for_status()
        data = response.json()
        if not isinstance(data, dict):
            raise ValueError("a JWKS document must be a JSON object")
        return data


def _find(keys: jwt.PyJWKSet | None, kid: str | None) -> jwt.PyJWK | None:
    if keys is None:
        return None
    if kid is None:
        # Providers with a single key may leave kid out; with several, guessing is unsafe.
        return keys.keys[0] if len(keys.keys) == 1 else None
    for key in keys.keys:
        if key.key_id == kid:
            return key
    return None


# --------------------------------------------------------------------------- identities


def _user_name(issuer: OidcIssuer, claims: dict[str, Any]) -> str:
    value = claims.get(issuer.username_claim)
    if not isinstance(value, str) or not value:
        raise AuthError(f"the token has no {issuer.username_claim!r} claim")
    prefix = issuer.name or urlsplit(issuer.issuer).hostname or issuer.issuer
    return f"{prefix}:{value}"


def _role_of(issuer: OidcIssuer, claims: dict[str, Any]) -> Role:
    raw = claims.get(issuer.roles_claim)
    values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    roles = [
        Role.parse(issuer.role_map[v])
        for v in values
        if isinstance(v, str) and v in issuer.role_map
    ]
    return max(roles) if roles else Role.parse(issuer.default_role)


def header_safe(text: str) -> str:
    """A value that survives an HTTP header (latin-1, no control characters): names from
    tokens and DNs may hold anything; non-ASCII is percent-encoded."""
    return quote(text, safe=" !#$&'()*+,-./:;<=>?@[]^_`{|}~")


@dataclass(slots=True)
class _Cached:
    identity: Identity
    until: float


class Authenticator:
    def __init__(
        self,
        settings: GatewaySettings,
        http: httpx.AsyncClient,
        pool: Callable[[], asyncpg.Pool],
        *,
        bootstrap_token: str,
    ) -> None:
        self.settings = settings
        self._pool = pool
        self._issuers = {i.issuer: i for i in settings.oidc_issuers}
        self._jwks = JwksCache(
            http, ttl=settings.jwks_cache_seconds, min_refresh=settings.jwks_min_refresh_seconds
        )
        self._trusted: Sequence[Network] = [
            ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies
        ]
        self._dn_header = settings.client_dn_header.lower().encode("latin-1")
        self._verify_header = settings.client_verify_header.lower().encode("latin-1")
        self._bootstrap = (
            hashlib.sha256(bootstrap_token.encode()).digest() if bootstrap_token else None
        )
        self._cache: dict[str, _Cached] = {}
        self._cache_seconds = settings.token_cache_seconds
        # One verification per token at a time: a script opening a hundred connections with
        # the same new token waits for one scrypt, not a hundred.
        self._verifying: dict[str, asyncio.Future[Identity]] = {}
        # scrypt runs in worker threads; bounded so that a flood of wrong secrets cannot take
        # every thread (and the CPUs) from the requests the gateway has to forward.
        self._hashing = asyncio.Semaphore(2)
        # Bumped by forget_tokens(): a verification that started before a revocation must not
        # put the revoked identity back into the cache.
        self._generation = 0

    # ---- the entry point

    async def identify(
        self, headers: Sequence[tuple[bytes, bytes]], client: tuple[str, int] | None
    ) -> Identity:
        authorization: bytes | None = None
        dn: bytes | None = None
        verify: bytes | None = None
        for name, value in headers:
            if name == b"authorization":
                authorization = value
            elif name == self._dn_header:
                dn = value
            elif name == self._verify_header:
                verify = value
        if authorization is not None:
            return await self._bearer(authorization.decode("latin-1"))
        if dn is not None and dn.strip():
            return await self._certificate(dn, verify, client)
        return ANONYMOUS

    # ---- bearer tokens

    async def _bearer(self, header: str) -> Identity:
        scheme, _, credentials = header.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            raise AuthError(
                "the Authorization header must be 'Bearer <token>'", code="invalid_request"
            )
        key = cache_key(credentials)
        cached = self._cache.get(key)
        if cached is not None and cached.until > time.monotonic():
            return cached.identity
        if self._bootstrap is not None and hmac.compare_digest(
            hashlib.sha256(credentials.encode()).digest(), self._bootstrap
        ):
            return Identity(name=BOOTSTRAP_ACCOUNT, role=Role.ADMIN, method="bootstrap")
        if looks_like_token(credentials):
            pending = self._verifying.get(key)
            if pending is None:
                pending = asyncio.ensure_future(self._verify_api_token(key, credentials))
                self._verifying[key] = pending
                pending.add_done_callback(lambda done: self._settled(key, done))
            # shield: a caller that goes away must not cancel the others' verification.
            return await asyncio.shield(pending)
        return await self._jwt(credentials)

    def _settled(self, key: str, done: asyncio.Future[Identity]) -> None:
        self._verifying.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved here: every waiter may have gone

    async def _verify_api_token(self, key: str, token: str) -> Identity:
        generation = self._generation
        identity, until = await self._api_token(token)
        if generation == self._generation:
            self._remember(key, identity, until)
        return identity

    def _remember(self, key: str, identity: Identity, until: float) -> None:
        if self._cache_seconds <= 0:
            return
        if len(self._cache) > 10_000:
            now = time.monotonic()
            self._cache = {k: v for k, v in self._cache.items() if v.until > now}
        self._cache[key] = _Cached(identity, until)

    def forget_tokens(self) -> None:
        """Drop every cached verification (after a token or account changed)."""
        self._generation += 1
        self._cache.clear()

    async def _api_token(self, token: str) -> tuple[Identity, float]:
        parts = split_token(token)
        if parts is None:
            raise AuthError("malformed API token")
        key_id, secret = parts
        async with self._pool().acquire() as conn:
            row = await repo.get_token(conn, key_id)
        # Unknown key ids are refused before any hashing: garbage tokens cost no CPU.
        if row is None:
            raise AuthError("unknown or revoked API token")
        async with self._hashing:
            valid = await asyncio.to_thread(verify_secret, secret, row.hash)
        if not valid:
            raise AuthError("unknown or revoked API token")
        now = datetime.now(UTC)
        if row.expires is not None and row.expires <= now:
            raise AuthError("the API token has expired")
        if row.disabled:
            raise AuthError(f"the account {row.account!r} is disabled")
        until = time.monotonic() + self._cache_seconds
        if row.expires is not None:
            until = min(until, time.monotonic() + (row.expires - now).total_seconds())
        identity = Identity(
            name=row.account, role=Role.parse(row.role), method="token", account_id=row.account_id
        )
        return identity, until

    async def _jwt(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError("the bearer token is neither an API token nor a JWT") from None
        issuer = self._issuers.get(str(unverified.get("iss")))
        if issuer is None:
            raise AuthError(f"tokens of issuer {unverified.get('iss')!r} are not accepted")
        kid = header.get("kid")
        key = await self._jwks.key(issuer, kid if isinstance(kid, str) else None)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=issuer.algorithms,
                audience=issuer.audience,
                issuer=issuer.issuer,
                leeway=self.settings.jwt_leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError(
                f"the token is not meant for this service (audience must be one of "
                f"{', '.join(issuer.audience)})"
            ) from None
        except jwt.ImmatureSignatureError:
            raise AuthError("the token is not valid yet") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        return Identity(
            name=_user_name(issuer, claims),
            role=_role_of(issuer, claims),
            method="jwt",
            detail=issuer.issuer,
        )

    # ---- certificates through a trusted proxy

    def trusted(self, client: tuple[str, int] | None) -> bool:
        if client is None or not self._trusted:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        return any(address in network for network in self._trusted)

    async def _certificate(
        self, raw_dn: bytes, verify: bytes | None, client: tuple[str, int] | None
    ) -> Identity:
        if not self.trusted(client):
            # Anyone can write a header: only the TLS proxy that checked the certificate may.
            raise AuthError(
                f"a client DN header from {client[0] if client else 'an unknown address'}, "
                "which is not a trusted proxy",
                code="invalid_request",
            )
        if verify is not None and verify.strip().upper() != b"SUCCESS":
            raise AuthError(
                f"the proxy could not verify the client certificate: {verify.decode('latin-1')}"
            )
        try:
            dn = normalise_dn(raw_dn.decode("utf-8"))
        except (DnError, UnicodeDecodeError) as exc:
            raise AuthError(f"unusable client DN: {exc}") from None
        key = "dn:" + dn
        cached = self._cache.get(key)
        if cached is not None and cached.until > time.monotonic():
            return cached.identity
        async with self._pool().acquire() as conn:
            account = await repo.account_of_dn(conn, dn)
        if account is None:
            raise AuthError(f"no account for the certificate DN {dn}")
        if account.disabled:
            raise AuthError(f"the account {account.name!r} is disabled")
        identity = Identity(
            name=account.name,
            role=Role.parse(account.role),
            method="x509",
            account_id=account.id,
            detail=dn,
        )
        self._remember(key, identity, time.monotonic() + self._cache_seconds)
        return identity
