"""`dynamo policy check FILE...`: detox policies, partition files and enforcer rules validated
offline, errors as FILE:LINE:COL: message, exit status 1 on any error."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dynamo_common.cli import app
from tests.unit.policy.test_detox_enforcer import PAGE_RULES
from tests.unit.policy.test_policy_language_examples import PAGE_POLICY

PARTITIONS = """\
AnalysisOps:  blockreplica.owner == AnalysisOps and site.storage_type == DISK
Tape:         site.storage_type == MSS
Physics:      [AnalysisOps, Tape]
"""


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["policy", "check", *args])
    return result.exit_code, result.stdout, result.stderr


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_valid_files_of_every_kind_pass(tmp_path: Path) -> None:
    files = [
        write(tmp_path, "Physics.txt", PAGE_POLICY),
        write(tmp_path, "partitions.txt", PARTITIONS),
        write(tmp_path, "enforcer.json", PAGE_RULES),
    ]
    code, out, err = run(*files)
    assert code == 0, out
    assert out == ""
    assert "Physics.txt: ok (detox)" in err
    assert "partitions.txt: ok (partitions)" in err
    assert "enforcer.json: ok (enforcer)" in err


def test_errors_are_printed_as_file_line_column_and_the_status_is_1(tmp_path: Path) -> None:
    good = write(tmp_path, "good.txt", PAGE_POLICY)
    bad = write(tmp_path, "bad.txt", PAGE_POLICY.replace("> 0.9", "> lots", 1) + "Foo x\n")
    code, out, _ = run(good, bad)
    assert code == 1
    assert out.splitlines() == [
        f"{bad}:3:23: expected a number (a size may carry a unit, as in 1.5TB), found 'lots'",
        f"{bad}:12:1: unknown statement 'Foo'; expected Partition, On, When, Until, Order, "
        "Algo or an action (Protect, Delete, Dismiss, Ignore, ProtectBlock, DeleteBlock, "
        "DismissBlock)",
    ]


def test_partition_and_enforcer_errors(tmp_path: Path) -> None:
    parts = write(tmp_path, "p.txt", "A: blockreplica.owner == X\nB: [A, C]\n")
    rules = write(tmp_path, "r.json", PAGE_RULES.replace("MINIAOD*", "MINIAOD* and bad"))
    code, out, _ = run(parts, rules)
    assert code == 1
    assert out.splitlines() == [
        f"{parts}:2:8: unknown partition 'C' in the union 'B'",
        f"{rules}:3:53: rules.us_miniaod.replicas[0]: unknown variable 'bad'",
    ]


def test_kind_is_detected_from_content_when_the_extension_says_nothing(tmp_path: Path) -> None:
    rules = write(tmp_path, "rules.conf", PAGE_RULES)
    parts = write(tmp_path, "parts", "# partitions\n" + PARTITIONS)
    code, _, err = run(rules, parts)
    assert code == 0
    assert "rules.conf: ok (enforcer)" in err and "parts: ok (partitions)" in err


def test_kind_can_be_forced(tmp_path: Path) -> None:
    policy = write(tmp_path, "Physics.txt", PAGE_POLICY)
    code, out, _ = run("--kind", "partitions", policy)
    assert code == 1
    assert out.startswith(f"{policy}:1:1: expected '<Name>: <condition>'")


@pytest.mark.parametrize("kind", ["detox", "partitions", "enforcer"])
def test_every_kind_is_accepted(tmp_path: Path, kind: str) -> None:
    text = {"detox": PAGE_POLICY, "partitions": PARTITIONS, "enforcer": PAGE_RULES}[kind]
    code, _, _ = run("--kind", kind, write(tmp_path, "f", text))
    assert code == 0


def test_unknown_kind_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run("--kind", "dealer", write(tmp_path, "f", PAGE_POLICY))
    assert code == 2
    assert "--kind must be one of detox, partitions, enforcer" in err


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    code, out, _ = run(str(missing))
    assert code == 1
    assert out.startswith(f"{missing}:1:1: cannot read the file:")
