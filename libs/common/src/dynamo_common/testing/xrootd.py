"""Real XRootD storage sites on loopback for tests (Debian's ``xrootd-server``), never skipped.

Each :class:`XrootdServer` is a throw-away site: its own port, data directory and run directory,
all removed when it stops. A missing ``xrootd`` binary is a ``RuntimeError`` (CI must go red, not
skip). See INFRA.md, "XRootD sites on loopback", for why the configuration looks like this.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["XrootdServer"]

_RUN_AS = "xrootd"
_START_TIMEOUT = 15.0
_STOP_TIMEOUT = 10.0
_START_ATTEMPTS = 5
# Below Linux's ephemeral range (32768-60999), so no outgoing connection can be holding the port
# between the check and xrootd's bind.
_PORT_RANGE = (20000, 32000)

_CONFIG = """\
xrd.port {port}
xrd.network nodnr
all.adminpath {run_dir}
all.pidpath {run_dir}
oss.localroot {data_dir}
all.export / writable
xrootd.chksum adler32
ofs.tpc xfr 64 pgm {xrdcp} --server
sec.protbind * none
"""
# Not "all.role server": it would wait for a cmsd that never comes.


def _port_is_free(port: int) -> bool:
    # xrootd listens on all interfaces (IPv6 and IPv4), so the port must be free on both.
    families = [(socket.AF_INET, "0.0.0.0")]
    if socket.has_ipv6:
        families.append((socket.AF_INET6, "::"))
    for family, host in families:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((host, port))
        except OSError as exc:
            if family == socket.AF_INET6 and exc.errno == 97:  # EAFNOSUPPORT: no IPv6 here
                continue
            return False
    return True


def _free_port() -> int:
    for _ in range(200):
        port = random.randrange(*_PORT_RANGE)
        if _port_is_free(port):
            return port
    raise RuntimeError(f"no free TCP port found in {_PORT_RANGE}")


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still "exists" for kill(0): look at its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


class XrootdServer:
    """A throw-away XRootD site on 127.0.0.1 with an ADLER32 checksum and third-party copies.

    Use as ``with XrootdServer() as site:`` or ``async with XrootdServer() as site:``. ``url`` is
    ``root://127.0.0.1:PORT/`` and ``pfn("/store/a")`` is ``root://127.0.0.1:PORT//store/a``;
    ``data_dir`` is the directory that holds the site's namespace.
    """

    def __init__(self, name: str | None = None, *, base_dir: str | Path | None = None) -> None:
        self.name = name or f"site{random.randrange(16**6):06x}"
        self._base_parent = None if base_dir is None else Path(base_dir)
        self._base: Path | None = None
        self._process_log: Path | None = None
        self._pid: int | None = None
        self.port = 0

    # -- properties ---------------------------------------------------------------------------

    @property
    def base_dir(self) -> Path:
        if self._base is None:
            raise RuntimeError(f"XRootD site {self.name} is not started")
        return self._base

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def run_dir(self) -> Path:
        return self.base_dir / "run"

    @property
    def log_file(self) -> Path:
        # xrootd inserts the instance name (-n) as a directory in front of the log file name.
        return self.run_dir / self.name / "xrootd.log"

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError(f"XRootD site {self.name} is not started")
        return f"root://127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        return self._pid is not None and _alive(self._pid)

    def pfn(self, path: str) -> str:
        """The root:// PFN of an absolute path in the site's namespace."""
        if not path.startswith("/"):
            raise ValueError(f"path must be absolute, not {path!r}")
        return self.url + path

    def write(self, path: str, data: bytes) -> str:
        """Put a file into the site behind XRootD's back (for test fixtures); returns its PFN.

        The file and any directories created are given to the server's user, or the server
        could not delete or write next to them.
        """
        if not path.startswith("/") or ".." in path.split("/"):
            raise ValueError(f"path must be absolute and normalised, not {path!r}")
        target = self.data_dir / path.lstrip("/")
        missing = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        for created in [target, *missing]:
            self.give_to_server(created)
        return self.pfn(path)

    def path(self, path: str) -> Path:
        """The local path of an absolute path in the site's namespace."""
        return self.data_dir / path.lstrip("/")

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._pid is not None:
            raise RuntimeError(f"XRootD site {self.name} is already running")
        xrootd = shutil.which("xrootd")
        xrdcp = shutil.which("xrdcp")
        if xrootd is None or xrdcp is None:
            raise RuntimeError(
                "xrootd (and xrdcp) are not installed: apt-get install -y xrootd-server "
                "xrootd-client (scripts/test.sh does it when run as root)"
            )
        self._base = Path(
            tempfile.mkdtemp(prefix=f"dynamo-xrootd-{self.name}-", dir=self._base_parent)
        )
        try:
            self.data_dir.mkdir()
            self.run_dir.mkdir()
            # The server drops to its own user: it needs to traverse and write all of these.
            self.base_dir.chmod(0o755)
            for path in (self.base_dir, self.data_dir, self.run_dir):
                self.give_to_server(path)
            errors: list[str] = []
            for _ in range(_START_ATTEMPTS):
                self.port = _free_port()
                error = self._launch(xrootd, xrdcp)
                if error is None:
                    return
                errors.append(f"port {self.port}: {error}")
                if "address already in use" not in error.lower():
                    break
            raise RuntimeError(f"XRootD site {self.name} did not start: " + "; ".join(errors))
        except BaseException:
            self.close()
            raise

    def _launch(self, xrootd: str, xrdcp: str) -> str | None:
        """Start the daemon on ``self.port``; None once it answers, else why it did not."""
        config = self.base_dir / f"xrootd-{self.port}.cfg"
        config.write_text(
            _CONFIG.format(
                port=self.port,
                run_dir=self.run_dir,
                data_dir=self.data_dir,
                xrdcp=xrdcp,
            )
        )
        self.give_to_server(config)
        # A pid file left by a failed attempt would name a dead process and end the wait below
        # before the new daemon has written its own.
        pid_file = self.run_dir / self.name / "xrootd.pid"
        pid_file.unlink(missing_ok=True)
        command = [xrootd, "-b", "-l", str(self.run_dir / "xrootd.log"), "-c", str(config)]
        command += ["-n", self.name]
        if os.geteuid() == 0:
            command += ["-R", _RUN_AS]  # it refuses to run as root
        # cwd: xrootd creates a directory named after the instance in its working directory
        # (for core files); keep it inside the site's directory.
        launched = subprocess.run(
            command,
            cwd=self.base_dir,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if launched.returncode != 0:
            # With -b the output goes to the log, not to stderr.
            output = (launched.stderr or launched.stdout).strip()
            return f"exit {launched.returncode}: {output} {self._log_tail()}".strip()
        # -b daemonises at once; readiness is the port answering (well under a second).
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            pid = self._read_pid(pid_file)
            if pid is not None:
                self._pid = pid
            if _answers(self.port):
                if self._pid is None:
                    self._pid = self._read_pid(pid_file)
                if self._pid is None:
                    return "port answers but no pid file was written"
                return None
            if self._pid is not None and not _alive(self._pid):
                self._pid = None
                return f"the daemon exited: {self._log_tail()}"
            time.sleep(0.02)
        self._kill()
        return f"the port did not answer within {_START_TIMEOUT:g} s: {self._log_tail()}"

    def stop(self) -> None:
        """Stop the server (the directories stay until :meth:`close`)."""
        self._kill()

    def close(self) -> None:
        """Stop the server and delete its directories."""
        try:
            self._kill()
        finally:
            self._cleanup()

    def _kill(self) -> None:
        pid, self._pid = self._pid, None
        if pid is None or not _alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.02)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.02)

    def _cleanup(self) -> None:
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None

    def give_to_server(self, path: Path) -> None:
        """Make ``path`` (created behind the server's back) the server user's own."""
        if os.geteuid() != 0:
            return  # the server runs as this user
        entry = pwd.getpwnam(_RUN_AS)
        os.chown(path, entry.pw_uid, entry.pw_gid)

    @staticmethod
    def _read_pid(pid_file: Path) -> int | None:
        try:
            return int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_file})"
        return " | ".join(text.strip().splitlines()[-lines:])

    def __repr__(self) -> str:
        where = f"port {self.port}" if self.port else "not started"
        return f"XrootdServer({self.name!r}, {where})"

    # -- context managers ---------------------------------------------------------------------

    def __enter__(self) -> XrootdServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> XrootdServer:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.close)
