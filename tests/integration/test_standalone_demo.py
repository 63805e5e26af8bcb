"""`dynamo up --demo` as a newcomer runs it: a subprocess, a web page, the agents at work.

The instance is started with the installed `dynamo` command in its own process group, on free
ports and a fresh data directory, and watched only from outside: its web address, its public
API (through the gateway) and the sites' directories. Ctrl-C is a real SIGINT.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from dynamo_common.service_plugin import installed

pytestmark = pytest.mark.integration

DYNAMO = Path(sys.executable).parent / "dynamo"
T = TypeVar("T")

# Generous: the services start, the demo seeds, and the agents act on a 2-core machine that
# other test runs share. The demo's own schedules make each of these happen within about a
# minute of the page answering.
PAGE_WITHIN = 180.0
AGENTS_WITHIN = 300.0
STOP_WITHIN = 240.0
SERVICES = 6


def free_port_block(count: int = SERVICES) -> int:
    """A port whose next ``count - 1`` neighbours are free too (the services follow it)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count >= 65535:
            continue
        taken = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                taken.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in taken:
                sock.close()
        return base
    raise AssertionError("no block of free ports")


def eventually(check: Callable[[], T | None], what: str, within: float) -> T:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, OSError, KeyError, ValueError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@dataclass
class Instance:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    data_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=30.0)
        response.raise_for_status()
        return response.json()

    def page(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"dynamo up exited early:\n{self.output()[-5000:]}")
        for path in ("/", "/docs"):
            try:
                if httpx.get(f"{self.url}{path}", timeout=10.0).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
        return False

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal sends it; the exit status."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=STOP_WITHIN)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"no clean stop after Ctrl-C:\n{self.output()[-5000:]}") from None


def start(data_dir: Path, log: Path, database_url: str | None) -> tuple[Instance, float]:
    """`dynamo up` on free ports; the instance and the seconds until its page answered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMO_")}
    if database_url:
        env["DYNAMO_DATABASE_URL"] = database_url
    port = free_port_block()
    began = time.monotonic()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(DYNAMO), "up", "--data-dir", str(data_dir), "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its own session: the SIGINT the test sends reaches it, never pytest.
            start_new_session=True,
        )
    instance = Instance(process, port, log, data_dir)
    eventually(instance.page, "the web page", PAGE_WITHIN)
    return instance, time.monotonic() - began


@pytest.fixture
def instances() -> Iterator[list[Instance]]:
    """Whatever a test started is stopped, also when it fails half-way."""
    started: list[Instance] = []
    yield started
    for instance in started:
        if instance.process.poll() is None:
            instance.process.kill()
            instance.process.wait()
    if started:
        # Shown by pytest when the test failed: what the instance said.
        print("---- dynamo up said (last 200 lines):")
        print("\n".join(started[-1].output().splitlines()[-200:]))


def seeded(instance: Instance) -> int | None:
    total = int(instance.get("/api/v1/datasets", limit=1)["total"])
    return total if total >= 300 else None


def remove_a_file_by_hand(instance: Instance) -> tuple[str, str, Path, int]:
    """A file at a site well below its quota, of a dataset with another complete disk copy:
    (site, lfn, path, size). Chosen through the API, removed from the site's directory."""
    sites = instance.get("/api/v1/sites", limit=100)["items"]
    disk = {s["name"] for s in sites if s["storage_type"] == "disk"}
    calm = [
        s["name"]
        for s in sites
        if s["name"] in disk
        and any(u["partition"] == "Physics" and (u["occupancy"] or 0) < 0.8 for u in s["usage"])
    ]
    for site in sorted(calm):
        for replica in instance.get(f"/api/v1/sites/{site}/replicas", limit=500)["items"]:
            if not replica["is_complete"]:
                continue
            detail = instance.get("/api/v1/dataset", name=replica["dataset"])
            others = [
                r
                for r in detail["replicas"]
                if r["site"] != site and r["site"] in disk and r["is_complete"]
            ]
            if not others or detail["status"] != "valid":
                continue
            block = detail["blocks"][0]["name"]
            files = instance.get("/api/v1/files", dataset=replica["dataset"], block=block)
            lfn, size = files["items"][0]["lfn"], files["items"][0]["size"]
            path = instance.data_dir / "sites" / site / lfn.lstrip("/")
            if path.is_file():
                path.unlink()
                return site, lfn, path, size
    raise AssertionError("no file to remove by hand")


def detox_deleted(instance: Instance) -> dict[str, Any] | None:
    cycles = instance.get("/api/v1/cycles", kind="real", status="done", limit=50)["items"]
    return next((c for c in cycles if c["replicas_deleted"] > 0), None)


def dealer_copied(instance: Instance) -> bool:
    """The demo's subscription is being carried out: the subscribed site holds a complete
    copy of a block of the dataset (which may keep growing)."""
    subscriptions = instance.get("/api/v1/dealer/subscriptions")["items"]
    if not subscriptions:
        return False
    item, site = subscriptions[0]["item"], subscriptions[0]["site"]
    detail = instance.get("/api/v1/dataset", name=item)
    return any(
        br["is_complete"]
        for r in detail["replicas"]
        if r["site"] == site
        for br in r["block_replicas"] or []
    )


@pytest.mark.timeout(1200)
def test_demo_copies_deletes_repairs_and_a_second_start_keeps_everything(
    tmp_path: Path, database_url: str, instances: list[Instance]
) -> None:
    data_dir = tmp_path / "dynamo"
    log = tmp_path / "up.log"
    first, to_page = start(data_dir, log, database_url)
    instances.append(first)
    print(f"time to web page (external PostgreSQL, fresh instance): {to_page:.1f} s")
    assert eventually(lambda: seeded(first), "the demo grid", AGENTS_WITHIN) == 300
    output = first.output()
    assert first.url in output
    token = (data_dir / "gateway-admin-token").read_text().strip()
    assert token and token in output

    site, lfn, path, size = remove_a_file_by_hand(first)

    deletion = eventually(lambda: detox_deleted(first), "a detox deletion", AGENTS_WITHIN)
    assert deletion["bytes_deleted"] > 0
    eventually(
        lambda: path.is_file() and path.stat().st_size == size,
        f"consistency to restore {lfn} at {site}",
        AGENTS_WITHIN,
    )

    def repair_recorded() -> bool:
        # The copy can be done before the check that asked for it has finished its record.
        runs = first.get(f"/api/v1/consistency/sites/{site}/runs", limit=100)["items"]
        return any(r["transfers_requested"] >= 1 and r["missing_confirmed"] >= 1 for r in runs)

    eventually(repair_recorded, f"the consistency record of the repair at {site}", 60)
    copies = first.get("/api/v1/transfers/history", kind="transfer", lfn=lfn, result="done")
    assert any(c["destination"] == site for c in copies["items"])
    if "dealer" in installed():
        eventually(lambda: dealer_copied(first), "a dealer copy", AGENTS_WITHIN)

    # The terminal said so, one line each.
    eventually(
        lambda: f"consistency repaired {lfn} at {site}" in first.output(),
        "the repair in the terminal",
        60,
    )
    assert "detox deleted" in first.output()
    if "dealer" in installed():
        assert "dealer copied" in first.output()

    datasets_before = first.get("/api/v1/datasets", limit=1000)["items"]
    cycles_before = first.get("/api/v1/cycles", kind="real", limit=1)["total"]
    assert first.interrupt() == 0
    output = first.output()
    assert "Traceback" not in output, output[-5000:]
    assert "\nstopped\n" in output

    second, to_page = start(data_dir, log, database_url)
    instances.append(second)
    print(f"time to web page (second start): {to_page:.1f} s")
    eventually(lambda: "demo data already there" in second.output(), "no reseed", 60)
    datasets_after = second.get("/api/v1/datasets", limit=1000)["items"]
    assert {d["name"] for d in datasets_after} == {d["name"] for d in datasets_before}
    assert second.get("/api/v1/cycles", kind="real", limit=1)["total"] >= cycles_before
    assert path.is_file() and path.stat().st_size == size
    assert second.interrupt() == 0
    assert "Traceback" not in second.output()


@pytest.mark.timeout(900)
def test_embedded_postgresql_instance_keeps_its_data_across_restarts(
    tmp_path: Path, instances: list[Instance]
) -> None:
    data_dir = tmp_path / "dynamo"
    log = tmp_path / "up.log"
    first, to_page = start(data_dir, log, database_url=None)
    instances.append(first)
    print(f"time to web page (embedded PostgreSQL, fresh instance): {to_page:.1f} s")
    assert (data_dir / "pg" / "PG_VERSION").is_file()
    assert eventually(lambda: seeded(first), "the demo grid", AGENTS_WITHIN) == 300
    names = {d["name"] for d in first.get("/api/v1/datasets", limit=1000)["items"]}
    assert first.interrupt() == 0
    assert "Traceback" not in first.output()
    assert not (data_dir / "pg" / "postmaster.pid").exists()

    second, _ = start(data_dir, log, database_url=None)
    instances.append(second)
    eventually(lambda: "demo data already there" in second.output(), "no reseed", 60)
    assert {d["name"] for d in second.get("/api/v1/datasets", limit=1000)["items"]} == names
    assert second.interrupt() == 0
    assert "Traceback" not in second.output()


@pytest.mark.timeout(900)
def test_a_start_interrupted_while_seeding_finishes_the_grid_on_the_next_start(
    tmp_path: Path, database_url: str, instances: list[Instance]
) -> None:
    data_dir = tmp_path / "dynamo"
    log = tmp_path / "up.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMO_")}
    env["DYNAMO_DATABASE_URL"] = database_url
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(DYNAMO), "up", "--data-dir", str(data_dir), "--port", str(free_port_block())],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    first = Instance(process, 0, log, data_dir)
    instances.append(first)
    # Ctrl-C as soon as the datasets are being registered: the seeding stops wherever it is.
    eventually(lambda: "seeding 300 datasets" in first.output(), "the seeding", PAGE_WITHIN)
    assert first.interrupt() == 0
    assert "Traceback" not in first.output()

    second, _ = start(data_dir, log, database_url)
    instances.append(second)
    assert eventually(lambda: seeded(second), "the demo grid", AGENTS_WITHIN) == 300
    sites = second.get("/api/v1/sites", limit=100)["items"]
    assert len(sites) == 12
    assert second.interrupt() == 0
    assert "Traceback" not in second.output()
