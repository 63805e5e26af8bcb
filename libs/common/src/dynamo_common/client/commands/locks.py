"""Detox locks: keep datasets or blocks at sites until a date, whatever the policy says."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dynamo_common.client import render
from dynamo_common.client.commands.base import (
    AllOption,
    JsonOption,
    LimitOption,
    OffsetOption,
    fail,
    fetch_list,
    gateway,
    group,
    out,
    parse_until,
    print_json,
    sub_command,
)
from dynamo_common.client.errors import ClientError

locks_app = group("locks", "Locks: data detox must not delete.")
UntilArgument = Annotated[
    str, typer.Option(help="an ISO time (UTC without a zone) or a duration: 30m, 12h, 7d, 2w")
]


def _until(value: str) -> str:
    try:
        return parse_until(value)
    except ClientError as exc:
        fail(exc)


def _lock_line(lock: dict[str, Any]) -> str:
    what = lock["dataset"] + (f"#{lock['block']}" if lock.get("block") else "")
    return f"lock {lock['id']}: {what} at {lock['sites']} until {render.when(lock['until'])}"


@sub_command(locks_app, "list")
def list_locks(
    owner: Annotated[str | None, typer.Option(help="one person's locks")] = None,
    dataset: Annotated[str | None, typer.Option(help="pattern on the locked dataset")] = None,
    released: Annotated[
        bool, typer.Option("--released", help="also the released and expired ones")
    ] = False,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    everything: AllOption = False,
    json_out: JsonOption = False,
) -> None:
    """Locks that hold now (all of them with --released), oldest first."""
    with gateway() as api:
        page = fetch_list(
            api,
            "/api/v1/locks",
            {"owner": owner, "dataset": dataset, "active": not released},
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
            lock["id"],
            lock["dataset"],
            lock.get("block"),
            lock["sites"],
            render.when(lock["until"]),
            lock["owner"],
            lock["active"],
            lock.get("comment") or None,
        ]
        for lock in page["items"]
    ]
    render.table(
        console,
        None,
        ["id", "dataset", "block", "sites", "until", "owner", "active", "comment"],
        rows,
        right=["id"],
    )
    render.footer(console, page, len(rows))


@sub_command(locks_app, "add")
def add_lock(
    dataset: Annotated[str, typer.Argument(help="a dataset name or pattern (* ?)")],
    until: UntilArgument,
    block: Annotated[str | None, typer.Option(help="only this block (name or pattern)")] = None,
    sites: Annotated[str, typer.Option(help="site name or pattern")] = "*",
    comment: Annotated[str, typer.Option(help="why, for the record")] = "",
    json_out: JsonOption = False,
) -> None:
    """Lock data at sites until a time: detox keeps it, whatever its policy says."""
    body = {
        "dataset": dataset,
        "block": block,
        "sites": sites,
        "until": _until(until),
        "comment": comment,
    }
    with gateway() as api:
        lock = api.post("/api/v1/locks", body)
    if json_out:
        print_json(lock)
        return
    typer.echo(_lock_line(lock))


@sub_command(locks_app, "extend")
def extend_lock(
    lock_id: Annotated[int, typer.Argument(metavar="ID", min=1)],
    until: UntilArgument,
    comment: Annotated[str | None, typer.Option(help="a new comment")] = None,
    json_out: JsonOption = False,
) -> None:
    """Move a lock's end (its owner or an admin)."""
    body: dict[str, Any] = {"until": _until(until)}
    if comment is not None:
        body["comment"] = comment
    with gateway() as api:
        lock = api.patch(f"/api/v1/locks/{lock_id}", body)
    if json_out:
        print_json(lock)
        return
    typer.echo(_lock_line(lock))


@sub_command(locks_app, "remove")
def remove_lock(
    lock_id: Annotated[int, typer.Argument(metavar="ID", min=1)],
    json_out: JsonOption = False,
) -> None:
    """Release a lock (its owner or an admin); the record of it is kept."""
    with gateway() as api:
        lock = api.delete(f"/api/v1/locks/{lock_id}")
    if json_out:
        print_json(lock)
        return
    typer.echo(f"released {_lock_line(lock)}")
