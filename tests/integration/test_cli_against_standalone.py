"""The `dynamo` client against `dynamo up`, the way an operator meets them the first time.

One `dynamo up` (demo grid, a throw-away PostgreSQL database) serves the whole module: it is
started as the installed command and read only from outside. The client is the installed
`dynamo` command too, one process per call, signed in the way docs/cli.md tells scripts to
(`DYNAMO_GATEWAY_URL`, `DYNAMO_TOKEN`) with the address and the admin token `dynamo up`
printed. What the client shows is compared with what the gateway's API answers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from dynamo_common.testing.postgres import temporary_database
from tests.integration.test_cli_support import AUTH, FAILED, NOT_FOUND, OK, USAGE, Ran
from tests.integration.test_standalone_demo import (
    AGENTS_WITHIN,
    DYNAMO,
    Instance,
    eventually,
    seeded,
    start,
)

pytestmark = pytest.mark.integration

COMMAND_WITHIN = 120.0
# The demo's dealer runs a cycle about every half minute and copies kilobytes: a request
# completes within a minute or two even on a loaded machine.
COPY_WITHIN = 300


@dataclass
class Operator:
    """An operator's shell: the printed address and admin token in the environment."""

    instance: Instance
    url: str
    token: str
    home: Path

    def run(self, *args: str, token: str | None = None) -> Ran:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMO_")}
        env.update(
            # Never the configuration of whoever runs the tests.
            DYNAMO_CONFIG=str(self.home / "config.toml"),
            DYNAMO_GATEWAY_URL=self.url,
            DYNAMO_TOKEN=token if token is not None else self.token,
            COLUMNS="250",
        )
        done = subprocess.run(
            [str(DYNAMO), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_WITHIN,
            check=False,
        )
        return Ran(done.returncode, done.stdout, done.stderr)

    def json(self, *args: str) -> Any:
        ran = self.run(*args, "--json")
        assert ran.exit_code == OK, ran.output
        return json.loads(ran.stdout)

    def api(self, path: str, **params: Any) -> Any:
        """The gateway's own answer, to compare the client's with."""
        response = httpx.get(
            f"{self.url}{path}",
            params=params,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30.0,
        )
        response.raise_for_status()
        return response.json()


def printed(output: str) -> tuple[str, str]:
    """The address and the admin token from `dynamo up`'s banner."""
    url = re.search(r"Dynamo is up in [\d.]+ s:\s+(http://\S+?)/?\s", output)
    token = re.search(r"^\s+admin token\s+(\S+)$", output, re.MULTILINE)
    assert url and token, output[-3000:]
    return url.group(1), token.group(1)


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[Operator]:
    root = tmp_path_factory.mktemp("cli-standalone")
    home = root / "home"
    home.mkdir()
    log = root / "up.log"
    with temporary_database(postgres_url) as database_url:
        instance, _ = start(root / "dynamo", log, database_url)
        try:
            url, token = printed(instance.output())
            assert eventually(lambda: seeded(instance), "the demo grid", AGENTS_WITHIN) >= 300
            yield Operator(instance, url, token, home)
            assert instance.interrupt() == 0
            assert "Traceback" not in instance.output()
            assert "did not stop in time" not in instance.output()
        finally:
            if instance.process.poll() is None:
                instance.process.kill()
                instance.process.wait()
            print("---- dynamo up said (last 100 lines):")
            print("\n".join(instance.output().splitlines()[-100:]))


def one_line_error(ran: Ran, *expected: str) -> None:
    """A refusal as docs/cli.md promises it: nothing on stdout, `error: ...` on stderr,
    no traceback."""
    assert ran.stdout == "", ran.output
    assert ran.stderr.startswith("error: "), ran.stderr
    assert "Traceback" not in ran.stderr
    for text in expected:
        assert text in ran.stderr


def a_valid_dataset(operator: Operator) -> dict[str, Any]:
    """A dataset of the demo that is not in production, with a complete replica (found
    through the API: every `dynamo` process costs seconds of start-up)."""
    for item in operator.api("/api/v1/datasets", status="valid", limit=50)["items"]:
        detail = operator.api("/api/v1/dataset", name=item["name"])
        if any(r["is_complete"] for r in detail["replicas"]):
            return dict(detail)
    raise AssertionError("no valid dataset with a complete replica in the demo")


# ---------------------------------------------------------------------------------- signing in


def test_login_with_the_printed_address_and_token_then_whoami_says_admin(
    operator: Operator, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMO_")}
    env.update(DYNAMO_CONFIG=str(tmp_path / "config.toml"))
    token_file = operator.instance.data_dir / "gateway-admin-token"
    assert token_file.read_text().strip() == operator.token

    def dynamo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(DYNAMO), *args], env=env, capture_output=True, text=True, timeout=120
        )

    login = dynamo("login", operator.url, "--token-file", str(token_file))
    assert login.returncode == OK, login.stderr
    whoami = dynamo("whoami", "--json")
    assert whoami.returncode == OK, whoami.stderr
    me = json.loads(whoami.stdout)
    assert me["role"] == "admin"
    assert operator.token not in whoami.stdout + whoami.stderr


def test_a_wrong_token_is_refused_with_exit_3(operator: Operator) -> None:
    ran = operator.run("sites", token="dyn_not-a-token")
    assert ran.exit_code == AUTH, ran.output
    one_line_error(ran)


# ---------------------------------------------------------------------------------- inventory


def test_sites_lists_the_twelve_demo_sites_as_the_api_does(operator: Operator) -> None:
    listed = operator.json("sites")
    # Names only: the agents change the volumes between any two reads.
    names = {s["name"] for s in listed["items"]}
    assert names == {s["name"] for s in operator.api("/api/v1/sites", limit=100)["items"]}
    assert len(names) == 12 == listed["total"]
    assert "T0_CH_CERN_MSS" in names
    table = operator.run("sites")
    assert table.exit_code == OK, table.output
    for name in names:
        assert name in table.stdout


def test_site_shows_one_site_with_its_partitions(operator: Operator) -> None:
    ran = operator.run("site", "T2_DE_DESY")
    assert ran.exit_code == OK, ran.output
    assert ran.stdout.startswith("T2_DE_DESY\n")
    assert "disk storage" in ran.stdout
    shown = operator.json("site", "T2_DE_DESY")
    assert shown["name"] == "T2_DE_DESY"
    for usage in shown["usage"]:
        assert usage["partition"] in ran.stdout


def test_datasets_pages_through_the_demo_datasets(operator: Operator) -> None:
    first = operator.json("datasets", "--limit", "5")
    assert first["total"] >= 300
    assert len(first["items"]) == 5
    second = operator.json("datasets", "--limit", "5", "--offset", "5")
    assert not {d["name"] for d in first["items"]} & {d["name"] for d in second["items"]}
    table = operator.run("datasets", "--limit", "5")
    assert table.exit_code == OK, table.output
    assert f"1-5 of {first['total']}" in table.stdout


def test_dataset_shows_every_replica_and_block(operator: Operator) -> None:
    name = a_valid_dataset(operator)["name"]

    def shown_alike() -> tuple[dict[str, Any], Ran] | None:
        # The dealer and detox may add or remove a replica between two reads: the three
        # answers are compared when nothing moved in between.
        shown = operator.json("dataset", name)
        table = operator.run("dataset", name)
        assert table.exit_code == OK, table.output
        api = operator.api("/api/v1/dataset", name=name)
        sites = {r["site"] for r in shown["replicas"]}
        if sites != {r["site"] for r in api["replicas"]}:
            return None
        if not all(site in table.stdout for site in sites):
            return None
        return shown, table

    shown, table = eventually(shown_alike, f"one view of {name}", COMMAND_WITHIN)
    assert shown["name"] == name
    assert shown["replicas"]
    assert table.stdout.startswith(f"{name}\n")
    for block in shown["blocks"]:
        assert block["name"] in table.stdout


# ---------------------------------------------------------------------------------- requests


def room_for(operator: Operator, dataset: dict[str, Any]) -> str:
    """A disk site without a replica of ``dataset``, the emptiest (the dealer places it)."""
    held = {r["site"] for r in dataset["replicas"]}
    candidates: list[tuple[float, str]] = []
    for site in operator.api("/api/v1/sites", limit=100)["items"]:
        if site["storage_type"] != "disk" or site["name"] in held:
            continue
        physics = [u for u in site["usage"] if u["partition"] == "Physics"]
        occupancy = physics[0]["occupancy"] if physics and physics[0]["occupancy"] else 1.0
        candidates.append((occupancy, site["name"]))
    assert candidates, "every disk site holds the dataset"
    return min(candidates)[1]


def test_a_copy_request_is_listed_and_carried_out(operator: Operator) -> None:
    dataset = a_valid_dataset(operator)
    site = room_for(operator, dataset)
    group = dataset["replicas"][0]["group"] or "AnalysisOps"
    asked = operator.run(
        "request", "copy", dataset["name"], "--group", group, "--site", site,
        "--comment", "cli smoke test",
    )  # fmt: skip
    assert asked.exit_code == OK, asked.output
    number = re.match(r"request (\d+): ", asked.stdout)
    assert number, asked.stdout
    request_id = int(number.group(1))

    listed = operator.json("request", "list")
    mine = [r for r in listed["items"] if r["id"] == request_id]
    assert len(mine) == 1, listed
    assert mine[0]["items"] == [dataset["name"]]
    assert mine[0]["sites"] == [site]
    assert mine[0]["comment"] == "cli smoke test"
    table = operator.run("request", "list")
    assert table.exit_code == OK, table.output
    ids = [row.split("│")[1].strip() for row in table.stdout.splitlines() if row.startswith("│")]
    assert str(request_id) in ids

    def completed() -> bool:
        state = operator.api(f"/api/v1/dealer/requests/{request_id}")["state"]
        assert state not in ("rejected", "cancelled"), state
        return bool(state == "completed")

    eventually(completed, f"request {request_id} to complete", COPY_WITHIN)
    shown = operator.run("request", "show", str(request_id))
    assert shown.exit_code == OK, shown.output
    assert shown.stdout.startswith(f"request {request_id}: completed")
    assert site in shown.stdout
    after = operator.json("dataset", dataset["name"])
    assert any(r["site"] == site and r["is_complete"] for r in after["replicas"]), after


def test_a_copy_without_a_destination_is_refused_and_records_nothing(operator: Operator) -> None:
    dataset = a_valid_dataset(operator)
    before = operator.api("/api/v1/dealer/requests", limit=1000)
    ran = operator.run("request", "copy", dataset["name"], "--group", "AnalysisOps")
    assert ran.exit_code == USAGE, ran.output
    one_line_error(ran, "--site")
    assert operator.api("/api/v1/dealer/requests", limit=1000) == before


def test_a_copy_of_an_unknown_dataset_is_rejected_with_its_reason(operator: Operator) -> None:
    ran = operator.run(
        "request", "copy", "/NoSuch/Dataset-v1/AOD", "--group", "AnalysisOps",
        "--site", "T2_CH_CERN",
    )  # fmt: skip
    assert ran.exit_code == FAILED, ran.output
    assert "unknown items: /NoSuch/Dataset-v1/AOD" in ran.stderr
    number = re.match(r"request (\d+): rejected", ran.stdout)
    assert number, ran.stdout
    shown = operator.api(f"/api/v1/dealer/requests/{number.group(1)}")
    assert shown["state"] == "rejected"


# ---------------------------------------------------------------------------------- detox


def test_detox_shows_its_last_cycle_site_by_site(operator: Operator) -> None:
    eventually(
        lambda: operator.api("/api/v1/cycles", kind="real", status="done", limit=1)["total"],
        "a finished detox cycle",
        AGENTS_WITHIN,
    )
    cycles = operator.json("detox", "cycles", "--kind", "real", "--status", "done", "--limit", "1")
    last = cycles["items"][0]
    shown = operator.json("detox", "cycle", str(last["id"]))
    assert shown["cycle"]["id"] == last["id"]
    sites = {s["site"] for s in shown["sites"]["items"]}
    assert "T2_DE_DESY" in sites
    table = operator.run("detox", "cycle", str(last["id"]))
    assert table.exit_code == OK, table.output
    assert table.stdout.startswith(f"real cycle {last['id']} of Physics: {last['status']}")
    for site in sites:
        assert site in table.stdout


def test_a_lock_is_listed_until_it_is_removed(operator: Operator) -> None:
    dataset = a_valid_dataset(operator)["name"]
    added = operator.run("locks", "add", dataset, "--until", "7d", "--comment", "cli smoke test")
    assert added.exit_code == OK, added.output
    number = re.match(r"lock (\d+): ", added.stdout)
    assert number, added.stdout
    lock_id = int(number.group(1))
    held = {
        lock["id"]: lock for lock in operator.json("locks", "list", "--dataset", dataset)["items"]
    }
    assert held[lock_id]["comment"] == "cli smoke test"
    assert held[lock_id]["active"] is True

    removed = operator.run("locks", "remove", str(lock_id))
    assert removed.exit_code == OK, removed.output
    assert removed.stdout.startswith(f"released lock {lock_id}: ")
    active = operator.json("locks", "list", "--dataset", dataset)["items"]
    assert lock_id not in {lock["id"] for lock in active}
    released = operator.json("locks", "list", "--dataset", dataset, "--released")["items"]
    assert {lock["id"]: lock["active"] for lock in released}[lock_id] is False


def test_a_lock_with_a_bad_time_is_refused_and_adds_nothing(operator: Operator) -> None:
    before = operator.api("/api/v1/locks", active=False, limit=1000)
    dataset = a_valid_dataset(operator)["name"]
    for until, why in (
        ("yesterday", "'yesterday' is neither a time"),
        ("2020-01-01T00:00Z", "must be in the future"),
    ):
        ran = operator.run("locks", "add", dataset, "--until", until)
        assert ran.exit_code == USAGE, ran.output
        one_line_error(ran, why)
    assert operator.api("/api/v1/locks", active=False, limit=1000) == before


# ---------------------------------------------------------------------------------- consistency


def test_consistency_summary_and_one_sites_checks(operator: Operator) -> None:
    def every_site_checked() -> bool:
        sites = operator.api("/api/v1/consistency/sites", limit=100)["items"]
        return len(sites) == 12 and all(s.get("run_id") for s in sites)

    eventually(every_site_checked, "a check of every site", AGENTS_WITHIN)
    summary = operator.json("consistency", "summary")
    assert len(summary["items"]) == 12
    table = operator.run("consistency", "summary")
    assert table.exit_code == OK, table.output
    for site in summary["items"]:
        assert site["site"] in table.stdout

    shown = operator.json("consistency", "site", "T2_IT_Pisa", "--runs", "2")
    assert shown["site"]["site"] == "T2_IT_Pisa"
    assert 1 <= len(shown["runs"]["items"]) <= 2
    assert all(run["site"] == "T2_IT_Pisa" for run in shown["runs"]["items"])
    table = operator.run("consistency", "site", "T2_IT_Pisa", "--runs", "2")
    assert table.exit_code == OK, table.output
    assert table.stdout.startswith("T2_IT_Pisa: ")


# ---------------------------------------------------------------------------------- scripts


@pytest.mark.parametrize(
    "args",
    [
        # The others are read with --json by the tests above.
        ("replicas", "T2_CH_CERN", "--limit", "3"),
        ("stats", "--group-by", "site"),
        ("detox", "policies"),
        ("dealer", "cycles", "--limit", "3"),
        ("subscriptions", "list"),
        ("transfers", "summary"),
    ],
    ids=" ".join,
)
def test_json_output_is_one_json_document(operator: Operator, args: tuple[str, ...]) -> None:
    ran = operator.run(*args, "--json")
    assert ran.exit_code == OK, ran.output
    assert ran.stderr == ""
    document = json.loads(ran.stdout)
    assert isinstance(document, dict | list)


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("site", "T9_NO_SUCH_SITE"), NOT_FOUND, "unknown site 'T9_NO_SUCH_SITE'"),
        (("dataset", "/No/Such/AOD"), NOT_FOUND, "not found"),
        (("detox", "cycle", "999999"), NOT_FOUND, "not found"),
        (("consistency", "site", "T9_NO_SUCH_SITE"), NOT_FOUND, "T9_NO_SUCH_SITE"),
        (("request", "list", "--state", "bogus"), USAGE, "state"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else str(value),
)
def test_a_bad_argument_exits_non_zero_with_one_clear_line(
    operator: Operator, args: tuple[str, ...], code: int, says: str
) -> None:
    ran = operator.run(*args)
    assert ran.exit_code == code, ran.output
    one_line_error(ran, says)


def test_a_usage_error_exits_1_not_2(operator: Operator) -> None:
    ran = operator.run("datasets", "--limit", "0")
    assert ran.exit_code == USAGE, ran.output
    assert "--limit" in ran.stderr
    assert "Traceback" not in ran.stderr
