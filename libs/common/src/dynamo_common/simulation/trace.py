"""Access traces: who reads which dataset where and when, aggregated per hour.

Two sources: a generator (heavy-tailed popularity of existing datasets, new datasets that
are hot when produced and then cool down, bursts of interest, users' home sites, a day-night
cycle, dataset sizes taken from the grid) and a reader for recorded traces (CSV with columns
``time,dataset,site,accesses``), so that a real experiment's history can be replayed.

A trace is four parallel numpy arrays sorted by hour (hour, dataset index, site index,
count) over name tables, plus the datasets produced during the period.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from dynamo_common.simulation.scenario import CsvTrace, GeneratedTrace

HOUR = 3600.0
IntArray = npt.NDArray[np.int64]


class TraceError(Exception):
    """A recorded trace that cannot be read (the message gives the line)."""


@dataclass(frozen=True, slots=True)
class NewDataset:
    """A dataset produced during the period: complete at ``site`` from ``hour`` on."""

    name: str
    hour: int
    site: str
    block_sizes: tuple[int, ...]
    block_files: tuple[int, ...]

    @property
    def size(self) -> int:
        return sum(self.block_sizes)


@dataclass(slots=True)
class Trace:
    datasets: list[str]
    sites: list[str]
    hour: IntArray
    dataset: IntArray
    site: IntArray
    count: IntArray
    hours: int
    new: list[NewDataset] = field(default_factory=list)
    skipped: int = 0
    """Rows of a recorded trace left out (outside the period, or unknown names skipped)."""
    _offsets: IntArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._offsets = np.searchsorted(self.hour, np.arange(self.hours + 1), side="left")

    @property
    def total(self) -> int:
        return int(self.count.sum())

    def at(self, hour: int) -> tuple[IntArray, IntArray, IntArray]:
        """(dataset, site, count) of one hour."""
        lo, hi = int(self._offsets[hour]), int(self._offsets[hour + 1])
        return self.dataset[lo:hi], self.site[lo:hi], self.count[lo:hi]

    def per_hour(self) -> IntArray:
        return np.bincount(self.hour, weights=self.count, minlength=self.hours).astype(np.int64)


@dataclass(frozen=True, slots=True)
class GridView:
    """What the generator needs to know of the grid."""

    datasets: Sequence[str]
    """Datasets that can be read (valid, with a replica)."""
    templates: Sequence[tuple[str, tuple[int, ...], tuple[int, ...]]]
    """(tier, block sizes, block files) of real datasets, for the sizes of new ones."""
    sites: Sequence[str]
    """Sites where users run jobs."""
    site_weights: Sequence[float]
    production_sites: Sequence[str]


def _sorted(
    hour: IntArray, dataset: IntArray, site: IntArray, count: IntArray
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    # Merge duplicates of (hour, dataset, site) and sort: the same trace whatever the order.
    keyed = np.stack([hour, dataset, site])
    unique, inverse = np.unique(keyed, axis=1, return_inverse=True)
    summed = np.bincount(inverse.ravel(), weights=count, minlength=unique.shape[1])
    return (
        unique[0].astype(np.int64),
        unique[1].astype(np.int64),
        unique[2].astype(np.int64),
        summed.astype(np.int64),
    )


def generate_trace(spec: GeneratedTrace, grid: GridView, days: float, seed: int) -> Trace:
    rng = np.random.default_rng(seed)
    hours = max(1, math.ceil(days * 24))
    n_old = len(grid.datasets)
    if n_old == 0 or not grid.sites:
        raise TraceError("the grid has no readable datasets or no sites with CPU")

    # New datasets: produced uniformly over the first 80% of the period.
    n_new = round(spec.new_datasets * n_old)
    new: list[NewDataset] = []
    for i in range(n_new):
        tier, sizes, files = grid.templates[int(rng.integers(len(grid.templates)))]
        new.append(
            NewDataset(
                name=f"/SimProduced{i:05d}/Simulation-v1/{tier}",
                hour=int(rng.integers(0, max(1, int(hours * 0.8)))),
                site=grid.production_sites[int(rng.integers(len(grid.production_sites)))],
                block_sizes=sizes,
                block_files=files,
            )
        )
    names = [*grid.datasets, *(d.name for d in new)]

    # Existing datasets: a heavy-tailed law over the active ones, in a random order.
    n_active = max(1, round(spec.active_fraction * n_old))
    active = np.sort(rng.choice(n_old, size=n_active, replace=False))
    ranks = rng.permutation(n_active)
    base = 1.0 / np.power(ranks + 1.0, spec.zipf)
    base /= base.sum()
    bursts = []
    for _ in range(spec.bursts):
        which = int(rng.integers(n_active))
        start = int(rng.integers(hours))
        bursts.append((which, start, start + max(1, round(spec.burst_days * 24))))

    # New datasets: hot at production, then cooling; their peak is heavy-tailed too.
    peaks = rng.pareto(1.5, size=n_new) + 1.0 if n_new else np.zeros(0)
    created = np.array([d.hour for d in new], dtype=np.int64)
    decay = math.log(2) / (spec.new_half_life_days * 24)
    grid_hours = np.arange(hours)
    if n_new:
        age = grid_hours[:, None] - created[None, :]
        new_weights = np.where(age >= 0, peaks[None, :] * np.exp(-decay * np.maximum(age, 0)), 0.0)
        new_total = new_weights.sum(axis=1)
        mean_total = new_total.mean()
    else:
        new_weights = np.zeros((hours, 0))
        new_total = np.zeros(hours)
        mean_total = 0.0

    rate = spec.accesses_per_day / 24.0
    daily = 1.0 + spec.daily_cycle * np.sin(2 * np.pi * (grid_hours % 24) / 24.0)
    share_new = spec.new_share if n_new else 0.0
    parts_h: list[IntArray] = []
    parts_d: list[IntArray] = []
    parts_c: list[IntArray] = []
    for h in range(hours):
        weights = base
        live = [b for b in bursts if b[1] <= h < b[2]]
        if live:
            weights = base.copy()
            for which, _, _ in live:
                weights[which] *= spec.burst_factor
            weights /= weights.sum()
        expected_old = rate * daily[h] * (1.0 - share_new)
        counts = rng.multinomial(rng.poisson(expected_old), weights)
        hit = np.nonzero(counts)[0]
        parts_h.append(np.full(len(hit), h, dtype=np.int64))
        parts_d.append(active[hit].astype(np.int64))
        parts_c.append(counts[hit].astype(np.int64))
        if n_new and new_total[h] > 0:
            expected_new = rate * daily[h] * share_new * new_total[h] / mean_total
            counts = rng.multinomial(rng.poisson(expected_new), new_weights[h] / new_total[h])
            hit = np.nonzero(counts)[0]
            parts_h.append(np.full(len(hit), h, dtype=np.int64))
            parts_d.append((hit + n_old).astype(np.int64))
            parts_c.append(counts[hit].astype(np.int64))
    hour = np.concatenate(parts_h)
    dataset = np.concatenate(parts_d)
    count = np.concatenate(parts_c)

    # Where: part of each (dataset, hour)'s accesses from the dataset's home site, the rest
    # from one site drawn by its CPU share.
    p_sites = np.asarray(grid.site_weights, dtype=float)
    p_sites /= p_sites.sum()
    home = rng.choice(len(grid.sites), size=len(names), p=p_sites)
    at_home = rng.binomial(count, spec.locality)
    elsewhere = count - at_home
    other = rng.choice(len(grid.sites), size=len(count), p=p_sites)
    keep_home = at_home > 0
    keep_other = elsewhere > 0
    hour_all = np.concatenate([hour[keep_home], hour[keep_other]])
    dataset_all = np.concatenate([dataset[keep_home], dataset[keep_other]])
    site_all = np.concatenate([home[dataset[keep_home]], other[keep_other]]).astype(np.int64)
    count_all = np.concatenate([at_home[keep_home], elsewhere[keep_other]])
    h_, d_, s_, c_ = _sorted(hour_all, dataset_all, site_all, count_all)
    return Trace(names, list(grid.sites), h_, d_, s_, c_, hours, new)


def _parse_time(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def read_csv_trace(
    spec: CsvTrace,
    path: Path,
    datasets: Sequence[str],
    sites: Sequence[str],
    start: float,
    days: float,
) -> Trace:
    """A recorded trace: ``time`` (ISO 8601, UTC unless it says otherwise, or epoch seconds),
    ``dataset``, ``site``, ``accesses`` (a positive integer). Rows outside the period are
    skipped; a dataset or site the grid does not know is an error (or skipped)."""
    hours = max(1, math.ceil(days * 24))
    dataset_index = {name: i for i, name in enumerate(datasets)}
    site_index = {name: i for i, name in enumerate(sites)}
    hour: list[int] = []
    dataset: list[int] = []
    site: list[int] = []
    count: list[int] = []
    skipped = 0
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        needed = {"time", "dataset", "site", "accesses"}
        if reader.fieldnames is None or not needed <= set(reader.fieldnames):
            raise TraceError(
                f"{path}: the header must name the columns time,dataset,site,accesses "
                f"(found: {','.join(reader.fieldnames or [])})"
            )
        for row in reader:
            line = reader.line_num
            try:
                when = _parse_time(row["time"] or "")
            except ValueError:
                raise TraceError(f"{path}:{line}: bad time {row['time']!r}") from None
            try:
                n = int(row["accesses"] or "")
            except ValueError:
                raise TraceError(f"{path}:{line}: bad accesses {row['accesses']!r}") from None
            if n <= 0:
                raise TraceError(f"{path}:{line}: accesses must be positive, not {n}")
            d = dataset_index.get(row["dataset"] or "")
            s = site_index.get(row["site"] or "")
            if d is None or s is None:
                if spec.unknown == "skip":
                    skipped += 1
                    continue
                what = "dataset" if d is None else "site"
                value = row["dataset"] if d is None else row["site"]
                raise TraceError(f"{path}:{line}: the grid has no {what} {value!r}")
            h = math.floor((when - start) / HOUR)
            if not 0 <= h < hours:
                skipped += 1
                continue
            hour.append(h)
            dataset.append(d)
            site.append(s)
            count.append(n)
    arrays = [np.asarray(v, dtype=np.int64) for v in (hour, dataset, site, count)]
    h_, d_, s_, c_ = _sorted(*arrays) if hour else arrays
    return Trace(list(datasets), list(sites), h_, d_, s_, c_, hours, [], skipped)


def write_csv_trace(trace: Trace, path: Path, start: float) -> None:
    """The trace as a CSV a later run can replay (times at the start of their hour)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time", "dataset", "site", "accesses"])
        for h, d, s, c in _rows(trace):
            when = datetime.fromtimestamp(start + h * HOUR, UTC).isoformat()
            writer.writerow([when, trace.datasets[d], trace.sites[s], c])


def _rows(trace: Trace) -> Iterator[tuple[int, int, int, int]]:
    yield from zip(
        trace.hour.tolist(),
        trace.dataset.tolist(),
        trace.site.tolist(),
        trace.count.tolist(),
        strict=True,
    )
