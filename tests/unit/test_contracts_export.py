from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from dynamo_common.cli import app
from dynamo_common.messages.registry import COMMAND_MODELS, EVENT_MODELS


def test_json_schema_export_names_every_routing_key(tmp_path: Path) -> None:
    out = tmp_path / "contracts.json"
    result = CliRunner().invoke(app, ["contracts", "export", "-o", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert set(COMMAND_MODELS) | set(EVENT_MODELS) <= set(document["messages"])
    created = document["messages"]["inventory.replica.created.v1"]
    assert created["kind"] == "event"
    assert created["data"]["$ref"].split("/")[-1] in document["$defs"]


def test_asyncapi_export_binds_events_to_the_events_exchange() -> None:
    result = CliRunner().invoke(app, ["contracts", "export", "--format", "asyncapi"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["asyncapi"].startswith("2.")
    channel = document["channels"]["inventory.dataset.updated.v1"]
    assert channel["bindings"]["amqp"]["exchange"]["name"] == "dynamo.events"


def test_unknown_export_format_is_refused() -> None:
    result = CliRunner().invoke(app, ["contracts", "export", "--format", "xml"])
    assert result.exit_code != 0
