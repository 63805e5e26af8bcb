"""The `dynamo` client commands: they talk to the gateway over HTTP (``dynamo login``, then
``dynamo datasets``, ``dynamo transfers held``, ``dynamo events tail``, ...)."""

from dynamo_common.client.commands import app as client_app
from dynamo_common.client.errors import ExitCode

__all__ = ["ExitCode", "client_app"]
