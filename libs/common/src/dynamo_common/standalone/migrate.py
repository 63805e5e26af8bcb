"""Run the services' Alembic migrations without starting them (`dynamo migrate`).

A service keeps its migrations next to its app module, which names them ``MIGRATIONS`` (the
folder) and ``SCHEMA`` (its PostgreSQL schema) because its own lifespan runs them the same way:
this module finds both there, so a new service needs no registration beyond its plugin.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path

from dynamo_common.db import run_migrations
from dynamo_common.service_plugin import ServicePlugin
from dynamo_common.settings import redact_url

__all__ = ["MigrationError", "migrate_services", "migration_target"]


class MigrationError(RuntimeError):
    """A service's migrations could not be found or did not run; the message says which."""


def migration_target(plugin: ServicePlugin) -> tuple[str, str]:
    """(migrations folder, schema) of one service, from its app module."""
    module = importlib.import_module(plugin.create_app.__module__)
    folder = getattr(module, "MIGRATIONS", None)
    schema = getattr(module, "SCHEMA", None)
    if not isinstance(folder, str) or not isinstance(schema, str):
        raise MigrationError(
            f"{plugin.name}: {module.__name__} does not name its MIGRATIONS folder and SCHEMA"
        )
    if not (Path(folder) / "env.py").is_file():
        raise MigrationError(f"{plugin.name}: no Alembic env.py in {folder}")
    return folder, schema


async def migrate_services(plugins: Iterable[ServicePlugin], url: str) -> list[tuple[str, str]]:
    """Upgrade each service's schema to its head, in the given order; returns (name, schema)
    for each. Stops at the first failure (later services are left as they were)."""
    done: list[tuple[str, str]] = []
    for plugin in plugins:
        folder, schema = migration_target(plugin)
        try:
            await run_migrations(url, folder, schema)
        except Exception as exc:
            raise MigrationError(
                f"{plugin.name} (schema {schema}) on {redact_url(url)}: {type(exc).__name__}: {exc}"
            ) from exc
        done.append((plugin.name, schema))
    return done
