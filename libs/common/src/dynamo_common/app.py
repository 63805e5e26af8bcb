"""The FastAPI application every Dynamo service is built from.

:func:`create_service_app` gives each service the same operational surface: one lifespan that
owns every connection and background loop, ``/healthz``, ``/readyz``, ``/metrics``, request ids
in logs and responses, and RFC 9457 ``application/problem+json`` bodies for every error.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dynamo_common.logging import (
    REQUEST_ID_KEY,
    configure_logging,
    get_logger,
    log_context,
    new_request_id,
)
from dynamo_common.settings import DynamoSettings

__all__ = [
    "PROBLEM_JSON",
    "LifespanPart",
    "ProblemError",
    "ReadinessCheck",
    "ReadinessChecks",
    "add_readiness_check",
    "create_service_app",
    "problem_response",
]

PROBLEM_JSON = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-ID"

LifespanPart = Callable[[FastAPI], AbstractAsyncContextManager[None]]
ReadinessCheck = Callable[[], Awaitable[bool]]
ReadinessChecks = Mapping[str, ReadinessCheck]

_log = get_logger("dynamo.app")

# A client-supplied request id ends up in every log line of the request: accept only short,
# plain tokens so it cannot forge log fields or carry a payload.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_UNMATCHED_ROUTE = "<unmatched>"


# --------------------------------------------------------------------------- problem+json


class ProblemError(Exception):
    """Raise from a handler to answer with an RFC 9457 problem document.

    ``type`` is a URI naming the kind of problem (``about:blank`` when the status says it all);
    ``extensions`` become extra members of the document (e.g. ``{"site": "T2_US_MIT"}``).
    """

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        title: str | None = None,
        type: str = "about:blank",
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or title or _phrase(status))
        self.status = status
        self.detail = detail
        self.title = title
        self.type = type
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(
    status: int,
    *,
    title: str | None = None,
    detail: str | None = None,
    type: str = "about:blank",
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """An ``application/problem+json`` response (RFC 9457)."""
    body: dict[str, Any] = {}
    # Extensions first so that they can never overwrite the standard members.
    body.update(extensions or {})
    body.update({"type": type, "title": title or _phrase(status), "status": status})
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


def _request_id_of(request: Request) -> str | None:
    state = request.scope.get("state")
    value = state.get(REQUEST_ID_KEY) if isinstance(state, Mapping) else None
    return value if isinstance(value, str) else None


async def _http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code in (204, 304):
        # These statuses cannot carry a body.
        return Response(status_code=exc.status_code, headers=headers)
    extensions: dict[str, Any] = {}
    detail: str | None
    if isinstance(exc.detail, str):
        detail = exc.detail
    else:
        # FastAPI lets handlers raise HTTPException(detail={...}); RFC 9457 wants detail to be
        # a string, so the structure travels as an extension member.
        detail = None
        extensions["errors"] = exc.detail
    return problem_response(
        exc.status_code,
        detail=detail,
        instance=request.url.path,
        headers=headers,
        extensions=extensions,
    )


async def _problem_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return problem_response(
        exc.status,
        title=exc.title,
        detail=exc.detail,
        type=exc.type,
        instance=request.url.path,
        headers=exc.headers,
        extensions=exc.extensions,
    )


def _json_pointer(loc: Sequence[int | str]) -> str:
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in loc]
    return "#/" + "/".join(parts)


async def _validation_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors: list[dict[str, Any]] = []
    for err in exc.errors():
        loc = [p if isinstance(p, int) else str(p) for p in err.get("loc", ())]
        entry: dict[str, Any] = {
            "loc": loc,
            # The offending input and pydantic's ctx are left out: inputs can be large or
            # secret, and ctx may hold exception objects that are not JSON.
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        if loc and loc[0] == "body":
            entry["pointer"] = _json_pointer(loc[1:])
        elif len(loc) >= 2:
            entry["parameter"] = str(loc[-1])
        errors.append(entry)
    count = len(errors)
    return problem_response(
        422,
        title="Unprocessable Content",
        detail=f"The request has {count} invalid field{'s' if count != 1 else ''}.",
        instance=request.url.path,
        extensions={"errors": errors},
    )


async def _unhandled_exception_handler(request: Request, exc: Exception) -> Response:
    # Runs in Starlette's outermost middleware, outside the request-id middleware, so the id is
    # taken from the request scope and the header added here.
    request_id = _request_id_of(request)
    with log_context(request_id=request_id):
        _log.error(
            "http.unhandled_exception",
            method=request.method,
            path=request.url.path,
            exc_info=exc,
        )
    headers = {REQUEST_ID_HEADER: request_id} if request_id else None
    return problem_response(
        500,
        detail="An unexpected error occurred; the request id identifies it in the logs.",
        instance=request.url.path,
        headers=headers,
        extensions={"request_id": request_id} if request_id else None,
    )


# --------------------------------------------------------------------------- middleware


class _RequestIdMiddleware:
    """Takes X-Request-ID from the request (or makes one), binds it for logging, echoes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id: str | None = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                candidate = value.decode("latin-1").strip()
                if _REQUEST_ID_RE.match(candidate):
                    request_id = candidate
                break
        if request_id is None:
            request_id = new_request_id()
        # The scope's state is shared with the error handler that runs outside this middleware.
        state = scope.setdefault("state", {})
        if isinstance(state, dict):
            state[REQUEST_ID_KEY] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        with log_context(request_id=request_id):
            await self.app(scope, receive, send_with_id)


class _HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests handled, by method, route template and status code.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to handle an HTTP request, by method and route template.",
            ["method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.in_progress = Gauge(
            "http_requests_in_progress",
            "HTTP requests being handled.",
            registry=registry,
        )


class _MetricsMiddleware:
    """Counts requests and their latency by route template, and writes the access log."""

    def __init__(self, app: ASGIApp, metrics: _HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.in_progress.inc()
        try:
            await self.app(scope, receive, send_recording)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.in_progress.dec()
            method = str(scope.get("method", "GET")).upper()
            if method not in _KNOWN_METHODS:
                method = "OTHER"
            # The template (/sites/{name}), never the raw path: raw paths would create a time
            # series per site, dataset and file.
            route = getattr(scope.get("route"), "path", None)
            route_label = route if isinstance(route, str) and route else _UNMATCHED_ROUTE
            self.metrics.requests.labels(method, route_label, str(status)).inc()
            self.metrics.latency.labels(method, route_label).observe(elapsed)
            path = str(scope.get("path", ""))
            log = _log.debug if path in _PROBE_PATHS else _log.info
            log(
                "http.request",
                method=method,
                path=path,
                route=route_label,
                status=status,
                duration_ms=round(elapsed * 1000, 3),
            )


# --------------------------------------------------------------------------- readiness


def add_readiness_check(app: FastAPI, name: str, check: ReadinessCheck) -> None:
    """Register a readiness check at run time, e.g. from the lifespan part that opens the pool."""
    checks: dict[str, ReadinessCheck] = app.state.readiness_checks
    checks[name] = check


async def _run_check(check: ReadinessCheck, timeout_s: float) -> dict[str, Any]:
    started = time.perf_counter()
    error: str | None = None
    try:
        async with asyncio.timeout(timeout_s):
            ok = bool(await check())
        if not ok:
            error = "check reported not ready"
    except TimeoutError:
        ok, error = False, f"timed out after {timeout_s:g} s"
    except Exception as exc:
        ok, error = False, f"{type(exc).__name__}: {exc}"
    result: dict[str, Any] = {
        "ok": ok,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    if error is not None:
        result["error"] = error
    return result


# --------------------------------------------------------------------------- the factory


def create_service_app(
    *,
    title: str,
    settings: DynamoSettings,
    lifespan_parts: Sequence[LifespanPart] = (),
    routers: Sequence[APIRouter] = (),
    readiness_checks: ReadinessChecks | Callable[[], ReadinessChecks] | None = None,
    version: str = "0.1.0",
    description: str = "",
    readiness_timeout: float = 2.0,
    configure_logs: bool = True,
) -> FastAPI:
    """Build a service's FastAPI app.

    ``lifespan_parts`` are entered in order when the app starts and exited in reverse order when
    it stops (also when a later part fails to start), in the app's single lifespan: connections,
    consumers and background loops belong there, never at import time. ``readiness_checks`` is a
    mapping of name to async check, or a callable returning one (evaluated on every ``/readyz``,
    so it may look at objects the lifespan created); parts can also register checks with
    :func:`add_readiness_check`.
    """
    parts = tuple(lifespan_parts)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if configure_logs:
            configure_logging(settings.log_level, settings.log_format)
        _log.info("service.starting", service=settings.service_name, title=title)
        async with AsyncExitStack() as stack:
            for part in parts:
                await stack.enter_async_context(part(app))
            app.state.started = True
            _log.info("service.started", service=settings.service_name)
            try:
                yield
            finally:
                # Report not ready before anything is closed, so load balancers stop sending.
                app.state.started = False
                _log.info("service.stopping", service=settings.service_name)
        _log.info("service.stopped", service=settings.service_name)

    app = FastAPI(title=title, version=version, description=description, lifespan=lifespan)
    app.state.settings = settings
    app.state.started = False
    app.state.readiness_checks = {}

    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    Info("dynamo_service", "The service behind this endpoint.", registry=registry).info(
        {"service": settings.service_name, "title": title, "version": version}
    )
    app.state.metrics_registry = registry
    http_metrics = _HttpMetrics(registry)

    # Added innermost first: the request-id middleware wraps the metrics one, so the access log
    # line carries the request id.
    app.add_middleware(_MetricsMiddleware, metrics=http_metrics)
    app.add_middleware(_RequestIdMiddleware)

    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(ProblemError, _problem_error_handler)
    app.add_exception_handler(Exception, _unhandled_exception_handler)

    def current_checks() -> dict[str, ReadinessCheck]:
        checks: dict[str, ReadinessCheck] = {}
        if readiness_checks is not None:
            given = (
                readiness_checks if isinstance(readiness_checks, Mapping) else readiness_checks()
            )
            checks.update(given)
        checks.update(app.state.readiness_checks)
        return checks

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False, response_model=None)
    async def readyz(request: Request) -> Response:
        if not app.state.started:
            return problem_response(
                503,
                detail="The service is starting or shutting down.",
                instance=request.url.path,
                extensions={"checks": {}, "failed": ["lifespan"]},
            )
        checks = current_checks()
        names = sorted(checks)
        outcomes = await asyncio.gather(
            *(_run_check(checks[name], readiness_timeout) for name in names)
        )
        results = dict(zip(names, outcomes, strict=True))
        failed = [name for name in names if not results[name]["ok"]]
        if failed:
            return problem_response(
                503,
                detail=f"Not ready: {', '.join(failed)}.",
                instance=request.url.path,
                extensions={"checks": results, "failed": failed},
            )
        return JSONResponse({"status": "ok", "checks": results})

    @app.get("/metrics", include_in_schema=False, response_model=None)
    async def metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(content=encoder(registry), media_type=content_type)

    for router in routers:
        app.include_router(router)
    return app
