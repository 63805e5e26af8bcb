from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from dynamo_common.logging import (
    bind_log_context,
    configure_logging,
    get_correlation_id,
    get_logger,
    get_request_id,
    log_context,
    unbind_log_context,
)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging("DEBUG", "json", stream=out)
    yield out
    configure_logging("INFO", "console")


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_structlog_and_stdlib_lines_are_json_with_context(stream: io.StringIO) -> None:
    with log_context(request_id="r1", correlation_id=None):
        get_logger("dynamo.test").info("replica.created", site="T2_US_MIT", size=10)
        logging.getLogger("sqlalchemy.engine").warning("slow query %s ms", 1200)
    get_logger("dynamo.test").info("after")

    first, second, third = lines(stream)
    assert first["event"] == "replica.created"
    assert first["site"] == "T2_US_MIT"
    assert first["request_id"] == "r1"
    assert first["level"] == "info"
    assert first["logger"] == "dynamo.test"
    assert first["timestamp"].endswith("Z")
    assert "correlation_id" not in first
    assert second["event"] == "slow query 1200 ms"
    assert second["request_id"] == "r1"
    assert second["level"] == "warning"
    assert "request_id" not in third


def test_exceptions_are_rendered_into_the_line(stream: io.StringIO) -> None:
    try:
        raise ValueError("bad block")
    except ValueError:
        get_logger("dynamo.test").exception("cycle.failed")
    (line,) = lines(stream)
    assert "ValueError: bad block" in line["exception"]


def test_levels_filter(stream: io.StringIO) -> None:
    configure_logging("WARNING", "json", stream=stream)
    get_logger("x").info("hidden")
    get_logger("x").warning("shown")
    assert [line["event"] for line in lines(stream)] == ["shown"]


def test_unserialisable_values_do_not_break_logging(stream: io.StringIO) -> None:
    get_logger("x").info("odd", value=object(), data=b"\x00")
    assert lines(stream)[0]["event"] == "odd"


def test_request_and_correlation_ids() -> None:
    assert get_request_id() is None
    with log_context(request_id="req"):
        assert get_request_id() == "req"
        # A command sent while handling a request is correlated with it.
        assert get_correlation_id() == "req"
        with log_context(correlation_id="corr"):
            assert get_correlation_id() == "corr"
    bind_log_context(correlation_id="c2")
    try:
        assert get_correlation_id() == "c2"
    finally:
        unbind_log_context("correlation_id")
    assert get_correlation_id() is None


def test_console_format(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    configure_logging("INFO", "console", stream=out)
    try:
        get_logger("dynamo.test").info("hello", site="T1")
    finally:
        configure_logging("INFO", "console")
    text = out.getvalue()
    assert "hello" in text and "site=T1" in text
    assert not text.lstrip().startswith("{")


def test_reconfiguring_keeps_one_handler() -> None:
    configure_logging("INFO", "json")
    configure_logging("INFO", "console")
    ours = [h for h in logging.getLogger().handlers if type(h).__name__ == "_DynamoHandler"]
    assert len(ours) == 1
