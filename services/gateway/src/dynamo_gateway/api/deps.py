"""Authentication and authorization of every request, in one function used by the forwarded
endpoints and by the gateway's own."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request

from dynamo_common.api import Paging as Paging
from dynamo_common.app import ProblemError
from dynamo_common.logging import REQUEST_ID_KEY
from dynamo_gateway.auth import AuthError
from dynamo_gateway.runtime import GatewayRuntime
from dynamo_gateway.service.permissions import Decision
from dynamo_gateway.service.roles import Identity, Role


def runtime(request: Request) -> GatewayRuntime:
    rt: GatewayRuntime | None = getattr(request.app.state, "gateway", None)
    if rt is None:
        raise ProblemError(503, "the gateway is starting")
    return rt


def request_id(request: Request) -> str | None:
    state = request.scope.get("state")
    value = state.get(REQUEST_ID_KEY) if isinstance(state, Mapping) else None
    return value if isinstance(value, str) else None


async def check(request: Request) -> tuple[Identity, Decision]:
    """The caller's identity, if the permission table lets it make this request; else a
    401 (no or refused credentials) or 403 (a role too low) problem."""
    rt = runtime(request)
    scope = request.scope
    try:
        identity = await rt.auth.identify(scope["headers"], scope.get("client"))
    except AuthError as exc:
        raise ProblemError(
            401,
            exc.detail,
            title="Unauthorized",
            headers={"WWW-Authenticate": exc.www_authenticate},
        ) from None
    method: str = scope["method"]
    path: str = scope["path"]
    decision = rt.permissions.decide(method, path)
    if not decision.allows(identity.role):
        need = decision.need.label
        extensions = {"required_role": need, "role": identity.role.label}
        if identity.role == Role.ANONYMOUS:
            raise ProblemError(
                401,
                f"{method} {path} needs the {need} role: sign in (a bearer token or a certificate)",
                title="Unauthorized",
                headers={"WWW-Authenticate": 'Bearer realm="dynamo"'},
                extensions=extensions,
            )
        raise ProblemError(
            403,
            f"{method} {path} needs the {need} role; {identity.name} has the "
            f"{identity.role.label} role",
            title="Forbidden",
            extensions=extensions,
        )
    return identity, decision


async def authorize(request: Request) -> Identity:
    """FastAPI dependency of the gateway's own endpoints."""
    identity, _ = await check(request)
    return identity
