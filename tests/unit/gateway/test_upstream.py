"""The gateway's HTTP/1.1 transport against scripted servers on loopback: keep-alive reuse,
a connection the service closed while idle, answers without a body, broken answers, bodies
that arrive in pieces or chunked."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from dynamo_gateway.upstream import UpstreamTransport

Reply = Callable[[int, int, bytes], Awaitable[bytes | None]]
"""(connection number, request number on it, request bytes) -> raw answer, or None to close
the connection without answering."""


@dataclass
class Script:
    reply: Reply
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + (await reader.readexactly(length) if length else b"")


@contextlib.asynccontextmanager
async def scripted(reply: Reply) -> AsyncIterator[tuple[str, Script]]:
    script = Script(reply)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        script.connections += 1
        number = script.connections
        index = 0
        try:
            while (request := await _read_request(reader)) is not None:
                script.requests.append(request)
                answer = await reply(number, index, request)
                index += 1
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", script
    finally:
        server.close()
        await server.wait_closed()


def ok(body: bytes = b"hello", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=UpstreamTransport(), timeout=httpx.Timeout(2.0))


async def test_connections_are_kept_alive_and_reused() -> None:
    async def reply(conn: int, index: int, request: bytes) -> bytes:
        return ok(b"n%d" % index)

    async with scripted(reply) as (url, script), client() as http:
        for index in range(5):
            response = await http.get(url + "/x?q=%2F")
            assert response.content == b"n%d" % index
        assert script.connections == 1
        assert script.requests[0].startswith(b"GET /x?q=%2F HTTP/1.1\r\nHost: 127.0.0.1:")


async def test_a_stale_idle_connection_is_replaced_for_reads_but_not_for_writes() -> None:
    async def reply(conn: int, index: int, request: bytes) -> bytes | None:
        # Each connection answers once, then closes on the next request without a word, as
        # a service does when its keep-alive timer fires as the request arrives.
        return ok() if index == 0 else None

    async with scripted(reply) as (url, script), client() as http:
        assert (await http.get(url)).status_code == 200
        assert (await http.get(url)).status_code == 200  # retried on a fresh connection
        assert script.connections == 2
        with pytest.raises(httpx.RemoteProtocolError, match="without answering"):
            await http.post(url, content=b"{}")


async def test_answers_without_a_body_and_head() -> None:
    async def reply(conn: int, index: int, request: bytes) -> bytes:
        if request.startswith(b"HEAD"):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
        if request.startswith(b"DELETE"):
            return b"HTTP/1.1 204 No Content\r\n\r\n"
        return ok()

    async with scripted(reply) as (url, _), client() as http:
        head = await http.head(url)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == "1234"
        deleted = await http.delete(url)
        assert deleted.status_code == 204 and deleted.content == b""
        assert (await http.get(url)).content == b"hello"


async def test_bodies_in_pieces_and_chunked() -> None:
    async def reply(conn: int, index: int, request: bytes) -> bytes:
        if b"chunked" in request.split(b"\r\n", 1)[0]:
            return (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
        return ok(b"x" * 300_000)

    async with scripted(reply) as (url, script), client() as http:
        assert (await http.get(url + "/big")).content == b"x" * 300_000
        chunked = await http.get(url + "/chunked")
        assert chunked.content == b"hello world"
        assert (await http.get(url + "/big")).status_code == 200
        assert script.connections == 1


async def test_request_bodies_get_their_length() -> None:
    async def reply(conn: int, index: int, request: bytes) -> bytes:
        return ok(request.split(b"\r\n\r\n", 1)[1])

    async with scripted(reply) as (url, script), client() as http:
        response = await http.post(url, content=b'{"a": 1}', headers={"Content-Length": "999"})
        assert response.content == b'{"a": 1}'
        assert b"Content-Length: 8\r\n" in script.requests[0]
        assert b"999" not in script.requests[0]
        empty = await http.post(url)
        assert b"Content-Length: 0\r\n" in script.requests[1]
        assert empty.status_code == 200


async def test_broken_answers_and_closed_or_silent_services() -> None:
    async def garbage(conn: int, index: int, request: bytes) -> bytes:
        return b"NOT HTTP AT ALL\r\n\r\n"

    async with scripted(garbage) as (url, _), client() as http:
        with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
            await http.get(url)

    async def cut(conn: int, index: int, request: bytes) -> bytes | None:
        return None

    async with scripted(cut) as (url, _), client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(url)

    async def short(conn: int, index: int, request: bytes) -> bytes | None:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"

    async with scripted(short) as (url, _), client() as http:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadTimeout)):
            await http.get(url, timeout=0.5)

    async def silent(conn: int, index: int, request: bytes) -> bytes | None:
        await asyncio.sleep(10)
        return None

    async with scripted(silent) as (url, _), client() as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(url, timeout=0.3)

    closed = httpx.AsyncClient(transport=UpstreamTransport(retries=0))
    async with closed:
        with pytest.raises(httpx.ConnectError):
            await closed.get("http://127.0.0.1:9/")
        with pytest.raises(httpx.UnsupportedProtocol):
            await closed.get("https://127.0.0.1:9/")
