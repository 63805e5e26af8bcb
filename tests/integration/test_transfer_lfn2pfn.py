"""``GET /api/v1/transfers/lfn2pfn``: the PFN of an LFN at a site, from the service's copy of
the inventory and the site's rules, with a problem document for every way it can fail."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.test_transfer_support import RunningTransfer, run_transfer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PATH = "/api/v1/transfers/lfn2pfn"
PROBLEM = "application/problem+json"


def _rules(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"match": match, "result": result} for match, result in pairs]


SITES: list[dict[str, Any]] = [
    {
        "name": "T2_CH_MANY",
        "protocols": [
            # Site order differs from the service's preference (root, davs, file) on purpose.
            {"name": "gsiftp", "rules": _rules(("/store/(.*)", "gsiftp://gridftp.ch/store/$1"))},
            {
                "name": "root",
                "rules": _rules(
                    ("/store/data/(.*)", "root://xrootd.ch//data/$1"),
                    ("/store/mc/(.*)", "root://xrootd.ch//mc/$1"),
                ),
            },
            {"name": "davs", "rules": _rules(("/store/(.*)", "davs://webdav.ch:443/store/$1"))},
        ],
    },
    {
        "name": "T3_US_GRIDFTP_ONLY",
        "protocols": [
            {"name": "gsiftp", "rules": _rules(("/store/(.*)", "gsiftp://old.us/store/$1"))}
        ],
    },
    {"name": "T3_IT_NOTHING", "protocols": []},
]


@pytest.fixture
async def transfer(inventory: Any, database_url: str) -> Any:
    await inventory.ok("POST", "/api/v1/sites", {"sites": SITES})
    async with run_transfer(inventory, database_url) as running:
        yield running


async def _get(transfer: RunningTransfer, **params: str) -> httpx.Response:
    return await transfer.client.get(PATH, params=params)


async def _problem(transfer: RunningTransfer, status: int, **params: str) -> dict[str, Any]:
    response = await _get(transfer, **params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def test_without_a_protocol_the_service_preference_decides(
    transfer: RunningTransfer,
) -> None:
    lfn = "/store/data/Run2024A/AOD/f.root"
    response = await _get(transfer, site="T2_CH_MANY", lfn=lfn)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "site": "T2_CH_MANY",
        "lfn": lfn,
        "protocol": None,
        "pfns": [
            {"protocol": "root", "pfn": "root://xrootd.ch//data/Run2024A/AOD/f.root", "error": None}
        ],
    }
    # root has no rule for /store/user: the next preferred protocol that maps it answers, and
    # gsiftp (first at the site, but not preferred) never does.
    body = (await _get(transfer, site="T2_CH_MANY", lfn="/store/user/alice/x.root")).json()
    assert body["pfns"] == [
        {"protocol": "davs", "pfn": "davs://webdav.ch:443/store/user/alice/x.root", "error": None}
    ]


async def test_a_named_protocol_and_all_protocols(transfer: RunningTransfer) -> None:
    lfn = "/store/mc/Sim/GEN/g.root"
    body = (await _get(transfer, site="T2_CH_MANY", lfn=lfn, protocol="gsiftp")).json()
    assert body["protocol"] == "gsiftp"
    assert body["pfns"] == [
        {"protocol": "gsiftp", "pfn": "gsiftp://gridftp.ch/store/mc/Sim/GEN/g.root", "error": None}
    ]

    body = (await _get(transfer, site="T2_CH_MANY", lfn=lfn, protocol="all")).json()
    assert body["protocol"] == "all"
    assert body["pfns"] == [
        {"protocol": "gsiftp", "pfn": "gsiftp://gridftp.ch/store/mc/Sim/GEN/g.root", "error": None},
        {"protocol": "root", "pfn": "root://xrootd.ch//mc/Sim/GEN/g.root", "error": None},
        {"protocol": "davs", "pfn": "davs://webdav.ch:443/store/mc/Sim/GEN/g.root", "error": None},
    ]
    # With "all", a protocol whose rules miss the LFN is listed with the reason.
    body = (
        await _get(transfer, site="T2_CH_MANY", lfn="/store/user/u.root", protocol="all")
    ).json()
    by_protocol = {p["protocol"]: p for p in body["pfns"]}
    assert list(by_protocol) == ["gsiftp", "root", "davs"]
    assert by_protocol["root"]["pfn"] is None and "no 'root' rule" in by_protocol["root"]["error"]
    assert by_protocol["davs"]["pfn"] == "davs://webdav.ch:443/store/user/u.root"


async def test_unknown_site_protocol_or_mapping_are_404_problems(
    transfer: RunningTransfer,
) -> None:
    lfn = "/store/data/a.root"
    body = await _problem(transfer, 404, site="T0_NO_SUCH_SITE", lfn=lfn)
    assert body["type"] == "urn:dynamo:problem:unknown-site"
    assert body["site"] == "T0_NO_SUCH_SITE" and "unknown site" in body["detail"]

    body = await _problem(transfer, 404, site="T2_CH_MANY", lfn=lfn, protocol="srm")
    assert body["type"] == "urn:dynamo:problem:no-protocol"
    assert "'srm'" in body["detail"] and "gsiftp, root, davs" in body["detail"]

    # None of the preferred protocols at this site: no default answer, but asking works.
    body = await _problem(transfer, 404, site="T3_US_GRIDFTP_ONLY", lfn=lfn)
    assert body["type"] == "urn:dynamo:problem:no-protocol"
    assert body["protocols"] == ["gsiftp"]
    ok = await _get(transfer, site="T3_US_GRIDFTP_ONLY", lfn=lfn, protocol="gsiftp")
    assert ok.json()["pfns"][0]["pfn"] == "gsiftp://old.us/store/data/a.root"

    body = await _problem(transfer, 404, site="T3_IT_NOTHING", lfn=lfn, protocol="all")
    assert body["type"] == "urn:dynamo:problem:no-protocol"
    assert body["protocols"] == []

    body = await _problem(
        transfer, 404, site="T2_CH_MANY", lfn="/store/user/u.root", protocol="root"
    )
    assert body["type"] == "urn:dynamo:problem:no-mapping"
    assert body["protocols"] == ["root"]

    for protocol in (None, "all"):
        params = {"site": "T2_CH_MANY", "lfn": "/elsewhere/x.root"}
        if protocol:
            params["protocol"] = protocol
        body = await _problem(transfer, 404, **params)
        assert body["type"] == "urn:dynamo:problem:no-mapping", body
        assert body["lfn"] == "/elsewhere/x.root"


@pytest.mark.parametrize(
    ("lfn", "why"),
    [
        ("/store/../etc/passwd", "'..'"),
        ("/store/data/./a.root", "'.'"),
        ("store/data/a.root", "absolute"),
        ("/store//data/a.root", "normalised"),
        ("/store/data/", "normalised"),
        ("/store/data/a b.root", "whitespace"),
    ],
)
async def test_an_lfn_that_is_not_a_normalised_absolute_path_is_422(
    transfer: RunningTransfer, lfn: str, why: str
) -> None:
    # Checked before the site: even an unknown site gets the 422 for the malformed LFN.
    for site in ("T2_CH_MANY", "T0_NO_SUCH_SITE"):
        body = await _problem(transfer, 422, site=site, lfn=lfn)
        assert body["type"] == "urn:dynamo:problem:invalid-lfn"
        assert body["lfn"] == lfn and why in body["detail"], body["detail"]


async def test_missing_parameters_are_422(transfer: RunningTransfer) -> None:
    body = await _problem(transfer, 422, site="T2_CH_MANY")
    assert any(e.get("parameter") == "lfn" for e in body["errors"]), body


async def test_a_site_registered_just_before_is_found(
    inventory: Any, transfer: RunningTransfer
) -> None:
    new = {
        "name": "T2_DE_NEW",
        "protocols": [{"name": "root", "rules": _rules(("/(.*)", "root://new.de//$1"))}],
    }
    await inventory.ok("POST", "/api/v1/sites", {"sites": [new]})
    response = await _get(transfer, site="T2_DE_NEW", lfn="/store/a.root")
    assert response.status_code == 200, response.text
    assert response.json()["pfns"][0]["pfn"] == "root://new.de//store/a.root"
