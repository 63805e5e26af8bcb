"""Export every message contract as JSON Schema and as an AsyncAPI 2.6 document, so outside
consumers can validate what they receive without importing our Python code."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from dynamo_common.messages.envelope import Envelope
from dynamo_common.messages.registry import COMMAND_MODELS, EVENT_MODELS, REPLY_MODELS

_SECTIONS: tuple[tuple[str, dict[str, type[BaseModel]]], ...] = (
    ("command", COMMAND_MODELS),
    ("event", EVENT_MODELS),
    ("reply", REPLY_MODELS),
)


def json_schemas() -> dict[str, Any]:
    """One JSON Schema document: ``$defs`` holds every model, ``messages`` maps each routing key
    to the schema of its ``data``."""
    models: list[type[BaseModel]] = [Envelope]
    for _kind, table in _SECTIONS:
        models.extend(m for m in table.values() if m not in models)
    refs, schema = models_json_schema(
        [(m, "serialization") for m in models], ref_template="#/$defs/{model}"
    )
    messages = {
        key: {"kind": kind, "data": refs[(model, "serialization")]}
        for kind, table in _SECTIONS
        for key, model in table.items()
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Dynamo message contracts",
        "envelope": refs[(Envelope, "serialization")],
        "messages": messages,
        "$defs": schema.get("$defs", {}),
    }


def asyncapi(namespace: str = "dynamo") -> dict[str, Any]:
    schemas = json_schemas()
    defs = {name: _rewrite_refs(d) for name, d in schemas["$defs"].items()}
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for kind, table in _SECTIONS:
        exchange = f"{namespace}.events" if kind == "event" else f"{namespace}.commands"
        for key, model in table.items():
            msg_name = key.replace(".", "_")
            messages[msg_name] = {
                "name": key,
                "title": model.__name__,
                "summary": (model.__doc__ or "").strip().split("\n")[0],
                "contentType": "application/cloudevents+json",
                "payload": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Envelope"},
                        {
                            "type": "object",
                            "properties": {
                                "type": {"const": key},
                                "data": {"$ref": f"#/components/schemas/{model.__name__}"},
                            },
                        },
                    ]
                },
            }
            channels[key] = {
                "bindings": {
                    "amqp": {"is": "routingKey", "exchange": {"name": exchange, "type": "topic"}}
                },
                ("subscribe" if kind == "event" else "publish"): {
                    "message": {"$ref": f"#/components/messages/{msg_name}"}
                },
            }
    return {
        "asyncapi": "2.6.0",
        "info": {"title": "Dynamo bus", "version": "1"},
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "components": {"schemas": defs, "messages": messages},
    }


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (
                v.replace("#/$defs/", "#/components/schemas/")
                if k == "$ref" and isinstance(v, str)
                else _rewrite_refs(v)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node
