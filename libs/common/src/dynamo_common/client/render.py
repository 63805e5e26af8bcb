"""Tables and numbers for people (``--json`` skips all of this)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB")


def size(value: Any) -> str:
    """Decimal units, as storage is sold and quotas are written."""
    if not isinstance(value, int | float):
        return "-"
    number = float(value)
    for unit in _UNITS:
        if abs(number) < 1000 or unit == _UNITS[-1]:
            return f"{number:.0f} {unit}" if unit == "B" else f"{number:.1f} {unit}"
        number /= 1000
    return f"{value} B"  # unreachable: the loop returns at the last unit


def when(value: Any) -> str:
    """An ISO timestamp shortened to the minute, in the zone it was given in."""
    if not isinstance(value, str) or not value:
        return "-"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    return parsed.strftime("%Y-%m-%d %H:%M")


def percent(value: Any) -> str:
    return f"{value * 100:.0f}%" if isinstance(value, int | float) else "-"


def text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def table(
    console: Console,
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    right: Sequence[str] = (),
) -> None:
    rows = list(rows)
    if not rows:
        console.print(f"{title}: none" if title else "[dim]none found[/]")
        return
    out = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        out.add_column(column, justify="right" if column in right else "left", overflow="fold")
    for row in rows:
        out.add_row(*(text(cell) for cell in row))
    console.print(out)


def footer(console: Console, page: dict[str, Any], shown: int) -> None:
    """Says when a list was cut by paging, and how to get the rest."""
    total = page.get("total")
    offset = int(page.get("offset") or 0)
    if isinstance(total, int) and shown < total:
        console.print(
            f"[dim]{offset + 1 if shown else offset}-{offset + shown} of {total}: "
            "--limit, --offset or --all for more[/]"
        )
