"""The `dynamo` client commands: they talk to the gateway over HTTP (``dynamo login``, then
``dynamo datasets``, ``dynamo request copy``, ``dynamo detox why``, ``dynamo events tail``, ...).
Reference: docs/cli.md.

``ClientGroup`` is the click group of the client, whose usage errors exit 1 rather than
click's 2 (2 means "not found" to scripts); ``typer.Typer(cls=ClientGroup)`` gives a parent
command the same."""

from dynamo_common.client.commands import app as client_app
from dynamo_common.client.commands.base import Group as ClientGroup
from dynamo_common.client.errors import ExitCode

__all__ = ["ClientGroup", "ExitCode", "client_app"]
