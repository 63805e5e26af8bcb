"""Settings shared by every Dynamo service.

Each service subclasses :class:`DynamoSettings` and adds its own fields; pydantic merges the
parent's ``model_config`` into the child's, so every service reads ``DYNAMO_*`` variables and a
``.env`` file the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_ASYNCPG_SCHEME = "postgresql+asyncpg"
# Every spelling of a PostgreSQL URL an operator may paste: libpq's two, and SQLAlchemy's with
# whichever driver their other tools use.
_POSTGRES_SCHEMES = frozenset(
    {"postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg", "postgresql+psycopg2"}
)

_LOG_LEVELS = frozenset({"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET"})


def _split_scheme(url: str) -> tuple[str, str]:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _POSTGRES_SCHEMES:
        raise ValueError(f"not a PostgreSQL URL: {redact_url(url)!r}")
    return scheme.lower(), rest


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, safe for error messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def to_sqlalchemy_url(url: str) -> str:
    """``postgresql://...`` (or ``postgres://``) as SQLAlchemy's async form ``postgresql+asyncpg://``."""
    _, rest = _split_scheme(url)
    return f"{_ASYNCPG_SCHEME}://{rest}"


def to_asyncpg_dsn(url: str) -> str:
    """The plain ``postgresql://...`` form that asyncpg and libpq tools understand."""
    _, rest = _split_scheme(url)
    return f"postgresql://{rest}"


class DynamoSettings(BaseSettings):
    """Settings common to all services (environment prefix ``DYNAMO_``)."""

    # extra="ignore": one .env file usually serves every service, so it holds variables that
    # only some other service's settings class declares.
    model_config = SettingsConfigDict(
        env_prefix="DYNAMO_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    service_name: str = "dynamo"
    database_url: str = Field(
        default="",
        description=(
            "SQLAlchemy async URL (postgresql+asyncpg://...); a plain postgresql:// URL is "
            "accepted and normalised. Empty means standalone mode: an embedded PostgreSQL."
        ),
    )
    amqp_url: str = Field(
        default="memory://",
        description="amqp://user:pass@host:port/vhost, or memory:// for the in-process bus.",
    )
    bus_namespace: str = Field(default="dynamo", min_length=1)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    data_dir: Path = Path(".dynamo")
    inventory_url: str = Field(
        default="http://127.0.0.1:8080",
        description="Base URL of the inventory REST API, used by the other services.",
    )
    event_retention_days: int = Field(default=30, ge=0)

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str) -> str:
        value = value.strip()
        return to_sqlalchemy_url(value) if value else ""

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in _LOG_LEVELS:
            raise ValueError(f"unknown log level {value!r}; use one of {sorted(_LOG_LEVELS)}")
        return level

    @field_validator("inventory_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def standalone_database(self) -> bool:
        """True when no database URL is configured and an embedded PostgreSQL must be started."""
        return not self.database_url

    @property
    def asyncpg_dsn(self) -> str:
        """``database_url`` in the plain form asyncpg wants (empty in standalone mode)."""
        return to_asyncpg_dsn(self.database_url) if self.database_url else ""
