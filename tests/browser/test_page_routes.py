"""The gateway's page routes over HTTP: shells, static assets served locally, bad paths."""

from __future__ import annotations

import re

import httpx
import pytest

from dynamo_gateway.web.pages import PAGES
from tests.browser.conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

EXAMPLES = {
    "/sites/{name}": "/sites/T2_US_MIT",
    "/datasets/{name:path}": "/datasets/TTbar_13TeV/Summer24-v1/AODSIM",
    "/detox/cycles/{cycle_id:int}": "/detox/cycles/1",
    "/consistency/{site}": "/consistency/T2_US_MIT",
}


def test_every_page_is_an_html_shell_with_only_local_assets(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        for page in PAGES:
            path = EXAMPLES.get(page.path, page.path)
            response = client.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-type"].startswith("text/html")
            html = response.text
            assert f'src="/static/js/pages/{page.script}.js"' in html
            assets = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert assets and all(a.startswith("/") for a in assets), assets
            for asset in (a for a in assets if a.startswith("/static/")):
                assert client.get(asset).status_code == 200, asset


def test_static_assets_have_their_types_and_the_chart_library_is_vendored(
    stack: Stack,
) -> None:
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        chart = client.get("/static/vendor/chartjs/chart.umd.min.js")
        assert chart.status_code == 200
        assert "javascript" in chart.headers["content-type"]
        assert len(chart.content) > 100_000
        assert client.get("/static/vendor/chartjs/LICENSE.md").status_code == 200
        css = client.get("/static/css/dynamo.css")
        assert css.headers["content-type"].startswith("text/css")
        docs = client.get("/docs").text
        assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in docs
        assert "cdn" not in docs.lower()


def test_a_bad_page_path_is_a_problem_and_not_a_page(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        for path in ("/detox/cycles/abc", "/no-such-page", "/static/js/no-such.js"):
            response = client.get(path)
            assert response.status_code == 404, path
            assert "text/html" not in response.headers.get("content-type", ""), path
            if not path.startswith("/static/"):
                assert response.headers["content-type"] == "application/problem+json", path
        assert client.post("/sites").status_code == 405
