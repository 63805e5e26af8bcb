"""What FTS file states and failure reasons mean: the reason table against real-looking reasons.

Reasons are in the form FTS stores them, ``SCOPE [errno] message``; the messages come from
fts_url_copy, gfal2 and its plugins (XRootD, HTTP, SRM, GridFTP) as FTS users have reported them.
"""

from __future__ import annotations

from typing import Any

import pytest

from dynamo_transfer.backends.fts3 import (
    FINAL_FILE_STATES,
    FINAL_JOB_STATES,
    REASON_RULES,
    Fts3FileStatus,
    Outcome,
    checksums_match,
    classify,
    explain,
)

DONE, RETRY, FATAL = Outcome.DONE, Outcome.RETRYABLE, Outcome.UNRECOVERABLE
CANCELED, RUNNING = Outcome.CANCELED, Outcome.IN_PROGRESS

CHECKSUM = "ADLER32:1e720467"


def status(state: str = "FAILED", reason: str = "", **fields: Any) -> Fts3FileStatus:
    body = {
        "file_id": 7,
        "file_state": state,
        "reason": reason,
        "checksum": CHECKSUM,
        "user_filesize": 12,
        **fields,
    }
    return Fts3FileStatus.model_validate(body)


# (reason, expected outcome, rule that decides) for FAILED files.
FAILED_REASONS: list[tuple[str, Outcome, str]] = [
    # -- the source is missing
    (
        "SOURCE [2] errno reported by local system call No such file or directory",
        FATAL,
        "source-missing",
    ),
    ("SOURCE [2] Failed to stat file (No such file or directory)", FATAL, "source-missing"),
    ("SOURCE [2] Result HTTP 404 : File not found  after 1 attempts", FATAL, "source-missing"),
    (
        "TRANSFER [2] Error on XrdCl::CopyProcess::Run(): [ERROR] Server responded with an "
        "error: [3011] Unable to open /store/a.root; no such file or directory",
        FATAL,
        "source-missing",
    ),
    (
        "SOURCE [2] srm-ifce err: No such file or directory, err: [SE][StatusOfGetRequest]"
        "[SRM_INVALID_PATH] httpg://srm.example.org:8443/srm/managerv2: No such file",
        FATAL,
        "source-missing",
    ),
    # srm-ifce wraps a missing file in a communication error: the missing file decides.
    (
        "SOURCE [70] srm-ifce err: Communication error on send, err: [SE][srmLs]"
        "[SRM_INVALID_PATH] httpg://srm.example.org:8443/srm/managerv2: path does not exist",
        FATAL,
        "source-missing",
    ),
    ("SOURCE [2] [ENOENT] the source is gone", FATAL, "source-missing"),
    # -- the source does not match the catalogue's checksum
    (
        "TRANSFER [5] Source and user-defined deadbeef checksum do not match "
        "(1e720467 != deadbeef)",
        FATAL,
        "source-checksum-mismatch",
    ),
    (
        "TRANSFER [5] SOURCE CHECKSUM MISMATCH Source checksum and user-specified checksum do "
        "not match: 1e720467 != deadbeef",
        FATAL,
        "source-checksum-mismatch",
    ),
    (
        "TRANSFER [5] TRANSFER  USER_DEFINED CHECKSUM MISMATCH User defined checksum and "
        "source checksum do not match 0a1b2c3d != 1e720467",
        FATAL,
        "source-checksum-mismatch",
    ),
    # -- permissions and credentials
    ("DESTINATION [13] Permission denied", FATAL, "permission"),
    ("DESTINATION [1] HTTP 403 : Permission refused", FATAL, "permission"),
    ("SOURCE [1] HTTP 403 : Permission refused", FATAL, "permission"),
    (
        "TRANSFER [13] TRANSFER ERROR: Copy failed (3rd pull). Last attempt: copy HTTP 401 : "
        "Unauthorized",
        FATAL,
        "permission",
    ),
    ("TRANSFER [1] mkdir /store/user failed [EPERM]", FATAL, "permission"),
    ("DESTINATION [13] copy refused [EACCES]", FATAL, "permission"),
    (
        "DESTINATION [13] srm-ifce err: Permission denied, err: [SE][srmPrepareToPut]"
        "[SRM_AUTHORIZATION_FAILURE] httpg://srm.example.org:8446/srm/managerv2: denied",
        FATAL,
        "permission",
    ),
    (
        "TRANSFER [1] TRANSFER  globus_gsi_callback_module: Could not verify credential: "
        "The certificate has expired",
        FATAL,
        "permission",
    ),
    # -- no space at the destination
    (
        "TRANSFER [5] TRANSFER ERROR: Copy failed (3rd pull). Last attempt: copy HTTP 507 : "
        "Insufficient Storage",
        FATAL,
        "no-space",
    ),
    ("DESTINATION [28] No space left on device", FATAL, "no-space"),
    ("TRANSFER [28] write failed [ENOSPC]", FATAL, "no-space"),
    (
        "TRANSFER [122] TRANSFER  globus_ftp_client: the server responded with an error 451 "
        "operation failed: All pools are full",
        FATAL,
        "no-space",
    ),
    (
        "DESTINATION [28] srm-ifce err: No space, err: [SE][srmPrepareToPut]"
        "[SRM_NO_FREE_SPACE] httpg://srm.example.org:8446/srm/managerv2: space exhausted",
        FATAL,
        "no-space",
    ),
    # -- requests that cannot work
    ("DESTINATION [21] Is a directory", FATAL, "invalid-request"),
    ("TRANSFER [93] Protocol not supported", FATAL, "invalid-request"),
    (
        "DESTINATION [22] Checksum value required if mode is not end to end",
        FATAL,
        "invalid-request",
    ),
    # -- passing trouble: timeouts
    (
        "TRANSFER [110] TRANSFER  globus_ftp_client: the server responded with an error 421 "
        "Timeout (900 sec): closing control connection.",
        RETRY,
        "transient",
    ),
    (
        "TRANSFER [110] TRANSFER Transfer canceled because the gsiftp performance marker "
        "timeout of 360 seconds has been exceeded, or all performance markers during that "
        "period indicated zero bytes transferred",
        RETRY,
        "transient",
    ),
    (
        "TRANSFER [110] TRANSFER ERROR: Copy failed (3rd pull). Last attempt: [ETIMEDOUT] "
        "Transfer failed: failure: timeout of 1200s reached",
        RETRY,
        "transient",
    ),
    (
        "SOURCE [70] srm-ifce err: Communication error on send, err: [SE][StatusOfGetRequest]"
        "[ETIMEDOUT] httpg://srm.example.org:8443/srm/managerv2: User timeout over",
        RETRY,
        "transient",
    ),
    ("TRANSFER [110] [ERROR] Operation expired", RETRY, "transient"),
    (
        "SOURCE [5] srm-ifce err: SRM_INTERNAL_ERROR, err: [SE][StatusOfGetRequest]"
        "[SRM_INTERNAL_ERROR] httpg://srm.example.org:8443/srm/managerv2: database busy",
        RETRY,
        "transient",
    ),
    # -- passing trouble: connections
    (
        "DESTINATION OVERWRITE srm-ifce err: Communication error on send, err: [SE][srmRm][] "
        "httpg://srm.example.org:8446/srm/managerv2: CGSI-gSOAP running on fts.example.org "
        "reports Error reading token data header: Connection closed",
        RETRY,
        "connection",
    ),
    (
        "SOURCE [112] Result curl error (56): Failure when receiving data from the peer after "
        "1 attempts",
        RETRY,
        "connection",
    ),
    (
        "DESTINATION [111] Result curl error (7): Failed to connect to se.example.org port "
        "1094: Connection refused after 1 attempts",
        RETRY,
        "connection",
    ),
    (
        "TRANSFER [111] Error on XrdCl::CopyProcess::Run(): [FATAL] Connection error: "
        "(destination)",
        RETRY,
        "connection",
    ),
    (
        "TRANSFER [5] TRANSFER ERROR: Copy failed (3rd pull). Last attempt: copy HTTP 500 : "
        "Unexpected server error: 500",
        RETRY,
        "connection",
    ),
    ("DESTINATION [104] Connection reset by peer", RETRY, "connection"),
    # -- the copy came out different from a source that verified
    (
        "TRANSFER [5] TRANSFER  DESTINATION CHECKSUM MISMATCH Source and destination "
        "checksums do not match 1e720467 != 0a1b2c3d",
        RETRY,
        "destination-checksum-mismatch",
    ),
    (
        "DESTINATION [5] DESTINATION ADLER32 checksum mismatch",
        RETRY,
        "destination-checksum-mismatch",
    ),
    (
        "TRANSFER [84] Error on XrdCl::CopyProcess::Run(): [ERROR] CheckSum error",
        RETRY,
        "destination-checksum-mismatch",
    ),
    (
        "DESTINATION [22] Source and destination file size mismatch",
        RETRY,
        "destination-checksum-mismatch",
    ),
    # -- cancelled
    ("TRANSFER [125] Transfer canceled", CANCELED, "canceled"),
    # -- the destination exists, with nothing saying what it holds
    (
        "DESTINATION [17] Destination file exists and overwrite is not enabled",
        FATAL,
        "destination-exists-unverified",
    ),
    (
        "TRANSFER [17] Error on XrdCl::CopyProcess::Run(): [ERROR] Server responded with an "
        "error: [3018] Unable to create /store/a.root; file exists (destination)",
        FATAL,
        "destination-exists-unverified",
    ),
    (
        "DESTINATION OVERWRITE srm-ifce err: File exists, err: [SE][srmPrepareToPut]"
        "[SRM_DUPLICATION_ERROR] httpg://srm.example.org:8446/srm/managerv2: file exists",
        FATAL,
        "destination-exists-unverified",
    ),
    # ... unless the reason itself says the copies are the same
    (
        "DESTINATION [17] Destination file exists and overwrite is not enabled "
        "(checksums match: 1e720467 == 1e720467)",
        DONE,
        "destination-exists-same-checksum",
    ),
    (
        "DESTINATION [17] Destination file exists and overwrite is not enabled "
        "(1e720467 == 0a1b2c3d)",
        FATAL,
        "destination-exists-unverified",
    ),
]


@pytest.mark.parametrize(("reason", "outcome", "rule"), FAILED_REASONS)
def test_failed_reasons(reason: str, outcome: Outcome, rule: str) -> None:
    assert explain(status("FAILED", reason)) == (outcome, rule)


def test_every_rule_is_exercised() -> None:
    used = {explain(status("FAILED", reason))[1] for reason, _, _ in FAILED_REASONS}
    names = {rule.name for rule in REASON_RULES} - {"destination-exists", "queue-expired"}
    assert names <= used, names - used


def test_rules_have_unique_names() -> None:
    names = [rule.name for rule in REASON_RULES]
    assert len(names) == len(set(names))


# -- destination exists: evidence decides -------------------------------------------------------

EXISTS = "DESTINATION [17] Destination file exists and overwrite is not enabled"


def report(checksum_value: str, *, size: int = 12, kind: str = "ADLER32") -> dict[str, Any]:
    # What fts_url_copy adds to file_metadata with dst_file_report.
    return {
        "dst_file": {
            "file_size": size,
            "checksum_type": kind,
            "checksum_value": checksum_value,
            "file_on_disk": True,
            "file_on_tape": False,
        }
    }


@pytest.mark.parametrize(
    ("metadata", "outcome"),
    [
        (report("1e720467"), DONE),
        (report("1E720467"), DONE),
        (report("0a1b2c3d"), FATAL),
        (report("1e720467", size=13), FATAL),
        (report("1e720467", kind="MD5"), FATAL),
        (report(""), FATAL),
        ({"lfn": "/store/a.root"}, FATAL),
        # fts-rest may hand back the stored JSON text rather than an object
        (
            '{"dst_file": {"file_size": 12, "checksum_type": "ADLER32", "checksum_value": '
            '"1e720467"}}',
            DONE,
        ),
    ],
)
def test_destination_exists_with_fts_report(metadata: Any, outcome: Outcome) -> None:
    assert classify(status("FAILED", EXISTS, file_metadata=metadata)) is outcome


def test_destination_exists_on_tape_with_same_checksum_is_done() -> None:
    reason = (
        "DESTINATION [30] Destination file exists and is on tape "
        "(overwrite-when-only-on-disk requested)"
    )
    assert classify(status("FAILED", reason, file_metadata=report("1e720467"))) is DONE


@pytest.mark.parametrize(
    ("dest_checksum", "dest_size", "outcome"),
    [
        ("ADLER32:1e720467", 12, DONE),
        ("adler32:01e720467", None, DONE),
        ("1e720467", None, DONE),
        ("ADLER32:0a1b2c3d", 12, FATAL),
        ("ADLER32:1e720467", 99, FATAL),
        ("MD5:1e720467", None, FATAL),
    ],
)
def test_destination_exists_with_callers_checksum(
    dest_checksum: str, dest_size: int | None, outcome: Outcome
) -> None:
    # gfal2's own wording when the copy itself refuses to overwrite.
    failed = status("FAILED", "TRANSFER [17] The file exists and overwrite is not set")
    assert classify(failed, dest_checksum=dest_checksum, dest_size=dest_size) is outcome


def test_destination_exists_without_a_requested_checksum_is_not_done() -> None:
    failed = status("FAILED", EXISTS, checksum=None, file_metadata=report("1e720467"))
    assert classify(failed, dest_checksum="ADLER32:1e720467") is FATAL


def test_callers_evidence_overrides_the_report() -> None:
    failed = status("FAILED", EXISTS, file_metadata=report("1e720467"))
    assert classify(failed, dest_checksum="ADLER32:0a1b2c3d") is FATAL


# -- states -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "reason", "outcome"),
    [
        ("FINISHED", "", DONE),
        ("CANCELED", "Job canceled by the user", CANCELED),
        ("CANCELED", "", CANCELED),
        (
            "CANCELED",
            "Job has been canceled because it stayed in the queue for too long "
            "(max-time-in-queue timeout)",
            RETRY,
        ),
        ("NOT_USED", "", CANCELED),
        ("SUBMITTED", "", RUNNING),
        ("READY", "", RUNNING),
        ("ACTIVE", "", RUNNING),
        ("STARTED", "", RUNNING),
        ("STAGING", "", RUNNING),
        ("ON_HOLD", "", RUNNING),
        ("ON_HOLD_STAGING", "", RUNNING),
        ("TOKEN_PREP", "", RUNNING),
    ],
)
def test_states(state: str, reason: str, outcome: Outcome) -> None:
    assert classify(status(state, reason)) is outcome


@pytest.mark.parametrize(("recoverable", "outcome"), [(None, RETRY), (True, RETRY), (False, FATAL)])
def test_unrecognised_reason_follows_fts_verdict(
    recoverable: bool | None, outcome: Outcome
) -> None:
    failed = status("FAILED", "GENERAL_FAILURE [22] something nobody has seen before")
    failed = failed.model_copy(update={"recoverable": recoverable})
    assert classify(failed) is outcome


def test_final_states() -> None:
    assert {"FINISHED", "FAILED", "FINISHEDDIRTY", "CANCELED"} == FINAL_JOB_STATES
    assert {"FINISHED", "FAILED", "CANCELED"} == FINAL_FILE_STATES


def test_response_models_ignore_unknown_fields_and_read_fts_times() -> None:
    parsed = status(
        "FINISHED",
        start_time="2024-05-01T10:00:00",
        finish_time="2024-05-01T10:00:07",
        log_file="/var/log/fts3/transfers/2024-05-01/x.log",
        transfer_host="fts-01.example.org",
        tx_duration=6.9,
        throughput=12.5,
    )
    assert parsed.finish_time is not None and parsed.finish_time.utcoffset() is not None
    assert parsed.finish_time.isoformat() == "2024-05-01T10:00:07+00:00"
    assert not hasattr(parsed, "transfer_host")


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("ADLER32:1e720467", "adler32:1E720467", True),
        ("ADLER32:01e720467", "1e720467", True),
        ("ADLER32:00000001", "ADLER32:1", True),
        ("ADLER32:1e720467", "MD5:1e720467", False),
        ("ADLER32:1e720467", "ADLER32:1e720468", False),
        ("ADLER32", "ADLER32", False),
        ("ADLER32:1e720467", None, False),
        ("", "", False),
    ],
)
def test_checksums_match(a: str, b: str | None, same: bool) -> None:
    assert checksums_match(a, b) is same
