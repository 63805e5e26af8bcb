"""How `dynamo inject` reads its FILE arguments: LFN,SIZE,ADLER32 as given, or a local file
whose size and adler32 are computed."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from dynamo_common.client.commands.userdata import parse_file, parse_import
from dynamo_common.client.errors import ClientError, ExitCode


def test_a_triple_is_taken_as_given_with_the_checksum_in_lower_case() -> None:
    assert parse_file("/store/user/a/f.root,120,0A0B0C0D") == {
        "lfn": "/store/user/a/f.root",
        "size": 120,
        "adler32": "0a0b0c0d",
    }


def test_a_local_file_gives_its_size_and_adler32(tmp_path: Path) -> None:
    data = b"user data" * 1000
    local = tmp_path / "out.root"
    local.write_bytes(data)
    assert parse_file(f"{local}=/store/user/a/out.root") == {
        "lfn": "/store/user/a/out.root",
        "size": len(data),
        "adler32": f"{zlib.adler32(data) & 0xFFFFFFFF:08x}",
    }


@pytest.mark.parametrize("spec", ["/store/user/a/f.root", "/f,ten,0a0b0c0d", "/f,1"])
def test_anything_else_is_a_usage_error(spec: str) -> None:
    with pytest.raises(ClientError) as error:
        parse_file(spec)
    assert error.value.code is ExitCode.USAGE


def test_a_missing_local_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(ClientError, match="not a readable file"):
        parse_file(f"{tmp_path / 'none'}=/store/user/a/f.root")


def test_an_import_names_its_source_url_then_the_file() -> None:
    assert parse_import("root://old.example//scratch/f.root,/store/user/a/f.root,7,0000000A") == {
        "source": "root://old.example//scratch/f.root",
        "lfn": "/store/user/a/f.root",
        "size": 7,
        "adler32": "0000000a",
    }


@pytest.mark.parametrize("spec", ["/scratch/f.root,/store/user/a/f.root,7,0000000a", "root://x/f"])
def test_an_import_without_a_source_url_or_a_file_is_a_usage_error(spec: str) -> None:
    with pytest.raises(ClientError) as error:
        parse_import(spec)
    assert error.value.code is ExitCode.USAGE
