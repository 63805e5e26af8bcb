"""`dynamo`: one command to run the services (`up`, `serve`) and to work with the bus contracts.

Later issues add the client commands (datasets, sites, requests, ...) that talk to the gateway.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dynamo_common import service_plugin as plugin_loader
from dynamo_common.client import ClientGroup, client_app
from dynamo_common.service_plugin import ServicePlugin, discover
from dynamo_common.simulation.cli import simulate

# Usage errors exit 1 everywhere (click's 2 would read as "not found" to scripts).
app = typer.Typer(
    cls=ClientGroup, no_args_is_help=True, help="Dynamo: data management for scientific grids."
)
contracts_app = typer.Typer(no_args_is_help=True, help="The message contracts of the bus.")
app.add_typer(contracts_app, name="contracts")
app.add_typer(client_app)
app.command("simulate")(simulate)
console = Console(stderr=True)


def _plugin(name: str) -> ServicePlugin:
    plugin = plugin_loader.load(name)
    if plugin is None:
        known = ", ".join(plugin_loader.installed()) or "none installed"
        raise typer.BadParameter(f"unknown service {name!r} (known: {known})")
    return plugin


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
def migrate(
    services: Annotated[
        list[str] | None, typer.Argument(help="services to migrate (default: every installed one)")
    ] = None,
) -> None:
    """Run the Alembic migrations of every installed service (or those named) against
    DYNAMO_DATABASE_URL, then exit: the one-shot job of a distributed deployment."""
    from dynamo_common.settings import DynamoSettings
    from dynamo_common.standalone.migrate import MigrationError, migrate_services

    url = DynamoSettings().database_url
    if not url:
        console.print("[red]DYNAMO_DATABASE_URL is not set[/]: nothing to migrate")
        raise typer.Exit(2)
    try:
        plugins = discover()
    except plugin_loader.PluginError as exc:
        console.print(f"[red]migration failed[/]: {exc}")
        raise typer.Exit(1) from None
    chosen = list(dict.fromkeys(services or plugins))
    unknown = [name for name in chosen if name not in plugins]
    if unknown:
        known = ", ".join(plugins) or "none installed"
        raise typer.BadParameter(f"unknown service(s) {', '.join(unknown)} (known: {known})")
    try:
        for name, schema in asyncio.run(migrate_services([plugins[n] for n in chosen], url)):
            console.print(f"[green]migrated[/] {name} (schema {schema})")
    except MigrationError as exc:
        console.print(f"[red]migration failed[/]: {exc}")
        raise typer.Exit(1) from None


@app.command()
def up(
    data_dir: Annotated[
        Path, typer.Option(help="the instance's data: embedded database, sites, policies")
    ] = Path(".dynamo"),
    host: str = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="the web page and API (the gateway); services follow it")
    ] = 8080,
    demo: Annotated[
        bool | None,
        typer.Option(
            "--demo/--no-demo",
            help="seed a demo grid with agents on short schedules (default: on an empty "
            "instance; a second start never seeds again)",
        ),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="services' log level (default: DYNAMO_LOG_LEVEL or WARNING)")
    ] = None,
) -> None:
    """Start Dynamo standalone: an embedded PostgreSQL (or DYNAMO_DATABASE_URL's), the
    in-process bus, every installed service in this one process. Ctrl-C stops it cleanly;
    start it again and everything is there."""
    from dynamo_common.settings import DynamoSettings
    from dynamo_common.standalone.runner import Options, default_log_level, run_standalone

    level = (log_level or default_log_level()).upper()
    if level not in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"):
        raise typer.BadParameter(
            f"{level!r} is not a log level (CRITICAL, ERROR, WARNING, INFO, DEBUG)",
            param_hint="--log-level",
        )
    options = Options(
        data_dir=data_dir,
        host=host,
        port=port,
        demo=demo,
        log_level=level,
        database_url=DynamoSettings().database_url,
    )
    status = asyncio.run(run_standalone(options, Console(stderr=True, soft_wrap=True)))
    raise typer.Exit(status)


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
