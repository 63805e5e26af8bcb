"""``/api/v1/...``: every path the gateway does not answer itself goes to a service.

A plain Starlette endpoint rather than a FastAPI route: it has no parameters to validate, and
skipping FastAPI's dependency machinery keeps the gateway's own cost per request low.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from dynamo_common.app import ProblemError
from dynamo_gateway.api.deps import check, request_id, runtime
from dynamo_gateway.service.routing import GATEWAY

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_METHOD_SET = frozenset(METHODS)


@dataclass(frozen=True, slots=True)
class _RouteLabel:
    """Stands in for the matched route in the metrics middleware, which labels requests by
    ``scope["route"].path``: service and permission pattern keep the label set small and say
    more than the catch-all's own template would."""

    path: str


async def forward(request: Request) -> Response:
    rt = runtime(request)
    identity, decision = await check(request)
    path: str = request.scope["path"]
    service = rt.service_for(path)
    if service == GATEWAY:
        raise ProblemError(404, f"no gateway endpoint {request.method} {path}")
    request.scope["route"] = _RouteLabel(f"{service} {decision.rule.pattern}")
    return await rt.forwarder.forward(request, service, identity, request_id(request))


class ProxyRoute(Route):
    """``/api/v1/...`` except the gateway's own ``/api/v1/auth``. First in the route list, so
    that a forwarded request is matched by one prefix test instead of a regular expression per
    route."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/api/v1/") and not (
                path.startswith(OWN_PREFIX) or path == OWN_PREFIX[:-1]
            ):
                child = {"endpoint": self.endpoint, "path_params": {}}
                allowed = scope["method"] in _METHOD_SET
                return (Match.FULL if allowed else Match.PARTIAL), child
        return Match.NONE, {}


OWN_PREFIX = "/api/v1/auth/"
route = ProxyRoute("/api/v1/{path:path}", forward, methods=METHODS, include_in_schema=False)
