"""``dynamo simulate SCENARIO``: run the decision simulator and write its report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from dynamo_common.simulation.scenario import Scenario


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
    seeds: Annotated[
        int,
        typer.Option(
            min=1,
            max=50,
            help="run the scenario with this many trace seeds (the seed, seed+1, ...): a "
            "report per seed in OUT/seed-N and the median and range over seeds in "
            "OUT/seeds.json",
        ),
    ] = 1,
    vary: Annotated[
        str | None,
        typer.Option(
            help="sweep: KEY=V1,V2,... runs the scenario once per value (times --seeds) of a "
            "scenario field (users.request_probability, trace.generate.zipf, ...) or an agent "
            "option (dealer.popularity_max_copies, ...); OUT/sweep.json and OUT/sweep.png",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no progress lines")] = False,
) -> None:
    """Replay a period of data use on a synthetic grid under several strategies (the
    configured Dynamo agents, LRU deletion, static placement) and compare them."""
    from dynamo_common.simulation.agent import AgentError
    from dynamo_common.simulation.kernel import ConservationError
    from dynamo_common.simulation.scenario import ScenarioError, load_scenario, with_overrides
    from dynamo_common.simulation.seeds import seeds_table, summarise_seeds
    from dynamo_common.simulation.sweep import parse_vary, sweep_png, sweep_table
    from dynamo_common.simulation.sweep import vary as vary_scenario
    from dynamo_common.simulation.trace import TraceError

    if check is not None and check not in ("full", "sampled", "off"):
        raise typer.BadParameter("--check must be full, sampled or off")
    if (seeds > 1 or vary is not None) and export_trace is not None:
        raise typer.BadParameter("--export-trace writes one trace: not with --seeds or --vary")
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
        target = out or Path(f"simulation-{loaded.name}")
        if vary is None:
            runs = _run_seeds(loaded, seeds, target, progress, export_trace)
        else:
            key, values = parse_vary(vary)
            # Every value is checked before the first (long) run starts.
            variants = [(value, vary_scenario(loaded, key, value)) for value in values]
            points: list[dict[str, Any]] = []
            for value, variant in variants:
                typer.echo(f"{key} = {json.dumps(value)}", err=True)
                shown = value if isinstance(value, str) else json.dumps(value)
                runs = _run_seeds(variant, seeds, target / f"{key}={shown}", progress, None, True)
                points.append({"value": value, "seeds": summarise_seeds(runs)})
    except (ScenarioError, AgentError, TraceError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except ConservationError as exc:
        typer.echo(f"conservation check failed: {exc}", err=True)
        raise typer.Exit(1) from None
    if vary is not None:
        summary = {
            "scenario": loaded.name,
            "key": key,
            "seeds": points[0]["seeds"]["seeds"],
            "points": points,
        }
        path = target / "sweep.json"
        path.write_text(json.dumps(summary, indent=2, sort_keys=True))
        plot = sweep_png(summary, target / "sweep.png")
        _print_rows(sweep_table(summary))
        typer.echo(f"sweep: {path}, {plot}", err=True)
    elif seeds > 1:
        summary = summarise_seeds(runs)
        path = target / "seeds.json"
        path.write_text(json.dumps(summary, indent=2, sort_keys=True))
        _print_rows(seeds_table(summary))
        for name, c in summary["comparison"].items():
            more = c.get("more_accesses_from_disk")
            ratio = c.get("transfer_ratio")
            typer.echo(
                f"{name} over {c['seeds']} seeds: "
                + (
                    f"{more['median']:+.1%} accesses served from disk (median; "
                    f"{more['min']:+.1%} to {more['max']:+.1%})"
                    if more
                    else "no baseline hits"
                )
                + (f", transfer volume x{ratio['median']:.2f} (median)" if ratio else "")
            )
        typer.echo(f"summary over seeds: {path}", err=True)


def _run_seeds(
    scenario: Scenario,
    seeds: int,
    target: Path,
    progress: Callable[[str], None] | None,
    export_trace: Path | None,
    always_per_seed: bool = False,
) -> list[dict[str, Any]]:
    """Run ``scenario`` with ``seeds`` trace seeds from its own; one report directory per
    seed (or ``target`` itself for a single seed unless ``always_per_seed``)."""
    from dynamo_common.simulation.report import write_report
    from dynamo_common.simulation.runner import run_scenario
    from dynamo_common.simulation.scenario import with_overrides
    from dynamo_common.simulation.trace import write_csv_trace

    single = seeds == 1 and not always_per_seed
    runs: list[dict[str, Any]] = []
    for n in range(seeds):
        this = scenario if n == 0 else with_overrides(scenario, seed=scenario.seed + n)
        if not single and progress is not None:
            progress(f"seed {this.seed} ({n + 1} of {seeds})")
        result = run_scenario(this, progress=progress)
        data = result.to_json()
        written = write_report(data, target if single else target / f"seed-{this.seed}")
        if export_trace is not None:
            write_csv_trace(result.trace, export_trace, result.start)
        if single:
            _print_run(data)
        else:
            compared = "; ".join(_comparison_lines(data)) or "no comparison"
            typer.echo(f"seed {this.seed}: {compared}", err=True)
        typer.echo(f"report: {', '.join(str(p) for p in written)}", err=True)
        runs.append(data)
    return runs


def _print_rows(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def _comparison_lines(data: dict[str, Any]) -> list[str]:
    parts = []
    for name, c in data["comparison"].items():
        more = c["more_accesses_from_disk"]
        ratio = c["transfer_ratio"]
        parts.append(
            f"{name}: "
            + (f"{more:+.1%} accesses served from disk" if more is not None else "no baseline hits")
            + (f", transfer volume x{ratio:.2f}" if ratio is not None else "")
        )
    return parts


def _print_run(data: dict[str, Any]) -> None:
    from dynamo_common.simulation.report import table

    _print_rows(table(data))
    typer.echo(
        f"best any placement could do (every dataset at every site, the grid's CPU slots "
        f"the only limit): {data['trace']['cpu_bound']:.1%} from disk"
    )
    for line in _comparison_lines(data):
        typer.echo(line)
