"""The Dockerfile (no Docker engine here to build it): parsed with dockerfile-parse and checked
against what the deployments expect of the image: the `dynamo` entry point, a non-root user,
gfal2 from the distribution with the plugins the test suite installs, the locked environment,
a build context (.dockerignore) that keeps what the build copies; and the build stage's own
instructions rehearsed on this machine (the image's distribution), down to `dynamo migrate`."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from tests.deploy.support import DOCKERFILE, ROOT, load_compose


@pytest.fixture(scope="module")
def stages() -> dict[str, list[dict[str, Any]]]:
    """The instructions of each named stage (the last, unnamed one under "final")."""
    parser = DockerfileParser(path=str(DOCKERFILE))
    out: dict[str, list[dict[str, Any]]] = {}
    current = ""
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            words = instruction["value"].split()
            current = words[2] if len(words) >= 3 and words[1].upper() == "AS" else "final"
            out[current] = [instruction]
        elif current:
            out[current].append(instruction)
    return out


def _values(stage: list[dict[str, Any]], instruction: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == instruction]


def test_the_default_image_is_the_runtime_stage(stages: dict[str, list[dict[str, Any]]]) -> None:
    assert stages["final"][0]["value"].split() == ["runtime"]


def test_the_entry_point_is_dynamo_and_the_service_is_the_command(
    stages: dict[str, list[dict[str, Any]]],
) -> None:
    (entrypoint,) = _values(stages["runtime"], "ENTRYPOINT")
    argv = json.loads(entrypoint)
    assert argv[-1] == "dynamo"
    (cmd,) = _values(stages["runtime"], "CMD")
    assert json.loads(cmd) == ["--help"]
    # docker-compose gives only the command; nothing overrides the entry point of the services.
    compose = load_compose()
    for name, service in compose["services"].items():
        build = service.get("build") or {}
        if isinstance(build, dict) and build.get("target") == "runtime":
            assert "entrypoint" not in service, name


def test_the_services_run_as_a_non_root_user(stages: dict[str, list[dict[str, Any]]]) -> None:
    runtime = stages["runtime"]
    users = _values(runtime, "USER")
    assert users, "no USER: the container would run as root"
    uid_arg = next(v for v in _values(runtime, "ARG") if v.startswith("DYNAMO_UID="))
    uid = uid_arg.split("=", 1)[1]
    assert users[-1] == "${DYNAMO_UID}:${DYNAMO_UID}" and uid != "0"
    # The Kubernetes manifests run the pods as the same user.
    assert f"runAsUser: {uid}" in (ROOT / "deploy" / "base" / "inventory.yaml").read_text()
    (xrootd_user,) = _values(stages["xrootd"], "USER")
    assert xrootd_user == "xrootd"


def test_gfal2_and_its_plugins_come_from_the_distribution_the_tests_use(
    stages: dict[str, list[dict[str, Any]]],
) -> None:
    installed = " ".join(_values(stages["base"], "RUN"))
    test_script = (ROOT / "scripts" / "test.sh").read_text()
    (gfal_line,) = [line for line in test_script.splitlines() if "need_apt gfal2" in line]
    continued = test_script.split(gfal_line, 1)[1].splitlines()[0]
    wanted = set((gfal_line + " " + continued).replace("\\", " ").split()) - {"need_apt"}
    for package in wanted - {"xrootd-server"}:
        assert re.search(rf"\b{re.escape(package)}\b", installed), package
    # The module is linked into the environment, as scripts/link-gfal2.sh does, and checked.
    build = " ".join(_values(stages["build"], "RUN"))
    assert "gfal2*.so" in build and "import gfal2" in build


def test_the_environment_is_the_locked_one_without_dev_tools(
    stages: dict[str, list[dict[str, Any]]],
) -> None:
    build = " ".join(_values(stages["build"], "RUN"))
    assert "uv sync --frozen --no-dev --all-packages" in build
    copied = " ".join(_values(stages["build"], "COPY"))
    for path in ("pyproject.toml", "uv.lock", "libs", "services"):
        assert path in copied, path


def test_the_build_context_keeps_what_the_build_copies() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    excluded = {p for p in ignored if not p.startswith("!")}
    for needed in ("pyproject.toml", "uv.lock", "libs", "services"):
        assert not any(p.strip("/*") == needed for p in excluded), needed
    # The dev stage copies the FTS3 stand-in out of tests/, which is otherwise left out.
    assert "tests/**" in excluded
    assert "!tests/fts3_standin/**" in ignored and "!tests/__init__.py" in ignored
    assert (ROOT / "tests" / "fts3_standin" / "__main__.py").exists()


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


@pytest.mark.integration
def test_the_build_steps_make_an_environment_that_migrates_every_service(
    stages: dict[str, list[dict[str, Any]]], database_url: str, tmp_path: Path
) -> None:
    """No Docker engine here: the build stage's own instructions are rehearsed on this machine
    (Debian 12, the image's distribution, with its python3 and python3-gfal2): its COPYs into
    a build directory, its ENV, its RUN lines with /opt/dynamo moved under tmp_path. The
    environment they make must import gfal2 and, installed from wheels (not editable), still
    carry every service's migrations: ``dynamo migrate`` runs them against PostgreSQL."""
    build = stages["build"]
    context = tmp_path / "src"
    context.mkdir()
    for value in _values(build, "COPY"):
        *sources, _ = value.split()
        for source in sources:
            if source.startswith("--"):
                break
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(
                    path, context / source, ignore=shutil.ignore_patterns("__pycache__", ".*")
                )
            else:
                shutil.copy2(path, context / source)
    prefix = tmp_path / "opt-dynamo"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    for value in _values(build, "ENV"):
        for item in shlex.split(value):
            key, _, setting = item.partition("=")
            env[key] = setting.replace("/opt/dynamo", str(prefix))
    # The layer cache of a Docker build is uv's cache here: everything is in it already.
    env["UV_OFFLINE"] = "1"
    env["PATH"] = f"{Path(_uv()[0]).parent}:{env['PATH']}"
    python = env["UV_PYTHON"]
    assert Path(python).exists(), f"{python} (the image's interpreter) is not on this machine"
    for value in _values(build, "RUN"):
        words = [w for w in value.split(" ") if not w.startswith("--mount=")]
        script = " ".join(words).replace("/opt/dynamo", str(prefix))
        script = script.replace("uv sync", " ".join(_uv()) + " sync", 1)
        result = subprocess.run(
            ["bash", "-c", script], cwd=context, env=env, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, f"RUN {value}\n{result.stdout}\n{result.stderr}"
    runtime_env = {**env, "DYNAMO_DATABASE_URL": database_url, "DYNAMO_LOG_FORMAT": "console"}
    result = subprocess.run(
        [str(prefix / "bin" / "dynamo"), "migrate"],
        env=runtime_env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    from tests.deploy.support import plugins

    for service in plugins():
        assert f"migrated {service}" in result.stdout + result.stderr, (service, result.stderr)
