"""The page router. Pages are rendered in the browser (``static/js/pages/*.js``) from the REST
API, so the server's part is the shell: navigation, the page's script, and nothing that would
need a service to be up. A page whose service is missing still loads and says so."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.staticfiles import StaticFiles

WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"
_SHELL = Template((WEB_DIR / "templates" / "shell.html").read_text(encoding="utf-8"))


@dataclass(frozen=True, slots=True)
class Page:
    path: str
    script: str
    title: str
    section: str
    """The navigation entry lit up on this page."""


PAGES = (
    Page("/", "overview", "Overview", "overview"),
    Page("/sites", "sites", "Sites", "sites"),
    Page("/sites/{name}", "site", "Site", "sites"),
    Page("/datasets", "datasets", "Datasets", "datasets"),
    Page("/datasets/{name:path}", "dataset", "Dataset", "datasets"),
    Page("/requests", "requests", "Requests", "requests"),
    Page("/locks", "locks", "Locks", "locks"),
    Page("/dealer", "dealer", "Dealer", "dealer"),
    Page("/detox", "detox", "Detox", "detox"),
    Page("/detox/cycles/{cycle_id:int}", "cycle", "Detox cycle", "detox"),
    Page("/detox/test", "policytest", "Policy test", "detox"),
    Page("/simulate", "simulate", "What if", "simulate"),
    Page("/consistency", "consistency", "Consistency", "consistency"),
    Page("/consistency/{site}", "consistencysite", "Consistency of a site", "consistency"),
    Page("/transfers", "transfers", "Transfers", "transfers"),
)

NAV = (
    ("overview", "/", "Overview"),
    ("sites", "/sites", "Sites"),
    ("datasets", "/datasets", "Datasets"),
    ("requests", "/requests", "Requests"),
    ("locks", "/locks", "Locks"),
    ("dealer", "/dealer", "Dealer"),
    ("detox", "/detox", "Detox"),
    ("simulate", "/simulate", "What if"),
    ("consistency", "/consistency", "Consistency"),
    ("transfers", "/transfers", "Transfers"),
)


def _nav(section: str) -> str:
    items = []
    for key, href, label in NAV:
        current = ' class="current" aria-current="page"' if key == section else ""
        items.append(f'<a href="{href}"{current}>{html.escape(label)}</a>')
    return "\n      ".join(items)


def render(page: Page) -> str:
    return _SHELL.substitute(
        title=html.escape(page.title),
        page=page.script,
        nav=_nav(page.section),
    )


def _endpoint(page: Page) -> Callable[[Request], Awaitable[HTMLResponse]]:
    body = render(page).encode("utf-8")

    async def endpoint(request: Request) -> HTMLResponse:
        # The shell is the same for every path parameter: the script reads them from the URL
        # and asks the API, which answers an unknown name with its own 404.
        return HTMLResponse(body, headers={"Cache-Control": "no-cache"})

    return endpoint


def mount(app: FastAPI) -> None:
    """Add the pages and ``/static`` to ``app``."""
    for page in PAGES:
        app.router.routes.append(
            Route(page.path, _endpoint(page), methods=["GET", "HEAD"], include_in_schema=False)
        )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
