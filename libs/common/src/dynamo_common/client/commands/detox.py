"""Detox: its cycles and test runs, why a replica was deleted or kept, running a cycle, and
testing a policy text against the last real cycle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

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

detox_app = group("detox", "Detox: cycles, decisions, policy tests.")
_FINAL = ("done", "failed")


def _cycle_line(cycle: dict[str, Any]) -> str:
    return (
        f"{cycle['kind']} {'cycle' if cycle['kind'] == 'real' else 'run'} {cycle['id']} of "
        f"{cycle['partition']}: {cycle['status']}, {cycle.get('sites_triggered')} of "
        f"{cycle.get('sites')} sites triggered, {cycle.get('replicas_deleted')} replicas / "
        f"{render.size(cycle.get('bytes_deleted'))} deleted"
        + (
            f", {render.size(cycle.get('bytes_handed_over'))} handed over"
            if cycle.get("bytes_handed_over")
            else ""
        )
    )


def _volume(used: Any, occupancy: Any) -> str:
    return f"{render.size(used)} ({render.percent(occupancy)})"


def _print_cycle(console: Console, cycle: dict[str, Any], sites: dict[str, Any]) -> None:
    console.print(_cycle_line(cycle), soft_wrap=True)
    console.print(
        f"requested by {render.text(cycle.get('requested_by'))}; started "
        f"{render.when(cycle.get('started'))}, finished {render.when(cycle.get('finished'))}; "
        f"policy {str(cycle.get('policy_digest'))[:12]}"
        + (f"; {cycle['comment']}" if cycle.get("comment") else ""),
        soft_wrap=True,
    )
    commands = cycle.get("commands")
    if isinstance(commands, dict):
        console.print(
            f"deletion commands: {commands.get('batches')} batches, {commands.get('accepted')} "
            f"accepted, {commands.get('rejected')} rejected, {commands.get('pending')} pending",
            soft_wrap=True,
        )
    for label in ("error", "warnings", "missing_providers"):
        if cycle.get(label):
            console.print(f"[yellow]{label.replace('_', ' ')}:[/] {cycle[label]}", soft_wrap=True)
    render.table(
        console,
        "Sites",
        ["site", "before", "after", "quota", "deleted", "handed over", "protected", "triggered"],
        [
            [
                s["site"],
                _volume(s.get("used_before"), s.get("occupancy_before")),
                _volume(s.get("used_after"), s.get("occupancy_after")),
                render.size(s.get("quota")),
                render.size(s.get("deleted")),
                render.size(s.get("handed_over")),
                render.size(s.get("protected")),
                s.get("triggered"),
            ]
            for s in sites.get("items", [])
        ],
        right=["before", "after", "quota", "deleted", "handed over", "protected"],
    )


def _decision_rows(items: list[dict[str, Any]], *, with_cycle: bool) -> list[list[Any]]:
    rows = []
    for d in items:
        blocks = d.get("blocks")
        what = d["dataset"] if blocks is None else f"{d['dataset']}#{','.join(blocks)}"
        row = [
            d["site"],
            what,
            d["decision"] + (f" → {d['handed_to']}" if d.get("handed_to") else ""),
            render.size(d.get("size")),
            f"{d.get('line')}: {d.get('rule')}",
        ]
        if with_cycle:
            row = [d["cycle_id"], render.when(d.get("started")), *row]
        rows.append(row)
    return rows


@sub_command(detox_app, "cycles")
def cycles(
    kind: Annotated[str | None, typer.Option(help="real or test")] = None,
    partition: Annotated[str | None, typer.Option(help="one partition's cycles")] = None,
    status: Annotated[str | None, typer.Option(help="queued, running, done or failed")] = None,
    limit: LimitOption = 20,
    offset: OffsetOption = 0,
    everything: AllOption = False,
    json_out: JsonOption = False,
) -> None:
    """Cycles and test runs, newest first."""
    with gateway() as api:
        page = fetch_list(
            api,
            "/api/v1/cycles",
            {"kind": kind, "partition": partition, "status": status},
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
            c["id"],
            c["kind"],
            c["partition"],
            c["status"],
            render.when(c.get("started")),
            f"{c.get('sites_triggered')}/{c.get('sites')}",
            c.get("replicas_deleted"),
            render.size(c.get("bytes_deleted")),
            c.get("requested_by"),
        ]
        for c in page["items"]
    ]
    render.table(
        console,
        None,
        ["id", "kind", "partition", "status", "started", "triggered", "deleted", "volume", "by"],
        rows,
        right=["id", "deleted", "volume"],
    )
    render.footer(console, page, len(rows))


@sub_command(detox_app, "cycle")
def cycle(
    cycle_id: Annotated[int, typer.Argument(metavar="ID", min=1, help="a cycle or test run")],
    site: Annotated[
        str | None, typer.Option(help="every replica decision at this site instead")
    ] = None,
    decision: Annotated[
        str | None, typer.Option(help="with --site: delete, keep or protect")
    ] = None,
    limit: LimitOption = 1000,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="the gateway's JSON: {cycle, sites} (the two answers), or the decisions page "
            "with --site",
        ),
    ] = False,
) -> None:
    """One cycle or test run: each site before and after, or (--site) its decisions.

    Per site: the volume before and after, deleted, handed over and protected. With --site,
    every replica decision there and the policy line that made it."""
    with gateway() as api:
        if site is not None:
            page = fetch_list(
                api,
                f"/api/v1/cycles/{cycle_id}/sites/{quote(site, safe='')}/decisions",
                {"decision": decision},
                limit,
                0,
                True,
            )
        else:
            data = api.get(f"/api/v1/cycles/{cycle_id}")
            sites = fetch_list(api, f"/api/v1/cycles/{cycle_id}/sites", {}, limit, 0, True)
    if site is not None:
        if json_out:
            print_json(page)
            return
        render.table(
            out(),
            f"Cycle {cycle_id} at {site}",
            ["site", "replica", "decision", "volume", "policy line"],
            _decision_rows(page["items"], with_cycle=False),
            right=["volume"],
        )
        return
    if json_out:
        print_json({"cycle": data, "sites": sites})
        return
    _print_cycle(out(), data, sites)


@sub_command(detox_app, "why")
def why(
    dataset: Annotated[str, typer.Argument(help="a dataset name or pattern (* ?)")],
    site: Annotated[str | None, typer.Option(help="a site name or pattern")] = None,
    decision: Annotated[str | None, typer.Option(help="delete, keep or protect")] = None,
    tests: Annotated[
        bool, typer.Option("--tests", help="test runs' decisions instead of real cycles'")
    ] = False,
    since: Annotated[str | None, typer.Option(help="cycles started at or after (ISO)")] = None,
    limit: LimitOption = 50,
    offset: OffsetOption = 0,
    everything: AllOption = False,
    json_out: JsonOption = False,
) -> None:
    """Why a dataset was deleted, kept or protected: the decisions and their policy lines.

    Every decision of the cycles (newest first) on the replicas of the dataset, at every
    site or the ones of --site."""
    with gateway() as api:
        page = fetch_list(
            api,
            "/api/v1/decisions",
            {
                "dataset": dataset,
                "site": site,
                "decision": decision,
                "kind": "test" if tests else "real",
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
    if not page["items"]:
        console.print(
            f"no {'test run' if tests else 'cycle'} has decided on {dataset}"
            + (f" at {site}" if site else ""),
            soft_wrap=True,
        )
        return
    rows = _decision_rows(page["items"], with_cycle=True)
    render.table(
        console,
        None,
        ["cycle", "started", "site", "replica", "decision", "volume", "policy line"],
        rows,
        right=["cycle", "volume"],
    )
    render.footer(console, page, len(rows))


def _wait_cycle(
    api: Gateway, cycle_id: int, timeout: float, interval: float, what: str
) -> dict[str, Any]:
    try:
        with err().status(f"waiting for {what} {cycle_id}"):
            return poll(
                lambda: dict(api.get(f"/api/v1/cycles/{cycle_id}")),
                lambda c: c.get("status") in _FINAL,
                timeout=timeout,
                interval=interval,
                what=f"{what} {cycle_id}",
            )
    except ClientError as exc:
        fail(exc)


def _failed(cycle: dict[str, Any], what: str) -> None:
    if cycle.get("status") == "failed":
        fail(ClientError(f"{what} {cycle['id']} failed: {cycle.get('error')}", ExitCode.FAILED))


@sub_command(detox_app, "run")
def run(
    partition: Annotated[str, typer.Argument(help="a partition with a configured policy")],
    comment: Annotated[str, typer.Option(help="why, for the record")] = "",
    wait: WaitOption = False,
    timeout: TimeoutOption = 3600,
    interval: IntervalOption = 2.0,
    json_out: JsonOption = False,
) -> None:
    """Run a real cycle of a partition's configured policy now (operators). It deletes."""
    with gateway() as api:
        submitted = api.post("/api/v1/cycles", {"partition": partition, "comment": comment})
        if not wait:
            if json_out:
                print_json(submitted)
            else:
                typer.echo(f"cycle {submitted['id']} of {submitted['partition']} queued")
            return
        data = _wait_cycle(api, int(submitted["id"]), timeout, interval, "cycle")
        sites = fetch_list(api, f"/api/v1/cycles/{data['id']}/sites", {}, 1000, 0, True)
    if json_out:
        print_json({"cycle": data, "sites": sites})
    else:
        _print_cycle(out(), data, sites)
    _failed(data, "cycle")


@sub_command(detox_app, "test")
def test(
    policy_file: Annotated[
        Path, typer.Argument(metavar="POLICYFILE", help="a detox policy text ('-': stdin)")
    ],
    comment: Annotated[str, typer.Option(help="what is being tried, for the record")] = "",
    wait: WaitOption = False,
    timeout: TimeoutOption = 3600,
    interval: IntervalOption = 2.0,
    limit: Annotated[
        int, typer.Option(min=1, max=10_000, help="differences shown (the totals count all)")
    ] = 100,
    json_out: JsonOption = False,
) -> None:
    """Test a policy text: a cycle that deletes nothing, compared with the last real one.

    With --wait, follows the run and prints its result and how it differs from the last
    real cycle of its partition; exit 5 when the run failed, 6 at --timeout."""
    try:
        if str(policy_file) == "-":
            policy = typer.get_text_stream("stdin").read()
        else:
            policy = policy_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(ClientError(f"cannot read {policy_file}: {exc}", ExitCode.USAGE))
    with gateway() as api:
        submitted = api.post("/api/v1/test-runs", {"policy": policy, "comment": comment})
        if not wait:
            if json_out:
                print_json(submitted)
            else:
                typer.echo(
                    f"test run {submitted['id']} of {submitted['partition']} queued; "
                    f"`dynamo detox cycle {submitted['id']}` shows it"
                )
            return
        data = _wait_cycle(api, int(submitted["id"]), timeout, interval, "test run")
        sites: dict[str, Any] = {"items": []}
        comparison: dict[str, Any] | None = None
        note = ""
        if data.get("status") == "done":
            sites = fetch_list(api, f"/api/v1/cycles/{data['id']}/sites", {}, 1000, 0, True)
            try:
                comparison = api.get(f"/api/v1/test-runs/{data['id']}/compare", {"limit": limit})
            except ClientError as exc:
                if exc.code != ExitCode.NOT_FOUND:
                    raise
                # No real cycle of the partition yet: the run stands alone.
                note = exc.message
    if json_out:
        print_json({"run": data, "sites": sites, "comparison": comparison})
    else:
        console = out()
        _print_cycle(console, data, sites)
        if comparison is not None:
            _print_comparison(console, comparison)
        elif note:
            console.print(f"no comparison: {note}", soft_wrap=True)
    _failed(data, "test run")


def _print_comparison(console: Console, comparison: dict[str, Any]) -> None:
    console.print(
        f"Against real cycle {comparison['real_cycle']}: {comparison['additional']} more "
        f"replicas deleted ({render.size(comparison['additional_bytes'])}), "
        f"{comparison['kept']} kept that it deleted ({render.size(comparison['kept_bytes'])})",
        soft_wrap=True,
    )
    rows = [
        [
            r["site"],
            r["dataset"],
            "deleted too" if r["change"] == "additional" else "kept instead",
            render.size(r.get("test_bytes")),
            render.size(r.get("real_bytes")),
        ]
        for r in comparison.get("items", [])
    ]
    if rows:
        render.table(
            console,
            "Differences",
            ["site", "dataset", "this policy", "test deletes", "real deleted"],
            rows,
            right=["test deletes", "real deleted"],
        )
        render.footer(console, comparison, len(rows))


@sub_command(detox_app, "policies")
def policies(json_out: JsonOption = False) -> None:
    """The policies detox runs on its schedule, one per partition."""
    with gateway() as api:
        data = api.get("/api/v1/policies")
    if json_out:
        print_json(data)
        return
    render.table(
        out(),
        None,
        ["partition", "file", "digest", "rules", "static"],
        [
            [p["partition"], p.get("file"), str(p.get("digest"))[:12], p.get("rules"), p["static"]]
            for p in data
        ],
        right=["rules"],
    )
