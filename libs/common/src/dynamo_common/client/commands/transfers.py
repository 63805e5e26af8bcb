"""The transfer queue: its summary, the held files and the history of attempts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from dynamo_common.client import render
from dynamo_common.client.commands.base import (
    AllOption,
    Command,
    F,
    IntervalOption,
    JsonOption,
    LimitOption,
    OffsetOption,
    TimeoutOption,
    WaitOption,
    fail,
    fetch_list,
    gateway,
    group,
    out,
    print_json,
)
from dynamo_common.client.commands.progress import volume_bar
from dynamo_common.client.commands.replicas import DeletionProgress, split_item
from dynamo_common.client.commands.requests import follow
from dynamo_common.client.errors import ClientError, ExitCode

transfers_app = group("transfers", "The transfer queue.")


def _transfer_command(name: str) -> Callable[[F], F]:
    return transfers_app.command(name, cls=Command)


@_transfer_command("summary")
def transfers_summary(json_out: JsonOption = False) -> None:
    """Open files per link and state."""
    with gateway() as api:
        data = api.get("/api/v1/transfers/summary")
    if json_out:
        print_json(data)
        return
    console = out()
    render.table(
        console,
        "Totals",
        ["state", "files", "volume"],
        [[state, t["files"], render.size(t["bytes"])] for state, t in data["totals"].items()],
        right=["files", "volume"],
    )
    render.table(
        console,
        "Links",
        ["kind", "source", "destination", "state", "files", "volume"],
        [
            [
                r["kind"],
                r.get("source"),
                r["destination"],
                r["state"],
                r["files"],
                render.size(r["bytes"]),
            ]
            for r in data["links"]
        ],
        right=["files", "volume"],
    )


@_transfer_command("held")
def transfers_held(
    site: Annotated[str | None, typer.Option(help="destination (or site of a deletion)")] = None,
    source: Annotated[str | None, typer.Option(help="source site")] = None,
    kind: Annotated[str | None, typer.Option(help="transfer or deletion")] = None,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    everything: AllOption = False,
    json_out: JsonOption = False,
) -> None:
    """Held files, with the reason they are held."""
    with gateway() as api:
        page = fetch_list(
            api,
            "/api/v1/transfers/held",
            {"site": site, "source": source, "kind": kind},
            limit,
            offset,
            everything,
        )
    if json_out:
        print_json(page)
        return
    console = out()
    rows = [
        [
            t["id"],
            t["kind"],
            t["lfn"],
            t.get("source"),
            t["destination"],
            t.get("attempts"),
            t.get("reason"),
        ]
        for t in page["items"]
    ]
    render.table(
        console, None, ["id", "kind", "file", "source", "destination", "attempts", "reason"], rows
    )
    render.footer(console, page, len(rows))


@_transfer_command("history")
def transfers_history(
    site: Annotated[str | None, typer.Option(help="destination (or site of a deletion)")] = None,
    source: Annotated[str | None, typer.Option(help="source site")] = None,
    kind: Annotated[str | None, typer.Option(help="transfer or deletion")] = None,
    result: Annotated[str | None, typer.Option(help="done or failed")] = None,
    lfn: Annotated[str | None, typer.Option(help="files, wildcards * ?")] = None,
    since: Annotated[str | None, typer.Option(help="ISO time, e.g. 2026-01-31T00:00Z")] = None,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    everything: AllOption = False,
    json_out: JsonOption = False,
) -> None:
    """Every attempt at a transfer or deletion, newest first."""
    with gateway() as api:
        page = fetch_list(
            api,
            "/api/v1/transfers/history",
            {
                "site": site,
                "source": source,
                "kind": kind,
                "result": result,
                "lfn": lfn,
                "since": since,
            },
            limit,
            offset,
            everything,
        )
    if json_out:
        print_json(page)
        return
    console = out()
    rows = [
        [
            render.when(h.get("finished")),
            h["kind"],
            h["file"],
            h.get("source"),
            h["destination"],
            h["result"],
            render.size(h.get("bytes")),
            h.get("error"),
        ]
        for h in page["items"]
    ]
    render.table(
        console,
        None,
        ["finished", "kind", "file", "source", "destination", "result", "volume", "error"],
        rows,
        right=["volume"],
    )
    render.footer(console, page, len(rows))


@_transfer_command("current")
def transfers_current(
    site: Annotated[str | None, typer.Option(help="destination (or site of a deletion)")] = None,
    source: Annotated[str | None, typer.Option(help="source site")] = None,
    kind: Annotated[str | None, typer.Option(help="transfer or deletion")] = None,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    everything: AllOption = False,
    json_out: JsonOption = False,
) -> None:
    """Files queued or being transferred (or deleted) now."""
    with gateway() as api:
        page = fetch_list(
            api,
            "/api/v1/transfers/current",
            {"site": site, "source": source, "kind": kind},
            limit,
            offset,
            everything,
        )
    if json_out:
        print_json(page)
        return
    console = out()
    rows = [
        [
            t["id"],
            t["kind"],
            t["state"],
            t["lfn"],
            t.get("source"),
            t["destination"],
            render.size(t.get("size")),
            t.get("attempts"),
        ]
        for t in page["items"]
    ]
    render.table(
        console,
        None,
        ["id", "kind", "state", "file", "source", "destination", "size", "attempts"],
        rows,
        right=["id", "size", "attempts"],
    )
    render.footer(console, page, len(rows))


@_transfer_command("replicas")
def transfers_replicas(
    site: Annotated[str | None, typer.Option(help="destination (or site of a deletion)")] = None,
    kind: Annotated[str | None, typer.Option(help="transfer or deletion")] = None,
    stuck: Annotated[bool, typer.Option("--stuck", help="only the stuck ones")] = False,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    everything: AllOption = False,
    json_out: JsonOption = False,
) -> None:
    """Block replicas in flight: volume done against total, stuck ones first."""
    with gateway() as api:
        page = fetch_list(
            api,
            "/api/v1/transfers/replicas",
            {"site": site, "kind": kind, "stuck_only": True if stuck else None},
            limit,
            offset,
            everything,
        )
    if json_out:
        print_json(page)
        return
    console = out()
    rows = [
        [
            r["kind"],
            f"{r['dataset']}#{r['block']}",
            r["site"],
            f"{r['files_done']}/{r['files_total']}",
            f"{render.size(r['bytes_done'])} / {render.size(r['bytes_total'])}",
            r.get("files_held"),
            render.when(r.get("last_progress")),
            r.get("stuck"),
        ]
        for r in page["items"]
    ]
    render.table(
        console,
        None,
        ["kind", "block", "site", "files", "volume", "held", "last progress", "stuck"],
        rows,
        right=["files", "volume", "held"],
    )
    render.footer(console, page, len(rows))


@_transfer_command("release")
def transfers_release(
    ids: Annotated[list[int] | None, typer.Argument(metavar="[ID]...", help="held files")] = None,
    site: Annotated[str | None, typer.Option(help="every held file to (or at) this site")] = None,
    source: Annotated[str | None, typer.Option(help="every held file from this site")] = None,
    kind: Annotated[str | None, typer.Option(help="transfer or deletion")] = None,
    json_out: JsonOption = False,
) -> None:
    """Release held files: they are tried again from scratch (operators)."""
    with gateway() as api:
        data = api.post(
            "/api/v1/transfers/held/release",
            {"ids": ids or None, "site": site, "source": source, "kind": kind},
        )
    if json_out:
        print_json(data)
        return
    typer.echo(f"released {data['released']} held files")


@_transfer_command("delete")
def transfers_delete(
    item: Annotated[str, typer.Argument(metavar="ITEM", help="DATASET or DATASET#BLOCK")],
    site: Annotated[str, typer.Option(help="the site to delete the replica from")],
    wait: WaitOption = False,
    timeout: TimeoutOption = 3600,
    interval: IntervalOption = 2.0,
    json_out: JsonOption = False,
) -> None:
    """Delete a replica's files at a site now, then the replica (no last-copy check).

    Straight to the transfer service: no request is recorded and nothing checks that other
    copies exist (`dynamo request delete` does both). With --wait, a progress bar of the
    volume deleted until the inventory no longer lists the replica there; exit 6 at
    --timeout (the deletion goes on)."""
    try:
        dataset, block = split_item(item)
    except ClientError as exc:
        fail(exc)
    with gateway() as api:
        progress = DeletionProgress(api, dataset, block, site)
        if not progress.targets:
            fail(
                ClientError(
                    f"{site} holds no replica of {item} by the inventory", ExitCode.NOT_FOUND
                )
            )
        reply = api.post(
            "/api/v1/transfers/deletions",
            {"requests": [{"dataset": dataset, "block": block, "site": site}]},
        )
        if not wait:
            if json_out:
                print_json(reply)
            else:
                typer.echo(
                    f"deletion of {item} at {site} queued: {reply.get('tasks')} files, "
                    f"{render.size(progress.total)}"
                )
            return
        with volume_bar(f"deleting {item} at {site}", shown=not json_out) as bar:
            final = follow(bar, progress.state, lambda s: not s["left"], timeout, interval, item)
    if json_out:
        print_json({"deletion": reply, "result": final})
    else:
        typer.echo(f"deleted {item} at {site}: {render.size(progress.total)}")
