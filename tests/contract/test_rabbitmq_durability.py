"""RabbitMQ-only guarantees: what the broker keeps when connections drop, and queue arguments.

Connection drops are simulated with a TCP proxy between the bus and the broker: closing the
proxy's sockets is what a network failure or a killed peer looks like to both sides.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiormq
import pytest

from dynamo_common.bus import Delivery, QueueSpec
from dynamo_common.bus.rabbitmq import RabbitBus
from dynamo_common.messages.envelope import Envelope
from dynamo_common.testing.rabbitmq import delete_namespace

pytestmark = pytest.mark.integration

WAIT = 20.0


def envelope(type_: str, **data: Any) -> Envelope:
    return Envelope(type=type_, source="/dynamo/test", data=data)


async def eventually(condition: Callable[[], Awaitable[bool]], within: float = WAIT) -> None:
    """Poll broker-side state (queue counts, connection state) that sends no notification."""
    async with asyncio.timeout(within):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.02)


class TcpProxy:
    """Forwards 127.0.0.1:<port> to the broker; ``drop()`` cuts every open connection."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        self._writers |= {writer, upstream_writer}
        pumps = [
            asyncio.create_task(self._pump(reader, upstream_writer)),
            asyncio.create_task(self._pump(upstream_reader, writer)),
        ]
        self._tasks.update(pumps)
        await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

    async def drop(self, *, refuse_new: bool = False) -> None:
        if refuse_new and self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def stop(self) -> None:
        await self.drop(refuse_new=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def via_proxy(amqp_url: str, port: int, **query: str) -> str:
    parts = urlsplit(amqp_url)
    netloc = parts.netloc.rsplit("@", 1)
    credentials = f"{netloc[0]}@" if len(netloc) == 2 else ""
    extra = "&".join(f"{k}={v}" for k, v in query.items())
    return urlunsplit(
        (parts.scheme, f"{credentials}127.0.0.1:{port}", parts.path or "/", extra, "")
    )


@pytest.fixture
async def proxy(amqp_url: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(amqp_url)
    tcp = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    await tcp.start()
    try:
        yield tcp
    finally:
        await tcp.stop()


@pytest.fixture
async def proxied_bus(
    amqp_url: str, bus_namespace: str, proxy: TcpProxy, rabbit_bus: RabbitBus
) -> AsyncIterator[RabbitBus]:
    """A second bus on the same namespace whose connection the test can cut."""
    bus = RabbitBus(via_proxy(amqp_url, proxy.port, reconnect_interval="0.2"), bus_namespace)
    await bus.connect()
    try:
        yield bus
    finally:
        await asyncio.wait_for(bus.close(), WAIT)
        await delete_namespace(amqp_url, bus_namespace, bus.declared_names().queues)


async def ready_count(amqp_url: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


async def test_unacked_message_is_redelivered_when_consumer_connection_drops(
    rabbit_bus: RabbitBus, proxied_bus: RabbitBus, proxy: TcpProxy
) -> None:
    await rabbit_bus.declare_queue(QueueSpec("work", (("events", "job.#"),)))
    started = asyncio.Event()

    async def hang(_: Delivery) -> None:
        started.set()
        await asyncio.Event().wait()

    await proxied_bus.consume("work", hang, prefetch=1)
    sent = envelope("job.important.v1")
    await rabbit_bus.publish("events", [sent])
    await asyncio.wait_for(started.wait(), WAIT)

    # The worker's host vanishes mid-handling and does not come back.
    await proxy.drop(refuse_new=True)

    received: asyncio.Queue[Delivery] = asyncio.Queue()
    subscription = await rabbit_bus.consume("work", received.put)
    try:
        delivery = await asyncio.wait_for(received.get(), WAIT)
    finally:
        await subscription.cancel()
    assert delivery.envelope == sent
    assert delivery.redelivered is True
    assert delivery.delivery_count == 2


async def test_bus_recovers_consumers_publishing_and_replies_after_a_drop(
    proxied_bus: RabbitBus, proxy: TcpProxy
) -> None:
    bus = proxied_bus
    await bus.declare_queue(QueueSpec("events-in", (("events", "job.#"),)))
    await bus.declare_queue(QueueSpec("commands-in", (("commands", "ask.#"),)))
    received: asyncio.Queue[Delivery] = asyncio.Queue()

    async def answer(delivery: Delivery) -> None:
        await bus.reply(delivery, envelope("ask.answer.v1", n=delivery.envelope.data["n"]))

    await bus.consume("events-in", received.put)
    await bus.consume("commands-in", answer)
    assert (await bus.request(envelope("ask.q.v1", n=1), timeout=WAIT)).data == {"n": 1}

    await proxy.drop()

    async def down() -> bool:
        return not await bus.ping()

    await eventually(down)
    await eventually(bus.ping)
    await bus.publish("events", [envelope("job.after.v1")])
    delivery = await asyncio.wait_for(received.get(), WAIT)
    assert delivery.envelope.type == "job.after.v1"
    # The reply queue was exclusive to the old connection; it is re-declared.
    assert (await bus.request(envelope("ask.q.v1", n=2), timeout=WAIT)).data == {"n": 2}


async def test_confirmed_messages_are_persisted_on_the_broker(
    amqp_url: str, rabbit_bus: RabbitBus, proxied_bus: RabbitBus, proxy: TcpProxy
) -> None:
    await rabbit_bus.declare_queue(QueueSpec("stored", (("events", "job.#"),)))
    await proxied_bus.publish("events", [envelope("job.n.v1", n=i) for i in range(300)])
    # publish() returned: every message is confirmed, so losing the publisher loses nothing.
    await proxy.drop(refuse_new=True)
    queue = f"{rabbit_bus.namespace}.stored"

    async def all_there() -> bool:
        return await ready_count(amqp_url, queue) == 300

    await eventually(all_there)


async def test_queues_are_quorum_with_delivery_limit_and_dead_letter_routing(
    amqp_url: str, rabbit_bus: RabbitBus
) -> None:
    ns = rabbit_bus.namespace
    await rabbit_bus.declare_queue(
        QueueSpec("checked", (("commands", "x.#"),), delivery_limit=3, single_active_consumer=True)
    )
    expected = {
        "x-queue-type": "quorum",
        "x-delivery-limit": 3,
        "x-dead-letter-exchange": f"{ns}.dlx",
        "x-dead-letter-routing-key": f"{ns}.checked",
        "x-single-active-consumer": True,
    }
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        # The broker refuses a declaration whose arguments differ from the queue's own, so
        # an accepted one proves the queue has exactly these arguments.
        channel = await connection.channel()
        await channel.declare_queue(f"{ns}.checked", durable=True, arguments=expected)
        await channel.declare_queue(
            f"{ns}.checked.dead", durable=True, arguments={"x-queue-type": "quorum"}
        )
        for wrong in (
            {**expected, "x-queue-type": "classic"},
            {**expected, "x-delivery-limit": 4},
        ):
            channel = await connection.channel()
            with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
                await channel.declare_queue(f"{ns}.checked", durable=True, arguments=wrong)


async def test_broker_dead_letters_past_the_delivery_limit(
    amqp_url: str, rabbit_bus: RabbitBus
) -> None:
    """The limit is enforced by RabbitMQ itself, not by our client code."""
    ns = rabbit_bus.namespace
    await rabbit_bus.declare_queue(QueueSpec("limited", (("events", "job.#"),), delivery_limit=2))
    sent = envelope("job.doomed.v1")
    await rabbit_bus.publish("events", [sent])
    deliveries = 0
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{ns}.limited", passive=True)
        async with asyncio.timeout(WAIT):
            while True:
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    if await rabbit_bus.dead_letters("limited"):
                        break
                    await asyncio.sleep(0.02)
                    continue
                deliveries += 1
                await message.nack(requeue=True)
    assert deliveries == 3
    assert await rabbit_bus.dead_letters("limited") == [sent]


async def test_close_while_broker_unreachable_returns_promptly(
    proxied_bus: RabbitBus, proxy: TcpProxy
) -> None:
    await proxied_bus.declare_queue(QueueSpec("orphan", (("events", "job.#"),)))
    started = asyncio.Event()

    async def hang(_: Delivery) -> None:
        started.set()
        await asyncio.Event().wait()

    await proxied_bus.consume("orphan", hang)
    await proxied_bus.publish("events", [envelope("job.stuck.v1")])
    await asyncio.wait_for(started.wait(), WAIT)
    await proxy.drop(refuse_new=True)

    async def down() -> bool:
        return not await proxied_bus.ping()

    await eventually(down)
    # The robust connection keeps retrying in the background; shutdown must not wait for it.
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.wait_for(proxied_bus.close(), WAIT)
    assert loop.time() - start < 1.0
    assert await proxied_bus.ping() is False
