"""``dynamo simulate SCENARIO``: run the decision simulator and write its report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def _options(values: list[str], policies: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in policies:
        agent, sep, file = item.partition("=")
        if not sep or not agent or not file:
            raise typer.BadParameter(f"--policy takes AGENT=FILE, not {item!r}")
        out.setdefault(agent, {})["policy"] = str(Path(file).resolve())
    for item in values:
        key, sep, raw = item.partition("=")
        agent, dot, name = key.partition(".")
        if not sep or not dot or not agent or not name:
            raise typer.BadParameter(f"--option takes AGENT.NAME=VALUE, not {item!r}")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(agent, {})[name] = value
    return out


def simulate(
    scenario: Annotated[Path, typer.Argument(help="scenario file (.yaml, .toml or .json)")],
    out: Annotated[
        Path | None, typer.Option(help="report directory (default: simulation-<scenario name>)")
    ] = None,
    days: Annotated[
        float | None, typer.Option(help="simulated days (default: the scenario's)")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="trace seed (default: the scenario's)")] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option(help="what if: AGENT=FILE replaces an agent's policy file (repeatable)"),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            help="what if: AGENT.NAME=VALUE changes an agent option, the value as JSON "
            "(e.g. dealer.popularity_half_life_days=3; repeatable)"
        ),
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option(help="run only these strategies (repeatable)")
    ] = None,
    check: Annotated[
        str | None, typer.Option(help="conservation checks: full, sampled or off")
    ] = None,
    export_trace: Annotated[
        Path | None, typer.Option(help="also write the trace as CSV (replayable)")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no progress lines")] = False,
) -> None:
    """Replay a period of data use on a synthetic grid under several strategies (the
    configured Dynamo agents, LRU deletion, static placement) and compare them."""
    from dynamo_common.simulation.agent import AgentError
    from dynamo_common.simulation.kernel import ConservationError
    from dynamo_common.simulation.report import table, write_report
    from dynamo_common.simulation.runner import run_scenario
    from dynamo_common.simulation.scenario import ScenarioError, load_scenario, with_overrides
    from dynamo_common.simulation.trace import TraceError, write_csv_trace

    if check is not None and check not in ("full", "sampled", "off"):
        raise typer.BadParameter("--check must be full, sampled or off")
    try:
        loaded = load_scenario(scenario)
        loaded = with_overrides(
            loaded,
            days=days,
            seed=seed,
            options=_options(option or [], policy or []),
            only=only,
            check=check,
        )
        progress = None if quiet else (lambda line: typer.echo(line, err=True))
        result = run_scenario(loaded, progress=progress)
    except (ScenarioError, AgentError, TraceError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except ConservationError as exc:
        typer.echo(f"conservation check failed: {exc}", err=True)
        raise typer.Exit(1) from None
    data = result.to_json()
    target = out or Path(f"simulation-{loaded.name}")
    written = write_report(data, target)
    if export_trace is not None:
        write_csv_trace(result.trace, export_trace, result.start)
    rows = table(data)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    typer.echo(
        f"best any placement could do (every dataset at every site, the grid's CPU slots "
        f"the only limit): {data['trace']['cpu_bound']:.1%} from disk"
    )
    for name, c in data["comparison"].items():
        more = c["more_accesses_from_disk"]
        ratio = c["transfer_ratio"]
        typer.echo(
            f"{name}: "
            + (f"{more:+.1%} accesses served from disk" if more is not None else "no baseline hits")
            + (f", transfer volume x{ratio:.2f}" if ratio is not None else "")
        )
    typer.echo(f"report: {', '.join(str(p) for p in written)}", err=True)
