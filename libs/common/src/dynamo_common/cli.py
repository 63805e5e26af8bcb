"""`dynamo`: one command to run the services (`up`, `serve`) and to work with the bus contracts.

Later issues add the client commands (datasets, sites, requests, ...) that talk to the gateway.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from dynamo_common.client import client_app
from dynamo_common.service_plugin import ServicePlugin, discover

app = typer.Typer(no_args_is_help=True, help="Dynamo: data management for scientific grids.")
contracts_app = typer.Typer(no_args_is_help=True, help="The message contracts of the bus.")
app.add_typer(contracts_app, name="contracts")
app.add_typer(client_app)
console = Console(stderr=True)


def _plugin(name: str) -> ServicePlugin:
    plugins = discover()
    if name not in plugins:
        known = ", ".join(plugins) or "none installed"
        raise typer.BadParameter(f"unknown service {name!r} (known: {known})")
    return plugins[name]


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help="inventory, ...")],
    host: Annotated[str | None, typer.Option(help="default: DYNAMO_HTTP_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default: DYNAMO_HTTP_PORT")] = None,
) -> None:
    """Run one service as its own process against the configured PostgreSQL and RabbitMQ."""
    import uvicorn

    plugin = _plugin(service)
    settings = plugin.settings_class()
    uvicorn.run(
        plugin.create_app(settings),
        host=host or settings.http_host,
        port=port or settings.http_port,
        log_config=None,
        access_log=False,
    )


@app.command()
def up(
    data_dir: Annotated[Path, typer.Option(help="where the embedded database lives")] = Path(
        ".dynamo"
    ),
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port of the first service; others follow")] = 8080,
) -> None:
    """Start Dynamo standalone: an embedded PostgreSQL, the in-process bus, every service in
    this one process. Ctrl-C stops it cleanly; start it again and everything is there."""
    try:
        asyncio.run(_up(data_dir, host, port))
    except KeyboardInterrupt:
        # uvicorn has already shut the services down gracefully; it re-raises the signal.
        console.print("stopped")


async def _up(data_dir: Path, host: str, port: int) -> None:
    import uvicorn

    from dynamo_common.bus.memory import MemoryBus
    from dynamo_common.standalone.embedded_pg import embedded_postgres_async

    plugins = discover()
    if not plugins:
        raise typer.BadParameter("no Dynamo service is installed")
    bus = MemoryBus(namespace="dynamo")
    await bus.connect()
    external_db = os.environ.get("DYNAMO_DATABASE_URL", "")
    try:
        async with _database(external_db, data_dir, embedded_postgres_async) as db_url:
            servers = []
            # Every service finds the others where this process puts them (``<name>_url``
            # settings, e.g. inventory_url), whatever --port says.
            urls = {
                f"{plugin.name}_url": f"http://{host}:{port + offset}"
                for offset, plugin in enumerate(plugins.values())
            }
            for offset, plugin in enumerate(plugins.values()):
                fields = plugin.settings_class.model_fields
                overrides: dict[str, Any] = {
                    "database_url": db_url,
                    "amqp_url": "memory://",
                    "data_dir": data_dir,
                    "log_format": "console",
                }
                overrides.update((name, url) for name, url in urls.items() if name in fields)
                settings = plugin.settings_class(**overrides)
                server = uvicorn.Server(
                    uvicorn.Config(
                        plugin.create_app(settings, bus=bus),
                        host=host,
                        port=port + offset,
                        log_config=None,
                        access_log=False,
                    )
                )
                servers.append(server)
                console.print(
                    f"[bold green]{plugin.name}[/] on http://{host}:{port + offset}"
                    f"  (API docs: http://{host}:{port + offset}/docs)"
                )
            console.print(
                f"database: {'external' if external_db else f'embedded in {data_dir}'}"
                "; press Ctrl-C to stop"
            )
            await asyncio.gather(*(s.serve() for s in servers))
    finally:
        await bus.close()


def _database(external: str, data_dir: Path, embedded):  # type: ignore[no-untyped-def]
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def given():  # type: ignore[no-untyped-def]
        yield external

    return given() if external else embedded(data_dir)


@contracts_app.command("export")
def export_contracts(
    fmt: Annotated[str, typer.Option("--format", help="jsonschema or asyncapi")] = "jsonschema",
    output: Annotated[Path | None, typer.Option("-o", help="file (default: stdout)")] = None,
) -> None:
    """Export every message contract so outside consumers can validate what they receive."""
    from dynamo_common.messages.export import asyncapi, json_schemas

    if fmt not in ("jsonschema", "asyncapi"):
        raise typer.BadParameter("--format must be jsonschema or asyncapi")
    document = json_schemas() if fmt == "jsonschema" else asyncapi()
    text = json.dumps(document, indent=2, sort_keys=True)
    if output:
        output.write_text(text + "\n")
        console.print(f"wrote {output}")
    else:
        typer.echo(text)


policy_app = typer.Typer(
    no_args_is_help=True, help="Policy files: detox policies, partitions, enforcer rules."
)
app.add_typer(policy_app, name="policy")
_POLICY_KINDS = ("detox", "partitions", "enforcer")


def _policy_kind(path: Path, text: str) -> str:
    """Enforcer rules are JSON; a detox policy starts its lines with statement keywords; a
    partition file has ``Name: condition`` lines."""
    from dynamo_common.policy.detox import ACTIONS

    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        return "enforcer"
    keywords = {"Partition", "On", "When", "Until", "Order", "Algo", *ACTIONS}
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            return "detox" if words[0] in keywords else "partitions"
    return "detox"


@policy_app.command("check")
def check_policies(
    files: Annotated[list[Path], typer.Argument(help="policy files to validate")],
    kind: Annotated[
        str | None, typer.Option(help="detox, partitions or enforcer (default: detected)")
    ] = None,
) -> None:
    """Validate policy files offline: every error as FILE:LINE:COL: message; the exit status
    is 1 when any file has an error."""
    from collections.abc import Callable

    from dynamo_common.policy import PolicyErrors, parse_partitions
    from dynamo_common.policy.detox import parse_detox_policy
    from dynamo_common.policy.enforcer import parse_enforcer_rules

    if kind is not None and kind not in _POLICY_KINDS:
        raise typer.BadParameter(f"--kind must be one of {', '.join(_POLICY_KINDS)}")
    failed = False
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            typer.echo(f"{path}:1:1: cannot read the file: {exc}")
            failed = True
            continue
        file_kind = kind or _policy_kind(path, text)
        parsers: dict[str, Callable[..., object]] = {
            "detox": parse_detox_policy,
            "partitions": parse_partitions,
            "enforcer": parse_enforcer_rules,
        }
        try:
            parsers[file_kind](text, file=str(path))
        except PolicyErrors as exc:
            failed = True
            for error in exc:
                typer.echo(str(error))
            continue
        typer.echo(f"{path}: ok ({file_kind})", err=True)
    if failed:
        raise typer.Exit(1)


def main() -> None:
    app()
