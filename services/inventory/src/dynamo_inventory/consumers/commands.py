"""The command consumer: the inventory's only write path."""

from __future__ import annotations

import logging

import asyncpg
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from dynamo_common.bus.base import Bus, Delivery, QueueSpec
from dynamo_common.messages.envelope import Envelope
from dynamo_common.messages.registry import COMMAND_REPLY
from dynamo_inventory.runtime import SOURCE, InventoryRuntime

log = logging.getLogger("dynamo.inventory.commands")

COMMAND_QUEUE = QueueSpec(
    name="inventory.commands",
    bindings=(("commands", "inventory.#"),),
    # Several inventory instances may run; the broker lets exactly one of them consume.
    single_active_consumer=True,
    delivery_limit=5,
)

_TRANSIENT = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


def command_handler(rt: InventoryRuntime, bus: Bus):  # type: ignore[no-untyped-def]
    async def handle(delivery: Delivery) -> None:
        # A database restart should delay commands, not dead-letter them: keep retrying the
        # same command for a while before giving the message back to the broker.
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(_TRANSIENT),
            wait=wait_exponential(multiplier=0.2, max=5),
            stop=stop_after_delay(120),
            reraise=True,
        ):
            with attempt:
                reply = await rt.handle_command(delivery.envelope)
        await bus.reply(
            delivery,
            Envelope(
                type=COMMAND_REPLY,
                source=SOURCE,
                correlation_id=delivery.envelope.id,
                data=reply.model_dump(mode="json"),
            ),
        )

    return handle
