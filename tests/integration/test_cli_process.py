"""`dynamo` as the installed command, run as a process the way a shell or a script runs it:
shell completion and the exit codes that need no stack; and the pieces of `--wait` and
`--until` that need no stack either."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dynamo_common.client.commands.base import parse_until, poll
from dynamo_common.client.errors import ClientError, ExitCode

DYNAMO = str(Path(sys.executable).parent / "dynamo")


def _dynamo(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DYNAMO, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=False,
    )


def _complete(words: str) -> list[str]:
    """What bash would offer after ``words`` (the word being completed is the last one)."""
    parts = words.split(" ")
    done = _dynamo(
        _DYNAMO_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(len(parts) - 1)
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_show_completion_prints_the_bash_script() -> None:
    done = _dynamo("--show-completion", "bash")
    assert done.returncode == 0, done.stderr
    assert "_DYNAMO_COMPLETE=complete_bash" in done.stdout
    assert "complete -o default -F _dynamo_completion dynamo" in done.stdout


def test_install_completion_writes_the_script_and_sources_it(tmp_path: Path) -> None:
    done = _dynamo("--install-completion", "bash", HOME=str(tmp_path))
    assert done.returncode == 0, done.stderr
    script = tmp_path / ".bash_completions" / "dynamo.sh"
    assert "_dynamo_completion" in script.read_text()
    assert str(script) in (tmp_path / ".bashrc").read_text()


def test_completion_offers_commands_subcommands_and_options() -> None:
    assert _complete("dynamo det") == ["detox"]
    assert _complete("dynamo locks ") == ["list", "add", "extend", "remove"]
    assert _complete("dynamo consistency s") == ["summary", "site", "state"]
    options = _complete("dynamo detox test --")
    assert {"--wait", "--timeout", "--json"} <= set(options)


def test_an_unreachable_gateway_exits_4_with_one_line_naming_it(tmp_path: Path) -> None:
    # Nothing listens on port 1.
    done = _dynamo(
        "sites",
        DYNAMO_CONFIG=str(tmp_path / "config.toml"),
        DYNAMO_GATEWAY_URL="http://127.0.0.1:1",
    )
    assert done.returncode == 4
    assert done.stdout == ""
    first, *rest = done.stderr.splitlines()
    assert first.startswith("error: cannot reach the gateway at http://127.0.0.1:1")
    assert rest == ["is it running? `dynamo login URL` changes the address"]


def test_no_gateway_configured_and_bad_arguments_exit_1(tmp_path: Path) -> None:
    alone = {"DYNAMO_CONFIG": str(tmp_path / "config.toml"), "DYNAMO_GATEWAY_URL": ""}
    done = _dynamo("datasets", **alone)
    assert done.returncode == 1 and "dynamo login URL" in done.stderr
    assert _dynamo("datasets", "--colour", **alone).returncode == 1
    assert _dynamo("locks", "add", "/A/B/C", **alone).returncode == 1  # --until missing
    assert _dynamo("detox", "cycle", "zero", **alone).returncode == 1


def test_until_takes_a_time_or_a_duration() -> None:
    now = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert parse_until("7d", now) == "2026-02-07T12:00:00+00:00"
    assert parse_until("30m", now) == "2026-01-31T12:30:00+00:00"
    assert parse_until("2w", now) == "2026-02-14T12:00:00+00:00"
    assert parse_until("2026-12-31T00:00Z", now) == "2026-12-31T00:00:00+00:00"
    assert parse_until("2026-12-31", now) == "2026-12-31T00:00:00+00:00"
    assert parse_until("2026-12-31T01:00+02:00", now) == "2026-12-31T01:00:00+02:00"
    for wrong in ("", "soon", "7y", "d", "-3d"):
        with pytest.raises(ClientError) as refused:
            parse_until(wrong, now)
        assert refused.value.code == ExitCode.USAGE


def test_waiting_returns_the_final_state_or_gives_up_with_exit_6() -> None:
    states = iter(["queued", "running", "done"])
    seen: list[str] = []

    def fetch() -> dict[str, Any]:
        return {"status": next(states)}

    final = poll(
        fetch,
        lambda s: s["status"] == "done",
        timeout=600,
        interval=0.01,
        what="x",
        progress=lambda s: seen.append(s["status"]),
    )
    assert final == {"status": "done"} and seen == ["queued", "running", "done"]

    fetched = 0

    def never() -> dict[str, Any]:
        nonlocal fetched
        fetched += 1
        return {"status": "running"}

    with pytest.raises(ClientError) as gave_up:
        poll(never, lambda s: False, timeout=0.2, interval=0.05, what="cycle 7")
    assert gave_up.value.code == ExitCode.TIMEOUT == 6
    assert "cycle 7" in gave_up.value.message and fetched >= 1
