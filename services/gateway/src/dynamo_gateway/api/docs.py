"""``/openapi.json`` and ``/docs``: the merged document of the whole API, and Swagger UI on it."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from dynamo_gateway.api.deps import runtime
from dynamo_gateway.runtime import GatewayRuntime

router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
async def openapi(rt: GatewayRuntime = Depends(runtime)) -> JSONResponse:
    return JSONResponse(await rt.openapi())


@router.get("/docs")
async def docs() -> HTMLResponse:
    # Served from the gateway's own static files: the machines may be offline.
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Dynamo API",
        swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/static/favicon.svg",
    )
