"""The transport under the gateway's httpx client: HTTP/1.1 keep-alive connections to the
services, pooled per origin, parsed with httptools (llhttp, the parser uvicorn serves with).

httpx's default transport is built for general use and costs the gateway most of its time
per request: httpcore's pool rescans every waiting request against every connection each
time one is freed, its anyio layer adds cancel scopes to every read and write, and h11 parses
in pure Python. The gateway needs less: plain HTTP/1.1 to a few services on a trusted network.
This transport plugs in through httpx's public transport interface: the gateway still sends
``httpx.Request`` objects through one ``httpx.AsyncClient`` and gets ``httpx.Response``
objects and httpx's exceptions back. Idle connections wait in a LIFO stack per origin (the
warmest first, O(1)); the forwarder bounds the requests in flight per service.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Final

import httptools
import httpx

Key = tuple[str, int]
_READ_SIZE: Final = 65536
# Safe to send again on a fresh connection when a reused one turns out to be closed.
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Never sent upstream from the request's headers: the transport writes its own framing.
_FRAMING: Final = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection"})


class _StaleConnection(Exception):
    """A reused connection was closed by the service before it answered anything."""


class _Parser:
    """httptools callbacks: the status, headers and body pieces of one response."""

    __slots__ = ("body", "complete", "headers", "headers_complete", "keep_alive", "parser")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.headers_complete = False
        self.keep_alive = False
        self.complete = False
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_complete = True
        # Asked now: llhttp forgets the message's flags once it is complete.
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


class _Connection:
    __slots__ = ("closed", "expires", "reader", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used = False
        self.closed = False
        self.expires = 0.0

    def reusable(self) -> bool:
        # asyncio reads eagerly: a service that closed an idle connection shows as EOF.
        return (
            not self.closed
            and not self.reader.at_eof()
            and time.monotonic() < self.expires
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()

    async def read(self, seconds: float | None) -> bytes:
        try:
            if seconds is None:
                return await self.reader.read(_READ_SIZE)
            async with asyncio.timeout(seconds):
                return await self.reader.read(_READ_SIZE)
        except TimeoutError:
            raise httpx.ReadTimeout(f"no answer within {seconds:g} s") from None
        except OSError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from None


def _timeouts(request: httpx.Request) -> dict[str, float | None]:
    value = request.extensions.get("timeout")
    return value if isinstance(value, dict) else {}


class _Body(httpx.AsyncByteStream):
    """The answer's body as it arrives; once read to its end (or closed), the connection goes
    back to the pool or is closed."""

    def __init__(
        self,
        transport: UpstreamTransport,
        key: Key,
        connection: _Connection,
        parser: _Parser,
        read_timeout: float | None,
        request: httpx.Request,
        no_body: bool,
    ) -> None:
        self._transport = transport
        self._key = key
        self._connection = connection
        self._parser = parser
        self._timeout = read_timeout
        self._request = request
        self._no_body = no_body
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        parser = self._parser
        try:
            while True:
                if parser.body:
                    pieces, parser.body = parser.body, []
                    yield b"".join(pieces)
                if parser.complete or self._no_body:
                    break
                data = await self._connection.read(self._timeout)
                if not data:
                    raise httpx.RemoteProtocolError(
                        "the service closed the connection in the middle of an answer",
                        request=self._request,
                    )
                parser.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._connection.close()
            raise httpx.RemoteProtocolError(f"malformed answer: {exc}") from None
        except BaseException:
            self._connection.close()
            raise
        await self.aclose()

    async def aclose(self) -> None:
        if self._done:
            return
        self._done = True
        connection = self._connection
        # Reusable only after a whole answer that leaves the connection open; an answer to
        # HEAD is not reused since llhttp cannot be told that it carries no body.
        parser = self._parser
        if not (parser.complete and not self._no_body and parser.keep_alive):
            connection.close()
        await self._transport._release(self._key, connection)


class UpstreamTransport(httpx.AsyncBaseTransport):
    def __init__(
        self, *, max_keepalive: int = 16, keepalive_expiry: float = 4.0, retries: int = 1
    ) -> None:
        self._idle: dict[Key, deque[_Connection]] = {}
        self._max_keepalive = max_keepalive
        self._keepalive_expiry = keepalive_expiry
        self._retries = retries

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol(
                "the gateway reaches services over plain HTTP (TLS ends at the proxy in front)",
                request=request,
            )
        key = (url.host, url.port or 80)
        head = self._head(request, key)
        body = await request.aread()
        timeouts = _timeouts(request)
        fresh_tries = 0
        while True:
            connection = await self._connection(key, timeouts.get("connect"), request)
            try:
                return await self._exchange(connection, key, head, body, request, timeouts)
            except _StaleConnection:
                # Only a reused connection can be stale, and the retry takes a fresh one.
                if request.method not in _IDEMPOTENT or fresh_tries:
                    raise httpx.RemoteProtocolError(
                        "the service closed the connection without answering", request=request
                    ) from None
                fresh_tries += 1
                self._drop_idle(key)

    def _head(self, request: httpx.Request, key: Key) -> bytes:
        host = key[0] if key[1] == 80 else f"{key[0]}:{key[1]}"
        target = request.extensions.get("target")
        lines = [
            request.method.encode("ascii"),
            b" ",
            target if isinstance(target, bytes) else request.url.raw_path,
            b" HTTP/1.1\r\nHost: ",
            host.encode("ascii"),
            b"\r\n",
        ]
        for name, value in request.headers.raw:
            if name.lower() not in _FRAMING:
                lines += [name, b": ", value, b"\r\n"]
        return b"".join(lines)

    async def _exchange(
        self,
        connection: _Connection,
        key: Key,
        head: bytes,
        body: bytes,
        request: httpx.Request,
        timeouts: dict[str, float | None],
    ) -> httpx.Response:
        reused = connection.used
        connection.used = True
        if body or request.method not in ("GET", "HEAD", "OPTIONS", "DELETE"):
            framing = b"Content-Length: %d\r\n\r\n" % len(body)
        else:
            framing = b"\r\n"
        parser = _Parser()
        try:
            connection.writer.write(head + framing + body)
            if connection.writer.transport.get_write_buffer_size() > _READ_SIZE:
                try:
                    async with asyncio.timeout(timeouts.get("write")):
                        await connection.writer.drain()
                except TimeoutError:
                    raise httpx.WriteTimeout("could not send the request in time") from None
            while not parser.headers_complete:
                data = await connection.read(timeouts.get("read"))
                if not data:
                    if reused and not parser.headers:
                        raise _StaleConnection
                    raise httpx.RemoteProtocolError(
                        "the service closed the connection without answering", request=request
                    )
                parser.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            connection.close()
            await self._release(key, connection)
            raise httpx.RemoteProtocolError(f"malformed answer: {exc}", request=request) from None
        except OSError as exc:
            connection.close()
            await self._release(key, connection)
            if reused and not parser.headers:
                raise _StaleConnection from None
            raise httpx.WriteError(str(exc) or type(exc).__name__, request=request) from None
        except BaseException:
            connection.close()
            await self._release(key, connection)
            raise
        status = parser.parser.get_status_code()
        no_body = request.method == "HEAD" or status in (204, 304) or 100 <= status < 200
        return httpx.Response(
            status_code=status,
            headers=parser.headers,
            stream=_Body(self, key, connection, parser, timeouts.get("read"), request, no_body),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def _connection(
        self, key: Key, connect_timeout: float | None, request: httpx.Request
    ) -> _Connection:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to be closed
            if connection.reusable():
                return connection
            connection.close()
        host, port = key
        for attempt in range(self._retries + 1):
            try:
                async with asyncio.timeout(connect_timeout):
                    reader, writer = await asyncio.open_connection(host, port, limit=2**20)
                return _Connection(reader, writer)
            except TimeoutError:
                if attempt == self._retries:
                    raise httpx.ConnectTimeout(
                        f"no connection within {connect_timeout:g} s", request=request
                    ) from None
            except OSError as exc:
                if attempt == self._retries:
                    raise httpx.ConnectError(
                        str(exc) or type(exc).__name__, request=request
                    ) from None
        raise AssertionError("unreachable")

    async def _release(self, key: Key, connection: _Connection) -> None:
        if connection.closed:
            with contextlib.suppress(OSError):
                await connection.writer.wait_closed()
            return
        idle = self._idle.setdefault(key, deque())
        if len(idle) >= self._max_keepalive:
            connection.close()
            return
        connection.expires = time.monotonic() + self._keepalive_expiry
        idle.append(connection)

    def _drop_idle(self, key: Key) -> None:
        """After one stale connection, the others idle as long are suspect too."""
        for connection in self._idle.pop(key, ()):
            connection.close()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()
