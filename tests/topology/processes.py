"""The distributed topology of docker-compose.yml as OS processes on this machine: each
installed service is `dynamo serve <service>` in its own process, against the real PostgreSQL
and RabbitMQ, configured only through DYNAMO_* variables, on a loopback port; the gateway is
started last with every other service's URL.

A process keeps its port across restarts (the gateway knows it by that URL). Its output goes
to a file whose tail is printed when something fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

READY_TIMEOUT = 120.0
_DYNAMO = Path(sys.executable).with_name("dynamo")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServiceProcess:
    service: str
    env: dict[str, str]
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.service}.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        assert not self.alive, f"{self.service} is already running"
        argv = ["serve", self.service, "--host", "127.0.0.1", "--port", str(self.port)]
        if _DYNAMO.exists():
            cmd = [str(_DYNAMO), *argv]
        else:
            cmd = [sys.executable, "-c", "from dynamo_common.cli import main; main()", *argv]
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start {self.starts}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd,
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own process group: a kill reaches nothing else.
                start_new_session=True,
            )

    async def wait_ready(self, within: float = READY_TIMEOUT) -> None:
        """Until /readyz answers 200; fails at once if the process dies meanwhile."""
        deadline = time.monotonic() + within
        last = "no answer yet"
        async with httpx.AsyncClient(base_url=self.url, timeout=5.0) as client:
            while time.monotonic() < deadline:
                if not self.alive:
                    code = self.proc.returncode if self.proc else None
                    raise ServiceDied(self, f"exited with {code} before it was ready")
                try:
                    response = await client.get("/readyz")
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code} {response.text[:300]}"
                except httpx.HTTPError as exc:
                    last = repr(exc)
                await asyncio.sleep(0.25)
        raise AssertionError(f"{self.service} not ready in {within:.0f} s ({last}):\n{self.tail()}")

    def kill9(self) -> None:
        """SIGKILL: no shutdown code runs, as when a node dies."""
        if self.proc is not None and self.alive:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM (graceful), SIGKILL after 20 s."""
        if self.proc is None or not self.alive:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill9()

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class ServiceDied(AssertionError):
    def __init__(self, process: ServiceProcess, what: str) -> None:
        super().__init__(f"{process.service} {what}:\n{process.tail()}")
        self.process = process


@dataclass
class Topology:
    """Every installed service as its own process; the gateway in front."""

    common_env: dict[str, str]
    workdir: Path
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def add(self, service: str, env: Mapping[str, str]) -> ServiceProcess:
        data_dir = self.workdir / service
        data_dir.mkdir(parents=True, exist_ok=True)
        process = ServiceProcess(
            service,
            {**self.common_env, "DYNAMO_DATA_DIR": str(data_dir), **env},
            self.workdir,
        )
        self.processes[service] = process
        return process

    async def start(self, services: list[str]) -> None:
        """Start ``services`` together and wait until each is ready. A port taken by someone
        else between choosing and binding it (the process dies saying so) is chosen again."""
        for name in services:
            self.processes[name].start()
        for name in services:
            process = self.processes[name]
            for _ in range(3):
                try:
                    await process.wait_ready()
                    break
                except ServiceDied:
                    if "address already in use" not in process.tail().lower():
                        raise
                    process.port = free_port()
                    process.start()
            else:
                raise AssertionError(f"{name} found no free port:\n{process.tail()}")

    async def restart(self, service: str) -> None:
        process = self.processes[service]
        process.start()
        await process.wait_ready()

    def stop_all(self) -> None:
        """Stop every process, the gateway first; SIGKILL whatever does not stop."""
        for process in reversed(list(self.processes.values())):
            with contextlib.suppress(Exception):
                process.stop()
        for process in self.processes.values():
            with contextlib.suppress(Exception):
                process.kill9()

    def report(self) -> str:
        return "\n\n".join(
            f"----- {name} (pid {p.proc.pid if p.proc else '-'}, alive {p.alive}, "
            f"started {p.starts}x)\n{p.tail()}"
            for name, p in self.processes.items()
        )


@dataclass
class Nginx:
    """nginx in the foreground with a given main configuration (stopped with SIGQUIT)."""

    conf: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            raise AssertionError("nginx is not installed (Debian package nginx; scripts/test.sh)")
        error_log = self.conf.parent / "error.log"
        check = subprocess.run(
            [nginx, "-t", "-c", str(self.conf), "-e", str(error_log)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen(
            [nginx, "-c", str(self.conf), "-e", str(error_log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    async def wait_listening(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, "nginx exited"
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5):
                    return
            except OSError:
                await asyncio.sleep(0.1)
        raise AssertionError(f"nginx is not listening on {self.port}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)  # graceful: the master and its worker
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@dataclass
class Fts3Standin:
    """The FTS3 stand-in as its own process, run as docker-compose's fts3 container runs it
    (``python -m tests.fts3_standin``)."""

    workdir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "fts3.log"

    def start(self) -> None:
        argv = ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "4"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.fts3_standin", *argv],
                env=self.env,
                cwd=Path(__file__).resolve().parents[2],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    async def wait_ready(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(base_url=self.url, timeout=5.0) as client:
            while time.monotonic() < deadline:
                assert self.proc is not None and self.proc.poll() is None, self.tail()
                try:
                    if (await client.get("/")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"the FTS3 stand-in did not answer:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
