"""The inventory's event stream, followed by polling the gateway."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer

from dynamo_common.client import render
from dynamo_common.client.commands.base import Command, gateway, group

events_app = group("events", "The inventory's event stream.")


def _event_line(event: dict[str, Any]) -> str:
    data = json.dumps(event.get("data"), separators=(",", ":"), ensure_ascii=False)
    if len(data) > 160:
        data = data[:157] + "..."
    return (
        f"{event.get('seq', '-'):>8}  {render.when(event.get('time'))}  {event.get('type')}  {data}"
    )


@events_app.command("tail", cls=Command)
def events_tail(
    lines: Annotated[
        int, typer.Option("-n", "--lines", min=0, help="start with the last N events")
    ] = 10,
    after: Annotated[
        int | None, typer.Option(min=0, help="start after this sequence number instead")
    ] = None,
    follow: Annotated[bool, typer.Option(help="keep polling for new events")] = True,
    interval: Annotated[float, typer.Option(min=0.05, help="seconds between polls")] = 2.0,
    count: Annotated[int | None, typer.Option(min=1, help="stop after this many events")] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="one JSON event per line (NDJSON)")
    ] = False,
) -> None:
    """Follow the inventory's events (polls /api/v1/events?after=SEQ); Ctrl-C stops."""
    shown = 0
    with gateway() as api:
        if after is None:
            # Ask past the end for the current sequence number, then step back N events.
            head = api.get("/api/v1/events", {"after": 2**62, "limit": 1})
            after = max(int(head["last_seq"]) - lines, int(head.get("oldest_seq") or 1) - 1, 0)
        try:
            while True:
                data = api.get("/api/v1/events", {"after": after, "limit": 1000})
                events: list[dict[str, Any]] = data.get("events", [])
                for event in events:
                    if json_out:
                        typer.echo(json.dumps(event, separators=(",", ":"), ensure_ascii=False))
                    else:
                        typer.echo(_event_line(event))
                    after = int(event.get("seq", after))
                    shown += 1
                    if count is not None and shown >= count:
                        return
                sys.stdout.flush()
                if len(events) < 1000:
                    if not follow:
                        return
                    time.sleep(interval)
        except KeyboardInterrupt:
            return
