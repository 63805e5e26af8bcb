"""The inventory: sites, datasets, blocks, files, replicas, statistics."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import typer

from dynamo_common.client import render
from dynamo_common.client.commands.base import (
    AllOption,
    JsonOption,
    LimitOption,
    OffsetOption,
    command,
    fetch_list,
    gateway,
    out,
    print_json,
)


@command()
def sites(
    pattern: Annotated[str | None, typer.Argument(help="site names, wildcards * ?")] = None,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    everything: AllOption = False,
    json_out: JsonOption = False,
) -> None:
    """Sites with their storage use."""
    with gateway() as api:
        page = fetch_list(api, "/api/v1/sites", {"name": pattern}, limit, offset, everything)
    if json_out:
        print_json(page)
        return
    console = out()
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


@command()
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
    with gateway() as api:
        page = fetch_list(
            api,
            "/api/v1/datasets",
            {"name": pattern, "status": status},
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


@command()
def dataset(
    name: Annotated[str, typer.Argument(help="the dataset's full name")],
    json_out: JsonOption = False,
) -> None:
    """One dataset: its blocks and where its replicas are."""
    with gateway() as api:
        data = api.get("/api/v1/dataset", {"name": name})
    if json_out:
        print_json(data)
        return
    console = out()
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


@command()
def files(
    dataset_name: Annotated[str, typer.Argument(metavar="DATASET", help="the dataset")],
    block: Annotated[str, typer.Argument(help="the block's name (the part after #)")],
    limit: LimitOption = 1000,
    offset: OffsetOption = 0,
    everything: AllOption = False,
    json_out: JsonOption = False,
) -> None:
    """The files of a block."""
    with gateway() as api:
        page = fetch_list(
            api,
            "/api/v1/files",
            {"dataset": dataset_name, "block": block},
            limit,
            offset,
            everything,
        )
    if json_out:
        print_json(page)
        return
    console = out()
    rows = [
        [f["lfn"], render.size(f.get("size")), f.get("adler32"), f.get("crc32")]
        for f in page["items"]
    ]
    render.table(console, None, ["file", "size", "adler32", "crc32"], rows, right=["size"])
    render.footer(console, page, len(rows))


@command()
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
    with gateway() as api:
        page = fetch_list(
            api,
            f"/api/v1/sites/{quote(site, safe='')}/replicas",
            {"dataset": dataset_pattern},
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


@command()
def stats(
    group_by: Annotated[
        str, typer.Option(help="comma-separated: site, group, tier, storage_type, status")
    ] = "site",
    json_out: JsonOption = False,
) -> None:
    """Replica volume grouped by site, group, data tier, ..."""
    with gateway() as api:
        data = api.get("/api/v1/stats", {"group_by": group_by})
    if json_out:
        print_json(data)
        return
    keys: list[str] = data.get("group_by", [])
    rows = [
        [*(row["key"].get(k) for k in keys), row.get("replicas"), render.size(row.get("size"))]
        for row in data.get("rows", [])
    ]
    render.table(out(), None, [*keys, "replicas", "size"], rows, right=["replicas", "size"])


@command()
def site(
    name: Annotated[str, typer.Argument(help="the site's name")],
    json_out: JsonOption = False,
) -> None:
    """One site: its storage, status and use per partition."""
    with gateway() as api:
        data = api.get(f"/api/v1/sites/{quote(name, safe='')}")
    if json_out:
        print_json(data)
        return
    console = out()
    console.print(f"[bold]{data['name']}[/]", soft_wrap=True)
    facts = [
        f"{data.get('storage_type')} storage",
        f"status {data.get('status')}",
        f"{render.size(data.get('used'))} used",
        f"{data.get('dataset_replicas')} dataset replicas",
    ]
    console.print(", ".join(str(f) for f in facts), soft_wrap=True)
    render.table(
        console,
        "Partitions",
        ["partition", "used", "quota", "occupancy"],
        [
            [
                u["partition"],
                render.size(u.get("used")),
                render.size(u.get("quota")),
                render.percent(u.get("occupancy")),
            ]
            for u in data.get("usage", [])
        ],
        right=["used", "quota", "occupancy"],
    )


@command()
def blocks(
    dataset_name: Annotated[str, typer.Argument(metavar="DATASET", help="the dataset")],
    json_out: Annotated[
        bool, typer.Option("--json", help="print the gateway's JSON of the dataset (scripts)")
    ] = False,
) -> None:
    """The blocks of a dataset: size, files, and how complete each replica of them is."""
    with gateway() as api:
        data = api.get("/api/v1/dataset", {"name": dataset_name})
    if json_out:
        print_json(data)
        return
    # Per block and site, the block replica's own completeness (from the dataset replicas).
    held: dict[tuple[str, str], dict[str, object]] = {}
    for replica in data.get("replicas", []):
        for block_replica in replica.get("block_replicas") or []:
            held[(block_replica["block"], replica["site"])] = block_replica
    rows = []
    for block in data.get("blocks", []):
        where = []
        for site_name in block.get("replicas", []):
            replica = held.get((block["name"], site_name))
            partial = replica is not None and not replica.get("is_complete", True)
            if partial and replica is not None:
                where.append(f"{site_name} ({replica.get('num_files')}/{block.get('num_files')})")
            else:
                where.append(site_name)
        rows.append(
            [
                block["name"],
                render.size(block.get("size")),
                block.get("num_files"),
                block.get("is_open"),
                render.when(block.get("last_update")),
                ", ".join(where) or "-",
            ]
        )
    console = out()
    console.print(f"[bold]{data['name']}[/]: {len(rows)} blocks", soft_wrap=True)
    render.table(
        console,
        None,
        ["block", "size", "files", "open", "last update", "replicas (files held if partial)"],
        rows,
        right=["size", "files"],
    )
