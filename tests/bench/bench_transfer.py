"""(4) The transfer service: files accepted into FTS per second, and direct copies per second.

Both run the real inventory and transfer apps in-process on RabbitMQ and one throw-away
database (each service in its own schema), with the grid registered through the inventory's
REST API first (untimed). Each run asks for a dataset replica at a destination that has none
(a new destination or block per run, so every run does the same work from the same state);
its clock starts when the command's reply arrives (every task committed to the queue) and
stops at the service's own record of the last file: the last FTS job id recorded, or the last
file recorded done. Floors are measured in the same run, interleaved with the repetitions.

``transfer.fts_submit``: 10,000 files (10 blocks of 1,000) from one source to one destination,
cut into link batches of ``max_batch`` files, each recorded as an intent, sent as one FTS job
and its job id recorded. The FTS3 stand-in runs in its own process with no workers, so every
job is accepted and queued but nothing is copied: what is timed is the service's submission
path (source choice, batching, the database, the client) and one HTTP exchange per job. The
floor is a bare httpx client posting the very same job payloads, one at a time as the service
does, to a bare uvicorn app that reads the body and answers a job id. The same bare client
posting to the stand-in is in the details, to tell the stand-in's share from the service's.
The FTS poller is kept out of the timed window (``poll_interval`` 600 s): its cost grows with
the jobs FTS holds, not with the submission, and the stand-in never finishes a job anyway.

``transfer.direct_copy``: small files between two real XRootD sites through the direct backend
(gfal2 third-party copies, adler32 checked end to end), ``PARALLEL`` copies at once. The floor
is a plain loop of gfal2 ``filecopy`` calls with the same transfer parameters and checksum
check, over the same source files, with the same parallelism (a thread pool), to another
directory of the same destination. Every XRootD third-party copy lasts at least 2.5 s whatever
the size (XrdCl's copy job sleeps 2.5 s before it first looks whether the copy is done), so
both are bound by that latency and the ratio says how well the service keeps its copy slots
busy. Hence 16 at once (above about 20, the destination's ``xrdcp --server`` children start so
slowly on a small machine that TPC rendezvous keys expire), and 200 files at the ``ci`` scale
(about 30 s a run) and 1,000 at ``tenth`` and ``cms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.bench.report import Result, Target, log, profile_summary, result

REPO = Path(__file__).resolve().parents[2]
DS = "/BenchTransfer/Run2024A-v1/AOD"
CLIENT = "/dynamo/bench"

FTS_FILES = {"ci": 10_000, "tenth": 10_000, "cms": 50_000}
FTS_BLOCK_FILES = 1_000
FTS_TARGET_FILES_PER_S = 2_000.0

DIRECT_FILES = {"ci": 200, "tenth": 1_000, "cms": 1_000}
DIRECT_FILE_BYTES = 16 * 1024
PARALLEL = 16
COPY_TIMEOUT = 600

RUN_TIMEOUT = float(os.environ.get("DYNAMO_BENCH_RUN_TIMEOUT", "300"))
POLL = 0.05


# ============================================================================ the floor's sink


async def sink_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app: ``POST /jobs`` reads the body and answers a new job id; nothing else
    (run by uvicorn in its own process as ``tests.bench.bench_transfer:sink_app``)."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = bool(message.get("more_body", False))
    if scope["method"] == "POST" and scope["path"] == "/jobs":
        status, body = 200, b'{"job_id": "%s"}' % str(uuid.uuid4()).encode()
    else:
        status, body = 404, b'{"message": "not found"}'
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ============================================================================ processes


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(cmd: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as out:
        return subprocess.Popen(
            cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


@contextlib.asynccontextmanager
async def _http_process(
    name: str, args: Callable[[int], list[str]], workdir: Path
) -> AsyncIterator[str]:
    """``python <args(port)>`` from the repository root, output to a log file; yields its URL
    once it answers HTTP, and stops it (the process we started, by its pid) afterwards."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / f"{name}.log"
    proc = _spawn([sys.executable, *args(port)], log_path)
    try:
        import httpx

        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{_tail(log_path)}")
                try:
                    await client.get(url + "/")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{name} never answered:\n{_tail(log_path)}") from None
                    await asyncio.sleep(0.1)
        yield url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


# ============================================================================ the services


@dataclass
class Stack:
    url: str  # the database
    inventory: Any  # httpx client of the in-process inventory
    client: Any  # RabbitBus of the bench's own, for commands
    bus: Any  # RabbitBus the services share
    amqp: str
    namespace: str

    async def ok(self, path: str, body: dict[str, Any]) -> None:
        response = await self.inventory.post(path, json=body)
        if response.status_code != 200 or response.json().get("status") != "accepted":
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:500]}")


@contextlib.asynccontextmanager
async def _inventory_stack() -> AsyncIterator[Stack]:
    import httpx
    from asgi_lifespan import LifespanManager

    from dynamo_common.bus.rabbitmq import RabbitBus
    from dynamo_inventory.app import create_app
    from dynamo_inventory.settings import InventorySettings
    from tests.bench import infra

    amqp = infra.amqp_url()
    async with infra.inventory_database() as url, infra.bus_namespace("benchtr") as (ns, queues):
        bus = RabbitBus(amqp, ns)
        client = RabbitBus(amqp, ns)
        await bus.connect()
        await client.connect()
        try:
            settings = InventorySettings(
                database_url=url,
                amqp_url=amqp,
                bus_namespace=ns,
                log_format="console",
                log_level="WARNING",
            )
            app = create_app(settings, bus=bus)
            async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60) as manager:
                transport = httpx.ASGITransport(app=manager.app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://inventory", timeout=300
                ) as http:
                    yield Stack(url, http, client, bus, amqp, ns)
        finally:
            queues += client.declared_names().queues
            queues += bus.declared_names().queues
            await client.close()
            await bus.close()


@contextlib.asynccontextmanager
async def _transfer(stack: Stack, **over: Any) -> AsyncIterator[Any]:
    """The transfer app in-process; yields its runtime once it leads and follows the
    inventory."""
    from asgi_lifespan import LifespanManager

    from dynamo_transfer.app import create_app
    from dynamo_transfer.settings import TransferSettings

    settings = TransferSettings(
        database_url=stack.url,
        amqp_url=stack.amqp,
        bus_namespace=stack.namespace,
        inventory_url="http://inventory",
        log_format="console",
        log_level="WARNING",
        **over,
    )
    app = create_app(settings, bus=stack.bus, inventory_http=stack.inventory)
    async with LifespanManager(app, startup_timeout=120, shutdown_timeout=120):
        rt = app.state.transfer
        deadline = time.monotonic() + 120
        while not (rt.readmodel.ready.is_set() and rt.leader):
            if time.monotonic() > deadline:
                raise RuntimeError("the transfer service never became the leader")
            await asyncio.sleep(0.05)
        yield rt


def _adler32(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def _lfn(block: str, index: int) -> str:
    return f"/store/data/BenchTransfer/AOD/{block}/f{index:05d}.root"


def _site(name: str, protocol: str, prefix: str) -> dict[str, Any]:
    """A site whose rule maps /store/... under ``prefix`` (which ends with a slash)."""
    return {
        "name": name,
        "protocols": [
            {"name": protocol, "rules": [{"match": "/store/(.*)", "result": f"{prefix}store/$1"}]}
        ],
    }


async def _register(
    stack: Stack,
    sites: list[dict[str, Any]],
    files: dict[str, list[tuple[str, int, str]]],
    source: str,
) -> None:
    """Sites, the dataset, its blocks closed with their files (lfn, size, adler32), and
    complete replicas of every block at ``source``."""
    await stack.ok("/api/v1/sites", {"sites": sites})
    await stack.ok("/api/v1/datasets", {"datasets": [{"name": DS, "data_type": "data"}]})
    await stack.ok("/api/v1/blocks", {"blocks": [{"dataset": DS, "name": b} for b in files]})
    specs = [
        {"dataset": DS, "block": b, "lfn": lfn, "size": size, "adler32": adler}
        for b, block_files in files.items()
        for lfn, size, adler in block_files
    ]
    for start in range(0, len(specs), 2_000):
        await stack.ok("/api/v1/files", {"files": specs[start : start + 2_000]})
    await stack.ok(
        "/api/v1/blocks",
        {"blocks": [{"dataset": DS, "name": b, "is_open": False} for b in files]},
    )
    await stack.ok(
        "/api/v1/replicas",
        {"block_replicas": [{"dataset": DS, "block": b, "site": source} for b in files]},
    )


async def _request(stack: Stack, requests: list[dict[str, Any]], files: int) -> float:
    """Send a replica transfer request; returns the wall-clock time its reply arrived."""
    from dynamo_common.messages.envelope import Envelope
    from dynamo_common.messages.registry import TransferCommand

    envelope = Envelope(
        type=TransferCommand.TRANSFER_REPLICAS, source=CLIENT, data={"requests": requests}
    )
    reply = await stack.client.request(envelope, timeout=300)
    queued = time.time()
    if reply.data.get("status") != "accepted" or reply.data.get("tasks") != files:
        raise RuntimeError(f"transfer request not accepted as expected: {reply.data}")
    return queued


async def _until(check: Callable[[], Awaitable[bool]], what: str, conn: Any) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT
    while not await check():
        if time.monotonic() > deadline:
            states = await conn.fetch(
                "SELECT kind, state, count(*) FROM transfer.tasks GROUP BY 1, 2 ORDER BY 1, 2"
            )
            jobs = await conn.fetch("SELECT state, count(*) FROM transfer.jobs GROUP BY 1")
            raise RuntimeError(
                f"timed out waiting for {what}; tasks: {[tuple(r) for r in states]}, "
                f"jobs: {[tuple(r) for r in jobs]}"
            )
        await asyncio.sleep(POLL)


async def _profiled(
    profile: bool, run: Callable[[], Awaitable[dict[str, Any]]]
) -> tuple[dict[str, Any], cProfile.Profile | None]:
    if not profile:
        return await run(), None
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        return await run(), profiler
    finally:
        profiler.disable()


# ============================================================================ (a) FTS submission


def _fts_payloads(
    files: Sequence[tuple[str, int, str]], source: str, destination: str, batch: int
) -> list[dict[str, Any]]:
    """The bodies ``Fts3Backend.submit`` sends for these files, built with the same models
    and serialised as ``Fts3Client.submit`` does."""
    from dynamo_transfer.backends.fts3 import Fts3File, Fts3JobParams
    from dynamo_transfer.backends.fts3_backend import METADATA_KEY

    bodies = []
    for start in range(0, len(files), batch):
        chunk = files[start : start + batch]
        job_files = [
            Fts3File(
                sources=[f"{source}{lfn.removeprefix('/')}"],
                destinations=[f"{destination}{lfn.removeprefix('/')}"],
                checksum=f"ADLER32:{adler}",
                filesize=size,
                metadata={"task_id": start + i + 1},
                activity="Dynamo",
            )
            for i, (lfn, size, adler) in enumerate(chunk)
        ]
        params = Fts3JobParams(
            verify_checksum="both",
            overwrite=False,
            priority=3,
            retry=0,
            bring_online=-1,
            job_metadata={METADATA_KEY: f"dynamo-{uuid.uuid4()}"},
            dst_file_report=True,
        )
        bodies.append(
            {
                "files": [f.model_dump(mode="json", exclude_none=True) for f in job_files],
                "params": params.model_dump(mode="json", exclude_none=True),
            }
        )
    return bodies


async def _post_all(url: str, bodies: list[dict[str, Any]]) -> float:
    """Seconds for a bare httpx client to post every body to ``url``/jobs, one at a time."""
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await client.get("/")  # connection opened outside the clock, as the service's is
        start = time.perf_counter()
        for body in bodies:
            response = await client.post("/jobs", json=body)
            if response.status_code != 200 or not response.json().get("job_id"):
                raise RuntimeError(f"floor POST /jobs: {response.status_code} {response.text}")
        return time.perf_counter() - start


async def _fts_run(stack: Stack, rt: Any, destination: str, files: int) -> dict[str, Any]:
    from tests.bench import infra

    async with infra.connection(stack.url) as conn:

        async def accepted() -> bool:
            submitted = await conn.fetchval(
                "SELECT count(*) FROM transfer.tasks WHERE site = $1 AND state = 'submitted'",
                destination,
            )
            intents = await conn.fetchval(
                "SELECT count(*) FROM transfer.jobs WHERE destination = $1 AND state <> "
                "'submitted'",
                destination,
            )
            return bool(submitted == files and intents == 0)

        sent = time.time()
        queued = await _request(stack, [{"dataset": DS, "site": destination}], files)
        await _until(accepted, f"{files} files accepted by FTS for {destination}", conn)
        row = await conn.fetchrow(
            "SELECT count(*) AS jobs, min(updated) AS first, max(updated) AS last, "
            "count(DISTINCT external_id) AS external FROM transfer.jobs WHERE destination = $1",
            destination,
        )
    last: datetime = row["last"]
    first: datetime = row["first"]
    if row["external"] != row["jobs"]:
        raise RuntimeError(f"{row['jobs']} jobs but {row['external']} FTS job ids")
    return {
        "seconds": last.timestamp() - queued,
        "intake_seconds": queued - sent,
        "first_job_after": first.timestamp() - queued,
        "jobs": row["jobs"],
    }


async def run_fts_submit(scale: str, repetitions: int = 3, profile: bool = False) -> list[Result]:

    files_total = FTS_FILES[scale]
    blocks = {
        f"b{b:03d}": [
            (_lfn(f"b{b:03d}", i), 2_000_000_000 + i, f"{(b * FTS_BLOCK_FILES + i):08x}")
            for i in range(FTS_BLOCK_FILES)
        ]
        for b in range(files_total // FTS_BLOCK_FILES)
    }
    ordered = [f for block in blocks.values() for f in block]
    destinations = [f"T2_FTS_D{r}" for r in range(repetitions + (1 if profile else 0))]
    source = "root://xrootd.t1-src.example:1094//"
    sites = [_site("T1_FTS_SRC", "root", source)] + [
        _site(d, "root", f"root://xrootd.{d.lower()}.example:1094//") for d in destinations
    ]
    max_batch = 100
    with tempfile.TemporaryDirectory(prefix="dynamo-bench-fts-") as tmp:
        workdir = Path(tmp)
        standin_args = ["-m", "tests.fts3_standin", "--workers", "0", "--log-level", "warning"]
        sink_args = [
            "-m",
            "uvicorn",
            "tests.bench.bench_transfer:sink_app",
            "--log-level",
            "warning",
            "--no-access-log",
            "--lifespan",
            "off",
        ]
        async with (
            _http_process(
                "fts3-standin", lambda p: [*standin_args, "--port", str(p)], workdir
            ) as fts_url,
            _http_process("sink", lambda p: [*sink_args, "--port", str(p)], workdir) as sink_url,
            _inventory_stack() as stack,
        ):
            log(f"transfer fts_submit: registering {files_total:,} files")
            await _register(stack, sites, blocks, "T1_FTS_SRC")
            async with _transfer(
                stack,
                backend="fts3",
                fts3_url=fts_url,
                max_batch=max_batch,
                # FTS queues and schedules per link itself: the caps only bound what is
                # handed over, and every run's files stay submitted (nothing is copied).
                max_active_per_link=files_total * len(destinations),
                max_active_total=files_total * len(destinations),
                poll_interval=600.0,
            ) as rt:
                runs: list[dict[str, Any]] = []
                floor_seconds: list[float] = []
                standin_seconds: list[float] = []
                for r in range(repetitions):
                    dest_prefix = f"root://xrootd.{destinations[r].lower()}.example:1094//"
                    bodies = _fts_payloads(ordered, source, dest_prefix, max_batch)
                    floor_seconds.append(await _post_all(sink_url, bodies))
                    standin_seconds.append(await _post_all(fts_url, bodies))
                    run = await _fts_run(stack, rt, destinations[r], files_total)
                    runs.append(run)
                    log(
                        f"transfer fts_submit: run {r + 1}: "
                        f"{files_total / run['seconds']:,.0f} files/s in {run['jobs']} jobs "
                        f"(floor {files_total / floor_seconds[-1]:,.0f} files/s; bare client "
                        f"to the stand-in {files_total / standin_seconds[-1]:,.0f} files/s)"
                    )
                profile_text: str | None = None
                profile_top: list[dict[str, Any]] = []
                if profile:
                    log("transfer fts_submit: one more run under cProfile")
                    _, profiler = await _profiled(
                        True, lambda: _fts_run(stack, rt, destinations[-1], files_total)
                    )
                    assert profiler is not None
                    profile_text, profile_top = profile_summary(profiler)

    outcome = result(
        "transfer.fts_submit",
        scale,
        [files_total / r["seconds"] for r in runs],
        "files/s",
        floor_runs=[files_total / s for s in floor_seconds],
        floor_unit="files/s",
        floor_label=f"bare httpx posting the same {max_batch}-file job payloads, one at a "
        "time, to a bare uvicorn sink",
        target=Target(value=FTS_TARGET_FILES_PER_S, direction="min"),
        details={
            "unit": "files accepted by FTS per second, from the request's reply (tasks "
            "queued) to the last FTS job id recorded",
            "files_per_run": files_total,
            "jobs_per_run": [r["jobs"] for r in runs],
            "run_seconds": [round(r["seconds"], 3) for r in runs],
            "intake_seconds": [round(r["intake_seconds"], 3) for r in runs],
            "first_job_after_seconds": [round(r["first_job_after"], 3) for r in runs],
            "floor_seconds": [round(s, 3) for s in floor_seconds],
            "bare_client_to_standin_files_per_s": [round(files_total / s) for s in standin_seconds],
            "standin": "tests.fts3_standin with --workers 0 (accepts and queues, never copies)",
        },
    )
    if profile_text is not None:
        outcome.details["profile_top"] = profile_top
        outcome.details["profile_text"] = profile_text
    return [outcome]


# ============================================================================ (b) direct copies


def _gfal_floor(pairs: Sequence[tuple[str, str, str]], parallel: int, retried: list[str]) -> float:
    """Seconds for a plain loop of gfal2 copies (source, destination, adler32) on ``parallel``
    threads, with the transfer parameters ``GfalStorage.copy`` uses; a failed copy is tried
    once more (and listed in ``retried``)."""
    from dynamo_common.storage.gfal import import_gfal2

    gfal2 = import_gfal2()
    local = threading.local()
    ready = threading.Barrier(parallel)

    def context() -> Any:
        ctx = getattr(local, "ctx", None)
        if ctx is None:
            ctx = local.ctx = gfal2.creat_context()
        return ctx

    def warm(_: int) -> None:
        # One per thread (the barrier holds each until all have one): contexts are made
        # before the clock starts, as the service's storage threads are from its second run.
        context()
        ready.wait(timeout=60)

    def copy(pair: tuple[str, str, str]) -> None:
        ctx = context()
        source, destination, adler = pair
        params = ctx.transfer_parameters()
        params.create_parent = True
        params.overwrite = False
        params.timeout = COPY_TIMEOUT
        if hasattr(params, "proxy_delegation"):
            params.proxy_delegation = False
        params.set_checksum(gfal2.checksum_mode.both, "ADLER32", adler)
        try:
            ctx.filecopy(params, source, destination)
        except gfal2.GError:
            # What the service does too (it retries): a TPC rendezvous can expire when the
            # machine is busy. The copy cleaned up after itself (posc).
            retried.append(destination)
            ctx.filecopy(params, source, destination)

    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="floor-gfal2") as pool:
        list(pool.map(warm, range(parallel)))
        start = time.perf_counter()
        list(pool.map(copy, pairs))
        return time.perf_counter() - start


async def _direct_run(stack: Stack, block: str, destination: str, files: int) -> dict[str, Any]:
    from tests.bench import infra

    async with infra.connection(stack.url) as conn:

        async def settled() -> bool:
            row = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE state = 'done') AS done, "
                "count(*) FILTER (WHERE state = 'held') AS held "
                "FROM transfer.tasks WHERE site = $1 AND block = $2",
                destination,
                block,
            )
            if row["held"]:
                raise RuntimeError(f"{row['held']} files held in the direct copy benchmark")
            return bool(row["done"] == files)

        queued = await _request(
            stack, [{"dataset": DS, "block": block, "site": destination}], files
        )
        await _until(settled, f"{files} files copied to {destination}", conn)
        last: datetime = await conn.fetchval(
            "SELECT max(finished_at) FROM transfer.tasks WHERE site = $1 AND block = $2",
            destination,
            block,
        )
        failed = await conn.fetchval(
            "SELECT count(*) FROM transfer.history h JOIN transfer.tasks t ON t.id = h.task_id "
            "WHERE h.result = 'failed' AND t.site = $1 AND t.block = $2",
            destination,
            block,
        )
    return {"seconds": last.timestamp() - queued, "failed_attempts": int(failed)}


async def run_direct_copy(scale: str, repetitions: int = 3, profile: bool = False) -> list[Result]:
    from dynamo_common.testing.xrootd import XrootdServer

    files = DIRECT_FILES[scale]
    names = [f"c{r}" for r in range(repetitions + (1 if profile else 0))]
    with XrootdServer(name="benchsrc") as source, XrootdServer(name="benchdst") as dest:
        log(f"transfer direct_copy: writing {files * len(names):,} files to the source site")
        blocks: dict[str, list[tuple[str, int, str]]] = {}
        # "warm": PARALLEL files copied once, untimed, so that the service's storage threads
        # hold their gfal2 contexts before the first timed run (the floor's are made untimed).
        for block, count in [("warm", PARALLEL)] + [(name, files) for name in names]:
            blocks[block] = []
            for i in range(count):
                data = os.urandom(DIRECT_FILE_BYTES)
                lfn = _lfn(block, i)
                source.write(lfn, data)
                blocks[block].append((lfn, len(data), _adler32(data)))
        sites = [
            _site("T1_XRD_SRC", "root", f"{source.url}/"),
            _site("T2_XRD_DST", "root", f"{dest.url}/"),
        ]
        async with _inventory_stack() as stack:
            await _register(stack, sites, blocks, "T1_XRD_SRC")
            async with _transfer(
                stack,
                backend="direct",
                direct_parallel_per_link=PARALLEL,
                direct_parallel_total=PARALLEL,
                copy_timeout=COPY_TIMEOUT,
                # A failed attempt (see the floor) is retried at once, as the floor does,
                # instead of after the production backoff of a minute.
                retry_base_seconds=0.5,
                retry_max_seconds=2.0,
            ):
                await _direct_run(stack, "warm", "T2_XRD_DST", PARALLEL)
                runs: list[dict[str, Any]] = []
                floor_seconds: list[float] = []
                floor_retried: list[str] = []
                for r in range(repetitions):
                    block = names[r]
                    pairs = [
                        (
                            source.pfn(lfn),
                            dest.pfn(f"/floor/{block}/{lfn.rsplit('/', 1)[1]}"),
                            adler,
                        )
                        for lfn, _, adler in blocks[block]
                    ]
                    floor_seconds.append(
                        await asyncio.to_thread(_gfal_floor, pairs, PARALLEL, floor_retried)
                    )
                    run = await _direct_run(stack, block, "T2_XRD_DST", files)
                    runs.append(run)
                    log(
                        f"transfer direct_copy: run {r + 1}: {files / run['seconds']:,.0f} "
                        f"files/s (floor {files / floor_seconds[-1]:,.0f} files/s)"
                    )
                profile_text: str | None = None
                profile_top: list[dict[str, Any]] = []
                if profile:
                    log("transfer direct_copy: one more run under cProfile")
                    _, profiler = await _profiled(
                        True, lambda: _direct_run(stack, names[-1], "T2_XRD_DST", files)
                    )
                    assert profiler is not None
                    profile_text, profile_top = profile_summary(profiler)
        for block in names[:repetitions]:
            for lfn, _, adler in blocks[block]:
                copied = dest.path(lfn).read_bytes()
                if _adler32(copied) != adler:
                    raise RuntimeError(f"{lfn} arrived corrupt at the destination")

    outcome = result(
        "transfer.direct_copy",
        scale,
        [files / r["seconds"] for r in runs],
        "files/s",
        floor_runs=[files / s for s in floor_seconds],
        floor_unit="files/s",
        floor_label=f"plain gfal2 filecopy loop, same files and checks, {PARALLEL} threads",
        target=Target(ratio=0.75, direction="min"),
        details={
            "unit": "files copied per second between two XRootD sites (direct backend), "
            "from the request's reply (tasks queued) to the last file recorded done",
            "files_per_run": files,
            "file_bytes": DIRECT_FILE_BYTES,
            "parallel_copies": PARALLEL,
            "run_seconds": [round(r["seconds"], 3) for r in runs],
            "failed_attempts": [r["failed_attempts"] for r in runs],
            "floor_copies_retried": len(floor_retried),
            "floor_seconds": [round(s, 3) for s in floor_seconds],
        },
    )
    if profile_text is not None:
        outcome.details["profile_top"] = profile_top
        outcome.details["profile_text"] = profile_text
    return [outcome]
