"""User data: `dynamo inject` registers a job's output files (copied into the user's
namespace at a site) and `dynamo userdata ...` declares, follows, completes, consolidates and
deletes user datasets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from dynamo_common.client import render
from dynamo_common.client.commands.base import (
    AllOption,
    JsonOption,
    LimitOption,
    OffsetOption,
    command,
    fail,
    fetch_list,
    gateway,
    group,
    out,
    print_json,
    sub_command,
)
from dynamo_common.client.errors import ClientError, ExitCode
from dynamo_common.storage.posix import adler32_of_file

userdata_app = group("userdata", "User data: your own datasets, blocks placed by Dynamo.")
U = "/api/v1/dealer/userdata"
DatasetArgument = Annotated[str, typer.Argument(help="a user dataset: /<user>/<name>/USER")]


def parse_file(spec: str) -> dict[str, Any]:
    """``LFN,SIZE,ADLER32`` as given, or ``LOCAL=LFN``: size and adler32 of a local file (the
    one the job copied to LFN)."""
    if "=" in spec:
        local, lfn = spec.split("=", 1)
        path = Path(local)
        if not path.is_file():
            raise ClientError(f"{local} is not a readable file", ExitCode.USAGE)
        return {"lfn": lfn, "size": os.path.getsize(path), "adler32": adler32_of_file(path)}
    parts = spec.split(",")
    if len(parts) != 3 or not parts[1].isdigit():
        raise ClientError(f"{spec!r}: give LFN,SIZE,ADLER32 or LOCAL_FILE=LFN", ExitCode.USAGE)
    return {"lfn": parts[0], "size": int(parts[1]), "adler32": parts[2].lower()}


def _dataset_line(ds: dict[str, Any]) -> str:
    home = f", consolidated at {ds['home']}" if ds.get("home") else ""
    return (
        f"{ds['name']} ({ds['owner']}): {ds['state']}{home}; {ds.get('files', 0)} files, "
        f"{render.size(ds.get('size', 0))}"
    )


@command("inject")
def inject(
    dataset: DatasetArgument,
    files: Annotated[
        list[str],
        typer.Argument(metavar="FILE...", help="LFN,SIZE,ADLER32 or LOCAL_FILE=LFN"),
    ],
    site: Annotated[str, typer.Option("--site", help="where the files were copied")],
    declare: Annotated[
        bool, typer.Option("--declare", help="declare the dataset first if it is new")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Register files in the user namespace: each is verified on the site's storage (size,
    adler32) first; those that fail are listed and not registered (exit 5)."""
    try:
        body = {"dataset": dataset, "site": site, "files": [parse_file(f) for f in files]}
    except ClientError as exc:
        fail(exc)
    with gateway() as api:
        if declare:
            try:
                api.post(f"{U}/datasets", {"name": dataset})
            except ClientError as exc:
                if "exists already" not in exc.message:
                    raise
        result = api.post(f"{U}/inject", body)
    _print_injected(result, json_out)


def parse_import(spec: str) -> dict[str, Any]:
    """``SOURCE_URL,LFN,SIZE,ADLER32``: a file produced elsewhere and where it goes."""
    source, _, rest = spec.partition(",")
    if "://" not in source or not rest:
        raise ClientError(f"{spec!r}: give SOURCE_URL,LFN,SIZE,ADLER32", ExitCode.USAGE)
    return {"source": source, **parse_file(rest)}


def _print_injected(result: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(result)
    else:
        console = out()
        console.print(f"{len(result['registered'])} registered", soft_wrap=True)
        render.table(
            console,
            "Registered",
            ["lfn", "block", "site", "size"],
            [
                [f["lfn"], f["block"], f["site"], render.size(f["size"])]
                for f in result["registered"]
            ],
        )
        if result["failed"]:
            render.table(
                console,
                "Failed",
                ["lfn", "reason"],
                [[f["lfn"], f["reason"]] for f in result["failed"]],
            )
    if result["failed"]:
        raise typer.Exit(int(ExitCode.FAILED))


@sub_command(userdata_app, "import")
def import_files(
    dataset: DatasetArgument,
    files: Annotated[
        list[str], typer.Argument(metavar="FILE...", help="SOURCE_URL,LFN,SIZE,ADLER32")
    ],
    site: Annotated[str, typer.Option("--site", help="where the copies go")],
    json_out: JsonOption = False,
) -> None:
    """Data produced elsewhere: Dynamo copies each file into your namespace at the site
    (size and adler32 checked), then registers it; failures are listed (exit 5)."""
    try:
        body = {"dataset": dataset, "site": site, "files": [parse_import(f) for f in files]}
    except ClientError as exc:
        fail(exc)
    with gateway() as api:
        result = api.post(f"{U}/import", body)
    _print_injected(result, json_out)


@sub_command(userdata_app, "declare")
def declare_dataset(dataset: DatasetArgument, json_out: JsonOption = False) -> None:
    """Declare a dataset in your namespace (the name must be new)."""
    with gateway() as api:
        made = api.post(f"{U}/datasets", {"name": dataset})
    if json_out:
        print_json(made)
        return
    typer.echo(_dataset_line(made))


@sub_command(userdata_app, "list")
def list_datasets(
    owner: Annotated[str | None, typer.Option(help="one user's datasets")] = None,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    everything: AllOption = False,
    json_out: JsonOption = False,
) -> None:
    """User datasets, by name."""
    with gateway() as api:
        page = fetch_list(api, f"{U}/datasets", {"owner": owner}, limit, offset, everything)
    if json_out:
        print_json(page)
        return
    console = out()
    rows = [
        [d["name"], d["owner"], d["state"], d.get("home"), d["files"], render.size(d["size"])]
        for d in page["items"]
    ]
    render.table(console, None, ["name", "owner", "state", "home", "files", "size"], rows)
    render.footer(console, page, len(rows))


@sub_command(userdata_app, "status")
def status(dataset: DatasetArgument, json_out: JsonOption = False) -> None:
    """A dataset's blocks: where they were injected, open or closed, and every copy (complete,
    in flight, or being deleted)."""
    with gateway() as api:
        got = api.get(f"{U}/dataset", {"name": dataset})
    if json_out:
        print_json(got)
        return
    console = out()
    console.print(_dataset_line(got), soft_wrap=True)

    def copies(block: dict[str, Any]) -> str:
        return ", ".join(
            f"{r['site']} "
            + ("deleting" if r["deleting"] else "complete" if r["complete"] else "in flight")
            for r in block["replicas"]
        )

    render.table(
        console,
        "Blocks",
        ["block", "injected at", "files", "size", "open", "copies"],
        [
            [b["name"], b["site"], b["files"], render.size(b["size"]), b["open"], copies(b)]
            for b in got["blocks"]
        ],
        right=["files", "size"],
    )


def _act(path: str, body: dict[str, Any], json_out: bool) -> None:
    with gateway() as api:
        got = api.post(f"{U}/{path}", body)
    if json_out:
        print_json(got)
        return
    typer.echo(_dataset_line(got))


@sub_command(userdata_app, "complete")
def complete(dataset: DatasetArgument, json_out: JsonOption = False) -> None:
    """Production is over: Dynamo closes the remaining blocks; no more files."""
    _act("complete", {"dataset": dataset}, json_out)


@sub_command(userdata_app, "subscribe")
def subscribe(
    dataset: DatasetArgument,
    site: Annotated[str, typer.Argument(help="the one site to consolidate at")],
    json_out: JsonOption = False,
) -> None:
    """Consolidate the dataset at one site; scattered copies are deleted once it is there."""
    _act("subscribe", {"dataset": dataset, "site": site}, json_out)


@sub_command(userdata_app, "delete")
def delete(dataset: DatasetArgument, json_out: JsonOption = False) -> None:
    """Delete the dataset: every copy's files, then its name."""
    _act("delete", {"dataset": dataset}, json_out)


@sub_command(userdata_app, "quota")
def quota(
    user: Annotated[str, typer.Argument(help="whose usage")],
    json_out: JsonOption = False,
) -> None:
    """A user's bytes against the per-user quota, and user data per site against its quota."""
    with gateway() as api:
        got = api.get(f"{U}/quota", {"user": user})
    if json_out:
        print_json(got)
        return
    console = out()
    console.print(
        f"{got['user']}: {render.size(got['used'])} of {render.size(got['quota'])}",
        soft_wrap=True,
    )
    render.table(
        console,
        "User data per site",
        ["site", "used", "quota"],
        [[s, render.size(u), render.size(q)] for s, (u, q) in got["sites"].items()],
        right=["used", "quota"],
    )
