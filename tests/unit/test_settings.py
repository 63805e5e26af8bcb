from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from dynamo_common.settings import (
    DynamoSettings,
    redact_url,
    to_asyncpg_dsn,
    to_sqlalchemy_url,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The test session exports DYNAMO_LOG_FORMAT, and a developer's shell or .env may set more.
    import os

    for name in list(os.environ):
        if name.startswith("DYNAMO_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    s = DynamoSettings()
    assert s.service_name == "dynamo"
    assert s.database_url == ""
    assert s.standalone_database
    assert s.asyncpg_dsn == ""
    assert s.amqp_url == "memory://"
    assert s.bus_namespace == "dynamo"
    assert (s.http_host, s.http_port) == ("127.0.0.1", 8080)
    assert (s.log_level, s.log_format) == ("INFO", "json")
    assert s.data_dir == Path(".dynamo")
    assert s.inventory_url == "http://127.0.0.1:8080"
    assert s.event_retention_days == 30


def test_environment_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNAMO_SERVICE_NAME", "detox")
    monkeypatch.setenv("DYNAMO_HTTP_PORT", "9001")
    monkeypatch.setenv("DYNAMO_LOG_LEVEL", "debug")
    monkeypatch.setenv("DYNAMO_LOG_FORMAT", "console")
    monkeypatch.setenv("DYNAMO_DATA_DIR", "/var/lib/dynamo")
    monkeypatch.setenv("DYNAMO_INVENTORY_URL", "http://inventory:8080/")
    monkeypatch.setenv("HTTP_PORT", "1")  # unprefixed: ignored
    s = DynamoSettings()
    assert s.service_name == "detox"
    assert s.http_port == 9001
    assert s.log_level == "DEBUG"
    assert s.log_format == "console"
    assert s.data_dir == Path("/var/lib/dynamo")
    assert s.inventory_url == "http://inventory:8080"


def test_dotenv_file_is_read_and_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "DYNAMO_BUS_NAMESPACE=fromfile\n"
        "DYNAMO_EVENT_RETENTION_DAYS=7\n"
        # A variable only another service declares must not break this one.
        "DYNAMO_DETOX_POLICY_DIR=/etc/dynamo/policies\n"
    )
    monkeypatch.setenv("DYNAMO_EVENT_RETENTION_DAYS", "3")
    s = DynamoSettings()
    assert s.bus_namespace == "fromfile"
    assert s.event_retention_days == 3


def test_plain_database_url_is_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNAMO_DATABASE_URL", "postgresql://dynamo:secret@db:5432/dynamo")
    s = DynamoSettings()
    assert s.database_url == "postgresql+asyncpg://dynamo:secret@db:5432/dynamo"
    assert s.asyncpg_dsn == "postgresql://dynamo:secret@db:5432/dynamo"
    assert not s.standalone_database


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"log_format": "xml"}, "log_format"),
        ({"log_level": "LOUD"}, "log_level"),
        ({"http_port": 70000}, "http_port"),
        ({"database_url": "mysql://x@y/z"}, "not a PostgreSQL URL"),
        ({"event_retention_days": -1}, "event_retention_days"),
    ],
)
def test_invalid_values_are_rejected(value: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DynamoSettings(**value)  # type: ignore[arg-type]


def test_service_settings_subclass(monkeypatch: pytest.MonkeyPatch) -> None:
    class DetoxSettings(DynamoSettings):
        service_name: str = "detox"
        policy_dir: Path = Path("policies")

    monkeypatch.setenv("DYNAMO_POLICY_DIR", "/srv/policies")
    monkeypatch.setenv("DYNAMO_HTTP_PORT", "8085")
    s = DetoxSettings()
    assert s.service_name == "detox"
    assert s.policy_dir == Path("/srv/policies")
    assert s.http_port == 8085


@pytest.mark.parametrize(
    ("url", "sqlalchemy", "plain"),
    [
        (
            "postgresql://u:p@h:5432/d",
            "postgresql+asyncpg://u:p@h:5432/d",
            "postgresql://u:p@h:5432/d",
        ),
        ("postgres://u@h/d", "postgresql+asyncpg://u@h/d", "postgresql://u@h/d"),
        (
            "postgresql+asyncpg://postgres:@/postgres?host=/tmp/pg",
            "postgresql+asyncpg://postgres:@/postgres?host=/tmp/pg",
            "postgresql://postgres:@/postgres?host=/tmp/pg",
        ),
        ("postgresql+psycopg://u@h/d", "postgresql+asyncpg://u@h/d", "postgresql://u@h/d"),
    ],
)
def test_url_conversions(url: str, sqlalchemy: str, plain: str) -> None:
    assert to_sqlalchemy_url(url) == sqlalchemy
    assert to_asyncpg_dsn(url) == plain
    assert to_sqlalchemy_url(to_asyncpg_dsn(url)) == sqlalchemy


def test_url_conversion_rejects_other_schemes() -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        to_asyncpg_dsn("amqp://guest:guest@localhost/")
    with pytest.raises(ValueError, match=r"\*\*\*"):
        to_sqlalchemy_url("mysql://root:hunter2@db/x")


def test_redact_url() -> None:
    assert redact_url("postgresql://u:hunter2@h/d") == "postgresql://u:***@h/d"
    assert redact_url("postgresql://u@h/d") == "postgresql://u@h/d"
