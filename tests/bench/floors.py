"""Floors measured in the same run: what the raw clients do without any of our code."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aio_pika
import aiormq

PAYLOAD_BYTES = 200
IN_FLIGHT = 1000


async def raw_publish_rate(
    url: str, namespace: str, messages: int, repetitions: int, queues: list[str]
) -> list[float]:
    """Messages/s of a bare aio-pika loop: persistent ~200-byte messages to a topic exchange
    routed into a durable quorum queue (what the inventory's events go to), publisher confirms,
    ``IN_FLIGHT`` unconfirmed at most."""
    connection = await aio_pika.connect(url)
    exchange_name = f"{namespace}.floor"
    queue_name = f"{namespace}.floor-queue"
    queues.append(queue_name)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(
            queue_name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(exchange, routing_key="floor.#")
        body = b"x" * PAYLOAD_BYTES
        rates = []
        for _ in range(repetitions):
            start = time.perf_counter()
            await _publish_all(exchange, body, messages)
            rates.append(messages / (time.perf_counter() - start))
            await queue.purge()
        return rates
    finally:
        with contextlib.suppress(Exception):
            cleanup = await connection.channel()
            await cleanup.exchange_delete(exchange_name)
        await connection.close()


async def _publish_all(exchange: aio_pika.abc.AbstractExchange, body: bytes, count: int) -> None:
    window = asyncio.Semaphore(IN_FLIGHT)
    failures: list[BaseException] = []
    pending: set[asyncio.Task[object]] = set()

    def done(task: asyncio.Task[object]) -> None:
        pending.discard(task)
        window.release()
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            failures.append(exc)
        elif not isinstance(task.result(), aiormq.spec.Basic.Ack):
            failures.append(RuntimeError(f"not confirmed: {task.result()!r}"))

    for i in range(count):
        await window.acquire()
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        task = asyncio.ensure_future(exchange.publish(message, routing_key=f"floor.m{i % 10}"))
        pending.add(task)
        task.add_done_callback(done)
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    if failures:
        raise RuntimeError(f"{len(failures)} floor messages failed: {failures[0]!r}")
