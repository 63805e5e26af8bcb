"""docker-compose.yml: no Docker engine runs here, so what can be checked without one is: the
file against the Compose Specification's JSON schema (vendored in tests/deploy/schemas), each
container's command against the image's entry point (the `dynamo` CLI and the installed
plugins), each DYNAMO_* variable against the settings of the service it is given to, the start
order, and the files it mounts (nginx's configuration through nginx itself, with certificates
from the PKI script; the XRootD site configuration through a real xrootd)."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.support import (
    COMPOSE_FILE,
    cli_problem,
    compose_dynamo_containers,
    compose_environment,
    compose_errors,
    compose_nginx_site,
    load_compose,
    make_test_pki,
    nginx_main_conf,
    plugins,
    served_service,
    unknown_variables,
)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def test_the_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    assert compose_errors(compose) == []


def test_a_compose_file_with_mistakes_fails_the_specification(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["inventory"]["healthcheck"]["intervall"] = "5s"
    broken["services"]["gateway"]["depends_on"]["inventory"]["condition"] = "service_ready"
    errors = compose_errors(broken)
    assert any("services/inventory/healthcheck" in e and "intervall" in e for e in errors), errors
    assert any("services/gateway/depends_on" in e for e in errors), errors


def test_every_installed_service_has_its_own_container_and_nothing_else(
    compose: dict[str, Any],
) -> None:
    served = {
        name: served_service(argv) for name, argv in compose_dynamo_containers(compose).items()
    }
    services = [s for s in served.values() if s]
    assert sorted(services) == sorted(plugins()), served
    # The container is named after the service: the URLs in the environment rely on it.
    assert all(name == service for name, service in served.items() if service)


def test_every_container_command_is_a_command_of_the_image_entry_point(
    compose: dict[str, Any],
) -> None:
    containers = compose_dynamo_containers(compose)
    assert "migrate" in containers
    problems = [f"{name}: {p}" for name, argv in containers.items() if (p := cli_problem(argv))]
    assert problems == []


def test_every_dynamo_variable_is_a_setting_of_the_service_it_is_given_to(
    compose: dict[str, Any],
) -> None:
    problems = []
    for name, argv in compose_dynamo_containers(compose).items():
        env = compose_environment(compose["services"][name])
        assert env, f"{name} gets no environment"
        problems += [f"{name}: {v}" for v in unknown_variables(env, served_service(argv))]
    assert problems == []


def test_a_variable_given_to_the_wrong_service_is_found(compose: dict[str, Any]) -> None:
    env = compose_environment(compose["services"]["inventory"])
    env["DYNAMO_FTS3_URL"] = "http://fts3:8446"
    env["DYNAMO_DATABSE_URL"] = "postgresql://typo"
    assert unknown_variables(env, "inventory") == ["DYNAMO_DATABSE_URL", "DYNAMO_FTS3_URL"]


def test_the_gateway_reaches_every_other_service_by_its_container_name(
    compose: dict[str, Any],
) -> None:
    env = compose_environment(compose["services"]["gateway"])
    for service in plugins():
        if service == "gateway":
            continue
        assert env.get(f"DYNAMO_{service.upper()}_URL", "").startswith(f"http://{service}:"), (
            service
        )


def test_start_order_databases_then_migrations_then_inventory_then_agents_then_gateway(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]

    def needs(name: str) -> dict[str, str]:
        return {k: v["condition"] for k, v in services[name].get("depends_on", {}).items()}

    def before(name: str) -> set[str]:
        seen: set[str] = set()
        todo = list(needs(name))
        while todo:
            item = todo.pop()
            if item not in seen:
                seen.add(item)
                todo.extend(needs(item))
        return seen

    assert needs("migrate") == {"postgres": "service_healthy"}
    assert needs("inventory")["migrate"] == "service_completed_successfully"
    assert needs("inventory")["rabbitmq"] == "service_healthy"
    containers = compose_dynamo_containers(compose)
    for name in containers:
        if name not in ("migrate", "inventory"):
            assert needs(name).get("inventory") == "service_healthy", name
            assert {"postgres", "rabbitmq", "migrate"} <= before(name), name
    agents = {n for n, argv in containers.items() if served_service(argv)} - {"gateway"}
    assert agents <= {k for k, v in needs("gateway").items() if v == "service_healthy"}
    assert needs("nginx") == {"gateway": "service_healthy"}
    # Every service container says when it is ready (its /readyz).
    for name, argv in containers.items():
        if served_service(argv):
            test = " ".join(services[name]["healthcheck"]["test"])
            assert "/readyz" in test, name


def test_rabbitmq_runs_with_its_management_plugin(compose: dict[str, Any]) -> None:
    assert "management" in compose["services"]["rabbitmq"]["image"]


def test_the_pki_script_makes_a_user_certificate_the_ca_verifies(tmp_path: Path) -> None:
    pki = make_test_pki(tmp_path / "pki")
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(pki / "ca.pem"), str(pki / "user.pem")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert verify.returncode == 0, verify.stderr
    subject = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-in", str(pki / "user.pem")],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "CN = Dynamo Dev" in subject


def _nginx_test(site_text: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    site = tmp / "site.conf"
    site.write_text(site_text)
    main = tmp / "nginx.conf"
    main.write_text(nginx_main_conf(site, tmp))
    return subprocess.run(
        [NGINX, "-t", "-c", str(main), "-e", str(tmp / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_nginx_accepts_the_compose_configuration(tmp_path: Path) -> None:
    if not Path(NGINX).exists():
        raise AssertionError("nginx is not installed (Debian package nginx; scripts/test.sh)")
    pki = make_test_pki(tmp_path / "pki")
    # Inside the stack the gateway is "gateway"; here it is any address nginx can resolve.
    site = compose_nginx_site(pki, "127.0.0.1:9", listen="127.0.0.1:9")
    result = _nginx_test(site, tmp_path)
    assert result.returncode == 0, result.stderr
    broken = _nginx_test(site.replace("ssl_verify_client", "ssl_verify_clients"), tmp_path)
    assert broken.returncode != 0 and "ssl_verify_clients" in broken.stderr


def _directives(text: str) -> list[tuple[str, ...]]:
    lines = (line.split("#", 1)[0].split() for line in text.splitlines())
    return [tuple(words) for words in lines if words]


def test_the_xrootd_sites_use_the_configuration_the_test_suite_runs_for_real(
    compose: dict[str, Any],
) -> None:
    from dynamo_common.testing.xrootd import _CONFIG

    tested = _directives(
        _CONFIG.format(port=1094, run_dir="/run/xrootd", data_dir="/data", xrdcp="/usr/bin/xrdcp")
    )
    for name in ("xrootd-site1", "xrootd-site2"):
        mounts = dict(reversed(v.split(":")[:2]) for v in compose["services"][name]["volumes"])
        config = (COMPOSE_FILE.parent / mounts["/etc/xrootd/site.cfg"]).read_text()
        assert _directives(config) == tested, name
        assert compose["services"][name]["build"]["target"] == "xrootd"


def test_every_service_url_names_a_container_of_the_stack(compose: dict[str, Any]) -> None:
    from urllib.parse import urlsplit

    dynamo = compose_dynamo_containers(compose)
    problems = []
    for name, service in compose["services"].items():
        for key, value in compose_environment(service).items():
            if not (key.startswith("DYNAMO_") and key.endswith("_URL") and "://" in value):
                continue
            url = urlsplit(value)
            target = compose["services"].get(url.hostname or "")
            if target is None:
                problems.append(f"{name}: {key}={value} names no container")
                continue
            if url.scheme != "http":
                continue  # PostgreSQL and RabbitMQ on their images' standard ports
            # The services' image listens on 8080 (DYNAMO_HTTP_PORT in the Dockerfile); any
            # other container says its port on its command line.
            command = [str(word) for word in target.get("command", [])]
            listens = "8080" if url.hostname in dynamo else None
            if str(url.port) != listens and str(url.port) not in command:
                problems.append(f"{name}: {key}={value}: {url.hostname} listens elsewhere")
    assert problems == []
