"""The client commands of `dynamo`. Each one is a thin view of gateway endpoints: a table for
people, the endpoints' own JSON with ``--json`` for scripts, and an exit code from
:class:`~dynamo_common.client.errors.ExitCode` (0 ok, 1 usage, 2 not found, 3 auth,
4 unreachable, 5 failed, 6 timed out). One module per area registers its commands on
:data:`app`."""

from dynamo_common.client.commands import (  # noqa: F401  (they register their commands)
    auth,
    consistency,
    dealer,
    dealer_cycles,
    detox,
    events,
    inventory,
    locks,
    requests,
    transfers,
    userdata,
)
from dynamo_common.client.commands.base import app

__all__ = ["app"]
