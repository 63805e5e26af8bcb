"""The command consumer: transfer and deletion requests from the other services."""

from __future__ import annotations

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from dynamo_common.bus.base import Bus, Delivery, Handler, QueueSpec
from dynamo_common.messages.envelope import Envelope
from dynamo_common.messages.registry import TRANSFER_REPLY
from dynamo_transfer.inventory import SOURCE
from dynamo_transfer.runtime import TransferRuntime

COMMAND_QUEUE = QueueSpec(
    name="transfer.commands",
    bindings=(("commands", "transfer.#"),),
    delivery_limit=5,
)

_TRANSIENT = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


def command_handler(rt: TransferRuntime, bus: Bus) -> Handler:
    async def handle(delivery: Delivery) -> None:
        # The reply goes out after the commit, the ack after the reply: a crash in between
        # redelivers the command, which then gets the recorded reply.
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
                type=TRANSFER_REPLY,
                source=SOURCE,
                correlation_id=delivery.envelope.id,
                data=reply.model_dump(mode="json"),
            ),
        )

    return handle
