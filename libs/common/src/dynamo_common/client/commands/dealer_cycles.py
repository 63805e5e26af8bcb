"""The dealer's own record: its cycles and every proposal's decision, running a cycle now,
and the copies in flight."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

from dynamo_common.client import render
from dynamo_common.client.api import Gateway
from dynamo_common.client.commands.base import (
    AllOption,
    IntervalOption,
    JsonOption,
    LimitOption,
    OffsetOption,
    TimeoutOption,
    WaitOption,
    err,
    fail,
    fetch_list,
    gateway,
    group,
    out,
    poll,
    print_json,
    sub_command,
)
from dynamo_common.client.errors import ClientError, ExitCode

dealer_app = group("dealer", "The dealer: its cycles, decisions and copies in flight.")
_CYCLES = "/api/v1/dealer/cycles"


def _cycle_line(cycle: dict[str, Any]) -> str:
    return (
        f"{'dry-run ' if cycle.get('dry_run') else ''}cycle {cycle['id']}: {cycle['status']}, "
        f"{cycle.get('proposals')} proposals: {cycle.get('accepted')} accepted, "
        f"{cycle.get('rejected')} rejected, {cycle.get('deferred')} deferred, "
        f"{cycle.get('merged')} merged; {render.size(cycle.get('bytes_placed'))} placed"
    )


def _print_cycle(console: Console, cycle: dict[str, Any]) -> None:
    console.print(_cycle_line(cycle), soft_wrap=True)
    console.print(
        f"requested by {render.text(cycle.get('requested_by'))}; started "
        f"{render.when(cycle.get('started'))}, finished {render.when(cycle.get('finished'))}"
        + (f"; {cycle['comment']}" if cycle.get("comment") else ""),
        soft_wrap=True,
    )
    commands = cycle.get("commands")
    if isinstance(commands, dict):
        console.print(
            f"commands: {commands.get('batches')} batches, {commands.get('accepted')} accepted, "
            f"{commands.get('rejected')} rejected, {commands.get('pending')} pending",
            soft_wrap=True,
        )
    for label in ("error", "warnings"):
        if cycle.get(label):
            console.print(f"[yellow]{label}:[/] {cycle[label]}", soft_wrap=True)
    per_plugin: dict[str, dict[str, int]] = cycle.get("per_plugin") or {}
    decisions = sorted({d for counts in per_plugin.values() for d in counts})
    render.table(
        console,
        "Per plugin",
        ["plugin", *decisions],
        [[name, *(counts.get(d, 0) for d in decisions)] for name, counts in per_plugin.items()],
        right=decisions,
    )


@sub_command(dealer_app, "cycles")
def cycles(
    status: Annotated[str | None, typer.Option(help="queued, running, done or failed")] = None,
    limit: LimitOption = 20,
    offset: OffsetOption = 0,
    everything: AllOption = False,
    json_out: JsonOption = False,
) -> None:
    """The dealer's cycles, newest first."""
    with gateway() as api:
        page = fetch_list(api, _CYCLES, {"status": status}, limit, offset, everything)
    if json_out:
        print_json(page)
        return
    console = out()
    rows = [
        [
            c["id"],
            c["status"] + (" (dry run)" if c.get("dry_run") else ""),
            render.when(c.get("started")),
            c.get("proposals"),
            c.get("accepted"),
            c.get("rejected"),
            c.get("deferred"),
            render.size(c.get("bytes_placed")),
            c.get("requested_by"),
        ]
        for c in page["items"]
    ]
    render.table(
        console,
        None,
        ["id", "status", "started", "proposals", "accepted", "rejected", "deferred", "placed",
         "by"],
        rows,
        right=["id", "proposals", "accepted", "rejected", "deferred", "placed"],
    )  # fmt: skip
    render.footer(console, page, len(rows))


@sub_command(dealer_app, "cycle")
def cycle(
    cycle_id: Annotated[int, typer.Argument(metavar="ID", min=1)],
    decisions: Annotated[
        bool, typer.Option("--decisions", help="every proposal and its decision instead")
    ] = False,
    plugin: Annotated[str | None, typer.Option(help="with --decisions: one plugin's")] = None,
    decision: Annotated[
        str | None, typer.Option(help="with --decisions: accepted, rejected, deferred, merged")
    ] = None,
    reference: Annotated[
        str | None, typer.Option(help="with --decisions: e.g. a request id")
    ] = None,
    limit: LimitOption = 1000,
    json_out: JsonOption = False,
) -> None:
    """One dealer cycle: its counts per plugin, or (--decisions) every proposal's fate."""
    with gateway() as api:
        if decisions:
            page = fetch_list(
                api,
                f"{_CYCLES}/{cycle_id}/decisions",
                {"plugin": plugin, "decision": decision, "reference": reference},
                limit,
                0,
                True,
            )
        else:
            data = api.get(f"{_CYCLES}/{cycle_id}")
    if not decisions:
        if json_out:
            print_json(data)
        else:
            _print_cycle(out(), data)
        return
    if json_out:
        print_json(page)
        return
    render.table(
        out(),
        f"Cycle {cycle_id}",
        ["plugin", "reference", "item", "site", "group", "priority", "decision", "reason",
         "volume"],
        [
            [
                d["plugin"],
                d["reference"],
                d["dataset"] + (f"#{d['block']}" if d.get("block") else ""),
                d.get("site") or d.get("requested_site"),
                d["group"],
                f"{d['priority']:g}",
                d["decision"],
                d.get("reason"),
                render.size(d.get("volume")),
            ]
            for d in page["items"]
        ],
        right=["priority", "volume"],
    )  # fmt: skip


def _wait(api: Gateway, cycle_id: int, timeout: float, interval: float) -> dict[str, Any]:
    try:
        with err().status(f"waiting for dealer cycle {cycle_id}"):
            return poll(
                lambda: dict(api.get(f"{_CYCLES}/{cycle_id}")),
                lambda c: c.get("status") in ("done", "failed"),
                timeout=timeout,
                interval=interval,
                what=f"dealer cycle {cycle_id}",
            )
    except ClientError as exc:
        fail(exc)


@sub_command(dealer_app, "run")
def run(
    dry_run: Annotated[bool, typer.Option(help="decide and record only, send nothing")] = False,
    comment: Annotated[str, typer.Option(help="why, for the record")] = "",
    wait: WaitOption = False,
    timeout: TimeoutOption = 3600,
    interval: IntervalOption = 2.0,
    json_out: JsonOption = False,
) -> None:
    """Run a dealer cycle now (operators); with --wait, its record once finished."""
    with gateway() as api:
        submitted = api.post(_CYCLES, {"dry_run": dry_run, "comment": comment})
        if not wait:
            if json_out:
                print_json(submitted)
            else:
                typer.echo(f"dealer cycle {submitted['id']} queued")
            return
        data = _wait(api, int(submitted["id"]), timeout, interval)
    if json_out:
        print_json(data)
    else:
        _print_cycle(out(), data)
    if data.get("status") == "failed":
        fail(ClientError(f"dealer cycle {data['id']} failed: {data.get('error')}", ExitCode.FAILED))


@sub_command(dealer_app, "monitoring")
def monitoring(
    replicas: Annotated[
        bool, typer.Option("--replicas", help="each replica in flight instead of the sums")
    ] = False,
    site: Annotated[str | None, typer.Option(help="with --replicas: one site's")] = None,
    stuck: Annotated[
        bool, typer.Option("--stuck", help="with --replicas: only stuck ones")
    ] = False,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    everything: AllOption = False,
    json_out: JsonOption = False,
) -> None:
    """The copies the dealer placed that are still in flight: copied against total."""
    with gateway() as api:
        if replicas:
            page = fetch_list(
                api,
                "/api/v1/dealer/monitoring/replicas",
                {"site": site, "stuck": True if stuck else None},
                limit,
                offset,
                everything,
            )
        else:
            data = api.get("/api/v1/dealer/monitoring")
    console = out()
    if not replicas:
        if json_out:
            print_json(data)
            return
        total = data["total"]
        rows = [
            [
                s["site"],
                render.size(s["copied"]),
                render.size(s["total"]),
                s["replicas"],
                s["stuck"],
            ]
            for s in data.get("sites", [])
        ]
        rows.append(
            ["total", render.size(total["copied"]), render.size(total["total"]),
             total["replicas"], total["stuck"]]
        )  # fmt: skip
        render.table(
            console,
            f"In flight (stuck: under 1% in {data.get('stuck_days'):g} days)",
            ["site", "copied", "total", "replicas", "stuck"],
            rows,
            right=["copied", "total", "replicas", "stuck"],
        )
        return
    if json_out:
        print_json(page)
        return
    rows = [
        [
            r["dataset"] + (f"#{r['block']}" if r.get("block") else ""),
            r["site"],
            render.size(r["copied"]),
            render.size(r["total"]),
            render.percent(r.get("progress")),
            render.when(r.get("placed")),
            render.when(r.get("last_progress")),
            r.get("stuck"),
        ]
        for r in page["items"]
    ]
    render.table(
        console,
        None,
        ["replica", "site", "copied", "total", "progress", "placed", "last progress", "stuck"],
        rows,
        right=["copied", "total", "progress"],
    )
    render.footer(console, page, len(rows))
