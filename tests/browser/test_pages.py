"""Every page in headless Chromium against the seeded stack: real content, no console error,
no failed request (except the deliberately missing dealer), a screenshot of each."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser.conftest import Browser, Stack
from tests.browser.seed import (
    BROKEN,
    DESY,
    DOUBLEEG,
    FNAL,
    MIT,
    POLICY,
    ROME,
    SINGLEMUON_A,
    SINGLEMUON_B,
    TTBAR,
    ZEROBIAS,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def test_overview_shows_totals_occupancy_bars_cycles_and_alerts(
    stack: Stack, browser: Browser
) -> None:
    page = browser.open("/")
    totals = browser.text("#totals")
    assert re.search(r"\b4\s+sites", totals)
    assert re.search(r"\b7\s+datasets", totals)
    bars = page.locator("#occupancy .occ-row")
    assert bars.count() == 4
    desy = page.locator("#occupancy .occ-row", has_text=DESY)
    occupancy = stack.api(f"/sites/{DESY}")["usage"][0]["occupancy"]
    assert f"{occupancy * 100:.1f}%" in desy.inner_text()
    rome = page.locator("#occupancy .occ-row", has_text=ROME).locator(".occ")
    assert "high" in (rome.get_attribute("class") or "")
    assert f"#{stack.seeded.cycle_id}" in browser.text("#recent-detox")
    recent_checks = page.locator("#recent-consistency tr")
    assert recent_checks.count() == 2
    assert "attention" in (recent_checks.filter(has_text=ROME).get_attribute("class") or "")
    alerts = browser.text("#alerts")
    assert re.search(rf"{stack.seeded.held_files}\s+held files", alerts)
    assert re.search(r"1\s+sites flagged by consistency", alerts)
    if stack.seeded.dealer_cycle:
        assert f"#{stack.seeded.dealer_cycle['id']}" in browser.text("#recent-dealer")
    else:
        assert "dealer service is not deployed" in browser.text("#recent-dealer")
    browser.screenshot("overview")
    browser.assert_clean()


def test_sites_list_shows_every_site_with_its_partition_bar(stack: Stack, browser: Browser) -> None:
    page = browser.open("/sites")
    rows = page.locator("#sites-table tbody tr")
    assert rows.count() == 4
    fnal = stack.api(f"/sites/{FNAL}")
    row = page.locator("#sites-table tbody tr", has_text=FNAL)
    assert str(fnal["dataset_replicas"]) in row.inner_text()
    assert f"{fnal['usage'][0]['occupancy'] * 100:.1f}%" in row.inner_text()
    browser.screenshot("sites")
    browser.open("/sites?q=T2_*")
    assert page.locator("#sites-table tbody tr").count() == 3
    browser.assert_clean()


def test_one_site_shows_its_facts_usage_and_replicas(stack: Stack, browser: Browser) -> None:
    page = browser.open(f"/sites/{MIT}")
    assert MIT in browser.text("h1")
    assert "file:" in browser.text("#site-facts")
    replicas = browser.text("#site-replicas")
    assert SINGLEMUON_B in replicas
    assert TTBAR in replicas
    run = stack.seeded.mit_run
    assert re.search(rf"{run['files_listed']}\s+files listed", browser.text("#site-consistency"))
    held_here = stack.api("/transfers/held", site=MIT)["total"]
    assert re.search(rf"{held_here}\s+held here", browser.text("#site-transfers"))
    browser.screenshot("site")
    browser.follow(lambda: page.click(f"#site-replicas a:text('{TTBAR}')"))
    assert page.url.endswith(TTBAR)
    browser.assert_clean()


def test_dataset_search_with_wildcards(stack: Stack, browser: Browser) -> None:
    page = browser.open("/datasets?q=/SingleMuon/*/AOD")
    rows = page.locator("#datasets-table tbody tr")
    assert rows.count() == 2
    assert SINGLEMUON_A in browser.text("#datasets-table")
    assert SINGLEMUON_B in browser.text("#datasets-table")
    browser.screenshot("datasets")
    page.fill("input[name=q]", "/*/*/MINIAOD*")
    browser.follow(lambda: page.click("form button[type=submit]"))
    assert page.locator("#datasets-table tbody tr").count() == 2
    browser.assert_clean()


def test_dataset_shows_blocks_replicas_and_files(stack: Stack, browser: Browser) -> None:
    page = browser.open(f"/datasets{TTBAR}")
    assert TTBAR in browser.text("h1")
    where = browser.text("#replicas-table")
    for site in (FNAL, DESY, MIT):
        assert site in where
    assert page.locator("#blocks-table tbody tr").count() == 2
    page.click("#blocks-table a:text('b1')")
    page.wait_for_selector("#files-table")
    files = browser.text("#files-table")
    assert "/store/data/TTbar_13TeV/AODSIM/Summer24-v1/b1/f000.root" in files
    assert "50.0 kB" in files
    browser.screenshot("dataset")
    browser.assert_clean()


def test_unknown_dataset_is_a_clear_message(stack: Stack, browser: Browser) -> None:
    browser.allow(r"/api/v1/dataset\?name=%2FNo%2FSuch%2FThing")
    browser.open("/datasets/No/Such/Thing")
    assert "unknown dataset" in browser.text("#content")
    browser.assert_clean()


def test_requests_show_copies_in_flight_with_progress(stack: Stack, browser: Browser) -> None:
    page = browser.open("/requests")
    copies = browser.text("#transfer-requests")
    assert BROKEN in copies
    assert MIT in copies
    row = page.locator("#transfer-requests tbody tr", has_text=MIT).filter(has_text=BROKEN)
    assert "0%" in row.inner_text()
    assert "stuck" not in (row.get_attribute("class") or "")
    if stack.dealer:
        requests = browser.text("#dealer-requests")
        for request in stack.seeded.dealer_requests:
            assert f"#{request['id']}" in requests
        assert "bob" in requests and "for skims" in requests
    else:
        assert "dealer service is not deployed" in browser.text("main")
    browser.screenshot("requests")
    # Within a window of one second, a copy that has not moved is stuck: red.
    browser.follow(lambda: page.select_option("select[name=stuck]", "60"))
    assert "stuck=60" in page.url
    browser.open("/requests?stuck=1")
    row = page.locator("#transfer-requests tbody tr", has_text=MIT).filter(has_text=BROKEN)
    assert "stuck" in (row.get_attribute("class") or "")
    assert "stuck" in row.inner_text()
    browser.assert_clean()


def test_locks_list_the_seeded_lock(stack: Stack, browser: Browser) -> None:
    browser.open("/locks")
    locks = browser.text("#locks-table")
    assert "/SingleMuon/*/AOD" in locks
    assert DESY in locks
    assert "muon calibration campaign" in locks
    assert "alice" in locks
    browser.screenshot("locks")
    browser.assert_clean()


def test_detox_lists_cycles_and_explains_a_deletion(stack: Stack, browser: Browser) -> None:
    page = browser.open("/detox")
    cycles = browser.text("#cycles-table")
    assert f"#{stack.seeded.cycle_id}" in cycles
    assert page.locator("#latest-chart").is_visible()
    page.fill("#why-form input[name=dataset]", DOUBLEEG)
    page.click("#why-form button")
    page.wait_for_selector("#why-table")
    why = browser.text("#why-table")
    assert DESY in why
    assert "delete" in why
    assert "Dismiss" in why
    browser.screenshot("detox")
    browser.assert_clean()


def test_detox_cycle_shows_sites_before_after_decisions_and_download(
    stack: Stack, browser: Browser
) -> None:
    cycle_id = stack.seeded.cycle_id
    page = browser.open(f"/detox/cycles/{cycle_id}")
    assert "Partition Physics" in browser.text("#policy-text")
    assert "1 replicas" in browser.text("#cycle-deleted")
    sites = browser.text(f"#cycle-{cycle_id}-sites")
    assert DESY in sites and "triggered" in sites
    page.click(f"#cycle-{cycle_id}-sites a:text('{DESY}')")
    page.wait_for_selector("#decisions-table")
    decisions = browser.text("#decisions-table")
    assert DOUBLEEG in decisions and "Dismiss" in decisions
    assert SINGLEMUON_A in decisions and "protect" in decisions
    with page.expect_download() as download:
        page.click("#download-txt")
    text = Path(download.value.path()).read_text()
    assert text.startswith(f"{DESY} {DOUBLEEG} ")
    browser.screenshot("detox-cycle")
    browser.assert_clean()


def test_consistency_summary_colours_the_sites_that_need_a_person(
    stack: Stack, browser: Browser
) -> None:
    page = browser.open("/consistency")
    rome = page.locator("#consistency-summary tbody tr", has_text=ROME)
    mit = page.locator("#consistency-summary tbody tr", has_text=MIT)
    assert "attention" in (rome.get_attribute("class") or "")
    assert "attention" not in (mit.get_attribute("class") or "")
    assert "flagged" in rome.inner_text()
    run = stack.seeded.mit_run
    cells = mit.locator("td").all_inner_texts()
    assert f"{run['files_listed']}" in cells
    assert "1 [1 blocks]" in cells
    browser.screenshot("consistency")
    browser.follow(lambda: page.click("button:text('Sites that need a person')"))
    assert page.locator("#consistency-summary tbody tr").count() == 1
    browser.assert_clean()


def test_consistency_site_shows_its_checks_and_lists(stack: Stack, browser: Browser) -> None:
    page = browser.open(f"/consistency/{MIT}")
    assert f"#{stack.seeded.mit_run['id']}" in browser.text("#runs-table")
    assert stack.seeded.missing_lfn in browser.text("#list-missing")
    page.click("button[data-list=orphans]")
    page.wait_for_selector("#list-orphans")
    assert stack.seeded.orphan_lfn in browser.text("#list-orphans")
    browser.screenshot("consistency-site")
    browser.assert_clean()


def test_transfers_plot_rate_and_quality_and_list_held_files(
    stack: Stack, browser: Browser
) -> None:
    page = browser.open("/transfers")
    assert page.locator("#rate-chart").is_visible()
    assert page.locator("#quality-chart").is_visible()
    links = browser.text("#links-table")
    assert f"{ROME} → {MIT}" in links
    held = browser.text("#held-table")
    for lfn in stack.seeded.held_lfns:
        assert lfn in held
    assert str(stack.seeded.held_files) in browser.text("#queue-totals")
    browser.screenshot("transfers")
    browser.follow(lambda: page.select_option("select[name=by]", "destination"))
    assert "by=destination" in page.url
    links = stack.api("/transfers/links", window=86400, buckets=24)["links"]
    destinations = {link["destination"] for link in links if link["kind"] == "transfer"}
    shown = page.locator("#links-table tbody tr td:first-child").all_inner_texts()
    assert sorted(shown) == sorted(destinations)
    browser.assert_clean()


def test_dealer_shows_volume_in_flight_compliance_and_decisions(
    stack: Stack, browser: Browser
) -> None:
    if not stack.dealer:
        pytest.fail("dynamo_dealer is not importable: the dealer page cannot be tested")
    page = browser.open("/dealer")
    monitoring = stack.api("/dealer/monitoring")
    totals = browser.text("#dealer-totals")
    assert re.search(rf"{monitoring['total']['replicas']}\s+replicas in flight", totals)
    flying = stack.api("/dealer/monitoring/replicas")["items"]
    if flying:
        assert page.locator("#dealer-volume-chart").is_visible()
        assert flying[0]["dataset"] in browser.text("#dealer-replicas")
    else:
        assert "No replica in flight." in browser.text("main")
    compliance = page.locator("#compliance-table tbody tr", has_text="us_miniaod")
    rule = stack.api("/dealer/compliance")["items"][0]
    cells = compliance.locator("td").all_inner_texts()
    assert cells[4] == str(rule["datasets"])
    assert cells[6] == str(rule["there"])
    cycle = stack.seeded.dealer_cycle
    assert cycle is not None
    assert f"#{cycle['id']}" in browser.text("#dealer-cycles")
    page.wait_for_selector("#dealer-decisions")
    decisions = browser.text("#dealer-decisions")
    assert ZEROBIAS in decisions and "requests" in decisions
    assert "enforcer" in decisions
    browser.screenshot("dealer")
    browser.assert_clean()


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/transfers", "transfer"),
        ("/detox", "detox"),
        ("/consistency", "consistency"),
        ("/dealer", "dealer"),
        ("/locks", "detox"),
        ("/requests", "transfer"),
    ],
)
def test_a_page_whose_service_is_not_deployed_says_so(
    stack: Stack, browser: Browser, path: str, service: str
) -> None:
    browser.base = stack.inventory_only_url
    browser.allow(r"/api/v1/(transfers|cycles|locks|consistency|dealer)(/|\?|$)")
    page = browser.open(path)
    notices = page.locator(".notice.unavailable")
    assert notices.count() >= 1
    assert f"the {service} service is not deployed behind this gateway" in browser.text("main")
    assert page.locator(".notice.error").count() == 0
    browser.screenshot(f"not-deployed-{service}-{path.strip('/')}")
    browser.assert_clean()


def test_policy_test_page_runs_a_pasted_policy_and_compares_it_with_the_last_cycle(
    stack: Stack, browser: Browser
) -> None:
    page = browser.open("/detox/test")
    page.evaluate("localStorage.clear()")
    page = browser.open("/detox/test")
    assert "Partition Physics" in page.input_value("#policy-input")

    # Without a token the gateway refuses the write; the page says what to do.
    browser.allow(r"/api/v1/test-runs$")
    page.click("#run-test")
    page.wait_for_selector("#test-result .notice.error")
    assert "API token" in browser.text("#test-result")
    before = stack.api("/cycles", kind="test")["total"]

    page.click("#token-button")
    page.fill("#token-input", stack.admin_token)
    page.click("#token-save")
    page.wait_for_function("document.getElementById('who-name').textContent.includes('admin')")

    # A policy with errors: every one with its line, nothing run.
    page.fill("#policy-input", "Partition Physics\nWhen site.occupancy >> 0.9\nDismiss\n")
    page.click("#run-test")
    page.wait_for_selector("#policy-errors")
    assert "line 2" in browser.text("#policy-errors")
    assert stack.api("/cycles", kind="test")["total"] == before

    # An uploaded policy that would also empty Rome (86%) down to 50%.
    stricter = POLICY.replace("When site.occupancy > 0.9", "When site.occupancy > 0.85").replace(
        "Until site.occupancy < 0.85", "Until site.occupancy < 0.5"
    )
    page.set_input_files(
        "#policy-file",
        files=[{"name": "stricter.txt", "mimeType": "text/plain", "buffer": stricter.encode()}],
    )
    page.wait_for_function(
        "document.getElementById('policy-input').value.includes('site.occupancy < 0.5')"
    )
    page.click("#run-test")
    page.wait_for_selector("#test-summary", timeout=120_000)
    runs = stack.api("/cycles", kind="test")
    assert runs["total"] == before + 1
    test_run = runs["items"][0]
    assert test_run["status"] == "done"
    summary = browser.text("#test-summary")
    assert f"Test run #{test_run['id']}" in summary
    assert f"would delete {test_run['replicas_deleted']} replicas" in summary
    compared = stack.api(f"/test-runs/{test_run['id']}/compare")
    assert compared["additional"] > 0
    totals = browser.text("#comparison-totals")
    assert f"{compared['additional']} additional deletions" in totals
    assert f"#{stack.seeded.cycle_id}" in totals
    assert ROME in browser.text("#comparison-table")
    browser.screenshot("detox-policy-test")
    browser.assert_clean()


def test_unknown_cycle_and_site_are_clear_messages(stack: Stack, browser: Browser) -> None:
    browser.allow(r"/api/v1/cycles/424242$")
    browser.open("/detox/cycles/424242")
    assert "no cycle 424242" in browser.text("#content")
    browser.allow(r"/api/v1/sites/T9_NO_WHERE$")
    browser.open("/sites/T9_NO_WHERE")
    assert "unknown site 'T9_NO_WHERE'" in browser.text("#content")
    browser.assert_clean()


def test_api_docs_are_served_without_any_outside_request(stack: Stack, browser: Browser) -> None:
    requested: list[str] = []
    browser.page.on("request", lambda request: requested.append(request.url))
    browser.page.goto(f"{browser.base}/docs")
    browser.page.wait_for_selector(".swagger-ui .info .title", timeout=60_000)
    assert "Dynamo API" in browser.text(".swagger-ui .info .title")
    assert browser.page.locator(".opblock-tag-section").count() > 3
    assert requested and all(url.startswith(browser.base) for url in requested), requested
    browser.screenshot("api-docs")
    browser.assert_clean()
