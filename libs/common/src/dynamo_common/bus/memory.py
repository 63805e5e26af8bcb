"""In-process bus for the standalone mode, with the semantics of the RabbitMQ one.

Behaviour mirrors RabbitMQ 3.10 quorum queues so that code tested here behaves the same in the
distributed mode: a queue with ``delivery_limit = N`` delivers a failing message ``N + 1`` times
before dead-lettering it (the broker counts *returns*, the first delivery is not one), a message
whose consumer goes away unacknowledged counts as a failed delivery, returned messages go back to
the head of the queue, and an unroutable message is silently dropped.

Messages travel as JSON bytes, never as shared objects: a handler can never mutate what a
publisher still holds, and a message that cannot be serialised fails at ``publish`` exactly as it
does on RabbitMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import re
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
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

__all__ = ["MemoryBus", "compile_topic_pattern", "topic_matches"]

_YIELD_EVERY = 500


# --- topic matching -----------------------------------------------------------------------------


def _split_words(text: str) -> list[str]:
    # RabbitMQ treats the empty key as zero words, not as one empty word.
    return text.split(".") if text else []


@functools.lru_cache(maxsize=4096)
def compile_topic_pattern(pattern: str) -> re.Pattern[str]:
    """Compile an AMQP topic binding key (``*`` = one word, ``#`` = zero or more words).

    The regex runs against the routing key with a leading dot added to every word
    (``a.b`` -> ``.a.b``), which lets ``#`` match zero words without special-casing the dots
    around it. Consecutive ``#`` collapse into one: equivalent, and it keeps the regex free of
    nested ambiguous repeats that could backtrack exponentially.
    """
    parts: list[str] = []
    previous = ""
    for word in _split_words(pattern):
        if word == "#":
            if previous != "#":
                parts.append(r"(?:\.[^.]*)*")
        elif word == "*":
            parts.append(r"\.[^.]*")
        else:
            parts.append(r"\." + re.escape(word))
        previous = word
    return re.compile("".join(parts), re.DOTALL)


def topic_matches(pattern: str, routing_key: str) -> bool:
    """True when ``routing_key`` matches the AMQP topic binding key ``pattern``."""
    dotted = "".join("." + word for word in _split_words(routing_key))
    return compile_topic_pattern(pattern).fullmatch(dotted) is not None


# --- the bus ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Message:
    body: bytes
    routing_key: str
    reply_to: str | None
    # Publication order: lets returned messages go back to the head in their original order.
    order: int
    delivery_count: int = 1


@dataclass(eq=False, slots=True)
class _Queue:
    name: str
    spec: QueueSpec | None
    dead: _Queue | None
    messages: deque[_Message] = field(default_factory=deque)
    consumers: list[_Consumer] = field(default_factory=list)
    next_consumer: int = 0


class _Consumer(Subscription):
    def __init__(self, bus: MemoryBus, queue: _Queue, handler: Handler, prefetch: int) -> None:
        self.bus = bus
        self.queue = queue
        self.handler = handler
        self.prefetch = prefetch
        self.in_flight: dict[asyncio.Task[None], _Message] = {}
        self.cancelled = False
        # Messages whose handler was interrupted by cancel(); requeued together, in order.
        self.returned: list[_Message] = []

    def has_capacity(self) -> bool:
        # AMQP: a prefetch count of 0 means "no limit".
        return not self.cancelled and (self.prefetch == 0 or len(self.in_flight) < self.prefetch)

    async def cancel(self) -> None:
        await self.bus._cancel_consumer(self)


class MemoryBus(Bus):
    def __init__(self, namespace: str = "dynamo") -> None:
        self.namespace = namespace
        self._connected = False
        self._queues: dict[str, _Queue] = {}
        self._bindings: dict[ExchangeKind, list[tuple[str, _Queue]]] = {
            "events": [],
            "commands": [],
        }
        # (exchange, routing key) -> target queues; cleared whenever a binding is added.
        self._routes: dict[tuple[ExchangeKind, str], tuple[_Queue, ...]] = {}
        self._order = itertools.count()
        self._reply_address = f"{namespace}.reply.{uuid.uuid4().hex}"
        self._pending: dict[str, asyncio.Future[Envelope]] = {}

    # -- lifecycle --

    async def connect(self) -> None:
        self._connected = True

    async def close(self) -> None:
        if not self._connected:
            return
        self._connected = False
        consumers = [c for q in self._queues.values() for c in q.consumers]
        await asyncio.gather(*(self._cancel_consumer(c) for c in consumers))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BusError("bus closed while waiting for a reply"))
        self._pending.clear()

    async def ping(self) -> bool:
        return self._connected

    def _require_connected(self) -> None:
        if not self._connected:
            raise BusError("memory bus is not connected")

    # -- topology --

    def _qualified(self, queue: str) -> str:
        return f"{self.namespace}.{queue}"

    def _queue(self, queue: str) -> _Queue:
        try:
            return self._queues[self._qualified(queue)]
        except KeyError:
            raise BusError(f"queue {self._qualified(queue)!r} is not declared") from None

    async def declare_queue(self, spec: QueueSpec) -> None:
        self._require_connected()
        name = self._qualified(spec.name)
        existing = self._queues.get(name)
        if existing is None:
            dead = _Queue(name=f"{name}.dead", spec=None, dead=None)
            existing = _Queue(name=name, spec=spec, dead=dead)
            self._queues[name] = existing
            # Registered too so that operators can consume it by name, as on RabbitMQ.
            self._queues.setdefault(dead.name, dead)
        elif existing.spec is not None and (
            existing.spec.single_active_consumer != spec.single_active_consumer
            or existing.spec.delivery_limit != spec.delivery_limit
        ):
            # RabbitMQ refuses a re-declaration with other arguments (PRECONDITION_FAILED).
            raise BusError(f"queue {name!r} already declared with different arguments")
        for exchange, pattern in spec.bindings:
            compile_topic_pattern(pattern)
            binding = (pattern, existing)
            if binding not in self._bindings[exchange]:
                self._bindings[exchange].append(binding)
        self._routes.clear()

    def _route(self, exchange: ExchangeKind, routing_key: str) -> tuple[_Queue, ...]:
        key = (exchange, routing_key)
        targets = self._routes.get(key)
        if targets is None:
            seen: dict[str, _Queue] = {}
            for pattern, queue in self._bindings[exchange]:
                # A queue bound by two matching patterns still gets one copy, as on a broker.
                if queue.name not in seen and topic_matches(pattern, routing_key):
                    seen[queue.name] = queue
            targets = tuple(seen.values())
            self._routes[key] = targets
        return targets

    # -- publishing --

    async def publish(self, exchange: ExchangeKind, envelopes: Sequence[Envelope]) -> None:
        self._require_connected()
        # Serialise everything first: a bad envelope must not leave half a batch published.
        bodies = [(envelope.to_json(), envelope.type) for envelope in envelopes]
        for index, (body, routing_key) in enumerate(bodies, start=1):
            self._publish_raw(exchange, routing_key, body)
            if index % _YIELD_EVERY == 0:
                # A huge batch must not starve the event loop (the broker client yields too).
                await asyncio.sleep(0)

    def _publish_raw(
        self,
        exchange: ExchangeKind,
        routing_key: str,
        body: bytes,
        reply_to: str | None = None,
    ) -> None:
        """Route raw bytes like a broker would (tests use it to inject malformed bodies)."""
        for queue in self._route(exchange, routing_key):
            self._enqueue(queue, body, routing_key, reply_to)

    def _enqueue(self, queue: _Queue, body: bytes, routing_key: str, reply_to: str | None) -> None:
        queue.messages.append(_Message(body, routing_key, reply_to, next(self._order)))
        self._dispatch(queue)

    # -- consuming --

    async def consume(self, queue: str, handler: Handler, prefetch: int = 50) -> Subscription:
        self._require_connected()
        if prefetch < 0:
            raise ValueError("prefetch must be >= 0")
        target = self._queue(queue)
        consumer = _Consumer(self, target, handler, prefetch)
        target.consumers.append(consumer)
        self._dispatch(target)
        return consumer

    def _pick_consumer(self, queue: _Queue) -> _Consumer | None:
        if not queue.consumers:
            return None
        spec = queue.spec
        if spec is not None and spec.single_active_consumer:
            # The oldest consumer is the active one; the others are standby.
            active = queue.consumers[0]
            return active if active.has_capacity() else None
        count = len(queue.consumers)
        for step in range(count):
            index = (queue.next_consumer + step) % count
            candidate = queue.consumers[index]
            if candidate.has_capacity():
                queue.next_consumer = (index + 1) % count
                return candidate
        return None

    def _dispatch(self, queue: _Queue) -> None:
        while queue.messages:
            consumer = self._pick_consumer(queue)
            if consumer is None:
                return
            message = queue.messages.popleft()
            task = asyncio.get_running_loop().create_task(
                self._deliver(consumer, message), name=f"memory-bus:{queue.name}"
            )
            consumer.in_flight[task] = message

    async def _deliver(self, consumer: _Consumer, message: _Message) -> None:
        queue = consumer.queue
        outcome = "ack"
        try:
            try:
                envelope = Envelope.from_json(message.body)
            except (ValidationError, ValueError):
                log.error(
                    "bus.malformed_message",
                    queue=queue.name,
                    routing_key=message.routing_key,
                    body=message.body[:200],
                )
                outcome = "dead"
                return
            delivery = Delivery(
                envelope=envelope,
                routing_key=message.routing_key,
                delivery_count=message.delivery_count,
                reply_to=message.reply_to,
                redelivered=message.delivery_count > 1,
            )
            try:
                await consumer.handler(delivery)
            except Reject as exc:
                log.warning(
                    "bus.message_rejected", queue=queue.name, id=envelope.id, error=str(exc)
                )
                outcome = "dead"
            except asyncio.CancelledError:
                outcome = "returned"
                raise
            except Exception:
                log.exception(
                    "bus.handler_failed",
                    queue=queue.name,
                    id=envelope.id,
                    delivery_count=message.delivery_count,
                )
                outcome = "failed"
        finally:
            task = asyncio.current_task()
            if task is not None:
                consumer.in_flight.pop(task, None)
            self._settle(consumer, message, outcome)

    def _settle(self, consumer: _Consumer, message: _Message, outcome: str) -> None:
        queue = consumer.queue
        if outcome == "ack":
            pass
        elif outcome == "dead":
            self._dead_letter(queue, message)
        elif outcome == "returned" and consumer.cancelled:
            consumer.returned.append(message)
        else:
            self._return_to_head(queue, [message])
        if not consumer.cancelled:
            self._dispatch(queue)

    def _return_to_head(self, queue: _Queue, messages: list[_Message]) -> None:
        """A failed delivery: back to the head with one more delivery, or dead past the limit."""
        limit = queue.spec.delivery_limit if queue.spec is not None else None
        retry: list[_Message] = []
        for message in sorted(messages, key=lambda m: m.order):
            if limit is not None and message.delivery_count > limit:
                self._dead_letter(queue, message)
            else:
                message.delivery_count += 1
                retry.append(message)
        queue.messages.extendleft(reversed(retry))
        self._dispatch(queue)

    def _dead_letter(self, queue: _Queue, message: _Message) -> None:
        if queue.dead is None:
            return
        queue.dead.messages.append(
            _Message(message.body, message.routing_key, message.reply_to, message.order)
        )
        self._dispatch(queue.dead)

    async def _cancel_consumer(self, consumer: _Consumer) -> None:
        if consumer.cancelled:
            return
        consumer.cancelled = True
        queue = consumer.queue
        with contextlib.suppress(ValueError):
            queue.consumers.remove(consumer)
        tasks = list(consumer.in_flight)
        for task in tasks:
            task.cancel()
        # Handlers may await cleanup in their own cancellation path; wait for all of them.
        await asyncio.gather(*tasks, return_exceptions=True)
        returned, consumer.returned = consumer.returned, []
        # Like a closing AMQP channel: unacknowledged messages count as failed deliveries.
        self._return_to_head(queue, returned)
        self._dispatch(queue)

    # -- request / reply --

    async def request(self, command: Envelope, timeout: float = 30.0) -> Envelope:  # noqa: ASYNC109
        self._require_connected()
        if command.id in self._pending:
            raise BusError(f"a request with id {command.id!r} is already waiting for its reply")
        body = command.to_json()
        future: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        self._pending[command.id] = future
        try:
            self._publish_raw("commands", command.type, body, reply_to=self._reply_address)
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise RequestTimeout(
                f"no reply to {command.type} ({command.id}) within {timeout} s"
            ) from None
        finally:
            self._pending.pop(command.id, None)

    async def reply(self, delivery: Delivery, envelope: Envelope) -> None:
        self._require_connected()
        if delivery.reply_to is None:
            return
        request_id = delivery.envelope.id
        body = envelope.model_copy(update={"correlation_id": request_id}).to_json()
        if delivery.reply_to == self._reply_address:
            future = self._pending.get(request_id)
            # A late reply (requester gave up) is dropped, as an unroutable message would be.
            if future is not None and not future.done():
                future.set_result(Envelope.from_json(body))
            return
        # Any queue name is a valid reply address through the default exchange.
        target = self._queues.get(delivery.reply_to)
        if target is not None:
            self._enqueue(target, body, delivery.reply_to, None)

    # -- operators --

    async def dead_letters(self, queue: str) -> list[Envelope]:
        self._require_connected()
        dead = self._queue(queue).dead
        result: list[Envelope] = []
        if dead is None:
            return result
        for message in dead.messages:
            try:
                result.append(Envelope.from_json(message.body))
            except (ValidationError, ValueError):
                continue
        return result

    def _dead_letter_count(self, queue: str) -> int:
        """Number of messages (envelopes or not) in the dead-letter queue; for tests."""
        dead = self._queue(queue).dead
        return len(dead.messages) if dead is not None else 0
