"""The "what if" page in headless Chromium against the seeded stack: pick a scenario, change its
detox policy, run it, and see the per-strategy table and the charts, with the numbers detox's
API recorded; a policy with errors is shown line by line and runs nothing."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import Browser, Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def _chart_datasets(page: object, canvas: str) -> list[str]:
    labels: list[str] = page.evaluate(  # type: ignore[attr-defined]
        f"Chart.getChart('{canvas}').data.datasets.map((d) => d.label)"
    )
    return labels


def test_what_if_runs_a_changed_policy_and_shows_the_table_and_charts(
    stack: Stack, browser: Browser
) -> None:
    page = browser.open("/simulate")
    assert page.locator("nav a.current").inner_text() == "What if"
    assert page.input_value("#scenario") == "tiny"
    own = page.input_value("#policy-input")
    assert "Partition Physics" in own and "When site.occupancy > 0.87" in own

    page.click("#token-button")
    page.fill("#token-input", stack.admin_token)
    page.click("#token-save")
    page.wait_for_function("document.getElementById('who-name').textContent.includes('admin')")
    before = stack.api("/simulations")["total"]

    # A policy with errors: each with its line and column, nothing queued.
    browser.allow(r"/api/v1/simulations$")
    page.fill("#policy-input", "Partition Physics\nWhen site.occupancy >> 0.9\nDismiss\n")
    page.click("#run-simulation")
    page.wait_for_selector("#policy-errors")
    assert "line 2, column 21" in browser.text("#policy-errors")
    assert stack.api("/simulations")["total"] == before

    # What if detox emptied full sites down to 40%?
    stricter = own.replace("When site.occupancy > 0.87", "When site.occupancy > 0.5").replace(
        "Until site.occupancy < 0.8", "Until site.occupancy < 0.4"
    )
    page.set_input_files(
        "#policy-file",
        files=[{"name": "stricter.txt", "mimeType": "text/plain", "buffer": stricter.encode()}],
    )
    page.wait_for_function(
        "document.getElementById('policy-input').value.includes('site.occupancy < 0.4')"
    )
    page.select_option("#days", "2")
    # A seed of its own: a rerun of this test must not find an earlier run to compare with.
    seed = 100 + before
    page.fill("#seed", str(seed))
    page.click("#run-simulation")
    page.wait_for_selector("#simulation-summary", timeout=180_000)

    runs = stack.api("/simulations")
    assert runs["total"] == before + 1
    run = stack.api(f"/simulations/{runs['items'][0]['id']}")
    assert run["status"] == "done" and run["policy_changed"] and run["days"] == 2
    assert run["seed"] == seed
    assert run["policy"] == stricter
    assert f"Simulation #{run['id']}" in browser.text("#simulation-summary")
    assert "changed detox policy" in browser.text("#simulation-summary")
    assert re.search(rf"[?&]id={run['id']}$", page.url)
    bound = f"{100 * run['result']['trace']['cpu_bound']:.1f}% from disk"
    assert bound in browser.text("#simulation-cpu-bound")

    # One row per strategy, with the served-from-disk share the API recorded.
    rows = page.locator("#simulation-table tbody tr")
    strategies = run["result"]["strategies"]
    assert rows.count() == len(strategies) == 3
    for i, strategy in enumerate(strategies):
        cells = rows.nth(i).locator("td")
        assert cells.nth(0).inner_text() == strategy["name"]
        share = f"{100 * strategy['summary']['hit_rate']:.1f}%"
        assert cells.nth(2).inner_text() == share

    # The charts: every strategy over time, and the Dynamo strategy's sites.
    names = [s["name"] for s in strategies]
    assert _chart_datasets(page, "chart-hit-rate") == names
    assert _chart_datasets(page, "chart-transfers") == names
    occupied = {
        site
        for site, values in strategies[0]["series"]["occupancy"].items()
        if any(v > 0 for v in values)
    }
    assert set(_chart_datasets(page, "chart-occupancy")) == occupied and occupied

    # Beside the scenario's own policy: one click runs it on the same trace, and its Dynamo
    # row and lines join the table and the charts.
    page.click("#run-baseline")
    page.wait_for_function(
        "document.querySelectorAll('#simulation-table tbody tr').length === 4", timeout=180_000
    )
    baseline = stack.api("/simulations", limit=1)["items"][0]
    assert baseline["id"] == run["id"] + 1 and not baseline["policy_changed"]
    assert baseline["seed"] == seed
    own_run = stack.api(f"/simulations/{baseline['id']}")
    own_dynamo = own_run["result"]["strategies"][0]
    row = page.locator("#simulation-table tbody tr").nth(1).locator("td")
    assert row.nth(0).inner_text() == f"dynamo, scenario's policy (#{baseline['id']})"
    assert row.nth(2).inner_text() == f"{100 * own_dynamo['summary']['hit_rate']:.1f}%"
    assert own_dynamo["summary"]["bytes_deleted"] < strategies[0]["summary"]["bytes_deleted"]
    assert len(_chart_datasets(page, "chart-hit-rate")) == 4
    assert f"Simulation #{run['id']}" in browser.text("#simulation-summary")

    # Both runs are listed among the past ones; opening one by its address shows it again.
    listed = browser.text("#simulation-list")
    assert f"#{run['id']}" in listed and f"#{baseline['id']}" in listed
    browser.screenshot("simulate-what-if")
    page = browser.open(f"/simulate?id={run['id']}")
    page.wait_for_selector("#simulation-summary")
    assert page.locator("#simulation-table tbody tr").count() == 4
    browser.assert_clean()
