"""Run the benchmarks: ``python -m tests.bench.run --scale ci|tenth|cms`` (``make bench``).

Prints a table and writes ``tests/bench/results/latest.json``. Every value is the median of
a few repetitions, beside its floor measured in the same run (the machines are noisy).
The cold start is always measured at the ``tenth`` scale at least (``cms`` when asked).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from tests.bench import (
    bench_cold_start,
    bench_consistency,
    bench_dealer,
    bench_detox,
    bench_follower,
    bench_gateway,
    bench_replica_throughput,
    bench_simulator,
    bench_transfer,
)
from tests.bench.report import LATEST, Result, log, print_table, write_json

SCALES = ("ci", "tenth", "cms")
BENCHMARKS = (
    "cold_start",
    "replicas",
    "follower",
    "consistency",
    "transfer.fts_submit",
    "transfer.direct_copy",
    "detox",
    "dealer",
    "gateway",
    "simulator",
)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__)
    parser.add_argument("--scale", choices=SCALES, default="ci")
    parser.add_argument("--repetitions", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument(
        "--only", choices=BENCHMARKS, action="append", help="run only these (repeatable)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile every benchmark with cProfile (the cold start is profiled anyway "
        "when it misses its target)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target is missed"
    )
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> list[Result]:
    wanted = set(args.only or BENCHMARKS)
    results: list[Result] = []
    event_log: list[tuple[int, str]] | None = None
    if "cold_start" in wanted:
        cold_scale = "cms" if args.scale == "cms" else "tenth"
        results += await bench_cold_start.run(
            cold_scale, args.repetitions, profile=True if args.profile else None
        )
    if "replicas" in wanted:
        outcome = await bench_replica_throughput.run(
            args.scale, args.repetitions, profile=args.profile
        )
        results += outcome.results
        event_log = outcome.event_log
    if "follower" in wanted:
        results += bench_follower.run(args.scale, args.repetitions, event_log, profile=args.profile)
    if "consistency" in wanted:
        results += await bench_consistency.run(args.repetitions, profile=args.profile)
    if "transfer.fts_submit" in wanted:
        results += await bench_transfer.run_fts_submit(
            args.scale, args.repetitions, profile=args.profile
        )
    if "transfer.direct_copy" in wanted:
        results += await bench_transfer.run_direct_copy(
            args.scale, args.repetitions, profile=args.profile
        )
    if "detox" in wanted:
        results += bench_detox.run(args.scale, args.repetitions, profile=args.profile)
    if "dealer" in wanted:
        results += bench_dealer.run(args.scale, args.repetitions, profile=args.profile)
    if "gateway" in wanted:
        results += await bench_gateway.run(args.repetitions)
    if "simulator" in wanted:
        # Always the month at the tenth scale (the benchmark), whatever --scale says.
        results += bench_simulator.run()
    return results


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    started = time.perf_counter()
    results = asyncio.run(_main(args))
    profiles = {
        r.name: r.details.pop("profile_text") for r in results if "profile_text" in r.details
    }
    for name, text in profiles.items():
        print(f"\nProfile of {name} (cProfile, sorted by own time):\n{text}")
    print_table(results)
    path = write_json(results)
    missed = [r.name for r in results if r.met is False]
    log(
        f"wrote {path.relative_to(LATEST.parents[3])} in {time.perf_counter() - started:.0f} s; "
        + (f"targets missed: {', '.join(missed)}" if missed else "every target met")
    )
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
