"""The dealer: copy requests (ask, follow with a progress bar), showing, cancelling and
listing requests (copies, or deletions with --deletion), and subscriptions (a site follows a
dataset or container)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

from dynamo_common.client import render
from dynamo_common.client.commands.base import (
    AllOption,
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
    sub_command,
)
from dynamo_common.client.commands.progress import volume_bar
from dynamo_common.client.commands.requests import (
    DELETIONS,
    FINAL,
    deletion_line,
    ended,
    follow,
    request_app,
)
from dynamo_common.client.errors import ClientError, ExitCode

subscriptions_app = group("subscriptions", "Subscriptions: sites that follow datasets.")
_REQUESTS = "/api/v1/dealer/requests"
_SUBSCRIPTIONS = "/api/v1/dealer/subscriptions"
DeletionOption = Annotated[
    bool, typer.Option("--deletion", help="ID is a deletion request, not a copy request")
]


def _copied(request: dict[str, Any]) -> tuple[int, int]:
    """Volume copied and to copy: the placed copies once there are some, else the request's
    own size."""
    destinations = request.get("destinations") or []
    if not destinations:
        size = int(request.get("size") or 0)
        return (size if request.get("state") == "completed" else 0), size
    copied = sum(int(d.get("copied") or 0) for d in destinations)
    total = sum(int(d.get("total") or 0) for d in destinations)
    return copied, total


def _request_line(request: dict[str, Any]) -> str:
    copied, total = _copied(request)
    where = (
        f"{request.get('n_copies')} copies at {', '.join(request.get('sites') or ['*'])}"
        if request.get("n_copies", 1) != 1
        else f"to {', '.join(request.get('sites') or ['*'])}"
    )
    reason = f" ({request['reason']})" if request.get("reason") else ""
    return (
        f"request {request['id']}: {request['state']}{reason}; {', '.join(request['items'])} "
        f"{where} for {request['group']}; {render.size(copied)} of {render.size(total)} copied"
    )


def _print_request(console: Console, request: dict[str, Any]) -> None:
    console.print(_request_line(request), soft_wrap=True)
    console.print(
        f"by {request['requester']} on {render.when(request.get('created'))}, updated "
        f"{render.when(request.get('updated'))}"
        + (f"; {request['comment']}" if request.get("comment") else ""),
        soft_wrap=True,
    )
    render.table(
        console,
        "Copies",
        ["dataset", "block", "site", "copied", "total", "complete"],
        [
            [
                d["dataset"],
                d.get("block"),
                d["site"],
                render.size(d.get("copied")),
                render.size(d.get("total")),
                d.get("complete"),
            ]
            for d in request.get("destinations") or []
        ],
        right=["copied", "total"],
    )


@sub_command(request_app, "copy")
def copy(
    items: Annotated[
        list[str],
        typer.Argument(
            metavar="ITEM...", help="datasets (patterns allowed), DATASET#BLOCK, containers"
        ),
    ],
    group_name: Annotated[str, typer.Option("--group", help="the group that will own the copies")],
    site: Annotated[
        list[str] | None,
        typer.Option("--site", help="a site (pattern) the copies may go to; repeatable"),
    ] = None,
    copies: Annotated[
        int | None, typer.Option("--copies", min=1, max=10, help="copies of each item")
    ] = None,
    comment: Annotated[str, typer.Option(help="why, for the record")] = "",
    wait: WaitOption = False,
    timeout: TimeoutOption = 24 * 3600,
    interval: IntervalOption = 5.0,
    json_out: JsonOption = False,
) -> None:
    """Ask the dealer for copies of data at sites.

    --site names where (patterns, repeatable), --copies how many copies among them (default
    one per item). A request the dealer cannot serve is recorded as rejected with its reason
    (exit 5). With --wait, a progress bar of the volume copied until the request completes
    (exit 0), is rejected or cancelled (exit 5), or --timeout (exit 6)."""
    if not site and copies is None:
        fail(ClientError("say where: --site SITE and/or --copies N", ExitCode.USAGE))
    body: dict[str, Any] = {"items": items, "group": group_name, "comment": comment}
    if site:
        body["sites"] = site
    if copies is not None:
        body["n_copies"] = copies
    with gateway() as api:
        request = api.post(_REQUESTS, body)
        if wait and request.get("state") not in FINAL:
            path = f"{_REQUESTS}/{request['id']}"

            def state() -> dict[str, Any]:
                current = dict(api.get(path))
                copied, total = _copied(current)
                return {**current, "done": copied, "total": total}

            with volume_bar(f"request {request['id']}", shown=not json_out) as bar:
                followed = follow(
                    bar,
                    state,
                    lambda r: r.get("state") in FINAL,
                    timeout,
                    interval,
                    f"request {request['id']}",
                )
            request = {k: v for k, v in followed.items() if k not in ("done", "total")}
    if json_out:
        print_json(request)
    else:
        typer.echo(_request_line(request))
    ended(request, "request")


@sub_command(request_app, "show")
def show(
    request_id: Annotated[int, typer.Argument(metavar="ID", min=1)],
    deletion: DeletionOption = False,
    json_out: JsonOption = False,
) -> None:
    """One request: its state, and for a copy each copy placed with how far it got."""
    with gateway() as api:
        request = api.get(f"{DELETIONS if deletion else _REQUESTS}/{request_id}")
    if json_out:
        print_json(request)
    elif deletion:
        typer.echo(deletion_line(request))
    else:
        _print_request(out(), request)


@sub_command(request_app, "cancel")
def cancel(
    request_id: Annotated[int, typer.Argument(metavar="ID", min=1)],
    deletion: DeletionOption = False,
    json_out: JsonOption = False,
) -> None:
    """Cancel a request not finished yet (its requester or an admin).

    A deletion can be cancelled only before the dealer has carried it out."""
    with gateway() as api:
        request = api.post(f"{DELETIONS if deletion else _REQUESTS}/{request_id}/cancel", {})
    if json_out:
        print_json(request)
        return
    typer.echo(deletion_line(request) if deletion else _request_line(request))


@sub_command(request_app, "list")
def list_requests(
    mine: Annotated[bool, typer.Option("--mine", help="only your own")] = False,
    state: Annotated[
        str | None, typer.Option(help="new, activated, completed, rejected or cancelled")
    ] = None,
    requester: Annotated[str | None, typer.Option(help="someone's requests")] = None,
    deletions: Annotated[
        bool, typer.Option("--deletions", help="deletion requests instead of copies")
    ] = False,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    everything: AllOption = False,
    json_out: JsonOption = False,
) -> None:
    """Copy requests (or deletion requests), newest first."""
    with gateway() as api:
        page = fetch_list(
            api,
            DELETIONS if deletions else _REQUESTS,
            {"mine": True if mine else None, "state": state, "requester": requester},
            limit,
            offset,
            everything,
        )
    if json_out:
        print_json(page)
        return
    console = out()
    if deletions:
        _deletion_table(console, page)
        return
    rows = [
        [
            r["id"],
            r["state"],
            r["requester"],
            ", ".join(r["items"]),
            ", ".join(r.get("sites") or []),
            r.get("n_copies"),
            r["group"],
            render.size(r.get("size")),
            render.when(r.get("created")),
            r.get("reason"),
        ]
        for r in page["items"]
    ]
    render.table(
        console,
        None,
        ["id", "state", "by", "items", "sites", "copies", "group", "size", "created", "reason"],
        rows,
        right=["id", "copies", "size"],
    )
    render.footer(console, page, len(rows))


def _deletion_table(console: Console, page: dict[str, Any]) -> None:
    rows = [
        [
            r["id"],
            r["state"],
            r["requester"],
            r["dataset"] + (f"#{r['block']}" if r.get("block") else ""),
            r["site"],
            render.size(r.get("size")),
            render.when(r.get("created")),
            r.get("reason"),
        ]
        for r in page["items"]
    ]
    render.table(
        console,
        None,
        ["id", "state", "by", "replica", "site", "size", "created", "reason"],
        rows,
        right=["id", "size"],
    )
    render.footer(console, page, len(rows))


# --------------------------------------------------------------------------- subscriptions


@sub_command(subscriptions_app, "list")
def list_subscriptions(
    site: Annotated[str | None, typer.Option(help="one site's")] = None,
    item: Annotated[str | None, typer.Option(help="dataset or container (pattern)")] = None,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    everything: AllOption = False,
    json_out: JsonOption = False,
) -> None:
    """Subscriptions: which site follows which dataset or container."""
    with gateway() as api:
        page = fetch_list(
            api, _SUBSCRIPTIONS, {"site": site, "item": item}, limit, offset, everything
        )
    if json_out:
        print_json(page)
        return
    console = out()
    rows = [
        [s["id"], s["item"], s["site"], s["group"], s["created_by"], render.when(s["created"])]
        for s in page["items"]
    ]
    render.table(
        console, None, ["id", "item", "site", "group", "by", "created"], rows, right=["id"]
    )
    render.footer(console, page, len(rows))


@sub_command(subscriptions_app, "add")
def add_subscription(
    item: Annotated[str, typer.Argument(help="a dataset or container name")],
    site: Annotated[str, typer.Option(help="the site that follows it")],
    group_name: Annotated[str, typer.Option("--group", help="the group owning the copies")],
    json_out: JsonOption = False,
) -> None:
    """Subscribe a site to a dataset or container (operators).

    The site then gets the dataset's new blocks, or the container's new datasets."""
    with gateway() as api:
        subscription = api.post(_SUBSCRIPTIONS, {"item": item, "site": site, "group": group_name})
    if json_out:
        print_json(subscription)
        return
    typer.echo(
        f"subscription {subscription['id']}: {subscription['site']} follows "
        f"{subscription['item']} for {subscription['group']}"
    )


@sub_command(subscriptions_app, "remove")
def remove_subscription(
    subscription_id: Annotated[int, typer.Argument(metavar="ID", min=1)],
) -> None:
    """End a subscription (operators); the copies made stay."""
    with gateway() as api:
        api.delete(f"{_SUBSCRIPTIONS}/{subscription_id}")
    typer.echo(f"subscription {subscription_id} ended")
