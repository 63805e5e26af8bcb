"""Traces: the generator is deterministic and heavy-tailed, recorded CSV traces are read with
clear errors, and a generated trace written as CSV reads back the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dynamo_common.simulation.scenario import CsvTrace, GeneratedTrace
from dynamo_common.simulation.trace import (
    GridView,
    TraceError,
    generate_trace,
    read_csv_trace,
    write_csv_trace,
)

START = 1_700_000_000.0
VIEW = GridView(
    datasets=[f"/D{i:03d}/Run-v1/AOD" for i in range(200)],
    templates=[("AOD", (10**10, 2 * 10**10), (10, 20)), ("MINIAOD", (5 * 10**9,), (5,))],
    sites=["T2_A", "T2_B", "T2_C"],
    site_weights=[30.0, 30.0, 5.0],
    production_sites=["T2_A", "T2_B"],
)
SPEC = GeneratedTrace(accesses_per_day=20_000 / 3, new_datasets=0.05, bursts=2)


def test_the_same_seed_gives_the_same_trace_and_another_seed_another() -> None:
    one = generate_trace(SPEC, VIEW, days=3, seed=5)
    two = generate_trace(SPEC, VIEW, days=3, seed=5)
    other = generate_trace(SPEC, VIEW, days=3, seed=6)
    for name in ("hour", "dataset", "site", "count"):
        assert np.array_equal(getattr(one, name), getattr(two, name))
    assert one.new == two.new
    assert not np.array_equal(one.count, other.count) or one.new != other.new


def test_generated_accesses_follow_a_heavy_tail_and_new_datasets_come_after_production() -> None:
    trace = generate_trace(SPEC, VIEW, days=3, seed=5)
    assert abs(trace.total - 20_000) < 1_000
    assert np.all(np.diff(trace.hour) >= 0)
    per_dataset = np.bincount(trace.dataset, weights=trace.count)
    top = np.sort(per_dataset)[::-1]
    # The ten most read datasets take far more than their share (10 of 210).
    assert top[:10].sum() > 0.3 * trace.total
    assert len(trace.new) == 10
    names = trace.datasets
    for new in trace.new:
        index = names.index(new.name)
        hours = trace.hour[trace.dataset == index]
        assert hours.size == 0 or hours.min() >= new.hour
        assert new.site in VIEW.production_sites
        assert new.block_sizes in [t[1] for t in VIEW.templates]


def test_a_generated_trace_written_as_csv_reads_back_the_same(tmp_path: Path) -> None:
    spec = GeneratedTrace(accesses_per_day=2_500, new_datasets=0.0)
    trace = generate_trace(spec, VIEW, days=2, seed=1)
    path = tmp_path / "trace.csv"
    write_csv_trace(trace, path, START)
    again = read_csv_trace(CsvTrace(path=str(path)), path, VIEW.datasets, VIEW.sites, START, 2)
    for name in ("hour", "dataset", "site", "count"):
        assert np.array_equal(getattr(trace, name), getattr(again, name))
    assert again.skipped == 0


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(text)
    return path


def _read(path: Path, unknown: str = "error") -> object:
    spec = CsvTrace(path=str(path), unknown=unknown)  # type: ignore[arg-type]
    return read_csv_trace(spec, path, VIEW.datasets, VIEW.sites, START, 1)


def test_a_recorded_trace_accepts_iso_and_epoch_times_and_skips_rows_outside_the_period(
    tmp_path: Path,
) -> None:
    path = _csv(
        tmp_path,
        "time,dataset,site,accesses\n"
        "2023-11-14T22:13:20Z,/D001/Run-v1/AOD,T2_A,3\n"
        f"{START + 3600 + 5},/D002/Run-v1/AOD,T2_B,2\n"
        f"{START + 3600 + 9},/D002/Run-v1/AOD,T2_B,4\n"
        f"{START - 10},/D001/Run-v1/AOD,T2_A,1\n",
    )
    trace = _read(path)
    assert trace.hour.tolist() == [0, 1]  # type: ignore[attr-defined]
    assert trace.count.tolist() == [3, 6]  # type: ignore[attr-defined]
    assert trace.skipped == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("yesterday,/D001/Run-v1/AOD,T2_A,1", "trace.csv:2: bad time 'yesterday'"),
        (f"{START},/D001/Run-v1/AOD,T2_A,many", "trace.csv:2: bad accesses 'many'"),
        (f"{START},/D001/Run-v1/AOD,T2_A,0", "trace.csv:2: accesses must be positive"),
        (f"{START},/Nope/Run-v1/AOD,T2_A,1", "trace.csv:2: the grid has no dataset '/Nope"),
        (f"{START},/D001/Run-v1/AOD,T9_Nowhere,1", "trace.csv:2: the grid has no site"),
    ],
)
def test_a_bad_row_is_refused_with_its_line(tmp_path: Path, row: str, message: str) -> None:
    path = _csv(tmp_path, "time,dataset,site,accesses\n" + row + "\n")
    with pytest.raises(TraceError, match=message.replace("(", r"\(")):
        _read(path)


def test_unknown_names_can_be_skipped_instead(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        f"time,dataset,site,accesses\n{START},/Nope/Run-v1/AOD,T2_A,1\n"
        f"{START},/D001/Run-v1/AOD,T2_A,2\n",
    )
    trace = _read(path, unknown="skip")
    assert trace.total == 2 and trace.skipped == 1  # type: ignore[attr-defined]


def test_a_trace_without_the_columns_is_refused(tmp_path: Path) -> None:
    path = _csv(tmp_path, "when,what\n1,2\n")
    with pytest.raises(TraceError, match="time,dataset,site,accesses"):
        _read(path)
