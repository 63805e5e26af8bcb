"""The FTS3 client against the stand-in FTS3 server, which copies for real with gfal2.

The stand-in runs with uvicorn on a loopback port, so the client goes through real sockets;
files really land on local disk (file://) and on real XRootD sites (root://).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dynamo_transfer.backends.fts3 import (
    FINAL_FILE_STATES,
    Fts3AuthError,
    Fts3Client,
    Fts3Error,
    Fts3File,
    Fts3Job,
    Fts3JobParams,
    Fts3NotFound,
    Fts3Unavailable,
    Outcome,
    classify,
    explain,
)
from tests.fts3_standin.server import create_app, serve

pytestmark = pytest.mark.timeout(120)


def adler32(data: bytes) -> str:
    return f"ADLER32:{zlib.adler32(data):08x}"


def write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path.as_uri()


async def wait_final(client: Fts3Client, job_id: str, within: float = 60.0) -> Fts3Job:
    deadline = time.monotonic() + within
    while True:
        job = await client.job(job_id)
        if job.final:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job.job_state}: {job.files}"
        await asyncio.sleep(0.05)


async def wait_for(client: Fts3Client, job_id: str, predicate: Any, within: float = 30) -> Fts3Job:
    deadline = time.monotonic() + within
    while True:
        job = await client.job(job_id)
        if predicate(job):
            return job
        assert time.monotonic() < deadline, f"job {job_id}: condition not met: {job}"
        await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def standin_url() -> Iterator[str]:
    with serve(create_app(max_workers=4)) as url:
        yield url


@pytest.fixture(scope="module")
def slow_standin_url() -> Iterator[str]:
    # One worker and a scheduling delay: files stay queued long enough to be seen and canceled.
    # Slow enough that a cancellation lands long before the queue drains, even on a loaded
    # machine.
    with serve(create_app(max_workers=1, schedule_delay=0.3)) as url:
        yield url


@pytest.fixture
async def client(standin_url: str) -> AsyncIterator[Fts3Client]:
    async with Fts3Client(standin_url, timeout=10) as fts:
        yield fts


@pytest.fixture
async def slow_client(slow_standin_url: str) -> AsyncIterator[Fts3Client]:
    async with Fts3Client(slow_standin_url, timeout=10) as fts:
        yield fts


def local_file_exists(url: str | None) -> bool:
    return Path(str(url).removeprefix("file://")).exists()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- copies -------------------------------------------------------------------------------------


async def test_server_info_and_whoami(client: Fts3Client) -> None:
    info = await client.server_info()
    assert info.api is not None and info.api.major == 3
    me = await client.whoami()
    assert me.user_dn and me.user_dn in me.dn
    assert me.vos


async def test_copies_local_files_and_reports_like_fts(client: Fts3Client, tmp_path: Path) -> None:
    payloads = {f"f{n}.dat": bytes([n]) * (1000 + n) for n in range(5)}
    files = [
        Fts3File(
            sources=[write(tmp_path / "src" / name, data)],
            destinations=[(tmp_path / "dst" / "deep" / name).as_uri()],
            checksum=adler32(data),
            filesize=len(data),
            metadata={"lfn": f"/store/{name}"},
            activity="Production",
        )
        for name, data in payloads.items()
    ]
    params = Fts3JobParams(job_metadata={"request": 42}, priority=4)
    job_id = await client.submit(files, params)

    job = await wait_final(client, job_id)
    assert job.job_state == "FINISHED", job
    assert job.job_metadata == {"request": 42}
    assert job.priority == 4
    assert job.submit_time is not None and job.job_finished is not None
    assert len(job.files) == len(payloads)
    for status in job.files:
        name = Path(status.dest_surl or "").name
        assert status.file_state == "FINISHED"
        assert classify(status) is Outcome.DONE
        assert (tmp_path / "dst" / "deep" / name).read_bytes() == payloads[name]
        assert status.filesize == len(payloads[name])
        assert status.checksum == adler32(payloads[name])
        assert status.file_metadata == {"lfn": f"/store/{name}"}
        assert status.activity == "Production"
        assert status.tx_duration is not None and status.throughput is not None
        assert status.start_time is not None and status.finish_time is not None

    # The same through GET /jobs/{id}/files (every field) and the comma-separated form.
    full = await client.files(job_id)
    assert {f.file_id for f in full} == {f.file_id for f in job.files}
    both = await client.jobs([job_id, "00000000-0000-0000-0000-000000000000"])
    assert [j.job_id for j in both] == [job_id, "00000000-0000-0000-0000-000000000000"]
    assert both[0].found and both[0].job_state == "FINISHED" and len(both[0].files) == 5
    assert not both[1].found and both[1].http_status and both[1].http_status.startswith("404")


async def test_copies_to_and_between_xrootd_sites(
    client: Fts3Client, tmp_path: Path, xrootd_pair: tuple[Any, Any]
) -> None:
    first, second = xrootd_pair
    local = b"local data " * 1000
    remote = b"remote data " * 500
    source_pfn = first.write("/store/data/remote.root", remote)
    files = [
        Fts3File(
            sources=[write(tmp_path / "local.root", local)],
            destinations=[first.pfn("/store/data/local.root")],
            checksum=adler32(local),
        ),
        # root -> root: a real third-party copy between the two sites.
        Fts3File(
            sources=[source_pfn],
            destinations=[second.pfn("/store/copy/remote.root")],
            checksum=adler32(remote),
            filesize=len(remote),
        ),
    ]
    job = await wait_final(client, await client.submit(files, Fts3JobParams()))
    assert job.job_state == "FINISHED", [(f.file_state, f.reason) for f in job.files]
    assert first.path("/store/data/local.root").read_bytes() == local
    assert second.path("/store/copy/remote.root").read_bytes() == remote
    assert {f.source_se for f in job.files} == {"file://", "root://127.0.0.1"}


async def test_alternative_sources_are_tried_in_order(client: Fts3Client, tmp_path: Path) -> None:
    data = b"second replica"
    file = Fts3File(
        sources=[(tmp_path / "gone.dat").as_uri(), write(tmp_path / "there.dat", data)],
        destinations=[(tmp_path / "out.dat").as_uri()],
        checksum=adler32(data),
    )
    job = await wait_final(client, await client.submit([file], Fts3JobParams()))
    assert job.job_state == "FINISHED"
    assert job.files[0].source_surl == (tmp_path / "there.dat").as_uri()
    assert (tmp_path / "out.dat").read_bytes() == data


# -- failures -----------------------------------------------------------------------------------


async def test_missing_source_is_unrecoverable(
    client: Fts3Client, tmp_path: Path, xrootd_site: Any
) -> None:
    files = [
        Fts3File(
            sources=[(tmp_path / "nope.dat").as_uri()], destinations=[(tmp_path / "a").as_uri()]
        ),
        Fts3File(
            sources=[xrootd_site.pfn("/store/nope.root")],
            destinations=[(tmp_path / "b").as_uri()],
            checksum="ADLER32:12345678",
        ),
    ]
    job = await wait_final(client, await client.submit(files, Fts3JobParams()))
    assert job.job_state == "FAILED"
    assert job.reason
    for status in job.files:
        assert status.file_state == "FAILED"
        assert status.reason and status.reason.startswith("SOURCE [2]"), status.reason
        assert explain(status) == (Outcome.UNRECOVERABLE, "source-missing")
        assert status.recoverable is False
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


async def test_some_failed_is_finisheddirty(client: Fts3Client, tmp_path: Path) -> None:
    files = [
        Fts3File(sources=[write(tmp_path / "ok", b"x")], destinations=[(tmp_path / "o1").as_uri()]),
        Fts3File(sources=[(tmp_path / "nope").as_uri()], destinations=[(tmp_path / "o2").as_uri()]),
    ]
    job = await wait_final(client, await client.submit(files, Fts3JobParams()))
    assert job.job_state == "FINISHEDDIRTY"
    assert sorted(classify(f) for f in job.files) == [Outcome.DONE, Outcome.UNRECOVERABLE]


@pytest.mark.parametrize("verify", ["both", "source"])
async def test_wrong_checksum_fails_and_leaves_nothing(
    client: Fts3Client, tmp_path: Path, xrootd_site: Any, verify: Any
) -> None:
    data = b"the real content"
    source = write(tmp_path / "src.dat", data)
    destinations = [(tmp_path / "dst" / "x.dat").as_uri(), xrootd_site.pfn("/store/x.dat")]
    files = [
        Fts3File(sources=[source], destinations=[dest], checksum="ADLER32:0badc0de")
        for dest in destinations
    ]
    job = await wait_final(
        client, await client.submit(files, Fts3JobParams(verify_checksum=verify))
    )
    assert job.job_state == "FAILED"
    for status in job.files:
        assert explain(status) == (Outcome.UNRECOVERABLE, "source-checksum-mismatch")
    assert not (tmp_path / "dst" / "x.dat").exists()
    assert not xrootd_site.path("/store/x.dat").exists()


async def test_checksum_not_verified_when_not_asked(client: Fts3Client, tmp_path: Path) -> None:
    file = Fts3File(
        sources=[write(tmp_path / "s", b"abc")],
        destinations=[(tmp_path / "d").as_uri()],
        checksum="ADLER32:0badc0de",
    )
    job = await client.submit([file], Fts3JobParams(verify_checksum="none"))
    assert (await wait_final(client, job)).job_state == "FINISHED"


async def test_checksum_modes_without_a_value(client: Fts3Client, tmp_path: Path) -> None:
    source = write(tmp_path / "s", b"abc")
    # "both" without a value compares source and destination with each other.
    end_to_end = Fts3File(sources=[source], destinations=[(tmp_path / "both").as_uri()])
    job = await wait_final(client, await client.submit([end_to_end], Fts3JobParams()))
    assert job.job_state == "FINISHED"
    # "target" needs a value to compare the destination with: gfal2 refuses the copy.
    target = Fts3File(sources=[source], destinations=[(tmp_path / "target").as_uri()])
    params = Fts3JobParams(verify_checksum="target")
    job = await wait_final(client, await client.submit([target], params))
    assert job.files[0].reason == (
        "DESTINATION [22] Checksum value required if mode is not end to end"
    )
    assert classify(job.files[0]) is Outcome.UNRECOVERABLE


async def test_existing_destination_with_same_checksum_is_done(
    client: Fts3Client, tmp_path: Path, xrootd_site: Any
) -> None:
    data = b"already there " * 100
    source = write(tmp_path / "src.root", data)
    destination = xrootd_site.pfn("/store/exists.root")
    file = Fts3File(sources=[source], destinations=[destination], checksum=adler32(data))
    first = await wait_final(client, await client.submit([file], Fts3JobParams()))
    assert first.job_state == "FINISHED"

    # Again, without overwrite: FTS refuses, and reports what is there.
    params = Fts3JobParams(overwrite=False, dst_file_report=True)
    again = await wait_final(client, await client.submit([file], params))
    status = again.files[0]
    assert again.job_state == "FAILED"
    assert status.reason == (
        "DESTINATION [17] Destination file exists and overwrite is not enabled"
    )
    assert status.destination_report is not None
    assert explain(status) == (Outcome.DONE, "destination-exists-same-checksum")

    # Without the report, only the caller's own look at the destination can tell.
    blind = await wait_final(client, await client.submit([file], Fts3JobParams()))
    status = blind.files[0]
    assert classify(status) is Outcome.UNRECOVERABLE
    assert classify(status, dest_checksum=adler32(data), dest_size=len(data)) is Outcome.DONE


async def test_existing_different_destination(
    client: Fts3Client, tmp_path: Path, xrootd_site: Any
) -> None:
    data = b"new content"
    xrootd_site.write("/store/other.root", b"something else entirely")
    file = Fts3File(
        sources=[write(tmp_path / "src", data)],
        destinations=[xrootd_site.pfn("/store/other.root")],
        checksum=adler32(data),
    )
    refused = await wait_final(
        client, await client.submit([file], Fts3JobParams(dst_file_report=True))
    )
    assert classify(refused.files[0]) is Outcome.UNRECOVERABLE
    assert xrootd_site.path("/store/other.root").read_bytes() == b"something else entirely"

    # XRootD caches a file's checksum (computed above for the report) keyed by its mtime, in
    # whole seconds: overwriting within the same second makes the copy's verification read the
    # old checksum and fail with "CheckSum error" (a RETRYABLE failure).
    await asyncio.sleep(1.1)
    overwritten = await wait_final(
        client, await client.submit([file], Fts3JobParams(overwrite=True))
    )
    assert overwritten.job_state == "FINISHED", overwritten.files[0].reason
    assert xrootd_site.path("/store/other.root").read_bytes() == data


async def test_unreachable_destination_is_retried_then_retryable(
    client: Fts3Client, tmp_path: Path
) -> None:
    dead = f"root://127.0.0.1:{free_port()}//store/x.root"
    file = Fts3File(sources=[write(tmp_path / "s", b"abc")], destinations=[dead])
    started = time.monotonic()
    job = await wait_final(client, await client.submit([file], Fts3JobParams(retry=2)))
    status = job.files[0]
    assert job.job_state == "FAILED"
    assert status.retry == 2
    assert status.recoverable is True
    assert classify(status) is Outcome.RETRYABLE, status.reason
    assert time.monotonic() - started < 30


# -- cancellation and staging ---------------------------------------------------------------


async def test_cancel_job_with_queued_files(slow_client: Fts3Client, tmp_path: Path) -> None:
    files = [
        Fts3File(
            sources=[write(tmp_path / "src" / f"{n}.dat", b"q" * 100)],
            destinations=[(tmp_path / "dst" / f"{n}.dat").as_uri()],
        )
        for n in range(40)
    ]
    job_id = await slow_client.submit(files, Fts3JobParams())
    await wait_for(slow_client, job_id, lambda j: j.job_state == "ACTIVE")

    canceled = await slow_client.cancel(job_id)
    assert canceled.job_state == "CANCELED"
    assert canceled.http_status is not None and canceled.http_status.startswith("200")

    job = await wait_for(
        slow_client, job_id, lambda j: all(f.file_state in FINAL_FILE_STATES for f in j.files)
    )
    assert job.job_state == "CANCELED"
    states = [f.file_state for f in job.files]
    assert set(states) <= {"FINISHED", "CANCELED"}
    assert states.count("CANCELED") >= 30, states
    canceled_files = [f for f in job.files if f.file_state == "CANCELED"]
    for status in canceled_files:
        assert classify(status) is Outcome.CANCELED
    # A copy that was already running when the job was canceled is cleaned up by its worker
    # afterwards (as fts_url_copy does), so the destination disappears eventually.
    deadline = asyncio.get_running_loop().time() + 15
    while any(local_file_exists(f.dest_surl) for f in canceled_files):
        assert asyncio.get_running_loop().time() < deadline, "canceled copies left files behind"
        await asyncio.sleep(0.1)

    # Nothing runs afterwards, and a second cancellation is FTS's "304": not an error.
    await asyncio.sleep(0.3)
    assert [f.file_state for f in (await slow_client.job(job_id)).files] == states
    again = await slow_client.cancel(job_id)
    assert again.job_state == "CANCELED"
    assert again.http_status is not None and again.http_status.startswith("304")


async def test_cancel_some_files(slow_client: Fts3Client, tmp_path: Path) -> None:
    files = [
        Fts3File(
            sources=[write(tmp_path / f"{n}.src", b"c")],
            destinations=[(tmp_path / f"{n}.dst").as_uri()],
        )
        for n in range(6)
    ]
    job_id = await slow_client.submit(files, Fts3JobParams())
    job = await slow_client.job(job_id)
    last_two = [f.file_id for f in job.files[-2:]]
    assert await slow_client.cancel_files(job_id, last_two) == ["CANCELED", "CANCELED"]
    assert await slow_client.cancel_files(job_id, []) == []

    job = await wait_final(slow_client, job_id)
    by_id = {f.file_id: f for f in job.files}
    assert all(by_id[i].file_state == "CANCELED" for i in last_two)
    assert all(f.file_state == "FINISHED" for f in job.files if f.file_id not in last_two)
    assert await slow_client.cancel_files(job_id, last_two[:1]) == ["CANCELED"]


async def test_bring_online_goes_through_staging(slow_client: Fts3Client, tmp_path: Path) -> None:
    file = Fts3File(
        sources=[write(tmp_path / "tape.dat", b"t")], destinations=[(tmp_path / "d").as_uri()]
    )
    job_id = await slow_client.submit(
        [file], Fts3JobParams(bring_online=3600, copy_pin_lifetime=60)
    )
    assert (await slow_client.job(job_id)).job_state == "STAGING"
    assert job_id in {j.job_id for j in await slow_client.list_jobs(["STAGING", "ACTIVE"])}
    job = await wait_final(slow_client, job_id)
    assert job.job_state == "FINISHED"
    assert job.bring_online == 3600 and job.copy_pin_lifetime == 60
    assert job.files[0].staging_start is not None and job.files[0].staging_finished is not None
    assert job_id not in {j.job_id for j in await slow_client.list_jobs(["STAGING", "ACTIVE"])}


# -- authentication and availability ---------------------------------------------------------


def jwt(claims: dict[str, Any]) -> str:
    import base64

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.c2ln"


async def test_token_authentication(tmp_path: Path) -> None:
    token = jwt({"sub": "dynamo-robot", "iss": "https://iam.example.org/"})
    with serve(create_app(max_workers=1, token=token)) as url:
        async with Fts3Client(url, token=token) as fts:
            me = await fts.whoami()
            assert me.method == "oauth2"
            assert me.user_dn is not None and me.user_dn.endswith("CN=dynamo-robot")
            file = Fts3File(
                sources=[write(tmp_path / "s", b"t")], destinations=[(tmp_path / "d").as_uri()]
            )
            job = await wait_final(fts, await fts.submit([file], Fts3JobParams()))
            assert job.job_state == "FINISHED" and job.user_dn == me.user_dn
        for wrong in (None, "not-the-token"):
            async with Fts3Client(url, token=wrong) as fts:
                with pytest.raises(Fts3AuthError) as caught:
                    await fts.whoami()
                assert caught.value.status == 401 and not caught.value.retryable
                with pytest.raises(Fts3AuthError):
                    await fts.submit([file], Fts3JobParams())


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a user certificate, with openssl."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", "ca.key",
        "-out", "ca.pem", "-subj", "/DC=org/DC=dynamo/CN=Dynamo Test CA")  # fmt: skip
    for name, subject, extension in (
        ("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1"),
        ("user", "/DC=org/DC=dynamo/OU=Users/CN=Dynamo Robot", "extendedKeyUsage=clientAuth"),
    ):
        (directory / f"{name}.ext").write_text(extension + "\n")
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", subject)  # fmt: skip
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-out", f"{name}.pem",
            "-extfile", f"{name}.ext")  # fmt: skip
    # A grid proxy file keeps certificate and key together.
    proxy = directory / "x509up"
    proxy.write_text((directory / "user.pem").read_text() + (directory / "user.key").read_text())
    return {
        name: directory / name
        for name in ("ca.pem", "server.pem", "server.key", "user.pem", "user.key", "x509up")
    }


async def test_x509_client_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    dn = "/DC=org/DC=dynamo/OU=Users/CN=Dynamo Robot"
    app = create_app(max_workers=1, x509_dn=dn)
    with serve(
        app,
        ssl_certfile=str(pki["server.pem"]),
        ssl_keyfile=str(pki["server.key"]),
        ssl_ca_certs=str(pki["ca.pem"]),
        ssl_cert_reqs=ssl.CERT_REQUIRED,
    ) as url:
        assert url.startswith("https://")
        for cert in (str(pki["x509up"]), (str(pki["user.pem"]), str(pki["user.key"]))):
            async with Fts3Client(url, cert=cert, verify=str(pki["ca.pem"])) as fts:
                me = await fts.whoami()
                assert me.method == "certificate" and me.user_dn == dn
        # The server's TLS layer hangs up on a client without a certificate (which looks no
        # different from a dropped connection).
        async with Fts3Client(url, verify=str(pki["ca.pem"])) as fts:
            with pytest.raises(Fts3Unavailable):
                await fts.whoami()
        # And the client refuses a server its CAs do not vouch for, for good.
        async with Fts3Client(url, cert=str(pki["x509up"])) as fts:
            with pytest.raises(Fts3AuthError) as caught:
                await fts.whoami()
            assert not caught.value.retryable


async def test_server_down_is_unavailable_fast() -> None:
    async with Fts3Client(f"http://127.0.0.1:{free_port()}", timeout=5) as fts:
        started = time.monotonic()
        with pytest.raises(Fts3Unavailable) as caught:
            await fts.job("1b0d0b4e-0000-0000-0000-000000000000")
        assert caught.value.retryable and caught.value.status == 0
        with pytest.raises(Fts3Unavailable):
            await fts.submit(
                [Fts3File(sources=["file:///a"], destinations=["file:///b"])], Fts3JobParams()
            )
        assert time.monotonic() - started < 2


async def test_unknown_job(client: Fts3Client) -> None:
    with pytest.raises(Fts3NotFound) as caught:
        await client.job("00000000-0000-0000-0000-000000000000")
    assert caught.value.status == 404 and not caught.value.retryable
    with pytest.raises(Fts3NotFound):
        await client.cancel("00000000-0000-0000-0000-000000000000")


async def test_bad_submission_is_an_error(client: Fts3Client) -> None:
    file = Fts3File(sources=["file:///a"], destinations=["file:///b", "file:///c"])
    with pytest.raises(Fts3Error) as caught:
        await client.submit([file], Fts3JobParams())
    assert caught.value.status == 400 and not caught.value.retryable
    with pytest.raises(ValueError):
        await client.submit([], Fts3JobParams())


# -- wire details a real FTS has and the stand-in does not show --------------------------------


def mock_client(handler: Any, **options: Any) -> Fts3Client:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return Fts3Client("https://fts.example.org:8446/", http=http, **options)


async def test_request_shape_and_bearer_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"job_id": "5f2c8a4e-0b2f-11ef-9d55-fa163e5ddc4b"})

    fts = mock_client(handler, token="t0k")
    file = Fts3File(
        sources=["root://a.example.org//store/x"],
        destinations=["davs://b.example.org/store/x"],
        checksum="ADLER32:1519038c",
        filesize=10,
        metadata={"lfn": "/store/x"},
        activity="Data Consolidation",
    )
    params = Fts3JobParams(priority=5, retry=2, retry_delay=60, overwrite=True)
    assert await fts.submit([file], params) == "5f2c8a4e-0b2f-11ef-9d55-fa163e5ddc4b"
    request = seen[0]
    assert request.method == "POST" and str(request.url) == "https://fts.example.org:8446/jobs"
    assert request.headers["authorization"] == "Bearer t0k"
    body = json.loads(request.content)
    assert body["files"] == [
        {
            "sources": ["root://a.example.org//store/x"],
            "destinations": ["davs://b.example.org/store/x"],
            "checksum": "ADLER32:1519038c",
            "filesize": 10,
            "metadata": {"lfn": "/store/x"},
            "activity": "Data Consolidation",
            "selection_strategy": "auto",
        }
    ]
    assert body["params"] == {
        "verify_checksum": "both",
        "overwrite": True,
        "priority": 5,
        "retry": 2,
        "retry_delay": 60,
        "bring_online": -1,
        "copy_pin_lifetime": -1,
        "job_metadata": {},
        "dst_file_report": False,
    }


async def test_cancel_answered_304_without_body() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(304)
        assert request.url.path == "/jobs/j1"
        return httpx.Response(200, json={"job_id": "j1", "job_state": "FINISHED", "extra": 1})

    job = await mock_client(handler).cancel("j1")
    assert job.job_state == "FINISHED"


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [
        (401, Fts3AuthError, False),
        (403, Fts3AuthError, False),
        (404, Fts3NotFound, False),
        (400, Fts3Error, False),
        (500, Fts3Error, True),
        (502, Fts3Unavailable, True),
        (503, Fts3Unavailable, True),
        (429, Fts3Unavailable, True),
    ],
)
async def test_http_errors(status: int, error: type[Fts3Error], retryable: bool) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"status": f"{status} x", "message": "told so"})

    with pytest.raises(error) as caught:
        await mock_client(handler).whoami()
    assert type(caught.value) is error
    assert caught.value.status == status and caught.value.retryable is retryable
    assert "told so" in caught.value.message


async def test_timeout_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(Fts3Unavailable):
        await mock_client(handler).list_jobs(["ACTIVE"])


async def test_jobs_in_chunks_and_single_answers() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        ids = request.url.path.removeprefix("/jobs/").split(",")
        assert request.url.params["files"].startswith("file_id,")
        if len(ids) == 1:  # FTS answers a single id with an object, not a list
            return httpx.Response(200, json={"job_id": ids[0], "job_state": "ACTIVE", "files": []})
        return httpx.Response(200, json=[{"job_id": i, "job_state": "SUBMITTED"} for i in ids])

    jobs = await mock_client(handler).jobs([f"j{n}" for n in range(5)], chunk=2)
    assert [j.job_id for j in jobs] == ["j0", "j1", "j2", "j3", "j4"]
    assert [j.job_state for j in jobs] == ["SUBMITTED"] * 4 + ["ACTIVE"]


async def test_a_404_that_is_not_ftss_is_not_a_purged_job() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="<html>no such page</html>")

    with pytest.raises(Fts3NotFound):
        await mock_client(handler).jobs(["5f2c8a4e-0b2f-11ef-9d55-fa163e5ddc4b"])
