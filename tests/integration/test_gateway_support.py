"""Shared helpers of the gateway's integration tests (no tests here).

The gateway runs in-process against a throw-away PostgreSQL database. The services behind it
are either real (the inventory, in-process) or stubs that echo what reached them and serve a
real service's OpenAPI document; the gateway reaches in-process apps through ASGI transports
mounted on its one httpx client, and everything else (a closed port, a server that never
answers) over real sockets. An identity provider of the tests' own signs JWTs and serves its
JWKS in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import uvicorn
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ADMIN_TOKEN = "test-admin-" + "a" * 32
AUDIENCE = "dynamo-tests"
PROXY_ADDRESS = "10.0.0.5"
CLIENT_ADDRESS = "192.0.2.10"
ROLES = ("anonymous", "user", "operator", "admin")


# --------------------------------------------------------------------------- identity provider


class TestIssuer:
    """An OIDC issuer of the tests: signs tokens with its own RSA key, serves the JWKS."""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self, url: str = "http://idp.invalid", kid: str = "key-1") -> None:
        self.url = url
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwks_requests = 0
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/jwks", self._jwks),
            ]
        )

    async def _discovery(self, request: Request) -> JSONResponse:
        return JSONResponse({"issuer": self.url, "jwks_uri": f"{self.url}/jwks"})

    async def _jwks(self, request: Request) -> JSONResponse:
        self.jwks_requests += 1
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        public.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return JSONResponse({"keys": [public]})

    def config(self, **over: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "issuer": self.url,
            "audience": [AUDIENCE],
            "name": "idp",
            "roles_claim": "groups",
            "role_map": {"/dynamo/admins": "admin", "/dynamo/operators": "operator"},
        }
        values.update(over)
        return values

    def token(
        self, sub: str = "alice", *, key: Any = None, kid: str | None = None, **claims: Any
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.url,
            "sub": sub,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 600,
        }
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(
            payload, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid}
        )


# --------------------------------------------------------------------------- stub services


@dataclass
class StubService:
    """Answers every request with what reached it (method, path, query, headers, body) and
    serves ``openapi`` at /openapi.json."""

    name: str
    openapi: dict[str, Any] = field(default_factory=dict)
    seen: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app = Starlette(
            routes=[
                Route("/openapi.json", self._openapi),
                Route(
                    "/{path:path}",
                    self._echo,
                    methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                ),
            ]
        )

    async def _openapi(self, request: Request) -> JSONResponse:
        return JSONResponse(self.openapi or {"openapi": "3.1.0", "info": {}, "paths": {}})

    async def _echo(self, request: Request) -> Response:
        if request.url.path.endswith("/big-answer"):
            return Response(b"0123456789" * 300_000, media_type="application/octet-stream")
        if request.url.path.endswith("/streamed-answer"):

            async def pieces() -> AsyncIterator[bytes]:
                for index in range(50):
                    yield b'{"n": %d}\n' % index

            return StreamingResponse(pieces(), media_type="application/x-ndjson")
        body = await request.body()
        record = {
            "service": self.name,
            "method": request.method,
            "path": request.url.path,
            "raw_path": request.scope["raw_path"].decode(),
            "query": request.url.query,
            "headers": {k: v for k, v in request.headers.items()},
            "header_list": [(k.decode(), v.decode()) for k, v in request.scope["headers"]],
            "body": body.decode(errors="replace"),
        }
        self.seen.append(record)
        return JSONResponse(record, headers={"X-Stub": self.name})


def service_openapi(name: str) -> dict[str, Any]:
    """The real OpenAPI document of a service (made without starting it)."""
    if name == "inventory":
        from dynamo_inventory.app import create_app as inventory_app
        from dynamo_inventory.settings import InventorySettings

        return inventory_app(InventorySettings()).openapi()
    if name == "transfer":
        from dynamo_transfer.app import create_app as transfer_app
        from dynamo_transfer.settings import TransferSettings

        return transfer_app(TransferSettings()).openapi()
    if name == "consistency":
        from dynamo_consistency.app import create_app as consistency_app
        from dynamo_consistency.settings import ConsistencySettings

        return consistency_app(ConsistencySettings()).openapi()
    if name == "detox":
        from dynamo_detox.app import create_app as detox_app
        from dynamo_detox.settings import DetoxSettings

        return detox_app(DetoxSettings()).openapi()
    raise ValueError(name)


# --------------------------------------------------------------------------- the gateway


@dataclass
class RunningGateway:
    app: Any
    settings: Any
    transport_client: tuple[str, int]

    def client(self, address: str = CLIENT_ADDRESS, **headers: str) -> httpx.AsyncClient:
        """A client that reaches the gateway from ``address``."""
        transport = httpx.ASGITransport(app=self.app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://gateway", headers=headers)

    @property
    def runtime(self) -> Any:
        return self.app.state.gateway


def gateway_settings(database_url: str, **over: Any) -> Any:
    from dynamo_gateway.settings import GatewaySettings

    values: dict[str, Any] = {
        "database_url": database_url,
        "inventory_url": "http://127.0.0.1:9",
        "transfer_url": "",
        "consistency_url": "",
        "log_format": "console",
        "admin_token": ADMIN_TOKEN,
        "trusted_proxies": [f"{PROXY_ADDRESS}/32"],
        "connect_timeout": 1.0,
        "read_timeout": 5.0,
    }
    values.update(over)
    return GatewaySettings(**values)


@contextlib.asynccontextmanager
async def run_gateway(
    database_url: str,
    apps: Mapping[str, Any],
    *,
    issuer: TestIssuer | None = None,
    **over: Any,
) -> AsyncIterator[RunningGateway]:
    """The gateway in-process, with the services of ``apps`` (service name -> ASGI app, whose
    lifespan is already running or absent) each on a real uvicorn server on loopback, reached
    through the gateway's own HTTP client; ``issuer`` is served too and configured as the one
    accepted OIDC issuer. ``over`` overrides settings (a service URL pointing elsewhere)."""
    from dynamo_gateway.app import create_app

    async with contextlib.AsyncExitStack() as stack:
        values: dict[str, Any] = {"consistency_url": "", "transfer_url": "", "detox_url": ""}
        for name, app in apps.items():
            values[f"{name}_url"] = await stack.enter_async_context(serve(app, lifespan="off"))
        if issuer is not None:
            issuer.url = await stack.enter_async_context(serve(issuer.app, lifespan="off"))
            values["oidc_issuers"] = [issuer.config()]
        values.update(over)
        settings = gateway_settings(database_url, **values)
        app = create_app(settings)
        async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
            yield RunningGateway(app=manager.app, settings=settings, transport_client=("", 0))


async def make_account(
    gateway: RunningGateway, name: str, role: str, dns: list[str] | None = None
) -> str:
    """Create an account through the API (as the bootstrap admin); returns an API token."""
    async with gateway.client(Authorization=f"Bearer {ADMIN_TOKEN}") as admin:
        created = await admin.post(
            "/api/v1/auth/accounts", json={"name": name, "role": role, "dns": dns or []}
        )
        assert created.status_code == 201, created.text
        token = await admin.post(f"/api/v1/auth/accounts/{name}/tokens", json={})
        assert token.status_code == 201, token.text
        value: str = token.json()["token"]
        return value


# --------------------------------------------------------------------------- real sockets


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serve(app: Any, port: int | None = None, lifespan: str = "on") -> AsyncIterator[str]:
    """``app`` on a real uvicorn server on loopback, in this event loop; yields its URL.
    ``lifespan="off"`` for an app whose lifespan already runs (or that has none)."""
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan=lifespan
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            if time.monotonic() > deadline:
                raise TimeoutError("uvicorn did not start")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """A server that accepts connections and never answers: a hung service."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def stack_in_thread(
    database_url: str, run_stack: Callable[[str, queue.Queue[Any], threading.Event], None]
) -> Iterator[str]:
    """Run ``run_stack(database_url, ready, stop)`` in its own thread (its own event loop,
    so a synchronous client such as schemathesis can call it), wait for the URL it puts in
    ``ready`` (or the exception it failed with), and stop it at the end."""
    ready: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()
    thread = threading.Thread(target=run_stack, args=(database_url, ready, stop))
    thread.start()
    try:
        started = ready.get(timeout=120)
        if isinstance(started, BaseException):
            raise RuntimeError("the stack did not start") from started
        yield started
    finally:
        stop.set()
        thread.join(60)
