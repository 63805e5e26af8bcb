"""Forwarding a request to the service that answers it, with one pooled httpx client.

A service that is down or slow is the gateway's problem to explain, never a 500 or a hang:
a refused or timed-out connection is a 503, no answer in time a 504, a broken answer a 502,
each an ``application/problem+json`` document naming the service.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Final

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dynamo_common.app import ProblemError
from dynamo_gateway.auth import header_safe
from dynamo_gateway.service.roles import Identity

log = logging.getLogger("dynamo.gateway.forward")

# Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection, not to the message.
_HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
IDENTITY_HEADERS: Final = (b"x-dynamo-user", b"x-dynamo-roles", b"x-dynamo-auth")
# Never passed on to a service: the client's credentials (services trust the gateway's
# identity headers instead), and anything a client could forge to pose as someone else.
_REQUEST_DROP: Final = _HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"authorization",
    b"cookie",
    b"x-request-id",
    b"x-forwarded-for",
    b"x-forwarded-host",
    b"x-forwarded-proto",
    *IDENTITY_HEADERS,
}
# uvicorn adds its own date and server headers; the service's would be duplicates.
_RESPONSE_DROP: Final = _HOP_BY_HOP | {b"date", b"server", b"content-length"}
BUFFER_LIMIT: Final = 1024 * 1024
"""Answers up to this size are read whole (one ASGI message, cheaper); larger ones and those
of unknown size (the NDJSON snapshot) are streamed."""


class Forwarder:
    def __init__(
        self,
        client: httpx.AsyncClient,
        services: Mapping[str, str],
        *,
        max_body_bytes: int,
        max_in_flight: int = 32,
        slot_timeout: float = 5.0,
        drop_headers: frozenset[bytes] = frozenset(),
    ) -> None:
        self.client = client
        self.services = dict(services)
        self.max_body_bytes = max_body_bytes
        self.slot_timeout = slot_timeout
        self._drop = _REQUEST_DROP | drop_headers
        # Requests in flight per service. httpcore's pool scans every waiting request against
        # every connection whenever one is freed (quadratic): with a hundred requests waiting
        # it spends more time there than forwarding. An asyncio.Semaphore queues them for
        # free instead, and a service that hangs only ties up its own slots.
        self._slots = {name: asyncio.Semaphore(max_in_flight) for name in self.services}
        self._extensions = {"timeout": client.timeout.as_dict()}
        self._bases = {name: _base(url) for name, url in self.services.items()}

    async def forward(
        self, request: Request, service: str, identity: Identity, request_id: str | None
    ) -> Response:
        base = self.services.get(service)
        if base is None:
            raise ProblemError(
                503,
                f"the {service} service is not deployed behind this gateway",
                title="Service Not Deployed",
                extensions={"service": service},
            )
        scope = request.scope
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        base_url, prefix = self._bases[service]
        headers = self._request_headers(scope, identity, request_id)
        body = await self._body(request)
        # A Request of its own rather than client.build_request: the client's default headers
        # (Accept-Encoding, User-Agent, ...) are not the caller's and must not be added. The
        # URL is the service's, parsed once; the path travels as the raw request target (the
        # "target" extension, which httpcore transports read too), exactly as the caller
        # encoded it, without httpx parsing and re-quoting it on every request.
        upstream = httpx.Request(
            request.method,
            base_url,
            headers=headers,
            content=body,
            extensions={
                **self._extensions,
                "target": prefix + raw_path + (b"?" + query if query else b""),
            },
        )
        slot = self._slots[service]
        if slot.locked():
            try:
                async with asyncio.timeout(self.slot_timeout):
                    await slot.acquire()
            except TimeoutError:
                raise _busy(service) from None
        else:
            await slot.acquire()  # a free slot: returns at once
        try:
            response = await self.client.send(upstream, stream=True)
        except BaseException as exc:
            slot.release()
            if isinstance(exc, httpx.TransportError):
                raise _unavailable(service, base, exc) from None
            raise
        return await self._relay(_Lease(response, slot), service, base)

    def _request_headers(
        self, scope: Mapping[str, object], identity: Identity, request_id: str | None
    ) -> list[tuple[bytes, bytes]]:
        drop = self._drop
        headers = [(k, v) for k, v in scope["headers"] if k not in drop]  # type: ignore[attr-defined]
        client = scope.get("client")
        if isinstance(client, tuple) and client:
            headers.append((b"x-forwarded-for", str(client[0]).encode("latin-1")))
        headers.append((b"x-forwarded-proto", str(scope.get("scheme", "http")).encode()))
        for name, value in scope["headers"]:  # type: ignore[attr-defined]
            if name == b"host":
                headers.append((b"x-forwarded-host", value))
                break
        if request_id:
            headers.append((b"x-request-id", request_id.encode("latin-1")))
        headers.append((b"x-dynamo-roles", ",".join(identity.role.granted()).encode()))
        headers.append((b"x-dynamo-auth", identity.method.encode()))
        if identity.authenticated:
            headers.append((b"x-dynamo-user", header_safe(identity.name).encode("latin-1")))
        return headers

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise _too_large(self.max_body_bytes)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _too_large(self.max_body_bytes)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _relay(self, lease: _Lease, service: str, base: str) -> Response:
        response = lease.response
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in _RESPONSE_DROP]
        length = response.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) <= BUFFER_LIMIT:
            try:
                # aiter_raw, not aread: the bytes travel as the service encoded them.
                body = b"".join([chunk async for chunk in response.aiter_raw()])
            except httpx.TransportError as exc:
                raise _unavailable(service, base, exc) from None
            finally:
                await lease.close()
            out = Response(content=body, status_code=response.status_code)
            out.raw_headers = [*out.raw_headers, *headers]
            return out
        streamed = StreamingResponse(
            _stream(lease, service),
            status_code=response.status_code,
            # Also closed here in case the stream is never iterated (the client went away).
            background=BackgroundTask(lease.close),
        )
        streamed.raw_headers = [*streamed.raw_headers, *headers]
        return streamed


class _Lease:
    """An upstream answer and the service slot it holds, given back exactly once."""

    __slots__ = ("closed", "response", "slot")

    def __init__(self, response: httpx.Response, slot: asyncio.Semaphore) -> None:
        self.response = response
        self.slot = slot
        self.closed = False

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await self.response.aclose()
        finally:
            self.slot.release()


async def _stream(lease: _Lease, service: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in lease.response.aiter_raw():
            yield chunk
    except httpx.HTTPError as exc:
        # The status line is gone already: all that is left is to cut the answer short, which
        # the client sees as an incomplete body, and to say why in the log.
        log.warning("the %s service broke off an answer: %r", service, exc)
        raise
    finally:
        await lease.close()


def _busy(service: str) -> ProblemError:
    return ProblemError(
        503,
        f"the gateway has too many requests in flight to the {service} service",
        title="Service Unavailable",
        headers={"Retry-After": "1"},
        extensions={"service": service},
    )


def _base(url: str) -> tuple[httpx.URL, bytes]:
    """A service's URL and the path prefix its endpoints live under (empty at the root)."""
    parsed = httpx.URL(url)
    return parsed, parsed.raw_path.split(b"?", 1)[0].rstrip(b"/")


def _too_large(limit: int) -> ProblemError:
    return ProblemError(413, f"the request body is larger than {limit} bytes")


def _unavailable(service: str, base: str, exc: httpx.HTTPError) -> ProblemError:
    extensions = {"service": service}
    if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
        return ProblemError(
            503,
            f"the {service} service is unavailable: cannot connect to {base} ({_why(exc)})",
            title="Service Unavailable",
            headers={"Retry-After": "5"},
            extensions=extensions,
        )
    if isinstance(exc, httpx.PoolTimeout):
        return _busy(service)
    if isinstance(exc, httpx.TimeoutException):
        return ProblemError(
            504,
            f"the {service} service did not answer in time ({_why(exc)})",
            title="Gateway Timeout",
            extensions=extensions,
        )
    return ProblemError(
        502,
        f"the {service} service gave no usable answer ({_why(exc)})",
        title="Bad Gateway",
        extensions=extensions,
    )


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
