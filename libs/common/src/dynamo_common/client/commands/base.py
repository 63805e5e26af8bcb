"""What every client command shares: the typer app and its groups (with click's usage exit
code turned into ours), the common options, the gateway connection and its errors, JSON out,
paging, and waiting for work to finish."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from dynamo_common.client.api import Gateway
from dynamo_common.client.config import load_config
from dynamo_common.client.errors import ClientError, ExitCode

F = TypeVar("F", bound=Callable[..., Any])
PANEL = "Client (through the gateway)"


def _usage_exit(exc: Exception) -> None:
    # Click exits with 2 on a usage error; 2 means "not found" to our scripts, so the client
    # commands say 1. Duck-typed: typer vendors click, whose classes are not public API.
    if getattr(exc, "exit_code", None) == 2 and hasattr(exc, "show"):
        exc.exit_code = int(ExitCode.USAGE)  # type: ignore[attr-defined]


class Command(TyperCommand):
    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except Exception as exc:
            _usage_exit(exc)
            raise


class Group(TyperGroup):
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


app = typer.Typer(cls=Group, rich_markup_mode="markdown")


def group(name: str, help: str) -> typer.Typer:
    """A command group of the client (``dynamo NAME ...``)."""
    sub = typer.Typer(cls=Group, no_args_is_help=True, help=help, rich_markup_mode="markdown")
    app.add_typer(sub, name=name, rich_help_panel=PANEL)
    return sub


def command(name: str | None = None) -> Callable[[F], F]:
    return app.command(name, cls=Command, rich_help_panel=PANEL)


def sub_command(sub: typer.Typer, name: str) -> Callable[[F], F]:
    return sub.command(name, cls=Command)


JsonOption = Annotated[bool, typer.Option("--json", help="print the gateway's JSON (scripts)")]
LimitOption = Annotated[int, typer.Option(min=1, max=10_000, help="rows per page")]
OffsetOption = Annotated[int, typer.Option(min=0, help="rows to skip")]
AllOption = Annotated[bool, typer.Option("--all", help="every page, not only the first")]
WaitOption = Annotated[bool, typer.Option("--wait", help="follow it until it has finished")]
TimeoutOption = Annotated[
    float, typer.Option(min=1, help="with --wait: give up after this many seconds (exit 6)")
]
IntervalOption = Annotated[float, typer.Option(min=0.05, help="with --wait: seconds between polls")]


def out() -> Console:
    # Made per command (not at import) so that it writes to whatever sys.stdout is now.
    return Console(soft_wrap=False, highlight=False)


def err() -> Console:
    return Console(stderr=True, highlight=False)


def fail(exc: ClientError) -> NoReturn:
    console = err()
    console.print(f"[bold red]error:[/] {exc.message}", markup=True, soft_wrap=True)
    if exc.hint:
        console.print(f"[dim]{exc.hint}[/]", soft_wrap=True)
    raise typer.Exit(int(exc.code))


@contextmanager
def gateway() -> Iterator[Gateway]:
    try:
        with Gateway(load_config()) as connection:
            yield connection
    except ClientError as exc:
        fail(exc)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def fetch_list(
    connection: Gateway,
    path: str,
    params: dict[str, Any],
    limit: int,
    offset: int,
    everything: bool,
) -> dict[str, Any]:
    """A list endpoint's answer; with ``everything``, every page folded into one."""
    pages = list(
        connection.pages(path, {**params, "offset": offset}, limit=limit, everything=everything)
    )
    first: dict[str, Any] = dict(pages[0])
    if len(pages) > 1:
        first["items"] = [item for page in pages for item in page.get("items", [])]
        first["limit"] = len(first["items"])
    return first


def poll(
    fetch: Callable[[], dict[str, Any]],
    finished: Callable[[dict[str, Any]], bool],
    *,
    timeout: float,
    interval: float,
    what: str,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """``fetch()`` until ``finished`` says so; a :class:`ClientError` (exit 6) at ``timeout``.
    The deadline is checked after a fetch, so the last state seen is always reported."""
    deadline = time.monotonic() + timeout
    while True:
        state = fetch()
        if progress is not None:
            progress(state)
        if finished(state):
            return state
        if time.monotonic() >= deadline:
            raise ClientError(
                f"gave up waiting for {what} after {timeout:g} s; it goes on",
                ExitCode.TIMEOUT,
                hint="look again later, or wait longer with --timeout",
            )
        time.sleep(interval)


_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_until(value: str, now: datetime | None = None) -> str:
    """A time as the API wants it (ISO 8601 with a zone): an ISO time (UTC when it has no
    zone) or a duration from now: ``30m``, ``12h``, ``7d``, ``2w``."""
    value = value.strip()
    now = now or datetime.now(UTC)
    unit = _UNITS.get(value[-1:].lower()) if value else None
    if unit is not None and value[:-1].isdigit():
        return (now + timedelta(seconds=int(value[:-1]) * unit)).isoformat()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ClientError(
            f"{value!r} is neither a time (2026-12-31T00:00Z) nor a duration (30m, 12h, 7d, 2w)",
            ExitCode.USAGE,
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.isoformat()
