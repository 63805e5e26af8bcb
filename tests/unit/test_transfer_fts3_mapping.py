"""What an FTS file outcome becomes for a task: done, retry later, rule the source out, or
hold for an operator."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from dynamo_transfer.backends.fts3 import Fts3FileStatus
from dynamo_transfer.backends.fts3_backend import _result
from dynamo_transfer.repository.store import TaskRow
from dynamo_transfer.service.retry import Severity
from dynamo_transfer.service.states import Kind, State

TASK = TaskRow(
    id=7,
    kind=Kind.TRANSFER,
    state=State.SUBMITTED,
    lfn="/store/f.root",
    site="T2_B",
    dataset="/A/B-v1/AOD",
    block="b1",
    replica_id=1,
    size=1000,
    adler32="0000abcd",
    priority=3,
    source="T1_A",
    protocol="root",
    source_pfn="root://a//store/f.root",
    dest_pfn="root://b//store/f.root",
    tape=False,
    attempts=0,
    failures={},
    ruled_out={},
    reason=None,
    job_id="dynamo-1",
    created=datetime.now(UTC),
    submitted_at=None,
)


def _status(state: str, reason: str | None = None, **extra: Any) -> Fts3FileStatus:
    values: dict[str, Any] = {
        "file_id": 1,
        "file_state": state,
        "reason": reason,
        "filesize": 1000,
        "checksum": "ADLER32:0000abcd",
        "file_metadata": {"task_id": 7},
    }
    values.update(extra)
    return Fts3FileStatus(**values)


def test_finished_is_done_with_the_bytes_moved() -> None:
    result = _result("dynamo-1", TASK, _status("FINISHED", tx_duration=2.5))
    assert result is not None and result.ok and result.moved == 1000 and result.duration == 2.5


def test_unfinished_files_give_no_result() -> None:
    assert _result("dynamo-1", TASK, _status("ACTIVE")) is None


@pytest.mark.parametrize(
    ("reason", "severity"),
    [
        ("SOURCE [2] No such file or directory", Severity.SOURCE),
        (
            "SOURCE CHECKSUM MISMATCH User defined checksum and source checksum do not match",
            Severity.SOURCE,
        ),
        ("DESTINATION [13] Permission denied", Severity.DESTINATION),
        ("TRANSFER [110] Operation timed out", Severity.RECOVERABLE),
        (
            "DESTINATION [17] Destination file exists and overwrite is not enabled",
            Severity.DESTINATION,
        ),
    ],
)
def test_failures_are_classified(reason: str, severity: Severity) -> None:
    result = _result("dynamo-1", TASK, _status("FAILED", reason))
    assert result is not None and not result.ok and result.failure is not None
    assert result.failure.severity is severity
    assert reason in result.failure.error


def test_an_existing_destination_with_the_right_checksum_is_done() -> None:
    status = _status(
        "FAILED",
        "DESTINATION [17] Destination file exists and overwrite is not enabled",
        file_metadata={
            "task_id": 7,
            "dst_file": {
                "checksum_type": "ADLER32",
                "checksum_value": "0000abcd",
                "file_size": 1000,
            },
        },
    )
    result = _result("dynamo-1", TASK, status)
    assert result is not None and result.ok and result.moved == 0
