from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI, HTTPException
from pydantic import BaseModel, Field

from dynamo_common.app import (
    PROBLEM_JSON,
    LifespanPart,
    ProblemError,
    ReadinessCheck,
    add_readiness_check,
    create_service_app,
)
from dynamo_common.logging import get_request_id
from dynamo_common.settings import DynamoSettings


class NewItem(BaseModel):
    name: str = Field(min_length=1)
    size: int = Field(ge=0)


def make_router() -> APIRouter:
    router = APIRouter()

    @router.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, Any]:
        if item_id == 404:
            raise HTTPException(status_code=404, detail="no item 404")
        return {"id": item_id, "request_id": get_request_id()}

    @router.post("/items", status_code=201)
    async def create_item(item: NewItem) -> dict[str, Any]:
        return item.model_dump()

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    @router.get("/conflict")
    async def conflict() -> None:
        raise ProblemError(
            409,
            "dataset /A/B/RAW is locked",
            type="https://dynamo.example/problems/locked",
            title="Locked",
            extensions={"dataset": "/A/B/RAW"},
        )

    return router


def make_app(
    *,
    parts: Sequence[LifespanPart] = (),
    checks: Mapping[str, ReadinessCheck] | None = None,
    service_name: str = "testsvc",
    readiness_timeout: float = 2.0,
) -> FastAPI:
    return create_service_app(
        title="Test service",
        settings=DynamoSettings(service_name=service_name, log_format="console"),
        lifespan_parts=parts,
        routers=[make_router()],
        readiness_checks=checks,
        readiness_timeout=readiness_timeout,
    )


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield client


async def ok() -> bool:
    return True


async def not_ok() -> bool:
    return False


async def broken() -> bool:
    raise ConnectionRefusedError("connection refused")


async def hangs() -> bool:
    await asyncio.sleep(30)
    return True


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert "type" in body
    return body


async def test_healthz() -> None:
    async with serve(make_app()) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_all_checks_pass() -> None:
    async with serve(make_app(checks={"database": ok, "bus": ok})) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "bus"}
    assert all(result["ok"] for result in body["checks"].values())


async def test_readyz_failing_checks_give_503_naming_them() -> None:
    checks = {"database": ok, "bus": not_ok, "fts": broken, "storage": hangs}
    app = make_app(checks=checks, readiness_timeout=0.2)
    async with serve(app) as client:
        response = await client.get("/readyz")
    body = assert_problem(response, 503)
    assert body["failed"] == ["bus", "fts", "storage"]
    assert body["checks"]["database"]["ok"] is True
    assert "ConnectionRefusedError" in body["checks"]["fts"]["error"]
    assert "timed out" in body["checks"]["storage"]["error"]
    assert "bus" in body["detail"]


async def test_readiness_checks_from_callable_and_from_lifespan_part() -> None:
    state = {"bus_up": False}

    async def bus_check() -> bool:
        return state["bus_up"]

    @asynccontextmanager
    async def db_part(app: FastAPI) -> AsyncIterator[None]:
        add_readiness_check(app, "database", ok)
        yield

    app = create_service_app(
        title="t",
        settings=DynamoSettings(log_format="console"),
        lifespan_parts=[db_part],
        routers=[],
        readiness_checks=lambda: {"bus": bus_check},
    )
    async with serve(app) as client:
        first = await client.get("/readyz")
        state["bus_up"] = True
        second = await client.get("/readyz")
    assert assert_problem(first, 503)["failed"] == ["bus"]
    assert second.status_code == 200
    assert set(second.json()["checks"]) == {"bus", "database"}


async def test_readyz_is_503_when_lifespan_has_not_run() -> None:
    transport = httpx.ASGITransport(app=make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        response = await client.get("/readyz")
    assert_problem(response, 503)


async def test_metrics_by_route_template_and_status() -> None:
    app = make_app()
    async with serve(app) as client:
        for item in (1, 2, 3):
            assert (await client.get(f"/items/{item}")).status_code == 200
        assert (await client.get("/items/404")).status_code == 404
        assert (await client.get("/nowhere/at/all")).status_code == 404
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'http_requests_total{method="GET",route="/items/{item_id}",status="200"} 3.0' in text
    assert 'http_requests_total{method="GET",route="/items/{item_id}",status="404"} 1.0' in text
    assert 'http_requests_total{method="GET",route="<unmatched>",status="404"} 1.0' in text
    assert 'http_request_duration_seconds_count{method="GET",route="/items/{item_id}"} 4.0' in text
    assert "http_request_duration_seconds_bucket" in text
    # Raw paths never become labels.
    assert 'route="/items/1"' not in text
    assert 'dynamo_service_info{service="testsvc"' in text
    assert "process_cpu_seconds_total" in text or "python_info" in text


async def test_two_apps_in_one_process_have_separate_registries() -> None:
    first, second = make_app(service_name="one"), make_app(service_name="two")
    assert first.state.metrics_registry is not second.state.metrics_registry
    async with serve(first) as c1, serve(second) as c2:
        await c1.get("/items/1")
        await c1.get("/items/1")
        await c2.get("/items/1")
        m1 = (await c1.get("/metrics")).text
        m2 = (await c2.get("/metrics")).text
    assert 'route="/items/{item_id}",status="200"} 2.0' in m1
    assert 'route="/items/{item_id}",status="200"} 1.0' in m2


async def test_service_can_add_metrics_to_the_registry() -> None:
    from prometheus_client import Counter

    app = make_app()
    cycles = Counter("detox_cycles_total", "Cycles run.", registry=app.state.metrics_registry)
    cycles.inc(5)
    async with serve(app) as client:
        text = (await client.get("/metrics")).text
    assert "detox_cycles_total 5.0" in text


async def test_404_is_problem_json() -> None:
    async with serve(make_app()) as client:
        unknown = await client.get("/no/such/path")
        missing = await client.get("/items/404")
    body = assert_problem(unknown, 404)
    assert body["title"] == "Not Found"
    assert body["type"] == "about:blank"
    body = assert_problem(missing, 404)
    assert body["detail"] == "no item 404"
    assert body["instance"] == "/items/404"


async def test_405_is_problem_json_with_allow_header() -> None:
    async with serve(make_app()) as client:
        response = await client.delete("/items/1")
    assert_problem(response, 405)
    assert "GET" in response.headers["allow"]


async def test_validation_errors_are_problem_json_with_field_locations() -> None:
    async with serve(make_app()) as client:
        bad_body = await client.post("/items", json={"name": "", "size": "lots"})
        bad_path = await client.get("/items/not-a-number")
        not_json = await client.post(
            "/items", content=b"{nope", headers={"content-type": "application/json"}
        )
    body = assert_problem(bad_body, 422)
    by_loc = {tuple(e["loc"]): e for e in body["errors"]}
    assert set(by_loc) == {("body", "name"), ("body", "size")}
    assert by_loc[("body", "name")]["pointer"] == "#/name"
    assert by_loc[("body", "size")]["type"] == "int_parsing"
    assert "2 invalid fields" in body["detail"]
    assert "input" not in by_loc[("body", "size")]

    body = assert_problem(bad_path, 422)
    assert body["errors"][0]["loc"] == ["path", "item_id"]
    assert body["errors"][0]["parameter"] == "item_id"

    body = assert_problem(not_json, 422)
    assert body["errors"][0]["type"] == "json_invalid"


async def test_problem_error_from_a_handler() -> None:
    async with serve(make_app()) as client:
        response = await client.get("/conflict")
    body = assert_problem(response, 409)
    assert body == {
        "type": "https://dynamo.example/problems/locked",
        "title": "Locked",
        "status": 409,
        "detail": "dataset /A/B/RAW is locked",
        "instance": "/conflict",
        "dataset": "/A/B/RAW",
    }


async def test_unhandled_exception_is_problem_json_without_internals() -> None:
    async with serve(make_app()) as client:
        response = await client.get("/boom", headers={"X-Request-ID": "req-500"})
    body = assert_problem(response, 500)
    assert "secret internals" not in response.text
    assert response.headers["x-request-id"] == "req-500"
    assert body["request_id"] == "req-500"


async def test_lifespan_parts_enter_in_order_and_exit_in_reverse() -> None:
    events: list[str] = []

    def part(name: str) -> LifespanPart:
        @asynccontextmanager
        async def run(app: FastAPI) -> AsyncIterator[None]:
            events.append(f"enter {name}")
            setattr(app.state, name, True)
            try:
                yield
            finally:
                events.append(f"exit {name}")

        return run

    app = make_app(parts=[part("db"), part("bus"), part("consumers")])
    async with serve(app) as client:
        assert events == ["enter db", "enter bus", "enter consumers"]
        assert (await client.get("/readyz")).status_code == 200
        assert app.state.db and app.state.bus and app.state.consumers
    assert events == [
        "enter db",
        "enter bus",
        "enter consumers",
        "exit consumers",
        "exit bus",
        "exit db",
    ]


async def test_a_part_failing_to_start_unwinds_the_parts_before_it() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def good(app: FastAPI) -> AsyncIterator[None]:
        events.append("enter good")
        try:
            yield
        finally:
            events.append("exit good")

    def bad(app: FastAPI) -> AbstractAsyncContextManager[None]:
        @asynccontextmanager
        async def run() -> AsyncIterator[None]:
            raise ConnectionError("database down")
            yield

        return run()

    app = make_app(parts=[good, bad])
    with pytest.raises(ConnectionError, match="database down"):
        async with LifespanManager(app):
            pass
    assert events == ["enter good", "exit good"]


async def test_request_id_is_echoed_generated_and_bound_for_logging() -> None:
    async with serve(make_app()) as client:
        given = await client.get("/items/7", headers={"X-Request-ID": "abc-123"})
        generated = await client.get("/items/7")
        hostile = await client.get("/items/7", headers={"X-Request-ID": 'x" level=error'})
    assert given.headers["x-request-id"] == "abc-123"
    assert given.json()["request_id"] == "abc-123"

    rid = generated.headers["x-request-id"]
    assert len(rid) == 32
    assert generated.json()["request_id"] == rid

    assert hostile.headers["x-request-id"] != 'x" level=error'
    assert hostile.json()["request_id"] == hostile.headers["x-request-id"]


async def test_error_responses_carry_the_request_id() -> None:
    async with serve(make_app()) as client:
        response = await client.get("/no/such/path", headers={"X-Request-ID": "r-404"})
    assert response.headers["x-request-id"] == "r-404"
