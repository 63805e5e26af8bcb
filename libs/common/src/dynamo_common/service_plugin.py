"""The contract between the `dynamo` command and a service package: each service registers a
``ServicePlugin`` under the entry-point group ``dynamo.services``, so common code can run
services it does not import."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Annotations only: the `dynamo` CLI imports this module, and FastAPI and
    # pydantic-settings would cost every client command most of a second.
    from fastapi import FastAPI

    from dynamo_common.settings import DynamoSettings


@dataclass(frozen=True, slots=True)
class ServicePlugin:
    name: str
    create_app: Callable[..., FastAPI]
    settings_class: type[DynamoSettings]
    order: int = 100
    """Start order in the standalone mode (the inventory first: everyone reads it)."""


class PluginError(RuntimeError):
    """An installed service plugin that cannot be loaded (its package is broken or half
    installed); the message names it."""


def installed() -> list[str]:
    """The names of the installed services, without importing any of them."""
    return sorted({ep.name for ep in entry_points(group="dynamo.services")})


def load(name: str) -> ServicePlugin | None:
    """One service's plugin, importing only that service: ``dynamo serve inventory`` must not
    fail because another installed service is broken."""
    for ep in entry_points(group="dynamo.services", name=name):
        return _load(ep)
    return None


def discover() -> dict[str, ServicePlugin]:
    """Every installed service, in start order."""
    found: dict[str, ServicePlugin] = {}
    for ep in entry_points(group="dynamo.services"):
        plugin = _load(ep)
        found[plugin.name] = plugin
    return dict(sorted(found.items(), key=lambda kv: (kv[1].order, kv[0])))


def _load(ep: Any) -> ServicePlugin:
    try:
        plugin = ep.load()
    except Exception as exc:
        raise PluginError(
            f"service plugin {ep.name!r} ({ep.value}) cannot be loaded: {exc}"
        ) from exc
    if not isinstance(plugin, ServicePlugin):
        raise PluginError(f"entry point {ep.name!r} ({ep.value}) is not a ServicePlugin")
    return plugin
