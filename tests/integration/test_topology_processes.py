"""The distributed topology of docker-compose.yml, as separate OS processes on this machine.

Every installed service (the dealer too, once its plugin is installed) runs as
`dynamo serve <service>` in its own process against the real PostgreSQL and RabbitMQ,
configured only through DYNAMO_* variables (each checked against the service's settings
class, as tests/deploy checks the compose file), on a loopback port; the gateway runs in front
of them and nginx, with the very site configuration docker-compose mounts and certificates
from deploy/compose/make-test-pki.sh, in front of the gateway. The scenario then talks to
nginx only, over HTTPS, as an admin with a token and an operator with a grid certificate would:

1. sites (two real XRootD servers, as compose's two XRootD sites, and a file:// directory), a
   group, a partition, datasets with real files, registered through the gateway;
2. a block replica copied from one XRootD site to the other by the transfer service through
   the FTS3 stand-in (its own process, started as compose's fts3 container is); the transfer
   process is killed with SIGKILL as soon as it has taken the request, and started again:
   the copy completes, every file arrives with its bytes, nothing is lost or done twice;
3. a detox cycle, asked for by the operator signed in with a certificate, on an over-full
   site deletes a replica: its files leave the disk and the inventory forgets it;
4. a file removed by hand is found missing by a consistency check, and after the second
   check (two strikes) copied back from the other complete replica;
5. every metric the Grafana dashboard plots is on the services' /metrics.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.deploy.support import (
    DASHBOARD,
    compose_nginx_site,
    dashboard_metrics,
    make_test_pki,
    nginx_main_conf,
    plugins,
    unknown_variables,
)
from tests.integration.test_transfer_support import Grid, adler32, content
from tests.topology.processes import Fts3Standin, Nginx, Topology, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

T = TypeVar("T")
WAIT = 90.0
ADMIN_TOKEN = "topology-admin-token-0123456789abcdef"
# The subject of the user certificate deploy/compose/make-test-pki.sh makes.
USER_DN = "/DC=org/DC=example/OU=People/CN=Dynamo Dev"
SOURCE, DEST, FULL = "T1_TOPO_SOURCE", "T2_TOPO_DEST", "T2_TOPO_FULL"
COPIED = "/TopoCopy/Run2024A-v1/AOD"
DETOX_DATASETS = ["/TopoDetox00/Run2024A-v1/AOD", "/TopoDetox01/Run2024A-v1/AOD"]
FILES = 6
FILE_SIZE = 200_000
POLICY = f"""\
Partition Physics
On site.name == {FULL}
When site.occupancy > 0.9
Until site.occupancy < 0.6
Dismiss
Order increasing dataset.name
"""

# Per service: its own settings, the ones that make it act quickly enough for a test.
SERVICE_ENV: dict[str, dict[str, str]] = {
    "inventory": {"DYNAMO_RELAY_POLL_INTERVAL": "0.2", "DYNAMO_CATCH_UP_INTERVAL": "0.2"},
    "transfer": {
        "DYNAMO_BACKEND": "fts3",
        "DYNAMO_POLL_INTERVAL": "0.2",
        "DYNAMO_PROGRESS_INTERVAL": "0.3",
        "DYNAMO_RELAY_POLL_INTERVAL": "0.2",
        "DYNAMO_RETRY_BASE_SECONDS": "0.5",
        "DYNAMO_RETRY_MAX_SECONDS": "2",
    },
    "detox": {
        "DYNAMO_CYCLE_INTERVAL": "0",
        "DYNAMO_COMMAND_RETRY_INTERVAL": "1",
    },
    "consistency": {
        "DYNAMO_SCHEDULED_CHECKS": "false",
        "DYNAMO_GRACE_PERIOD": "0",
        "DYNAMO_SCHEDULE_INTERVAL": "0.5",
        "DYNAMO_RELAY_POLL_INTERVAL": "0.2",
    },
    # On demand only: its own decisions must not move data under the scenario.
    "dealer": {"DYNAMO_CYCLE_INTERVAL": "0"},
}


def _lfn(dataset: str, index: int) -> str:
    primary = dataset.split("/")[1]
    return f"/store/data/{primary}/AOD/b1/f{index:02d}.root"


async def eventually(check: Callable[[], Awaitable[T]], what: str, within: float = WAIT) -> T:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {within:.0f} s waiting for {what} (last: {last!r})")


@dataclass
class Storage:
    """Where each site keeps its files: XRootD servers for some, a directory for the rest."""

    xrootd: dict[str, Any]
    grid: Grid

    def site(self, name: str, **over: Any) -> dict[str, Any]:
        server = self.xrootd.get(name)
        if server is None:
            return self.grid.site(name, **over)
        rule = {"match": "/store/(.*)", "result": f"{server.url}/store/$1"}
        body = {
            "name": name,
            "storage_type": "disk",
            "status": "ready",
            "protocols": [{"name": "root", "rules": [rule]}],
        }
        return {**body, **over}

    def write(self, site: str, lfn: str, data: bytes) -> None:
        server = self.xrootd.get(site)
        if server is None:
            self.grid.write(site, lfn, data)
        else:
            server.write(lfn, data)

    def path(self, site: str, lfn: str) -> Path:
        server = self.xrootd.get(site)
        return self.grid.path(site, lfn) if server is None else Path(server.path(lfn))


class Gateway:
    """The only door the scenario uses."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.client.get(path, params=params)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    async def post(self, path: str, body: Any, status: int = 200) -> Any:
        response = await self.client.post(path, json=body)
        assert response.status_code == status, (
            f"POST {path}: {response.status_code} {response.text}"
        )
        return response.json()

    async def write(self, path: str, body: Any) -> None:
        """An inventory write: the gateway forwards it, the inventory commits and replies."""
        reply = await self.post(path, body)
        assert reply["status"] == "accepted", reply

    async def block_replica(self, dataset: str, site: str) -> dict[str, Any] | None:
        data = await self.get("/api/v1/dataset", name=dataset)
        for replica in data["replicas"]:
            if replica["site"] == site:
                for block_replica in replica["block_replicas"] or []:
                    return dict(block_replica)
        return None

    async def datasets_at(self, site: str) -> set[str]:
        data = await self.get(f"/api/v1/sites/{site}/replicas", limit=1000)
        return {item["dataset"] for item in data["items"]}


@dataclass
class Stack:
    topology: Topology
    url: str
    """nginx's https:// address: the front door"""
    pki: Path
    fts3_url: str

    def tls(self, certificate: str | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.pem"))
        if certificate:
            context.load_cert_chain(
                str(self.pki / f"{certificate}.pem"), str(self.pki / f"{certificate}.key")
            )
        return context


@pytest.fixture
async def stack(
    database_url: str, amqp_url: str, bus_namespace: str, tmp_path: Path
) -> AsyncIterator[Stack]:
    from dynamo_common.testing.rabbitmq import delete_namespace

    policy = tmp_path / "Physics.txt"
    policy.write_text(POLICY)
    common = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMO_")}
    common.update(
        DYNAMO_DATABASE_URL=database_url,
        DYNAMO_AMQP_URL=amqp_url,
        DYNAMO_BUS_NAMESPACE=bus_namespace,
        DYNAMO_LOG_FORMAT="console",
        DYNAMO_LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    topology = Topology(common_env=common, workdir=tmp_path)
    nginx: Nginx | None = None
    fts3 = Fts3Standin(tmp_path, common)
    installed = list(plugins())
    assert {"inventory", "transfer", "detox", "consistency", "gateway"} <= set(installed)
    for service in installed:
        env = dict(SERVICE_ENV.get(service, {}))
        if service == "detox":
            env["DYNAMO_POLICY_FILES"] = json.dumps([str(policy)])
        topology.add(service, env)
    inventory_url = topology.processes["inventory"].url
    for process in topology.processes.values():
        process.env["DYNAMO_INVENTORY_URL"] = inventory_url
    if "dealer" in topology.processes:
        topology.processes["dealer"].env["DYNAMO_DETOX_URL"] = topology.processes["detox"].url
    try:
        # A port chosen free can be taken before the server binds it: then another one.
        for attempt in range(3):
            fts3.start()
            try:
                await fts3.wait_ready()
                break
            except AssertionError:
                if attempt == 2 or "address already in use" not in fts3.tail().lower():
                    raise
                fts3.port = free_port()
        topology.processes["transfer"].env["DYNAMO_FTS3_URL"] = fts3.url
        await topology.start(["inventory"])
        agents = [s for s in installed if s not in ("inventory", "gateway")]
        await topology.start(agents)
        gateway = topology.processes["gateway"]
        gateway.env.update(
            DYNAMO_ADMIN_TOKEN=ADMIN_TOKEN,
            DYNAMO_PUBLIC_READS="true",
            # nginx connects from the loopback address: its DN headers are believed.
            DYNAMO_TRUSTED_PROXIES='["127.0.0.1/32"]',
        )
        for service in agents:
            gateway.env[f"DYNAMO_{service.upper()}_URL"] = topology.processes[service].url
        for service, process in topology.processes.items():
            assert unknown_variables(process.env, service) == [], service
        await topology.start(["gateway"])
        pki = make_test_pki(tmp_path / "pki")
        work = tmp_path / "nginx"
        work.mkdir()
        site = work / "dynamo.conf"
        (work / "nginx.conf").write_text(nginx_main_conf(site, work))
        for attempt in range(3):
            port = free_port()
            site.write_text(
                compose_nginx_site(pki, f"127.0.0.1:{gateway.port}", listen=f"127.0.0.1:{port}")
            )
            nginx = Nginx(work / "nginx.conf", port)
            nginx.start()
            try:
                await nginx.wait_listening()
                break
            except AssertionError:
                log = (work / "error.log").read_text(errors="replace")
                if attempt == 2 or "address already in use" not in log.lower():
                    raise
        yield Stack(topology, f"https://127.0.0.1:{port}", pki, fts3.url)
    except BaseException:
        print(topology.report())
        print(f"----- fts3\n{fts3.tail()}")
        raise
    finally:
        if nginx is not None:
            nginx.stop()
        topology.stop_all()
        fts3.stop()
        await delete_namespace(amqp_url, bus_namespace)


async def _seed(gw: Gateway, storage: Storage) -> dict[str, list[tuple[str, bytes]]]:
    detox_bytes = len(DETOX_DATASETS) * 2 * FILE_SIZE
    await gw.write(
        "/api/v1/sites",
        {
            "sites": [
                storage.site(SOURCE),
                storage.site(DEST),
                # 95% full with the detox datasets.
                storage.site(FULL, quotas={"Physics": int(detox_bytes / 0.95)}),
            ]
        },
    )
    await gw.write("/api/v1/groups", {"groups": [{"name": "AnalysisOps"}]})
    await gw.write(
        "/api/v1/partitions",
        {
            "partitions": [
                {
                    "name": "Physics",
                    "condition": "blockreplica.owner == AnalysisOps and site.storage_type == DISK",
                }
            ]
        },
    )
    layout = {COPIED: (FILES, [SOURCE]), **{d: (2, [FULL]) for d in DETOX_DATASETS}}
    await gw.write("/api/v1/datasets", {"datasets": [{"name": d} for d in layout]})
    await gw.write("/api/v1/blocks", {"blocks": [{"dataset": d, "name": "b1"} for d in layout]})
    files: dict[str, list[tuple[str, bytes]]] = {}
    specs = []
    for dataset, (count, holders) in layout.items():
        files[dataset] = []
        for index in range(count):
            name, data = _lfn(dataset, index), content(dataset, index, FILE_SIZE)
            files[dataset].append((name, data))
            specs.append(
                {
                    "dataset": dataset,
                    "block": "b1",
                    "lfn": name,
                    "size": len(data),
                    "adler32": adler32(data),
                }
            )
            for site in holders:
                storage.write(site, name, data)
    await gw.write("/api/v1/files", {"files": specs})
    await gw.write(
        "/api/v1/blocks",
        {"blocks": [{"dataset": d, "name": "b1", "is_open": False} for d in layout]},
    )
    await gw.write(
        "/api/v1/replicas",
        {
            "block_replicas": [
                {"dataset": d, "block": "b1", "site": site, "group": "AnalysisOps"}
                for d, (_, holders) in layout.items()
                for site in holders
            ]
        },
    )
    return files


async def test_the_distributed_topology_runs_a_scenario_through_nginx_and_the_gateway(
    stack: Stack, xrootd_pair: tuple[Any, Any], tmp_path: Path
) -> None:
    topology = stack.topology
    storage = Storage(
        xrootd={SOURCE: xrootd_pair[0], DEST: xrootd_pair[1]}, grid=Grid(tmp_path / "sites")
    )
    async with (
        httpx.AsyncClient(
            base_url=stack.url,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            verify=stack.tls(),
            timeout=60.0,
        ) as client,
        httpx.AsyncClient(base_url=stack.url, verify=stack.tls("user"), timeout=60.0) as grid_user,
    ):
        gw = Gateway(client)
        me = await gw.get("/api/v1/auth/whoami")
        assert me["role"] == "admin", me
        await gw.post(
            "/api/v1/auth/accounts",
            {"name": "dev", "role": "operator", "dns": [USER_DN]},
            status=201,
        )
        operator = Gateway(grid_user)
        me = await operator.get("/api/v1/auth/whoami")
        assert (me["name"], me["role"], me["method"]) == ("dev", "operator", "x509"), me
        files = await _seed(gw, storage)

        # ---- 2. a copy, with the transfer process killed as soon as it has the request
        reply = await gw.post(
            "/api/v1/transfers/requests",
            {
                "requests": [
                    {"dataset": COPIED, "block": "b1", "site": DEST, "group": "AnalysisOps"}
                ]
            },
        )
        assert reply["status"] == "accepted" and reply["tasks"] >= 1, reply
        transfer = topology.processes["transfer"]
        transfer.kill9()
        # Meanwhile the gateway says so, quickly, instead of hanging.
        down = await client.get("/api/v1/transfers/summary")
        assert down.status_code == 503, down.text
        await topology.restart("transfer")

        async def copied() -> bool:
            replica = await gw.block_replica(COPIED, DEST)
            return bool(replica and replica["is_complete"])

        await eventually(copied, f"the block replica complete at {DEST}")
        for name, data in files[COPIED]:
            assert storage.path(DEST, name).read_bytes() == data, name
        assert transfer.starts == 2 and transfer.alive
        held = await gw.get("/api/v1/transfers/held")
        assert held["items"] == [], held
        history = await gw.get("/api/v1/transfers/history", destination=DEST, limit=1000)
        done = [h for h in history["items"] if h["result"] == "done"]
        assert sorted(h["file"] for h in done) == sorted(n for n, _ in files[COPIED]), history
        # The copies went through FTS: its jobs carried every file, each once.
        async with httpx.AsyncClient(base_url=stack.fts3_url, timeout=10.0) as fts:
            jobs = (await fts.get("/jobs", params={"state_in": "FINISHED", "limit": 100})).json()
            fts_files = [
                f["dest_surl"]
                for job in jobs
                for f in (await fts.get(f"/jobs/{job['job_id']}/files")).json()
            ]
        assert len(fts_files) == FILES and len(set(fts_files)) == FILES, fts_files

        # ---- 3. detox empties the over-full site by one dataset
        submitted = await operator.post("/api/v1/cycles", {"partition": "Physics"}, status=202)

        async def cycle_done() -> dict[str, Any] | None:
            cycle = await gw.get(f"/api/v1/cycles/{submitted['id']}")
            assert cycle["status"] != "failed", cycle
            return cycle if cycle["status"] == "done" else None

        cycle = await eventually(cycle_done, "the detox cycle")
        assert cycle["replicas_deleted"] == 1, cycle

        async def deleted() -> bool:
            return await gw.datasets_at(FULL) == {DETOX_DATASETS[1]}

        await eventually(deleted, f"{DETOX_DATASETS[0]} removed from {FULL}")
        for dataset, held in ((DETOX_DATASETS[0], False), (DETOX_DATASETS[1], True)):
            for name, _ in files[dataset]:
                assert storage.path(FULL, name).exists() == held, name

        # ---- 4. consistency finds a file removed by hand, and repairs it on the second strike
        lost, lost_data = files[COPIED][2]
        storage.path(SOURCE, lost).unlink()
        site_path = f"/api/v1/consistency/sites/{SOURCE}"

        async def check() -> dict[str, Any]:
            before = await gw.get(f"{site_path}/runs")
            seen = {run["id"] for run in before["items"]}
            await gw.post(f"{site_path}/check", {"dry_run": False}, status=202)

            async def finished() -> dict[str, Any] | None:
                runs = await gw.get(f"{site_path}/runs")
                for run in runs["items"]:
                    if run["id"] not in seen and run["status"] in ("done", "failed"):
                        return dict(run)
                return None

            run = await eventually(finished, f"a consistency check of {SOURCE}")
            assert run["status"] == "done", run
            return run

        first = await check()
        assert (first["missing_files"], first["orphan_files"]) == (1, 0), first
        missing = await gw.get(f"/api/v1/consistency/runs/{first['id']}/missing")
        assert [item["path"] for item in missing["items"]] == [lost]
        assert first["transfers_requested"] == 0, "one strike only: nothing is done yet"

        second = await check()
        assert (second["missing_files"], second["missing_confirmed"]) == (1, 1), second
        assert second["transfers_requested"] == 1, second

        async def repaired() -> bool:
            path = storage.path(SOURCE, lost)
            return path.exists() and path.read_bytes() == lost_data

        await eventually(repaired, f"{lost} copied back to {SOURCE} from {DEST}")

    # ---- 5. what the dashboard plots is what the processes export
    wanted = dashboard_metrics(json.loads(DASHBOARD.read_text())) - {"up"}
    async with httpx.AsyncClient(timeout=10.0) as plain:
        for service, process in topology.processes.items():
            text = (await plain.get(f"{process.url}/metrics")).text
            exported = {
                line.split("{")[0].split(" ")[0]
                for line in text.splitlines()
                if line and not line.startswith("#")
            }
            assert wanted <= exported, (service, wanted - exported)
            assert f'dynamo_service_info{{service="{service}"' in text
    for process in topology.processes.values():
        assert process.alive, process.tail()
