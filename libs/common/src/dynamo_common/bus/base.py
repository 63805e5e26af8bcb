"""The bus interface. Two implementations share it: RabbitMQ (aio-pika) and in-process.

Semantics every implementation guarantees (a contract test suite checks both):

* Two exchanges per namespace: ``events`` (topic: facts) and ``commands`` (topic: requests).
  Routing keys are the envelope ``type``; binding patterns use ``*`` (one word) and ``#``
  (zero or more words).
* Queues are durable, bound by patterns, and have a delivery limit. A handler that returns
  normally acks; one that raises is redelivered (delivery_count + 1) until the limit, then the
  message goes to the queue's dead-letter queue ``<queue>.dead``. A handler that raises
  ``Reject`` dead-letters at once (poison message: never retried).
* ``single_active_consumer``: only one consumer of the queue receives messages; the others wait
  as standby and take over when it goes away.
* ``publish`` returns only when the broker has confirmed every message.
* ``request`` sends a command with a reply address and waits for the reply envelope.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from dynamo_common.messages.envelope import Envelope

ExchangeKind = Literal["events", "commands"]


class Reject(Exception):
    """Raised by a handler for a message that can never succeed: dead-letter it at once."""


class BusError(Exception):
    pass


class RequestTimeout(BusError):
    pass


@dataclass(frozen=True, slots=True)
class Delivery:
    envelope: Envelope
    routing_key: str
    delivery_count: int
    reply_to: str | None
    redelivered: bool


Handler = Callable[[Delivery], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class QueueSpec:
    name: str
    bindings: tuple[tuple[ExchangeKind, str], ...]
    single_active_consumer: bool = False
    delivery_limit: int = 5


class Subscription(abc.ABC):
    @abc.abstractmethod
    async def cancel(self) -> None: ...


class Bus(abc.ABC):
    namespace: str

    @abc.abstractmethod
    async def connect(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> bool:
        """True when the bus can take messages (used by /readyz)."""

    @abc.abstractmethod
    async def publish(self, exchange: ExchangeKind, envelopes: Sequence[Envelope]) -> None:
        """Publish persistent messages, routing key = envelope.type; return after all confirms."""

    @abc.abstractmethod
    async def declare_queue(self, spec: QueueSpec) -> None: ...

    @abc.abstractmethod
    async def consume(self, queue: str, handler: Handler, prefetch: int = 50) -> Subscription: ...

    @abc.abstractmethod
    async def request(self, command: Envelope, timeout: float = 30.0) -> Envelope:  # noqa: ASYNC109
        """Publish a command on the commands exchange and wait for its reply."""

    @abc.abstractmethod
    async def reply(self, delivery: Delivery, envelope: Envelope) -> None:
        """Send ``envelope`` to the reply address of ``delivery`` (no-op if it has none)."""

    @abc.abstractmethod
    async def dead_letters(self, queue: str) -> list[Envelope]:
        """Messages currently in ``queue``'s dead-letter queue (without removing them)."""
