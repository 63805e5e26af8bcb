"""The client commands of `dynamo`. Each one is a thin view of one gateway endpoint: a table
for people, the endpoint's own JSON with ``--json`` for scripts, and an exit code from
:class:`ExitCode` (0 ok, 1 usage, 2 not found, 3 auth, 4 unreachable)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar
from urllib.parse import quote

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from dynamo_common.client import render
from dynamo_common.client.api import Gateway
from dynamo_common.client.config import (
    ClientConfig,
    config_path,
    load_config,
    read_config,
    save_config,
)
from dynamo_common.client.errors import ClientError, ExitCode

F = TypeVar("F", bound=Callable[..., Any])

# --------------------------------------------------------------------------- usage errors


def _usage_exit(exc: Exception) -> None:
    # Click exits with 2 on a usage error; 2 means "not found" to our scripts, so the client
    # commands say 1. Duck-typed: typer vendors click, whose classes are not public API.
    if getattr(exc, "exit_code", None) == 2 and hasattr(exc, "show"):
        exc.exit_code = int(ExitCode.USAGE)  # type: ignore[attr-defined]


class _Command(TyperCommand):
    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except Exception as exc:
            _usage_exit(exc)
            raise


class _Group(TyperGroup):
    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except Exception as exc:
            _usage_exit(exc)
            raise

    def resolve_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().resolve_command(*args, **kwargs)
        except Exception as exc:
            _usage_exit(exc)
            raise


app = typer.Typer(cls=_Group)
transfers_app = typer.Typer(cls=_Group, no_args_is_help=True, help="The transfer queue.")
events_app = typer.Typer(cls=_Group, no_args_is_help=True, help="The inventory's event stream.")
_PANEL = "Client (through the gateway)"
app.add_typer(transfers_app, name="transfers", rich_help_panel=_PANEL)
app.add_typer(events_app, name="events", rich_help_panel=_PANEL)
JsonOption = Annotated[bool, typer.Option("--json", help="print the gateway's JSON (scripts)")]
LimitOption = Annotated[int, typer.Option(min=1, max=10_000, help="rows per page")]
OffsetOption = Annotated[int, typer.Option(min=0, help="rows to skip")]
AllOption = Annotated[bool, typer.Option("--all", help="every page, not only the first")]


def _command(name: str | None = None) -> Callable[[F], F]:
    return app.command(name, cls=_Command, rich_help_panel=_PANEL)


def _out() -> Console:
    # Made per command (not at import) so that it writes to whatever sys.stdout is now.
    return Console(soft_wrap=False, highlight=False)


def _fail(exc: ClientError) -> NoReturn:
    err = Console(stderr=True, highlight=False)
    err.print(f"[bold red]error:[/] {exc.message}", markup=True, soft_wrap=True)
    if exc.hint:
        err.print(f"[dim]{exc.hint}[/]", soft_wrap=True)
    raise typer.Exit(int(exc.code))


@contextmanager
def _gateway() -> Iterator[Gateway]:
    try:
        with Gateway(load_config()) as gateway:
            yield gateway
    except ClientError as exc:
        _fail(exc)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _list(
    gateway: Gateway, path: str, params: dict[str, Any], limit: int, offset: int, everything: bool
) -> dict[str, Any]:
    """A list endpoint's answer; with ``--all``, every page folded into one."""
    pages = list(
        gateway.pages(path, {**params, "offset": offset}, limit=limit, everything=everything)
    )
    first: dict[str, Any] = dict(pages[0])
    if len(pages) > 1:
        first["items"] = [item for page in pages for item in page.get("items", [])]
        first["limit"] = len(first["items"])
    return first


# --------------------------------------------------------------------------- sign-in


@_command()
def login(
    url: Annotated[
        str | None, typer.Argument(help="the gateway, e.g. https://dynamo.example:8443")
    ] = None,
    token: Annotated[str | None, typer.Option(help="an API token or OIDC access token")] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="read the token from this file (e.g. the admin token)")
    ] = None,
    anonymous: Annotated[bool, typer.Option(help="no token: public reads only")] = False,
) -> None:
    """Sign in: check a token with the gateway, keep both in ~/.config/dynamo/config.toml.

    The file is readable by you only. Without --token or --token-file, the token is asked for.

    DYNAMO_GATEWAY_URL and DYNAMO_TOKEN override the file (for scripts)."""
    try:
        stored = read_config()
        target = (url or stored.url).rstrip("/")
        if not target:
            raise ClientError("which gateway?", ExitCode.USAGE, hint="dynamo login URL")
        if token_file is not None:
            try:
                token = token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ClientError(f"cannot read {token_file}: {exc}", ExitCode.USAGE) from None
        if anonymous:
            token = ""
        elif token is None:
            token = typer.prompt("Token", hide_input=True).strip()
        config = ClientConfig(url=target, token=token)
        with Gateway(config) as gateway:
            me = gateway.get("/api/v1/auth/whoami")
        path = save_config(config)
    except ClientError as exc:
        _fail(exc)
    who = "anonymously" if not token else f"as {me['name']} (role {me['role']})"
    Console(stderr=True, highlight=False).print(
        f"Signed in to {target} {who}; settings in {path}", soft_wrap=True
    )


@_command()
def logout() -> None:
    """Forget the token (the gateway's address is kept)."""
    try:
        stored = read_config()
        if stored.token:
            save_config(ClientConfig(url=stored.url, token=""))
    except ClientError as exc:
        _fail(exc)
    Console(stderr=True, highlight=False).print(f"Signed out ({config_path()})", soft_wrap=True)


@_command()
def whoami(json_out: JsonOption = False) -> None:
    """Who the gateway thinks you are."""
    with _gateway() as gateway:
        me = gateway.get("/api/v1/auth/whoami")
    if json_out:
        _print_json(me)
        return
    detail = f" — {me['detail']}" if me.get("detail") else ""
    typer.echo(f"{me['name']} (role {me['role']}, signed in by {me['method']}){detail}")
    typer.echo(f"gateway: {load_config().url}")


# --------------------------------------------------------------------------- the inventory


@_command()
def sites(
    pattern: Annotated[str | None, typer.Argument(help="site names, wildcards * ?")] = None,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    everything: AllOption = False,
    json_out: JsonOption = False,
) -> None:
    """Sites with their storage use."""
    with _gateway() as gateway:
        page = _list(gateway, "/api/v1/sites", {"name": pattern}, limit, offset, everything)
    if json_out:
        _print_json(page)
        return
    console = _out()
    rows = []
    for site in page["items"]:
        usage = ", ".join(
            f"{u['partition']} {render.percent(u.get('occupancy'))}" for u in site.get("usage", [])
        )
        rows.append(
            [
                site["name"],
                site["storage_type"],
                site["status"],
                render.size(site.get("used")),
                site.get("dataset_replicas"),
                usage or "-",
            ]
        )
    render.table(
        console,
        None,
        ["site", "type", "status", "used", "dataset replicas", "occupancy"],
        rows,
        right=["used", "dataset replicas"],
    )
    render.footer(console, page, len(rows))


@_command()
def datasets(
    pattern: Annotated[
        str | None, typer.Argument(help="dataset names, wildcards * ? (e.g. '/SingleMuon/*/AOD')")
    ] = None,
    status: Annotated[str | None, typer.Option(help="valid, production, invalid, ...")] = None,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    everything: AllOption = False,
    json_out: JsonOption = False,
) -> None:
    """Datasets by name."""
    with _gateway() as gateway:
        page = _list(
            gateway,
            "/api/v1/datasets",
            {"name": pattern, "status": status},
            limit,
            offset,
            everything,
        )
    if json_out:
        _print_json(page)
        return
    console = _out()
    rows = [
        [
            d["name"],
            d["status"],
            render.size(d.get("size")),
            d.get("num_files"),
            d.get("num_blocks"),
            d.get("num_replicas"),
            render.when(d.get("last_update")),
        ]
        for d in page["items"]
    ]
    render.table(
        console,
        None,
        ["dataset", "status", "size", "files", "blocks", "replicas", "last update"],
        rows,
        right=["size", "files", "blocks", "replicas"],
    )
    render.footer(console, page, len(rows))


@_command()
def dataset(
    name: Annotated[str, typer.Argument(help="the dataset's full name")],
    json_out: JsonOption = False,
) -> None:
    """One dataset: its blocks and where its replicas are."""
    with _gateway() as gateway:
        data = gateway.get("/api/v1/dataset", {"name": name})
    if json_out:
        _print_json(data)
        return
    console = _out()
    console.print(f"[bold]{data['name']}[/]", soft_wrap=True)
    console.print(
        f"status {data['status']}, {render.size(data.get('size'))} in "
        f"{data.get('num_files')} files and {data.get('num_blocks')} blocks"
        f"{', open' if data.get('is_open') else ''}; last update "
        f"{render.when(data.get('last_update'))}",
        soft_wrap=True,
    )
    render.table(
        console,
        "Replicas",
        ["site", "group", "size", "complete", "blocks", "last update"],
        [
            [
                r["site"],
                r.get("group"),
                render.size(r.get("size")),
                r.get("is_complete"),
                r.get("num_blocks"),
                render.when(r.get("last_update")),
            ]
            for r in data.get("replicas", [])
        ],
        right=["size", "blocks"],
    )
    render.table(
        console,
        "Blocks",
        ["block", "size", "files", "open", "at sites"],
        [
            [
                b["name"],
                render.size(b.get("size")),
                b.get("num_files"),
                b.get("is_open"),
                ", ".join(b.get("replicas", [])) or "-",
            ]
            for b in data.get("blocks", [])
        ],
        right=["size", "files"],
    )


@_command()
def files(
    dataset_name: Annotated[str, typer.Argument(metavar="DATASET", help="the dataset")],
    block: Annotated[str, typer.Argument(help="the block's name (the part after #)")],
    limit: LimitOption = 1000,
    offset: OffsetOption = 0,
    everything: AllOption = False,
    json_out: JsonOption = False,
) -> None:
    """The files of a block."""
    with _gateway() as gateway:
        page = _list(
            gateway,
            "/api/v1/files",
            {"dataset": dataset_name, "block": block},
            limit,
            offset,
            everything,
        )
    if json_out:
        _print_json(page)
        return
    console = _out()
    rows = [
        [f["lfn"], render.size(f.get("size")), f.get("adler32"), f.get("crc32")]
        for f in page["items"]
    ]
    render.table(console, None, ["file", "size", "adler32", "crc32"], rows, right=["size"])
    render.footer(console, page, len(rows))


@_command()
def replicas(
    site: Annotated[str, typer.Argument(help="the site")],
    dataset_pattern: Annotated[
        str | None, typer.Option("--dataset", help="only these datasets (wildcards)")
    ] = None,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    everything: AllOption = False,
    json_out: JsonOption = False,
) -> None:
    """The dataset replicas at a site."""
    with _gateway() as gateway:
        page = _list(
            gateway,
            f"/api/v1/sites/{quote(site, safe='')}/replicas",
            {"dataset": dataset_pattern},
            limit,
            offset,
            everything,
        )
    if json_out:
        _print_json(page)
        return
    console = _out()
    rows = [
        [
            r["dataset"],
            r.get("group"),
            render.size(r.get("size")),
            r.get("is_complete"),
            r.get("num_blocks"),
            r.get("growing"),
            render.when(r.get("last_update")),
        ]
        for r in page["items"]
    ]
    render.table(
        console,
        None,
        ["dataset", "group", "size", "complete", "blocks", "growing", "last update"],
        rows,
        right=["size", "blocks"],
    )
    render.footer(console, page, len(rows))


@_command()
def stats(
    group_by: Annotated[
        str, typer.Option(help="comma-separated: site, group, tier, storage_type, status")
    ] = "site",
    json_out: JsonOption = False,
) -> None:
    """Replica volume grouped by site, group, data tier, ..."""
    with _gateway() as gateway:
        data = gateway.get("/api/v1/stats", {"group_by": group_by})
    if json_out:
        _print_json(data)
        return
    keys: list[str] = data.get("group_by", [])
    rows = [
        [*(row["key"].get(k) for k in keys), row.get("replicas"), render.size(row.get("size"))]
        for row in data.get("rows", [])
    ]
    render.table(_out(), None, [*keys, "replicas", "size"], rows, right=["replicas", "size"])


# --------------------------------------------------------------------------- transfers


def _transfer_command(name: str) -> Callable[[F], F]:
    return transfers_app.command(name, cls=_Command)


@_transfer_command("summary")
def transfers_summary(json_out: JsonOption = False) -> None:
    """Open files per link and state."""
    with _gateway() as gateway:
        data = gateway.get("/api/v1/transfers/summary")
    if json_out:
        _print_json(data)
        return
    console = _out()
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
    with _gateway() as gateway:
        page = _list(
            gateway,
            "/api/v1/transfers/held",
            {"site": site, "source": source, "kind": kind},
            limit,
            offset,
            everything,
        )
    if json_out:
        _print_json(page)
        return
    console = _out()
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
    with _gateway() as gateway:
        page = _list(
            gateway,
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
        _print_json(page)
        return
    console = _out()
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


# --------------------------------------------------------------------------- events


def _event_line(event: dict[str, Any]) -> str:
    data = json.dumps(event.get("data"), separators=(",", ":"), ensure_ascii=False)
    if len(data) > 160:
        data = data[:157] + "..."
    return (
        f"{event.get('seq', '-'):>8}  {render.when(event.get('time'))}  {event.get('type')}  {data}"
    )


@events_app.command("tail", cls=_Command)
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
    with _gateway() as gateway:
        if after is None:
            # Ask past the end for the current sequence number, then step back N events.
            head = gateway.get("/api/v1/events", {"after": 2**62, "limit": 1})
            after = max(int(head["last_seq"]) - lines, int(head.get("oldest_seq") or 1) - 1, 0)
        try:
            while True:
                data = gateway.get("/api/v1/events", {"after": after, "limit": 1000})
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
