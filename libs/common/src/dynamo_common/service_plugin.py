"""The contract between the `dynamo` command and a service package: each service registers a
``ServicePlugin`` under the entry-point group ``dynamo.services``, so common code can run
services it does not import."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from fastapi import FastAPI

from dynamo_common.settings import DynamoSettings


@dataclass(frozen=True, slots=True)
class ServicePlugin:
    name: str
    create_app: Callable[..., FastAPI]
    settings_class: type[DynamoSettings]
    order: int = 100
    """Start order in the standalone mode (the inventory first: everyone reads it)."""


def discover() -> dict[str, ServicePlugin]:
    found: dict[str, ServicePlugin] = {}
    for ep in entry_points(group="dynamo.services"):
        plugin: Any = ep.load()
        if isinstance(plugin, ServicePlugin):
            found[plugin.name] = plugin
    return dict(sorted(found.items(), key=lambda kv: (kv[1].order, kv[0])))
