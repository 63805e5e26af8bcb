"""The RabbitMQ bus (aio-pika, robust connection, quorum queues, publisher confirms).

Topology per namespace: topic exchanges ``<ns>.events`` and ``<ns>.commands``, a direct
dead-letter exchange ``<ns>.dlx``; every queue ``<ns>.<name>`` is a durable quorum queue whose
rejected or over-delivered messages are dead-lettered to ``<ns>.dlx`` with the queue's name as
routing key, which the queue ``<ns>.<name>.dead`` is bound by.

Channels: one for publishing (with confirms), one per subscription (so each consumer has its own
prefetch and cancelling one returns exactly its unacknowledged messages), one for the reply queue,
and short-lived ones for declarations and dead-letter inspection (a failed declaration closes its
channel on the broker side; it must not take the publishing channel with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from pydantic import ValidationError

from dynamo_common.bus.base import (
    Bus,
    BusError,
    Delivery,
    ExchangeKind,
    Handler,
    QueueSpec,
    Reject,
    RequestTimeout,
    Subscription,
)
from dynamo_common.messages.envelope import Envelope

log = structlog.get_logger(__name__)

__all__ = ["CONTENT_TYPE", "DeclaredNames", "RabbitBus"]

CONTENT_TYPE = "application/cloudevents+json"
# How long publish() waits for a robust connection that is reconnecting before giving up.
_READY_TIMEOUT = 10.0
# Upper bound for the polite goodbyes of close()/cancel(): a dead broker must not hang shutdown.
_BROKER_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class DeclaredNames:
    """What a bus declared on the broker (lets tests clean up after themselves)."""

    exchanges: tuple[str, ...]
    queues: tuple[str, ...]


def _delivery_count(message: AbstractIncomingMessage) -> int:
    # Quorum queues count returns in x-delivery-count (absent or 0 on the first delivery).
    raw = (message.headers or {}).get("x-delivery-count")
    try:
        returns = int(raw) if isinstance(raw, int | str) else 0
    except ValueError:
        returns = 0
    return returns + 1


def _queue_arguments(name: str, spec: QueueSpec, dlx: str) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "x-queue-type": "quorum",
        "x-delivery-limit": spec.delivery_limit,
        "x-dead-letter-exchange": dlx,
        "x-dead-letter-routing-key": name,
    }
    if spec.single_active_consumer:
        arguments["x-single-active-consumer"] = True
    return arguments


class _RabbitSubscription(Subscription):
    def __init__(self, bus: RabbitBus, queue_name: str, handler: Handler) -> None:
        self._bus = bus
        self._queue_name = queue_name
        self._handler = handler
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._cancelled = False

    async def start(self, prefetch: int) -> None:
        # Checked on a throw-away channel: a failed passive declaration closes its channel,
        # and the robust consumer channel would then try to reopen itself.
        async with self._bus._temporary_channel() as probe:
            try:
                await probe.declare_queue(self._queue_name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                raise BusError(f"queue {self._queue_name!r} is not declared") from None
        # Robust: after a reconnect it restores its prefetch, the queue and this consumer.
        channel = await self._bus._require_connection().channel()
        self._channel = channel
        try:
            await channel.set_qos(prefetch_count=prefetch)
            self._queue = await channel.declare_queue(self._queue_name, passive=True)
            self._consumer_tag = await self._queue.consume(self._on_message, no_ack=False)
        except BaseException:
            await self._close_channel()
            raise

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if self._cancelled:
            # Left unacknowledged: closing the channel in cancel() returns it to the queue.
            return
        # Our own task, not aio-pika's: aiormq cancels its delivery tasks when the connection
        # drops, and a handler half-way through a commit should rather finish (its ack then
        # fails and the broker redelivers, which handlers treat as a no-op).
        task = asyncio.get_running_loop().create_task(self._handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            envelope = Envelope.from_json(message.body)
        except (ValidationError, ValueError):
            log.error(
                "bus.malformed_message",
                queue=self._queue_name,
                routing_key=message.routing_key,
                body=message.body[:200],
            )
            await self._settle(message, "reject")
            return
        delivery = Delivery(
            envelope=envelope,
            routing_key=message.routing_key or "",
            delivery_count=_delivery_count(message),
            reply_to=message.reply_to,
            redelivered=bool(message.redelivered),
        )
        try:
            await self._handler(delivery)
        except Reject as exc:
            log.warning(
                "bus.message_rejected", queue=self._queue_name, id=envelope.id, error=str(exc)
            )
            await self._settle(message, "reject")
        except Exception:
            log.exception(
                "bus.handler_failed",
                queue=self._queue_name,
                id=envelope.id,
                delivery_count=delivery.delivery_count,
            )
            await self._settle(message, "nack")
        else:
            await self._settle(message, "ack")

    async def _settle(self, message: AbstractIncomingMessage, outcome: str) -> None:
        try:
            if outcome == "ack":
                await message.ack()
            elif outcome == "reject":
                await message.reject(requeue=False)
            else:
                # The quorum queue counts the return and dead-letters past x-delivery-limit.
                await message.nack(requeue=True)
        except Exception as exc:
            # The channel the message came on is gone (reconnect, cancel): the broker has
            # already returned the message to the queue, so there is nothing left to do.
            log.warning(
                "bus.settle_failed", queue=self._queue_name, outcome=outcome, error=repr(exc)
            )

    async def cancel(self) -> None:
        if self._cancelled:
            return
        self._cancelled = True
        channel = self._channel
        if (
            self._queue is not None
            and self._consumer_tag is not None
            and channel is not None
            and not channel.is_closed
        ):
            # Skipped while disconnected: a robust queue would wait for the reconnection.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_BROKER_TIMEOUT):
                    await self._queue.cancel(self._consumer_tag)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Closing the channel returns every message still unacknowledged to the queue.
        await self._close_channel()
        self._bus._subscriptions.discard(self)

    async def _close_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_BROKER_TIMEOUT):
                    await channel.close()


class RabbitBus(Bus):
    def __init__(self, url: str, namespace: str = "dynamo", *, publish_batch: int = 500) -> None:
        if publish_batch < 1:
            raise ValueError("publish_batch must be >= 1")
        self.namespace = namespace
        self._url = url
        self._publish_batch = publish_batch
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractRobustChannel | None = None
        self._exchanges: dict[ExchangeKind, AbstractExchange] = {}
        self._dlx_name = f"{namespace}.dlx"
        self._subscriptions: set[_RabbitSubscription] = set()
        self._reply_lock = asyncio.Lock()
        self._reply_channel: AbstractChannel | None = None
        self._reply_queue_name: str | None = None
        self._pending: dict[str, asyncio.Future[Envelope]] = {}
        self._declared_exchanges: list[str] = []
        self._declared_queues: list[str] = []

    # -- lifecycle --

    def _require_connection(self) -> AbstractRobustConnection:
        if self._connection is None or self._connection.is_closed:
            raise BusError("RabbitMQ bus is not connected")
        return self._connection

    def _require_publish_channel(self) -> AbstractRobustChannel:
        if self._publish_channel is None:
            raise BusError("RabbitMQ bus is not connected")
        return self._publish_channel

    async def connect(self) -> None:
        if self._connection is not None and not self._connection.is_closed:
            return
        try:
            connection = await aio_pika.connect_robust(
                self._url, client_properties={"connection_name": f"dynamo:{self.namespace}"}
            )
        except Exception as exc:
            raise BusError(f"cannot connect to RabbitMQ: {exc!r}") from exc
        self._connection = connection
        try:
            channel = await connection.channel(publisher_confirms=True)
            self._publish_channel = channel
            # Declared on the robust publishing channel so a reconnect re-declares them.
            for kind in ("events", "commands"):
                name = f"{self.namespace}.{kind}"
                self._exchanges[kind] = await channel.declare_exchange(
                    name, aio_pika.ExchangeType.TOPIC, durable=True
                )
                self._remember_exchange(name)
            await channel.declare_exchange(
                self._dlx_name, aio_pika.ExchangeType.DIRECT, durable=True
            )
            self._remember_exchange(self._dlx_name)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.cancel()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BusError("bus closed while waiting for a reply"))
        self._pending.clear()
        connection, self._connection = self._connection, None
        self._publish_channel = None
        self._reply_channel = None
        self._reply_queue_name = None
        self._exchanges.clear()
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_BROKER_TIMEOUT):
                    await connection.close()

    async def ping(self) -> bool:
        connection = self._connection
        channel = self._publish_channel
        return (
            connection is not None
            and not connection.is_closed
            and connection.connected.is_set()
            and channel is not None
            and not channel.is_closed
        )

    def declared_names(self) -> DeclaredNames:
        return DeclaredNames(tuple(self._declared_exchanges), tuple(self._declared_queues))

    @contextlib.asynccontextmanager
    async def _temporary_channel(self) -> AsyncIterator[AbstractChannel]:
        # A plain channel, not a robust one: when the broker closes it over a failed passive
        # or inequivalent declaration, a robust channel would try to reopen itself.
        channel = aio_pika.Channel(self._require_connection(), publisher_confirms=False)
        await channel.initialize()
        try:
            yield channel
        finally:
            if not channel.is_closed:
                with contextlib.suppress(Exception):
                    await channel.close()

    def _remember_exchange(self, name: str) -> None:
        if name not in self._declared_exchanges:
            self._declared_exchanges.append(name)

    def _remember_queue(self, name: str) -> None:
        if name not in self._declared_queues:
            self._declared_queues.append(name)

    # -- topology --

    def _qualified(self, queue: str) -> str:
        return f"{self.namespace}.{queue}"

    async def declare_queue(self, spec: QueueSpec) -> None:
        name = self._qualified(spec.name)
        dead_name = f"{name}.dead"
        async with self._temporary_channel() as channel:
            try:
                dead = await channel.declare_queue(
                    dead_name, durable=True, arguments={"x-queue-type": "quorum"}
                )
                self._remember_queue(dead_name)
                await dead.bind(self._dlx_name, routing_key=name)
                queue = await channel.declare_queue(
                    name, durable=True, arguments=_queue_arguments(name, spec, self._dlx_name)
                )
                self._remember_queue(name)
                for exchange, pattern in spec.bindings:
                    await queue.bind(f"{self.namespace}.{exchange}", routing_key=pattern)
            except aiormq.exceptions.ChannelPreconditionFailed as exc:
                raise BusError(f"queue {name!r} exists with other arguments: {exc}") from exc

    # -- publishing --

    def _message(
        self,
        envelope: Envelope,
        *,
        reply_to: str | None = None,
        correlation_id: str | None = None,
        persistent: bool = True,
    ) -> aio_pika.Message:
        return aio_pika.Message(
            envelope.to_json(),
            content_type=CONTENT_TYPE,
            delivery_mode=(
                aio_pika.DeliveryMode.PERSISTENT
                if persistent
                else aio_pika.DeliveryMode.NOT_PERSISTENT
            ),
            message_id=envelope.id,
            correlation_id=correlation_id or envelope.correlation_id,
            reply_to=reply_to,
            timestamp=envelope.time,
            type=envelope.type,
        )

    async def _ready_channel(self) -> AbstractRobustChannel:
        channel = self._require_publish_channel()
        if channel.is_closed:
            # The robust channel is closed while its connection reconnects: wait a little.
            try:
                async with asyncio.timeout(_READY_TIMEOUT):
                    await channel.ready()
            except TimeoutError:
                raise BusError("RabbitMQ connection is not available") from None
        return channel

    async def _publish_window(
        self, exchange: AbstractExchange, window: Sequence[tuple[aio_pika.Message, str]]
    ) -> None:
        results = await asyncio.gather(
            *(exchange.publish(message, key, mandatory=False) for message, key in window),
            return_exceptions=True,
        )
        failures = [r for r in results if not isinstance(r, aiormq.spec.Basic.Ack)]
        if failures:
            first = next((r for r in failures if isinstance(r, BaseException)), None)
            if isinstance(first, asyncio.CancelledError):
                raise first
            raise BusError(
                f"{len(failures)} of {len(window)} messages were not confirmed by RabbitMQ"
                + (f": {first!r}" if first is not None else "")
            ) from (first if isinstance(first, Exception) else None)

    async def publish(self, exchange: ExchangeKind, envelopes: Sequence[Envelope]) -> None:
        # Serialise everything first: a bad envelope must not leave half a batch published.
        messages = [(self._message(envelope), envelope.type) for envelope in envelopes]
        if not messages:
            return
        await self._ready_channel()
        target = self._exchanges.get(exchange)
        if target is None:
            raise BusError(f"unknown exchange {exchange!r}")
        # Awaiting each confirm in turn caps throughput at about a quarter of this; concurrent
        # windows keep the confirms pipelined while bounding the memory in flight.
        for start in range(0, len(messages), self._publish_batch):
            await self._publish_window(target, messages[start : start + self._publish_batch])

    # -- consuming --

    async def consume(self, queue: str, handler: Handler, prefetch: int = 50) -> Subscription:
        if prefetch < 0:
            raise ValueError("prefetch must be >= 0")
        subscription = _RabbitSubscription(self, self._qualified(queue), handler)
        await subscription.start(prefetch)
        self._subscriptions.add(subscription)
        return subscription

    # -- request / reply --

    async def _reply_address(self) -> str:
        async with self._reply_lock:
            if self._reply_queue_name is not None:
                return self._reply_queue_name
            connection = self._require_connection()
            name = f"{self.namespace}.reply.{uuid.uuid4().hex}"
            channel = await connection.channel()
            # Robust channel: after a reconnect the queue and its consumer are re-declared.
            queue = await channel.declare_queue(name, exclusive=True, auto_delete=True)
            await queue.consume(self._on_reply, no_ack=True)
            self._reply_channel = channel
            self._reply_queue_name = name
            return name

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        try:
            envelope = Envelope.from_json(message.body)
        except (ValidationError, ValueError):
            log.error("bus.malformed_reply", correlation_id=message.correlation_id)
            return
        key = message.correlation_id or envelope.correlation_id
        future = self._pending.get(key) if key is not None else None
        if future is None or future.done():
            # The requester gave up (timeout) before the reply came.
            log.info("bus.late_reply", correlation_id=key)
            return
        future.set_result(envelope)

    async def request(self, command: Envelope, timeout: float = 30.0) -> Envelope:  # noqa: ASYNC109
        if command.id in self._pending:
            raise BusError(f"a request with id {command.id!r} is already waiting for its reply")
        future: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        self._pending[command.id] = future
        try:
            async with asyncio.timeout(timeout):
                reply_to = await self._reply_address()
                await self._ready_channel()
                message = self._message(command, reply_to=reply_to)
                await self._publish_window(self._exchanges["commands"], [(message, command.type)])
                return await future
        except TimeoutError:
            raise RequestTimeout(
                f"no reply to {command.type} ({command.id}) within {timeout} s"
            ) from None
        finally:
            self._pending.pop(command.id, None)

    async def reply(self, delivery: Delivery, envelope: Envelope) -> None:
        if delivery.reply_to is None:
            return
        channel = await self._ready_channel()
        request_id = delivery.envelope.id
        answer = envelope.model_copy(update={"correlation_id": request_id})
        # Replies go to a transient, exclusive queue: persisting them buys nothing.
        message = self._message(answer, correlation_id=request_id, persistent=False)
        await self._publish_window(channel.default_exchange, [(message, delivery.reply_to)])

    # -- operators --

    async def dead_letters(self, queue: str) -> list[Envelope]:
        name = f"{self._qualified(queue)}.dead"
        envelopes: list[Envelope] = []
        async with self._temporary_channel() as channel:
            try:
                dead = await channel.declare_queue(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                raise BusError(f"queue {self._qualified(queue)!r} is not declared") from None
            last: AbstractIncomingMessage | None = None
            while True:
                message = await dead.get(no_ack=False, fail=False)
                if message is None:
                    break
                last = message
                try:
                    envelopes.append(Envelope.from_json(message.body))
                except (ValidationError, ValueError):
                    continue
            if last is not None:
                # Hand every inspected message back: this is a read, not a drain.
                await last.nack(multiple=True, requeue=True)
        return envelopes
