"""Consistency: the operators' summary of storage checks, one site's state and checks, and
asking for a check now."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from dynamo_common.client import render
from dynamo_common.client.commands.base import (
    JsonOption,
    fetch_list,
    gateway,
    group,
    out,
    print_json,
    sub_command,
)

consistency_app = group("consistency", "Consistency: storage checked against the inventory.")


def _count(files: Any, volume: Any) -> str:
    if files is None:
        return "-"
    return f"{files} ({render.size(volume)})" if files else "0"


@sub_command(consistency_app, "summary")
def summary(
    attention: Annotated[
        bool | None,
        typer.Option(
            "--attention/--no-attention",
            help="only the sites that need an operator (or only the others)",
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Every site with its latest check; ! marks the ones that need an operator.

    Missing files, those with no other copy, orphans, unlisted directories, what was done."""
    with gateway() as api:
        page = fetch_list(api, "/api/v1/consistency/sites", {"attention": attention}, 1000, 0, True)
    if json_out:
        print_json(page)
        return
    rows = [
        [
            ("! " if s["attention"] else "") + s["site"],
            s["state"] + (" (checking)" if s.get("running") else ""),
            s.get("run_id"),
            s.get("status"),
            render.when(s.get("last_update")),
            s.get("files"),
            _count(s.get("missing"), s.get("missing_bytes")),
            _count(s.get("no_source"), s.get("no_source_bytes")),
            _count(s.get("orphans"), s.get("orphan_bytes")),
            s.get("unlisted"),
            s.get("action"),
            s.get("reason") or s.get("state_reason") or None,
        ]
        for s in page["items"]
    ]
    render.table(
        out(),
        None,
        [
            "site",
            "state",
            "run",
            "status",
            "finished",
            "files",
            "missing",
            "no source",
            "orphans",
            "unlisted",
            "action",
            "reason",
        ],
        rows,
        right=["run", "files", "unlisted"],
    )


@sub_command(consistency_app, "site")
def site(
    name: Annotated[str, typer.Argument(metavar="SITE")],
    runs: Annotated[int, typer.Option(min=1, max=1000, help="latest checks shown")] = 10,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="the gateway's JSON: {site, runs} (the two answers)"),
    ] = False,
) -> None:
    """A site's consistency state and its latest checks."""
    path = f"/api/v1/consistency/sites/{quote(name, safe='')}"
    with gateway() as api:
        state = api.get(path)
        history = api.get(f"{path}/runs", {"limit": runs})
    if json_out:
        print_json({"site": state, "runs": history})
        return
    console = out()
    console.print(
        f"[bold]{state['site']}[/]: {state['state']}"
        + (f" ({state['state_reason']})" if state.get("state_reason") else "")
        + f"; last check {render.when(state.get('last_check'))}"
        + (
            f"; a check is requested ({render.when(state['check_requested'])})"
            if state.get("check_requested")
            else ""
        )
        + (
            f"; approval of run {state['approval_pending']} pending"
            if state.get("approval_pending")
            else ""
        ),
        soft_wrap=True,
    )
    render.table(
        console,
        "Checks",
        [
            "run",
            "started",
            "minutes",
            "status",
            "files",
            "missing",
            "no source",
            "orphans",
            "action",
            "reason",
        ],
        [
            [
                r["id"],
                render.when(r.get("started")),
                None if r.get("duration") is None else f"{r['duration'] / 60:.1f}",
                r["status"] + (" (dry run)" if r.get("dry_run") else ""),
                r.get("files_listed"),
                _count(r.get("missing_files"), r.get("missing_bytes")),
                _count(r.get("unrecoverable_files"), r.get("unrecoverable_bytes")),
                _count(r.get("orphan_files"), r.get("orphan_bytes")),
                r.get("action"),
                r.get("error") or r.get("reason") or None,
            ]
            for r in history.get("items", [])
        ],
        right=["run", "minutes", "files"],
    )
    render.footer(console, history, len(history.get("items", [])))


@sub_command(consistency_app, "check")
def check(
    name: Annotated[str, typer.Argument(metavar="SITE")],
    dry_run: Annotated[bool, typer.Option(help="compare and record only, act on nothing")] = False,
    json_out: JsonOption = False,
) -> None:
    """Check a site now, before any scheduled check (operators)."""
    with gateway() as api:
        state = api.post(
            f"/api/v1/consistency/sites/{quote(name, safe='')}/check", {"dry_run": dry_run}
        )
    if json_out:
        print_json(state)
        return
    typer.echo(
        f"a {'dry-run ' if dry_run else ''}check of {state['site']} is requested; "
        f"`dynamo consistency site {state['site']}` follows it"
    )


@sub_command(consistency_app, "approve")
def approve(
    name: Annotated[str, typer.Argument(metavar="SITE")],
    run_id: Annotated[int, typer.Argument(metavar="RUN", min=1, help="the flagged check")],
    first_strike: Annotated[
        bool,
        typer.Option("--first-strike", help="also re-transfer files missing for the first time"),
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Approve the actions of a flagged check (operators); the site is enabled again."""
    with gateway() as api:
        state = api.post(
            f"/api/v1/consistency/sites/{quote(name, safe='')}/approve",
            {"run_id": run_id, "include_first_strike": first_strike},
        )
    if json_out:
        print_json(state)
        return
    typer.echo(f"check {run_id} of {state['site']} approved; its actions are carried out")


@sub_command(consistency_app, "state")
def set_state(
    name: Annotated[str, typer.Argument(metavar="SITE")],
    state: Annotated[str, typer.Argument(help="enabled, disabled or halted")],
    reason: Annotated[str, typer.Option(help="why, shown in the summary")] = "",
    json_out: JsonOption = False,
) -> None:
    """Enable, disable or halt a site's checks (operators).

    enabled: checked on schedule, acted on within the safety valve; disabled: never checked;
    halted: checked on request only, nothing acted on until approved."""
    with gateway() as api:
        data = api.put(
            f"/api/v1/consistency/sites/{quote(name, safe='')}/state",
            {"state": state, "reason": reason},
        )
    if json_out:
        print_json(data)
        return
    typer.echo(
        f"{data['site']} is {data['state']}"
        + (f" ({data['state_reason']})" if data.get("state_reason") else "")
    )
