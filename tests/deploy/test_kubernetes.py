"""The Kubernetes manifests (deploy/): rendered by kustomize as an operator would, validated
against the Kubernetes API schemas (strict: an unknown field is an error) and the
ServiceMonitor CRD schema, and checked against the code they deploy: every installed service
has its workload, its probes are on paths its app serves, every DYNAMO_* variable is a setting
of the service it reaches, every selector and reference finds its target."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import pytest

from tests.deploy.support import (
    DASHBOARD,
    KUSTOMIZATIONS,
    by_kind,
    cli_problem,
    containers,
    dashboard_metrics,
    exported_metrics,
    manifest_errors,
    plugins,
    probe_problems,
    render,
    selects,
    served_paths,
    served_service,
    variable_problems,
    workloads,
)

SCALABLE = {"gateway", "transfer", "consistency"}


@pytest.fixture(scope="module", params=sorted(KUSTOMIZATIONS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(KUSTOMIZATIONS[request.param])


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return render(KUSTOMIZATIONS["production"])


def _service_workloads(documents: list[dict[str, Any]]) -> dict[str, Mapping[str, Any]]:
    found = {}
    for workload in workloads(documents):
        for container in containers(workload):
            service = served_service(list(container.get("args") or []))
            if service:
                found[service] = workload
    return found


def test_every_rendered_manifest_follows_the_kubernetes_schemas(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    name, documents = rendered
    assert len(documents) > 20, f"{name} rendered only {len(documents)} documents"
    errors = [error for document in documents for error in manifest_errors(document)]
    assert errors == [], f"{name}:\n" + "\n".join(errors)


def test_every_installed_service_is_deployed_and_nothing_else(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, documents = rendered
    assert set(_service_workloads(documents)) == set(plugins())


def test_every_container_runs_a_valid_dynamo_command(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, documents = rendered
    problems = []
    for workload in workloads(documents):
        for container in containers(workload):
            argv = list(container.get("args") or [])
            assert "command" not in container, "the image's entry point is dynamo: use args"
            problem = cli_problem(argv)
            if problem:
                problems.append(f"{workload['metadata']['name']}: {problem}")
    assert problems == []


def test_probes_are_on_paths_the_services_serve(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, documents = rendered
    assert probe_problems(documents) == []


def test_every_dynamo_variable_is_a_setting_of_the_service_it_is_given_to(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, documents = rendered
    assert variable_problems(documents) == []


def test_every_container_has_resource_requests_and_limits_and_runs_unprivileged(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, documents = rendered
    for workload in workloads(documents):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in containers(workload):
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), workload["metadata"]["name"]
            assert {"cpu", "memory"} <= set(resources["limits"]), workload["metadata"]["name"]
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]


def test_services_select_their_pods_on_a_declared_port(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, documents = rendered
    services = by_kind(documents, "Service")
    for name, workload in _service_workloads(documents).items():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selects(workload["spec"]["selector"], labels), name
        matching = [s for s in services.values() if selects(s["spec"]["selector"], labels)]
        assert matching, f"no Service reaches the {name} pods"
        ports = {p["name"] for c in containers(workload) for p in c.get("ports", [])}
        for service in matching:
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in ports, (name, port)


def test_secrets_and_config_maps_referenced_by_pods_exist_unless_operators_create_them(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    name, documents = rendered
    config_maps = by_kind(documents, "ConfigMap")
    secrets = by_kind(documents, "Secret")
    for workload in workloads(documents):
        for container in containers(workload):
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                # base and production expect the operators' Secrets; dev generates its own.
                if ref and name == "dev":
                    assert ref["name"] in secrets, ref
                    if not ref.get("optional"):
                        assert ref["key"] in secrets[ref["name"]]["data"], ref


def test_scalable_services_have_autoscalers_on_their_workloads(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, documents = rendered
    service_workloads = _service_workloads(documents)
    targets = {}
    for hpa in by_kind(documents, "HorizontalPodAutoscaler").values():
        ref = hpa["spec"]["scaleTargetRef"]
        matches = [
            service
            for service, w in service_workloads.items()
            if (w["kind"], w["metadata"]["name"]) == (ref["kind"], ref["name"])
        ]
        assert len(matches) == 1, f"{hpa['metadata']['name']} scales nothing: {ref}"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        targets[matches[0]] = hpa
    assert set(targets) == SCALABLE


def test_production_keeps_a_standby_inventory_and_disruption_budgets(
    production: list[dict[str, Any]],
) -> None:
    inventory = _service_workloads(production)["inventory"]
    assert inventory["spec"]["replicas"] >= 2
    assert inventory["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    budgets = by_kind(production, "PodDisruptionBudget").values()
    protected = set()
    for service, workload in _service_workloads(production).items():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        if any(selects(b["spec"]["selector"], labels) for b in budgets):
            protected.add(service)
    assert {"inventory", "gateway"} <= protected


def test_migrations_run_as_a_one_shot_job_of_dynamo_migrate(
    production: list[dict[str, Any]],
) -> None:
    (job,) = by_kind(production, "Job").values()
    (container,) = containers(job)
    assert container["args"][0] == "migrate"
    assert cli_problem(container["args"]) is None
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_the_ingress_reaches_the_gateway_and_asks_for_client_certificates(
    production: list[dict[str, Any]],
) -> None:
    (ingress,) = by_kind(production, "Ingress").values()
    services = by_kind(production, "Service")
    backends = [
        path["backend"]["service"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert [b["name"] for b in backends] == ["dynamo-gateway"]
    gateway_ports = {p["name"] for p in services["dynamo-gateway"]["spec"]["ports"]}
    assert backends[0]["port"]["name"] in gateway_ports
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/auth-tls-verify-client"] == "optional"
    namespace, _, secret = annotations["nginx.ingress.kubernetes.io/auth-tls-secret"].partition("/")
    assert namespace == ingress["metadata"]["namespace"] and secret
    # The headers ingress-nginx fills are the ones the gateway reads.
    gateway_config = by_kind(production, "ConfigMap")["dynamo-gateway"]["data"]
    assert gateway_config["DYNAMO_CLIENT_DN_HEADER"] == "ssl-client-subject-dn"
    assert gateway_config["DYNAMO_CLIENT_VERIFY_HEADER"] == "ssl-client-verify"


def test_prometheus_scrapes_every_service_on_a_path_it_serves(
    production: list[dict[str, Any]],
) -> None:
    (monitor,) = by_kind(production, "ServiceMonitor").values()
    scraped = {
        name: service
        for name, service in by_kind(production, "Service").items()
        if selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    }
    assert {f"dynamo-{name}" for name in plugins()} == set(scraped)
    for endpoint in monitor["spec"]["endpoints"]:
        for name, service in scraped.items():
            assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
            assert endpoint["path"] in served_paths(name.removeprefix("dynamo-"))


def test_the_grafana_dashboard_queries_metrics_the_services_export(
    production: list[dict[str, Any]],
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["panels"] and dashboard["uid"]
    used = dashboard_metrics(dashboard)
    # "up" is Prometheus's own; everything else must be on a service's /metrics.
    assert used - {"up"} <= exported_metrics(), used - {"up"} - exported_metrics()
    # The dashboard ships as the ConfigMap Grafana's sidecar loads.
    (config_map,) = [
        c
        for c in by_kind(production, "ConfigMap").values()
        if c["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    assert json.loads(config_map["data"]["dynamo-dashboard.json"]) == dashboard


# ----------------------------------------------------------------------------- the checks fail


def _deployment(documents: list[dict[str, Any]], service: str) -> dict[str, Any]:
    return copy.deepcopy(dict(_service_workloads(documents)[service]))


def test_a_deployment_without_its_selector_fails_validation(
    production: list[dict[str, Any]],
) -> None:
    broken = _deployment(production, "inventory")
    del broken["spec"]["selector"]
    assert any("selector" in error for error in manifest_errors(broken))


def test_a_misspelt_field_fails_strict_validation(production: list[dict[str, Any]]) -> None:
    broken = _deployment(production, "gateway")
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    assert any("readinesProbe" in error for error in manifest_errors(broken))


def test_a_probe_on_a_path_the_service_does_not_serve_is_found(
    production: list[dict[str, Any]],
) -> None:
    broken = _deployment(production, "transfer")
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] = (
        "/ready"
    )
    problems = probe_problems([broken])
    assert any("/ready is not served by transfer" in p for p in problems), problems


def test_a_setting_given_to_the_wrong_service_is_found(production: list[dict[str, Any]]) -> None:
    documents = copy.deepcopy(production)
    config = by_kind(documents, "ConfigMap")["dynamo-inventory"]
    config["data"]["DYNAMO_BACKEND"] = "fts3"  # a transfer setting
    problems = variable_problems(documents)
    assert any("DYNAMO_BACKEND is not a setting" in p for p in problems), problems


def test_a_service_monitor_with_an_unknown_field_fails_the_crd_schema(
    production: list[dict[str, Any]],
) -> None:
    monitor = copy.deepcopy(dict(next(iter(by_kind(production, "ServiceMonitor").values()))))
    monitor["spec"]["endpoints"][0]["scrapeEvery"] = "30s"
    assert any("scrapeEvery" in error for error in manifest_errors(monitor))
    del monitor["spec"]["selector"]
    assert any("selector" in error for error in manifest_errors(monitor))


def test_a_command_naming_no_installed_service_is_found() -> None:
    assert "no installed service nosuch" in str(cli_problem(["serve", "nosuch"]))
    assert "no command" in str(cli_problem(["srve", "inventory"]))
    assert cli_problem(["serve", "inventory", "--port", "eighty"]) is not None


def test_the_documented_migrations_first_step_applies_the_config_and_the_job_only(
    production: list[dict[str, Any]],
) -> None:
    """deploy/README.md's upgrade applies ``-l 'app.kubernetes.io/component in (...)'``
    before anything else: that must be every ConfigMap the services load, and the Job."""
    import re

    readme = (KUSTOMIZATIONS["base"].parent / "README.md").read_text()
    (values,) = re.findall(r"-l 'app\.kubernetes\.io/component in \(([^)]*)\)'", readme)
    wanted = {v.strip() for v in values.split(",")}
    chosen = {
        (d["kind"], d["metadata"]["name"])
        for d in production
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") in wanted
    }
    loaded = {
        ("ConfigMap", source["configMapRef"]["name"])
        for workload in workloads(production)
        for container in containers(workload)
        for source in container.get("envFrom", [])
    }
    assert chosen == loaded | {("Job", "dynamo-migrate")}


def test_every_service_url_in_the_config_names_a_service_and_its_port(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    from urllib.parse import urlsplit

    _, documents = rendered
    services = by_kind(documents, "Service")
    problems = []
    for config_map in by_kind(documents, "ConfigMap").values():
        for key, value in (config_map.get("data") or {}).items():
            if not (key.endswith("_URL") and value.startswith("http://")):
                continue
            url = urlsplit(value)
            service = services.get(url.hostname or "")
            if service is None:
                problems.append(f"{key}={value}: no Service {url.hostname}")
            elif url.port not in {p["port"] for p in service["spec"]["ports"]}:
                problems.append(f"{key}={value}: {url.hostname} has no port {url.port}")
    assert problems == []


def test_only_dynamo_pods_and_prometheus_reach_the_services_behind_the_gateway(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    """The services trust the gateway's identity headers: a pod of another application must
    not reach them; only the gateway takes traffic from the ingress controller."""
    _, documents = rendered
    policies = by_kind(documents, "NetworkPolicy").values()
    for service, workload in _service_workloads(documents).items():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        covering = [p for p in policies if selects(p["spec"]["podSelector"], labels)]
        assert covering, f"no NetworkPolicy covers the {service} pods"
        peers = [
            peer
            for policy in covering
            for rule in policy["spec"]["ingress"]
            for peer in rule["from"]
        ]
        namespaces = {
            peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for peer in peers
            if "namespaceSelector" in peer
        }
        pods = [peer["podSelector"] for peer in peers if "podSelector" in peer]
        assert all(p == {"matchLabels": {"app.kubernetes.io/part-of": "dynamo"}} for p in pods), (
            pods
        )
        wanted = {"monitoring", "ingress-nginx"} if service == "gateway" else {"monitoring"}
        assert namespaces == wanted, (service, namespaces)
