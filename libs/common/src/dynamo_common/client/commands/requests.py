"""Requests to the dealer: copies of data at sites, deletions of replicas (never a last
copy); ``--wait`` follows one with a progress bar until it ends. This module holds the
group, following, and the deletions; copies are in :mod:`.dealer`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from dynamo_common.client import render
from dynamo_common.client.commands.base import (
    IntervalOption,
    JsonOption,
    TimeoutOption,
    WaitOption,
    fail,
    gateway,
    group,
    poll,
    print_json,
    sub_command,
)
from dynamo_common.client.commands.progress import VolumeBar, volume_bar
from dynamo_common.client.commands.replicas import DeletionProgress, split_item
from dynamo_common.client.errors import ClientError, ExitCode

request_app = group("request", "Requests to the dealer: copy data to sites, delete replicas.")
DELETIONS = "/api/v1/dealer/deletion-requests"
ENDED_BADLY = ("rejected", "cancelled")
FINAL = ("completed", *ENDED_BADLY)


def follow(
    bar: VolumeBar,
    fetch: Callable[[], dict[str, Any]],
    finished: Callable[[dict[str, Any]], bool],
    timeout: float,
    interval: float,
    what: str,
) -> dict[str, Any]:
    """``fetch()`` (a state with ``done`` and ``total`` bytes) until ``finished``, moving the
    bar; exit 6 at ``timeout``."""

    def show(s: dict[str, Any]) -> None:
        bar.update(
            s["done"], s["total"], f" ({s['files_held']} files held)" if s.get("files_held") else ""
        )

    try:
        return poll(fetch, finished, timeout=timeout, interval=interval, what=what, progress=show)
    except ClientError as exc:
        fail(exc)


def ended(request: dict[str, Any], kind: str) -> None:
    """Exit 5 for a request that was rejected or cancelled."""
    if request.get("state") in ENDED_BADLY:
        fail(
            ClientError(
                f"{kind} {request['id']} was {request['state']}: {request.get('reason')}",
                ExitCode.FAILED,
            )
        )


def deletion_line(request: dict[str, Any]) -> str:
    item = request["dataset"] + (f"#{request['block']}" if request.get("block") else "")
    reason = f" ({request['reason']})" if request.get("reason") else ""
    return (
        f"deletion request {request['id']}: {request['state']}{reason}; {item} at "
        f"{request['site']}, {render.size(request.get('size'))}"
    )


@sub_command(request_app, "delete")
def delete(
    item: Annotated[str, typer.Argument(metavar="ITEM", help="DATASET or DATASET#BLOCK")],
    site: Annotated[str, typer.Option(help="the site to delete the replica from")],
    comment: Annotated[str, typer.Option(help="why, for the record")] = "",
    wait: WaitOption = False,
    timeout: TimeoutOption = 24 * 3600,
    interval: IntervalOption = 5.0,
    json_out: JsonOption = False,
) -> None:
    """Ask the dealer to delete a dataset or block replica from a site.

    Refused (exit 5) when there is no such replica, it is being deleted already, or it is
    the last complete copy; carried out by the dealer's next cycle. With --wait, a progress
    bar of the volume deleted until the request completes (exit 0), is rejected or
    cancelled (exit 5), or --timeout (exit 6)."""
    try:
        dataset, block = split_item(item)
    except ClientError as exc:
        fail(exc)
    with gateway() as api:
        progress = DeletionProgress(api, dataset, block, site) if wait else None
        request = api.post(
            DELETIONS, {"dataset": dataset, "block": block, "site": site, "comment": comment}
        )
        if progress is not None and request.get("state") not in FINAL:
            path = f"{DELETIONS}/{request['id']}"

            def state() -> dict[str, Any]:
                current = dict(api.get(path))
                return {**progress.state(), "request": current}

            with volume_bar(f"deletion request {request['id']}", shown=not json_out) as bar:
                followed = follow(
                    bar,
                    state,
                    lambda s: s["request"].get("state") in FINAL,
                    timeout,
                    interval,
                    f"deletion request {request['id']}",
                )
            request = followed["request"]
    if json_out:
        print_json(request)
    else:
        typer.echo(deletion_line(request))
    ended(request, "deletion request")
