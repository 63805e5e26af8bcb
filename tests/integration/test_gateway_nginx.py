"""Grid certificates through a real nginx (Debian's package) in front of the gateway: nginx
terminates TLS, verifies the client certificate against a test CA and passes the subject DN;
the gateway, trusting nginx's address only, maps the DN to an account. The certificates are
made by openssl in the test: a user certificate, two proxy-style ones (the user's DN with
/CN=proxy and with /CN=<digits>), an unknown person's and one from a CA nginx does not
trust."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_gateway_support import (
    ADMIN_TOKEN,
    StubService,
    free_port,
    gateway_settings,
    serve,
)

USER_DN = "/DC=org/DC=example/OU=People/CN=Jane Doe"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass
class Pki:
    root: Path

    def path(self, name: str) -> str:
        return str(self.root / name)

    def client(self, name: str) -> tuple[str, str]:
        """(certificate chain, key) to present as ``name``."""
        return self.path(f"{name}.chain.pem"), self.path(f"{name}.key")


def _sign(
    pki: Path, name: str, subject: str, issuer: str, ext: str, serial: int | None = None
) -> None:
    (pki / f"{name}.ext").write_text(ext)
    _openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
        "-subj", subject, "-out", f"{name}.csr", cwd=pki,
    )  # fmt: skip
    serial_args = ["-set_serial", str(serial)] if serial else ["-CAcreateserial"]
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem", "-CAkey", f"{issuer}.key",
        *serial_args, "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=pki,
    )  # fmt: skip


def _ca(pki: Path, name: str, subject: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
        "-out", f"{name}.pem", "-days", "2", "-subj", subject,
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=pki,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    _ca(root, "ca", "/CN=Dynamo Test CA")
    _ca(root, "rogue", "/CN=Some Other CA")
    user_ext = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
    client_ext = user_ext + "extendedKeyUsage=clientAuth\n"
    _sign(
        root,
        "server",
        "/CN=localhost",
        "ca",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    _sign(root, "user", USER_DN, "ca", client_ext)
    _sign(root, "proxystyle", USER_DN + "/CN=proxy", "ca", client_ext)
    _sign(root, "nobody", "/DC=org/DC=example/OU=People/CN=Nobody", "ca", client_ext)
    _sign(root, "outsider", USER_DN, "rogue", client_ext)
    # The DN of an RFC 3820 proxy (/CN=<digits> after the owner's), signed by the CA: nginx
    # cannot verify real proxies, whose issuer is the user (OpenSSL wants a flag for them that
    # nginx has no directive for), so the proxy-style certificates are issued by the CA.
    _sign(root, "proxydigits", USER_DN + "/CN=1234567890", "ca", client_ext)
    for name in ("user", "proxystyle", "proxydigits", "nobody", "outsider"):
        (root / f"{name}.chain.pem").write_bytes((root / f"{name}.pem").read_bytes())
    return Pki(root)


def _nginx_conf(pki: Pki, work: Path, port: int, upstream: str) -> str:
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""
{user}
daemon off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {pki.path("server.pem")};
        ssl_certificate_key {pki.path("server.key")};
        ssl_client_certificate {pki.path("ca.pem")};
        ssl_verify_client optional;
        ssl_verify_depth 3;
        location / {{
            proxy_pass {upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            # Set, never passed through: a client cannot supply its own DN.
            proxy_set_header X-SSL-Client-S-DN $ssl_client_s_dn;
            proxy_set_header X-SSL-Client-Verify $ssl_client_verify;
        }}
    }}
}}
"""


@contextlib.contextmanager
def _nginx(pki: Pki, work: Path, upstream: str) -> Iterator[str]:
    if not Path(NGINX).exists():
        raise RuntimeError("nginx is not installed (Debian package nginx; scripts/test.sh)")
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(_nginx_conf(pki, work, port, upstream))
    check = subprocess.run(
        [NGINX, "-t", "-c", str(conf), "-e", str(work / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen(
        [NGINX, "-c", str(conf), "-e", str(work / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), 0.2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (work / "error.log").read_text() if (work / "error.log").exists() else ""
                    raise RuntimeError(f"nginx did not start: {log[-2000:]}") from None
                time.sleep(0.05)
        yield f"https://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful stop of the master and its worker
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.asynccontextmanager
async def _stack(database_url: str, pki: Pki, work: Path) -> AsyncIterator[tuple[str, Any]]:
    from dynamo_gateway.app import create_app

    stub = StubService("inventory")
    async with serve(stub.app, lifespan="off") as inventory_url:
        settings = gateway_settings(
            database_url, inventory_url=inventory_url, trusted_proxies=["127.0.0.1/32"]
        )
        async with serve(create_app(settings)) as gateway_url:
            async with httpx.AsyncClient(
                base_url=gateway_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            ) as admin:
                for name, role, dns in (("jane", "operator", [USER_DN]), ("joe", "user", [])):
                    response = await admin.post(
                        "/api/v1/auth/accounts", json={"name": name, "role": role, "dns": dns}
                    )
                    assert response.status_code == 201, response.text
            with _nginx(pki, work, gateway_url) as url:
                yield url, stub


async def _as(
    url: str, pki: Pki, who: str | None, path: str = "/api/v1/auth/whoami", **kw: Any
) -> httpx.Response:
    context = ssl.create_default_context(cafile=pki.path("ca.pem"))
    if who:
        context.load_cert_chain(*pki.client(who))

    def call() -> httpx.Response:
        # httpx's sync client in a thread: the event loop keeps serving the gateway meanwhile.
        with httpx.Client(base_url=url, verify=context, timeout=10) as client:
            return client.request(kw.pop("method", "GET"), path, **kw)

    return await asyncio.to_thread(call)


async def test_certificates_through_nginx(database_url: str, pki: Pki, tmp_path: Path) -> None:
    async with _stack(database_url, pki, tmp_path / "nginx") as (url, stub):
        for who in ("user", "proxystyle", "proxydigits"):
            response = await _as(url, pki, who)
            assert response.status_code == 200, (who, response.text)
            me = response.json()
            assert (me["name"], me["role"], me["method"]) == ("jane", "operator", "x509"), who
            assert me["detail"] == USER_DN, who

        # A write as Jane reaches the service as Jane.
        response = await _as(url, pki, "proxydigits", "/api/v1/sites", method="POST", json={})
        assert response.status_code == 200, response.text
        assert response.json()["headers"]["x-dynamo-user"] == "jane"

        unknown = await _as(url, pki, "nobody")
        assert unknown.status_code == 401
        assert (
            "no account for the certificate DN /DC=org/DC=example/OU=People/CN=Nobody"
            in (unknown.json()["detail"])
        )

        # A certificate nginx cannot verify is turned away by nginx itself; the gateway's own
        # refusal of a failed verification (optional_no_ca setups) is in test_gateway_auth.
        seen_before = len(stub.seen)
        outsider = await _as(url, pki, "outsider")
        assert outsider.status_code == 400
        assert "SSL certificate error" in outsider.text
        assert len(stub.seen) == seen_before

        # No certificate: anonymous, even with a DN header of one's own making.
        anonymous = await _as(url, pki, None, headers={"X-SSL-Client-S-DN": USER_DN})
        assert anonymous.status_code == 200
        assert anonymous.json()["method"] == "anonymous"
        refused = await _as(
            url, pki, None, "/api/v1/sites", method="POST", json={},
            headers={"X-SSL-Client-S-DN": USER_DN, "X-SSL-Client-Verify": "SUCCESS"},
        )  # fmt: skip
        assert refused.status_code == 401
        writes = [seen for seen in stub.seen if seen["method"] == "POST"]
        assert [seen["headers"]["x-dynamo-user"] for seen in writes] == ["jane"]
