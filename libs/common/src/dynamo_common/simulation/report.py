"""The report of a run: ``result.json`` (every number), PNG plots (matplotlib, Agg backend:
no display needed) and ``report.html`` (the table and the plots)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

TB = 1e12
_COLOURS = ("#1f77b4", "#d62728", "#7f7f7f", "#2ca02c", "#9467bd", "#ff7f0e")


def _occupancy_png(data: dict[str, Any], path: Path) -> None:
    strategies = data["strategies"]
    fig, axes = plt.subplots(
        len(strategies), 1, figsize=(10, 2.8 * len(strategies)), sharex=True, squeeze=False
    )
    for ax, strategy in zip(axes[:, 0], strategies, strict=True):
        series = strategy["series"]
        days = [h / 24 for h in series["sample_hours"]]
        for values in series["occupancy"].values():
            ax.plot(days, values, linewidth=0.6, alpha=0.5)
        ax.axhline(0.9, color="black", linestyle="--", linewidth=0.8)
        ax.axhline(1.0, color="red", linestyle=":", linewidth=0.8)
        ax.set_ylabel("occupancy")
        ax.set_title(f"{strategy['name']}: partition occupancy per site", fontsize=10)
        ax.set_ylim(0, 1.05)
    axes[-1, 0].set_xlabel("simulated day")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _daily_png(data: dict[str, Any], path: Path, key: str, label: str) -> None:
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for colour, strategy in zip(_COLOURS, data["strategies"], strict=False):
        daily = strategy["series"]["daily"]
        days = [d["day"] for d in daily]
        if key == "hit_rate":
            values = [d["hits"] / d["accesses"] if d["accesses"] else 0.0 for d in daily]
        else:
            values = [d[key] / TB for d in daily]
        ax.plot(days, values, marker="o", markersize=3, label=strategy["name"], color=colour)
    ax.set_xlabel("simulated day")
    ax.set_ylabel(label)
    if key == "hit_rate":
        ax.set_ylim(0, 1.0)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


PLOTS = {
    "occupancy.png": "Occupancy over time per site",
    "hit_rate.png": "Share of accesses served from disk, per day",
    "transfers.png": "Volume transferred per day (TB)",
}


def write_plots(data: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    _occupancy_png(data, out / "occupancy.png")
    _daily_png(data, out / "hit_rate.png", "hit_rate", "served from disk")
    _daily_png(data, out / "transfers.png", "bytes_transferred", "TB transferred")
    return [out / name for name in PLOTS]


_ROWS = (
    ("accesses", "accesses", "{:,}"),
    ("hit_rate", "served from disk", "{:.1%}"),
    ("no_copy", "no disk copy anywhere", "{:,}"),
    ("waited", "copy on disk, no free slot", "{:,}"),
    ("bytes_transferred", "transferred (TB)", "tb"),
    ("bytes_deleted", "deleted (TB)", "tb"),
    ("copies", "copies made", "{:,}"),
    ("deletions", "deletions", "{:,}"),
    ("requests", "explicit requests", "{:,}"),
    ("requests_expired", "requests unserved after 3 days", "{:,}"),
    ("share_of_site_hours_above_90", "site-hours above 90%", "{:.1%}"),
    ("site_hours_above_quota", "site-hours above quota", "{:,}"),
    ("last_copies_deleted", "last copies deleted", "{:,}"),
    ("decisions_per_cycle", "decisions per cycle", "{:,}"),
    ("wall_seconds", "wall time (s)", "{:.1f}"),
    ("simulated_per_wall", "simulated / wall time", "{:,}x"),
)


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if fmt == "tb":
        return f"{value / TB:,.1f}"
    return fmt.format(value)


def table(data: dict[str, Any]) -> list[list[str]]:
    """The summary as rows (a header, then one row per metric), for HTML and the terminal."""
    strategies = data["strategies"]
    rows = [["", *(s["name"] for s in strategies)]]
    for key, label, fmt in _ROWS:
        rows.append([label, *(_cell(s["summary"].get(key), fmt) for s in strategies)])
    return rows


def write_html(data: dict[str, Any], out: Path) -> Path:
    rows = table(data)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:]
    )
    comparison = "".join(
        f"<li><b>{html.escape(name)}</b>: "
        f"{_cell(c['more_accesses_from_disk'], '{:+.1%}')} accesses served from disk, "
        f"transfer volume x{_cell(c['transfer_ratio'], '{:.2f}')}</li>"
        for name, c in data["comparison"].items()
    )
    descriptions = "".join(
        f"<li><b>{html.escape(s['name'])}</b>: {html.escape(s['description'])}</li>"
        for s in data["strategies"]
    )
    plots = "".join(
        f"<h2>{html.escape(title)}</h2><img src='{name}' alt='{html.escape(title)}'>"
        for name, title in PLOTS.items()
    )
    trace = data["trace"]
    title = html.escape(data["scenario"])
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Dynamo simulation: {title}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}td:first-child{{text-align:left}}
img{{max-width:100%}}</style></head><body>
<h1>Decision simulator: {html.escape(data["scenario"])}</h1>
<p>{html.escape(data["description"])}</p>
<p>Grid {html.escape(data["grid"]["scale"])} (seed {data["grid"]["seed"]}), {data["days"]} days,
seed {data["seed"]}; {trace["accesses"]:,} accesses, {trace["datasets_produced"]} datasets
produced. With every dataset at every site, the grid's CPU slots would serve
{trace["cpu_bound"]:.1%} of the accesses: no strategy can do better.</p>
<ul>{descriptions}</ul>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<ul>{comparison}</ul>
{plots}
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def write_report(data: dict[str, Any], out: Path) -> list[Path]:
    """``result.json``, the PNGs and ``report.html`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "result.json"
    path.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    return [path, *write_plots(data, out), write_html(data, out)]
