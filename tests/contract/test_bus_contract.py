"""The bus contract: the same suite runs against the in-process bus and against RabbitMQ.

Whatever a service relies on must pass on both, so the standalone mode behaves like the
distributed one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import aio_pika
import pytest
from pydantic_core import PydanticSerializationError

from dynamo_common.bus import (
    Bus,
    BusError,
    Delivery,
    ExchangeKind,
    QueueSpec,
    Reject,
    RequestTimeout,
)
from dynamo_common.bus.memory import MemoryBus
from dynamo_common.bus.rabbitmq import RabbitBus
from dynamo_common.messages.envelope import Envelope

WAIT = 5.0  # upper bound for anything that should happen "soon"; tests never hang longer
QUIET = 0.3  # how long to watch for something that must NOT happen


def envelope(type_: str, **data: Any) -> Envelope:
    return Envelope(type=type_, source="/dynamo/test", data=data)


@dataclass
class Probe:
    """Bus-specific back doors the contract needs: raw bytes in, dead-letter count out."""

    bus: Bus
    amqp_url: str | None = None

    async def publish_raw(self, exchange: ExchangeKind, routing_key: str, body: bytes) -> None:
        if isinstance(self.bus, MemoryBus):
            self.bus._publish_raw(exchange, routing_key, body)
            return
        assert self.amqp_url is not None
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            target = await channel.get_exchange(f"{self.bus.namespace}.{exchange}")
            await target.publish(aio_pika.Message(body), routing_key)

    async def dead_letter_count(self, queue: str) -> int:
        if isinstance(self.bus, MemoryBus):
            return self.bus._dead_letter_count(queue)
        assert self.amqp_url is not None
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            channel = await connection.channel()
            dead = await channel.declare_queue(f"{self.bus.namespace}.{queue}.dead", passive=True)
            assert dead.declaration_result.message_count is not None
            return dead.declaration_result.message_count


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.integration)])
def bus(request: pytest.FixtureRequest) -> Bus:
    name = "memory_bus" if request.param == "memory" else "rabbit_bus"
    return cast(Bus, request.getfixturevalue(name))


@pytest.fixture
def probe(bus: Bus, request: pytest.FixtureRequest) -> Probe:
    if isinstance(bus, RabbitBus):
        return Probe(bus, request.getfixturevalue("amqp_url"))
    return Probe(bus)


@dataclass
class Collector:
    """A handler that records deliveries; ``behaviour`` decides what it does with each one."""

    behaviour: Callable[[Delivery], Awaitable[None]] | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        self._changed.set()
        if self.behaviour is not None:
            await self.behaviour(delivery)

    async def wait_for(self, count: int, within: float = WAIT) -> list[Delivery]:
        async with asyncio.timeout(within):
            while len(self.deliveries) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.deliveries

    @property
    def types(self) -> list[str]:
        return [d.envelope.type for d in self.deliveries]


async def eventually(condition: Callable[[], Awaitable[bool]], within: float = WAIT) -> None:
    """Poll broker-side state (queue counts, connection state) that sends no notification."""
    async with asyncio.timeout(within):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def consuming(
    bus: Bus, queue: str, handler: Collector, prefetch: int = 50
) -> AsyncIterator[None]:
    subscription = await bus.consume(queue, handler, prefetch=prefetch)
    try:
        yield
    finally:
        await asyncio.wait_for(subscription.cancel(), WAIT)


async def always_fail(_: Delivery) -> None:
    raise RuntimeError("handler failure")


# --- routing -------------------------------------------------------------------------------------


async def test_event_reaches_every_queue_bound_by_pattern(bus: Bus) -> None:
    await bus.declare_queue(QueueSpec("replicas", (("events", "inventory.replica.*.v1"),)))
    await bus.declare_queue(
        # Two matching bindings on one queue still deliver one copy.
        QueueSpec("all-inventory", (("events", "inventory.#"), ("events", "#.v1")))
    )
    await bus.declare_queue(QueueSpec("transfers", (("events", "transfer.#"),)))
    replicas, everything, transfers = Collector(), Collector(), Collector()
    async with (
        consuming(bus, "replicas", replicas),
        consuming(bus, "all-inventory", everything),
        consuming(bus, "transfers", transfers),
    ):
        sent = envelope("inventory.replica.created.v1", lfn="/store/a")
        await bus.publish("events", [sent])
        await replicas.wait_for(1)
        await everything.wait_for(1)
        await asyncio.sleep(QUIET)
    assert [d.envelope for d in replicas.deliveries] == [sent]
    assert [d.envelope for d in everything.deliveries] == [sent]
    assert transfers.deliveries == []
    assert replicas.deliveries[0].routing_key == "inventory.replica.created.v1"
    assert replicas.deliveries[0].delivery_count == 1
    assert replicas.deliveries[0].redelivered is False


async def test_hash_and_star_wildcards_route_like_amqp_topics(bus: Bus) -> None:
    keys = ["a", "a.b", "a.b.c", "x.b.y", "c", "a.c", "a.x.y.c"]
    expected = {
        "a.*": {"a.b", "a.c"},
        "a.#": {"a", "a.b", "a.b.c", "a.c", "a.x.y.c"},
        "#.c": {"a.b.c", "c", "a.c", "a.x.y.c"},
        "*.b.*": {"a.b.c", "x.b.y"},
        "a.#.c": {"a.b.c", "a.c", "a.x.y.c"},
        "#": set(keys),
    }
    collectors: dict[str, Collector] = {}
    async with contextlib.AsyncExitStack() as stack:
        for index, pattern in enumerate(expected):
            await bus.declare_queue(QueueSpec(f"q{index}", (("events", pattern),)))
            collectors[pattern] = Collector()
            await stack.enter_async_context(consuming(bus, f"q{index}", collectors[pattern]))
        await bus.publish("events", [envelope(key) for key in keys])
        for pattern, wanted in expected.items():
            await collectors[pattern].wait_for(len(wanted))
        await asyncio.sleep(QUIET)
    for pattern, wanted in expected.items():
        assert sorted(collectors[pattern].types) == sorted(wanted), pattern


async def test_events_and_commands_exchanges_are_separate(bus: Bus) -> None:
    await bus.declare_queue(QueueSpec("facts", (("events", "inventory.#"),)))
    await bus.declare_queue(QueueSpec("orders", (("commands", "inventory.#"),)))
    facts, orders = Collector(), Collector()
    async with consuming(bus, "facts", facts), consuming(bus, "orders", orders):
        await bus.publish("events", [envelope("inventory.replica.created.v1")])
        await bus.publish("commands", [envelope("inventory.replica.create.v1")])
        await facts.wait_for(1)
        await orders.wait_for(1)
        await asyncio.sleep(QUIET)
    assert facts.types == ["inventory.replica.created.v1"]
    assert orders.types == ["inventory.replica.create.v1"]


async def test_unbound_routing_key_is_dropped(bus: Bus) -> None:
    await bus.publish("events", [envelope("nobody.listens.v1", n=1)])
    await bus.declare_queue(QueueSpec("late", (("events", "nobody.#"),)))
    late = Collector()
    async with consuming(bus, "late", late):
        await bus.publish("events", [envelope("nobody.listens.v1", n=2)])
        await late.wait_for(1)
        await asyncio.sleep(QUIET)
    assert [d.envelope.data["n"] for d in late.deliveries] == [2]


async def test_messages_wait_in_a_queue_until_a_consumer_comes(bus: Bus) -> None:
    await bus.declare_queue(QueueSpec("patient", (("events", "x.#"),)))
    await bus.publish("events", [envelope("x.one"), envelope("x.two")])
    patient = Collector()
    async with consuming(bus, "patient", patient):
        await patient.wait_for(2)
    assert patient.types == ["x.one", "x.two"]


# --- acknowledgement, retries, dead letters ------------------------------------------------------


async def test_handler_failure_redelivers_until_limit_then_dead_letters(
    bus: Bus, probe: Probe
) -> None:
    await bus.declare_queue(QueueSpec("flaky", (("events", "job.#"),), delivery_limit=2))
    failing = Collector(always_fail)
    sent = envelope("job.run.v1", attempt="always fails")
    async with consuming(bus, "flaky", failing):
        await bus.publish("events", [sent])
        await failing.wait_for(3)
        await eventually(lambda: _has_dead_letters(bus, "flaky", 1))
        await asyncio.sleep(QUIET)
    # delivery_limit=2: the first delivery plus two redeliveries, then the dead-letter queue.
    assert [d.delivery_count for d in failing.deliveries] == [1, 2, 3]
    assert [d.redelivered for d in failing.deliveries] == [False, True, True]
    assert await bus.dead_letters("flaky") == [sent]
    assert await probe.dead_letter_count("flaky") == 1


async def test_failed_handler_succeeds_on_redelivery_without_dead_letter(bus: Bus) -> None:
    await bus.declare_queue(QueueSpec("retry", (("events", "job.#"),), delivery_limit=3))

    async def fail_first_time(delivery: Delivery) -> None:
        if delivery.delivery_count == 1:
            raise RuntimeError("transient")

    handler = Collector(fail_first_time)
    async with consuming(bus, "retry", handler):
        await bus.publish("events", [envelope("job.run.v1")])
        await handler.wait_for(2)
        await asyncio.sleep(QUIET)
    assert [d.delivery_count for d in handler.deliveries] == [1, 2]
    assert await bus.dead_letters("retry") == []


async def test_reject_dead_letters_without_retry(bus: Bus, probe: Probe) -> None:
    await bus.declare_queue(QueueSpec("strict", (("events", "job.#"),), delivery_limit=5))

    async def reject(_: Delivery) -> None:
        raise Reject("this can never succeed")

    handler = Collector(reject)
    poison = envelope("job.poison.v1")
    fine = envelope("job.fine.v1")
    async with consuming(bus, "strict", handler):
        await bus.publish("events", [poison])
        await eventually(lambda: _has_dead_letters(bus, "strict", 1))
        handler.behaviour = None
        # The queue is not blocked by the poison message.
        await bus.publish("events", [fine])
        await handler.wait_for(2)
        await asyncio.sleep(QUIET)
    assert [d.envelope for d in handler.deliveries] == [poison, fine]
    assert await bus.dead_letters("strict") == [poison]
    assert await probe.dead_letter_count("strict") == 1


async def test_malformed_body_is_dead_lettered(bus: Bus, probe: Probe) -> None:
    await bus.declare_queue(QueueSpec("inbox", (("events", "job.#"),)))
    handler = Collector()
    async with consuming(bus, "inbox", handler):
        await probe.publish_raw("events", "job.garbage.v1", b"{not an envelope")
        await probe.publish_raw("events", "job.garbage.v1", b'{"valid": "json, wrong shape"}')
        good = envelope("job.good.v1")
        await bus.publish("events", [good])
        await handler.wait_for(1)

        async def both_dead() -> bool:
            return await probe.dead_letter_count("inbox") == 2

        await eventually(both_dead)
        await asyncio.sleep(QUIET)
    assert [d.envelope for d in handler.deliveries] == [good]
    # Not envelopes, so not listed; but they are in the dead-letter queue for operators.
    assert await bus.dead_letters("inbox") == []


async def test_dead_letters_are_read_without_being_removed(bus: Bus) -> None:
    await bus.declare_queue(QueueSpec("reread", (("events", "job.#"),), delivery_limit=0))
    failing = Collector(always_fail)
    sent = [envelope("job.a.v1"), envelope("job.b.v1")]
    async with consuming(bus, "reread", failing):
        await bus.publish("events", sent)
        await eventually(lambda: _has_dead_letters(bus, "reread", 2))
    assert await bus.dead_letters("reread") == sent
    assert await bus.dead_letters("reread") == sent


async def test_ack_happens_only_after_handler_returns(bus: Bus) -> None:
    await bus.declare_queue(QueueSpec("slow", (("events", "job.#"),)))
    started = asyncio.Event()

    async def block_forever(_: Delivery) -> None:
        started.set()
        await asyncio.Event().wait()

    blocked = Collector(block_forever)
    sent = envelope("job.slow.v1")
    subscription = await bus.consume("slow", blocked, prefetch=1)
    await bus.publish("events", [sent])
    await asyncio.wait_for(started.wait(), WAIT)
    # The consumer goes away mid-handling: the message was never acknowledged.
    await asyncio.wait_for(subscription.cancel(), WAIT)

    second = Collector()
    async with consuming(bus, "slow", second):
        await second.wait_for(1)
    assert second.deliveries[0].envelope == sent
    assert second.deliveries[0].redelivered is True
    # An unacknowledged delivery counts as a failed attempt on both buses.
    assert second.deliveries[0].delivery_count == 2


async def test_handler_gets_its_own_copy_of_the_message(bus: Bus) -> None:
    await bus.declare_queue(QueueSpec("one", (("events", "job.#"),)))
    await bus.declare_queue(QueueSpec("two", (("events", "job.#"),)))

    async def mutate(delivery: Delivery) -> None:
        delivery.envelope.data["items"].append("handler was here")

    first, second = Collector(mutate), Collector()
    sent = envelope("job.copy.v1", items=["original"])
    async with consuming(bus, "one", first), consuming(bus, "two", second):
        await bus.publish("events", [sent])
        await first.wait_for(1)
        await second.wait_for(1)
    assert sent.data["items"] == ["original"]
    assert second.deliveries[0].envelope.data["items"] == ["original"]


async def test_unserialisable_envelope_fails_publish_and_publishes_nothing(bus: Bus) -> None:
    await bus.declare_queue(QueueSpec("strict-json", (("events", "job.#"),)))
    bad = envelope("job.bad.v1", payload=object())
    with pytest.raises(PydanticSerializationError):
        await bus.publish("events", [envelope("job.fine.v1"), bad])
    handler = Collector()
    async with consuming(bus, "strict-json", handler):
        await asyncio.sleep(QUIET)
    assert handler.deliveries == []


# --- consumers -----------------------------------------------------------------------------------


async def test_single_active_consumer_standby_takes_over(bus: Bus) -> None:
    await bus.declare_queue(
        QueueSpec("writer", (("commands", "inventory.#"),), single_active_consumer=True)
    )
    active, standby = Collector(), Collector()
    first = await bus.consume("writer", active, prefetch=10)
    second = await bus.consume("writer", standby, prefetch=10)
    try:
        await bus.publish("commands", [envelope(f"inventory.cmd{i}.v1") for i in range(5)])
        await active.wait_for(5)
        await asyncio.sleep(QUIET)
        assert standby.deliveries == []

        await asyncio.wait_for(first.cancel(), WAIT)
        await bus.publish("commands", [envelope(f"inventory.cmd{i}.v1") for i in range(5, 10)])
        await standby.wait_for(5)
        await asyncio.sleep(QUIET)
    finally:
        await asyncio.wait_for(second.cancel(), WAIT)
    assert active.types == [f"inventory.cmd{i}.v1" for i in range(5)]
    assert standby.types == [f"inventory.cmd{i}.v1" for i in range(5, 10)]


async def test_competing_consumers_share_a_queue(bus: Bus) -> None:
    await bus.declare_queue(QueueSpec("workers", (("commands", "transfer.#"),)))
    release = asyncio.Event()

    async def hold(_: Delivery) -> None:
        await release.wait()

    one, two = Collector(hold), Collector(hold)
    async with consuming(bus, "workers", one, prefetch=2), consuming(bus, "workers", two, 2):
        await bus.publish("commands", [envelope(f"transfer.f{i}.v1") for i in range(4)])
        await one.wait_for(2)
        await two.wait_for(2)
        release.set()
    assert sorted(one.types + two.types) == [f"transfer.f{i}.v1" for i in range(4)]


async def test_prefetch_limits_in_flight_messages(bus: Bus) -> None:
    await bus.declare_queue(QueueSpec("bounded", (("events", "job.#"),)))
    release = asyncio.Event()
    in_flight = 0
    peak = 0
    done = 0

    async def work(_: Delivery) -> None:
        nonlocal in_flight, peak, done
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await release.wait()
        finally:
            in_flight -= 1
        done += 1

    handler = Collector(work)
    async with consuming(bus, "bounded", handler, prefetch=3):
        await bus.publish("events", [envelope(f"job.{i}.v1") for i in range(10)])
        await handler.wait_for(3)
        await asyncio.sleep(QUIET)
        assert len(handler.deliveries) == 3
        assert in_flight == 3
        release.set()
        await handler.wait_for(10)

        async def all_done() -> bool:
            return done == 10

        await eventually(all_done)
    assert peak == 3


async def test_publish_many_preserves_order_on_one_queue(bus: Bus) -> None:
    await bus.declare_queue(QueueSpec("ordered", (("events", "seq.#"),)))
    count = 1200  # more than one publish window
    handler = Collector()
    async with consuming(bus, "ordered", handler, prefetch=100):
        await bus.publish("events", [envelope("seq.item.v1", n=i) for i in range(count)])
        await handler.wait_for(count, within=20)
    assert [d.envelope.data["n"] for d in handler.deliveries] == list(range(count))


async def test_consume_of_undeclared_queue_fails(bus: Bus) -> None:
    with pytest.raises(BusError):
        await bus.consume("never-declared", Collector())


async def test_redeclaring_a_queue_with_other_arguments_fails(bus: Bus) -> None:
    await bus.declare_queue(QueueSpec("fixed", (("events", "a.#"),), delivery_limit=3))
    # Same arguments, extra binding: fine (bindings add up).
    await bus.declare_queue(QueueSpec("fixed", (("events", "b.#"),), delivery_limit=3))
    with pytest.raises(BusError):
        await bus.declare_queue(QueueSpec("fixed", (("events", "a.#"),), delivery_limit=4))
    with pytest.raises(BusError):
        await bus.declare_queue(
            QueueSpec("fixed", (("events", "a.#"),), delivery_limit=3, single_active_consumer=True)
        )
    handler = Collector()
    async with consuming(bus, "fixed", handler):
        await bus.publish("events", [envelope("a.x"), envelope("b.y")])
        await handler.wait_for(2)
    assert handler.types == ["a.x", "b.y"]


# --- request / reply -----------------------------------------------------------------------------


async def test_request_gets_reply_with_correlation(bus: Bus) -> None:
    await bus.declare_queue(QueueSpec("inventory-commands", (("commands", "inventory.#"),)))

    async def answer(delivery: Delivery) -> None:
        assert delivery.reply_to is not None
        await bus.reply(
            delivery,
            envelope("inventory.answer.v1", echo=delivery.envelope.data["question"]),
        )

    server = Collector(answer)
    async with consuming(bus, "inventory-commands", server):
        commands = [envelope("inventory.ask.v1", question=i) for i in range(3)]
        replies = await asyncio.gather(*(bus.request(c, timeout=WAIT) for c in commands))
    for command, reply in zip(commands, replies, strict=True):
        assert reply.type == "inventory.answer.v1"
        assert reply.data["echo"] == command.data["question"]
        assert reply.correlation_id == command.id


async def test_request_times_out_without_consumer(bus: Bus) -> None:
    await bus.declare_queue(QueueSpec("unserved", (("commands", "inventory.#"),)))
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(RequestTimeout):
        await bus.request(envelope("inventory.ask.v1"), timeout=0.3)
    assert loop.time() - start < 2.0


async def test_late_reply_after_timeout_is_dropped(bus: Bus) -> None:
    await bus.declare_queue(QueueSpec("sluggish", (("commands", "inventory.#"),)))
    answered = asyncio.Event()

    async def answer_late(delivery: Delivery) -> None:
        await asyncio.sleep(0.4)
        await bus.reply(delivery, envelope("inventory.answer.v1"))
        answered.set()

    server = Collector(answer_late)
    async with consuming(bus, "sluggish", server):
        with pytest.raises(RequestTimeout):
            await bus.request(envelope("inventory.ask.v1"), timeout=0.2)
        await asyncio.wait_for(answered.wait(), WAIT)
        # The bus still works for the next request.
        server.behaviour = None
        fast = Collector(
            lambda d: bus.reply(d, envelope("inventory.answer.v1", fast=True)),
        )
        await bus.declare_queue(QueueSpec("quick", (("commands", "quick.#"),)))
        async with consuming(bus, "quick", fast):
            reply = await bus.request(envelope("quick.ask.v1"), timeout=WAIT)
    assert reply.data == {"fast": True}


async def test_reply_without_reply_address_is_a_no_op(bus: Bus) -> None:
    await bus.declare_queue(QueueSpec("fire-and-forget", (("commands", "job.#"),)))
    handler = Collector(lambda d: bus.reply(d, envelope("job.answer.v1")))
    async with consuming(bus, "fire-and-forget", handler):
        await bus.publish("commands", [envelope("job.do.v1")])
        await handler.wait_for(1)
        await asyncio.sleep(QUIET)
    assert handler.deliveries[0].reply_to is None
    assert await bus.dead_letters("fire-and-forget") == []


# --- lifecycle -----------------------------------------------------------------------------------


async def test_ping_reflects_connection_state(bus: Bus) -> None:
    assert await bus.ping() is True
    await bus.close()
    assert await bus.ping() is False
    await bus.close()  # idempotent


async def test_close_cancels_running_handlers(bus: Bus) -> None:
    await bus.declare_queue(QueueSpec("busy", (("events", "job.#"),)))
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def long_job(_: Delivery) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await bus.consume("busy", Collector(long_job))
    await bus.publish("events", [envelope("job.long.v1")])
    await asyncio.wait_for(started.wait(), WAIT)
    await asyncio.wait_for(bus.close(), WAIT)
    assert cancelled.is_set()


async def _has_dead_letters(bus: Bus, queue: str, count: int) -> bool:
    return len(await bus.dead_letters(queue)) >= count
