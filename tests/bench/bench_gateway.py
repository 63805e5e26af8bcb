"""(5) A dataset lookup through the gateway, against the same lookup on the inventory directly
and against a bare uvicorn app.

Three real uvicorn servers on loopback, each its own process started the way operators start
them (``dynamo serve inventory``, ``dynamo serve gateway``; ``uvicorn`` for the bare app),
with the same event loop and HTTP parser (uvloop, httptools). The inventory holds a small
grid (``SITES`` sites, ``DATASETS`` datasets of ``BLOCKS`` blocks, each at ``COPIES`` sites);
the lookup is ``GET /api/v1/dataset?name=...`` over the datasets in turn, an answer of a few
kB. The bare app answers the same bytes from memory: the floor of any Python HTTP service on
this machine.

The load comes from a separate process: ``CONCURRENCY`` keep-alive connections, each sending
its next request as soon as the previous answer is in, for ``DURATION`` seconds after a
warm-up. It speaks HTTP/1.1 over raw asyncio streams (uvloop): an httpx client costs more CPU
per request than the servers it would measure, and on a small machine the load generator
shares the CPUs with them.

Targets (issue 7): the gateway adds at most 2 ms at p50 and keeps at least half the direct
throughput. Anonymous lookups (public reads) are the measured case; lookups with a local API
token (verified once, then cached) are reported beside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from dynamo_common.testing.postgres import temporary_database
from tests.bench import infra
from tests.bench.report import Result, Target, log, result

CONCURRENCY = 100
DURATION = 6.0
WARMUP = 2.0
PACED_SHARE = 0.3
"""The paced runs offer this share of the direct throughput (measured flat out just before):
a load both sides can carry, so that the difference in latency is what the gateway adds, not
a queue in front of the slower side."""
SITES, DATASETS, BLOCKS, COPIES, FILES_PER_BLOCK = 20, 300, 5, 3, 2
ADDED_P50_TARGET = Target(value=2.0, direction="max")
THROUGHPUT_TARGET = Target(ratio=0.5, direction="min")
ADMIN_TOKEN = "bench-admin-" + "x" * 32
BODY_ENV = "DYNAMO_BENCH_BODY"


# --------------------------------------------------------------------------- the bare app


def _bare_body() -> bytes:
    path = os.environ.get(BODY_ENV)
    return Path(path).read_bytes() if path else b"{}"


_BODY = b""


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The floor: a plain ASGI app answering the lookup's bytes (``uvicorn
    tests.bench.bench_gateway:bare_app``)."""
    global _BODY
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _BODY = _bare_body()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _BODY})


# --------------------------------------------------------------------------- servers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _dynamo() -> str:
    found = Path(sys.executable).with_name("dynamo")
    return str(found) if found.exists() else shutil.which("dynamo") or "dynamo"


@contextlib.asynccontextmanager
async def _process(
    name: str, argv: Sequence[str], env: dict[str, str], url: str, ready: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A server process, up once ``url + ready`` answers 200; stopped (SIGTERM, then SIGKILL)
    afterwards."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        async with httpx.AsyncClient(timeout=2, trust_env=False) as client:
            while True:
                if process.returncode is not None:
                    err = await process.stderr.read() if process.stderr else b""
                    raise RuntimeError(f"{name} exited: {err.decode(errors='replace')[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url + ready)).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} did not become ready")
                await asyncio.sleep(0.2)
        # The pipe is drained in the background so that a chatty server never blocks on it.
        drain = asyncio.create_task(_drain(process))
        yield process
        drain.cancel()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _drain(process: asyncio.subprocess.Process) -> None:
    assert process.stderr is not None
    while await process.stderr.read(65536):
        pass


def _service_env(database_url: str, namespace: str) -> dict[str, str]:
    return {
        "DYNAMO_DATABASE_URL": database_url,
        "DYNAMO_AMQP_URL": "memory://",
        "DYNAMO_BUS_NAMESPACE": namespace,
        "DYNAMO_LOG_LEVEL": "WARNING",
        "DYNAMO_LOG_FORMAT": "console",
    }


# --------------------------------------------------------------------------- the grid


def _dataset_name(i: int) -> str:
    return f"/BenchPrimary{i:04d}/Run2026A-v1/AOD"


async def _populate(url: str) -> None:
    sites = [f"T2_BENCH_{i:02d}" for i in range(SITES)]
    datasets = [_dataset_name(i) for i in range(DATASETS)]
    blocks = [(d, f"b{j:03d}") for d in datasets for j in range(BLOCKS)]
    files = [
        {
            "dataset": d,
            "block": b,
            "lfn": f"/store/data{d.replace('/', '_')}/{b}/f{k}.root",
            "size": 2_000_000_000 + k,
        }
        for d, b in blocks
        for k in range(FILES_PER_BLOCK)
    ]
    rng = random.Random(5)
    holders = {d: rng.sample(sites, COPIES) for d in datasets}
    commands: list[tuple[str, dict[str, Any]]] = [
        (
            "/api/v1/sites",
            {
                "sites": [
                    {"name": s, "storage_type": "disk", "status": "ready", "quotas": {}}
                    for s in sites
                ]
            },
        ),
        ("/api/v1/groups", {"groups": [{"name": "AnalysisOps"}]}),
        (
            "/api/v1/datasets",
            {"datasets": [{"name": d, "status": "valid", "data_type": "data"} for d in datasets]},
        ),
        ("/api/v1/blocks", {"blocks": [{"dataset": d, "name": b} for d, b in blocks]}),
        ("/api/v1/files", {"files": files}),
        (
            "/api/v1/blocks",
            {"blocks": [{"dataset": d, "name": b, "is_open": False} for d, b in blocks]},
        ),
        (
            "/api/v1/replicas",
            {
                "block_replicas": [
                    {"dataset": d, "block": b, "site": s, "group": "AnalysisOps"}
                    for d, b in blocks
                    for s in holders[d]
                ]
            },
        ),
    ]
    async with httpx.AsyncClient(base_url=url, timeout=120, trust_env=False) as client:
        for path, body in commands:
            response = await client.post(path, json=body)
            if response.status_code != 200 or response.json().get("status") != "accepted":
                raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:500]}")


# --------------------------------------------------------------------------- the load


@dataclass(frozen=True, slots=True)
class Load:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


LOADER = r"""
import asyncio, json, sys, time
try:
    import uvloop
except ImportError:
    uvloop = None

host, port, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
warmup, duration, rate = float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
requests = [r.encode("latin-1") for r in json.loads(sys.stdin.read())]
# rate > 0: each client sends on a schedule (rate / concurrency per second, phases spread),
# and a latency counts from the scheduled time, so a server falling behind is not hidden.
interval = concurrency / rate if rate > 0 else 0.0

async def client(index, start, stop, latencies, errors):
    reader, writer = await asyncio.open_connection(host, port)
    i = index
    scheduled = start - warmup + index * interval / concurrency
    while True:
        now = time.perf_counter()
        if interval:
            if scheduled > now:
                await asyncio.sleep(scheduled - now)
            now, scheduled = scheduled, scheduled + interval
        if now >= stop:
            break
        request = requests[i % len(requests)]
        i += concurrency
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = head[9:12]
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError("an answer without Content-Length: " + head.decode("latin-1"))
        await reader.readexactly(length)
        done = time.perf_counter()
        if now >= start:
            if status != b"200":
                errors.append(status)
            else:
                latencies.append(done - now)
    writer.close()

async def main():
    latencies, errors = [], []
    start = time.perf_counter() + warmup
    stop = start + duration
    await asyncio.gather(*(client(i, start, stop, latencies, errors) for i in range(concurrency)))
    latencies.sort()
    n = len(latencies)
    print(json.dumps({
        "requests": n,
        "errors": len(errors),
        "seconds": duration,
        "p50_ms": latencies[n // 2] * 1000 if n else 0.0,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else 0.0,
    }))

if uvloop is not None:
    uvloop.run(main())
else:
    asyncio.run(main())
"""


async def _load(url: str, paths: list[str], headers: dict[str, str], rate: float = 0.0) -> Load:
    """``CONCURRENCY`` clients as fast as the server answers; with ``rate``, at that many
    requests per second in all."""
    host_port = url.removeprefix("http://")
    host, _, port = host_port.partition(":")
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    requests = [
        f"GET {path} HTTP/1.1\r\nHost: {host_port}\r\nAccept: application/json\r\n{extra}\r\n"
        for path in paths
    ]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LOADER,
        host,
        port,
        str(CONCURRENCY),
        str(WARMUP),
        str(DURATION),
        str(rate),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(
        process.communicate(json.dumps(requests).encode()), WARMUP + DURATION + 60
    )
    if process.returncode != 0:
        raise RuntimeError(f"the load generator failed: {err.decode(errors='replace')[-2000:]}")
    data = json.loads(out)
    load = Load(**data)
    if load.errors:
        raise RuntimeError(f"{load.errors} lookups of {url} failed")
    return load


# --------------------------------------------------------------------------- the benchmark


async def run(repetitions: int = 3) -> list[Result]:
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    ports = {name: _free_port() for name in ("inventory", "gateway", "bare")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    paths = [f"/api/v1/dataset?name={quote(_dataset_name(i), safe='')}" for i in range(DATASETS)]
    with temporary_database(infra.postgres_admin_url()) as database_url:
        env = _service_env(database_url, namespace)
        inventory_argv = [_dynamo(), "serve", "inventory", "--port", str(ports["inventory"])]
        gateway_argv = [_dynamo(), "serve", "gateway", "--port", str(ports["gateway"])]
        gateway_env = {
            **env,
            "DYNAMO_INVENTORY_URL": urls["inventory"],
            "DYNAMO_TRANSFER_URL": "",
            "DYNAMO_ADMIN_TOKEN": ADMIN_TOKEN,
            "DYNAMO_PUBLIC_READS": "true",
        }
        log("gateway: starting the inventory and filling it")
        async with _process("inventory", inventory_argv, env, urls["inventory"], "/readyz"):
            await _populate(urls["inventory"])
            async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
                body = (await client.get(urls["inventory"] + paths[0])).content
            body_file = Path(f"/tmp/dynamo-bench-body-{namespace}.json")
            await asyncio.to_thread(body_file.write_bytes, body)
            bare_argv = [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.bench.bench_gateway:bare_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports["bare"]),
                "--log-level",
                "warning",
                "--no-access-log",
            ]
            try:
                async with (
                    _process("gateway", gateway_argv, gateway_env, urls["gateway"], "/readyz"),
                    _process("bare app", bare_argv, {BODY_ENV: str(body_file)}, urls["bare"], "/"),
                ):
                    token = await _api_token(urls["gateway"])
                    return await _measure(urls, paths, token, len(body), repetitions)
            finally:
                await asyncio.to_thread(body_file.unlink, missing_ok=True)


async def _api_token(gateway: str) -> str:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=gateway, headers=headers, trust_env=False) as client:
        response = await client.post(
            "/api/v1/auth/accounts", json={"name": "bench-reader", "role": "user"}
        )
        response.raise_for_status()
        response = await client.post("/api/v1/auth/accounts/bench-reader/tokens", json={})
        response.raise_for_status()
        token: str = response.json()["token"]
        return token


async def _measure(
    urls: dict[str, str], paths: list[str], token: str, body_bytes: int, repetitions: int
) -> list[Result]:
    sides = {
        "bare": (urls["bare"], {}),
        "inventory": (urls["inventory"], {}),
        "gateway": (urls["gateway"], {}),
        "token": (urls["gateway"], {"Authorization": f"Bearer {token}"}),
    }
    full: dict[str, list[Load]] = {name: [] for name in sides}
    paced: dict[str, list[Load]] = {name: [] for name in ("inventory", "gateway", "token")}
    rates: list[float] = []
    for repetition in range(repetitions):
        # Interleaved, so that the machine's noise hits every side alike.
        for name, (url, headers) in sides.items():
            load = await _load(url, paths, headers)
            full[name].append(load)
            _report(repetition, repetitions, name, "flat out", load)
        rate = round(full["inventory"][-1].rps * PACED_SHARE)
        rates.append(rate)
        for name in paced:
            url, headers = sides[name]
            load = await _load(url, paths, headers, rate=rate)
            paced[name].append(load)
            _report(repetition, repetitions, name, f"{rate} req/s", load)

    def med(values: Sequence[float]) -> float:
        return round(statistics.median(values), 3)

    def summary(loads: list[Load]) -> dict[str, float]:
        return {
            "rps": med([x.rps for x in loads]),
            "p50_ms": med([x.p50_ms for x in loads]),
            "p99_ms": med([x.p99_ms for x in loads]),
        }

    details: dict[str, Any] = {
        "concurrency": CONCURRENCY,
        "duration_s": DURATION,
        "answer_bytes": body_bytes,
        "cpus": os.cpu_count(),
        "flat_out": {name: summary(loads) for name, loads in full.items()},
        "paced_rate": rates,
        "paced": {name: summary(loads) for name, loads in paced.items()},
    }

    def rps(loads: list[Load]) -> list[float]:
        return [x.rps for x in loads]

    def added(name: str) -> list[float]:
        return [g.p50_ms - d.p50_ms for g, d in zip(paced[name], paced["inventory"], strict=True)]

    paced_label = (
        f"{CONCURRENCY} clients at {int(PACED_SHARE * 100)}% of the direct throughput in all"
    )
    return [
        result(
            "gateway.lookup_rps",
            "-",
            rps(full["gateway"]),
            "req/s",
            floor_runs=rps(full["inventory"]),
            floor_unit="req/s",
            floor_label=f"the same lookup on the inventory directly; {CONCURRENCY} clients "
            "flat out",
            target=THROUGHPUT_TARGET,
            details=details,
        ),
        result(
            "gateway.lookup_p50_added",
            "-",
            added("gateway"),
            "ms",
            target=ADDED_P50_TARGET,
            details={
                "load": paced_label,
                "gateway_p50_ms": [x.p50_ms for x in paced["gateway"]],
                "inventory_p50_ms": [x.p50_ms for x in paced["inventory"]],
                "gateway_p99_ms": [x.p99_ms for x in paced["gateway"]],
                "inventory_p99_ms": [x.p99_ms for x in paced["inventory"]],
            },
        ),
        result(
            "gateway.lookup_p50_flat_out",
            "-",
            [x.p50_ms for x in full["gateway"]],
            "ms",
            floor_runs=[x.p50_ms for x in full["inventory"]],
            floor_unit="ms",
            floor_label=f"the inventory directly; {CONCURRENCY} clients flat out (p50 = "
            "clients / throughput)",
            details={
                "gateway_p99_ms": [x.p99_ms for x in full["gateway"]],
                "inventory_p99_ms": [x.p99_ms for x in full["inventory"]],
                "bare_p50_ms": [x.p50_ms for x in full["bare"]],
            },
        ),
        result(
            "gateway.lookup_rps_api_token",
            "-",
            rps(full["token"]),
            "req/s",
            floor_runs=rps(full["inventory"]),
            floor_unit="req/s",
            floor_label="the same lookup on the inventory directly",
            target=THROUGHPUT_TARGET,
            details={"p50_added_ms_paced": added("token")},
        ),
        result(
            "inventory.lookup_rps",
            "-",
            rps(full["inventory"]),
            "req/s",
            floor_runs=rps(full["bare"]),
            floor_unit="req/s",
            floor_label="a bare uvicorn app answering the same bytes",
        ),
    ]


def _report(repetition: int, repetitions: int, name: str, load_kind: str, load: Load) -> None:
    log(
        f"gateway: run {repetition + 1}/{repetitions} {name:9} {load_kind:>12} "
        f"{load.rps:8,.0f} req/s  p50 {load.p50_ms:7.2f} ms  p99 {load.p99_ms:7.2f} ms"
    )


if __name__ == "__main__":
    from tests.bench.report import print_table

    print_table(asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1)))
