"""Best-effort announcements: events whose truth is a record the service has committed.

An agent's cycle is recorded in its own database before it is announced; a lost
``*.cycle.finished`` event costs a follower a refresh, never data. So a publication that
fails is logged and the caller carries on.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel

from dynamo_common.bus.base import Bus
from dynamo_common.messages.envelope import Envelope

log = logging.getLogger("dynamo.bus")


async def announce(bus: Bus, source: str, event_type: str, body: BaseModel) -> None:
    try:
        await bus.publish(
            "events", [Envelope(type=event_type, source=source, data=body.model_dump(mode="json"))]
        )
    except Exception:
        log.exception("could not publish %s", event_type)
