"""What the deployment tests check with: the vendored schemas, kustomize rendering, and the
cross-checks against the code (plugins, settings classes, routes, the CLI, metrics).

Each check returns a list of problems (empty: fine) rather than asserting, so the negative
tests can feed it broken input and see it complain.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = Path(__file__).parent / "schemas"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DEPLOY = ROOT / "deploy"
KUSTOMIZATIONS = {
    "base": DEPLOY / "base",
    "dev": DEPLOY / "overlays" / "dev",
    "production": DEPLOY / "overlays" / "production",
}
DASHBOARD = DEPLOY / "grafana" / "dynamo-dashboard.json"
# The oldest Kubernetes minor version the manifests promise to work on.
KUBERNETES_VERSION = "1.30.0"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
PROBES = {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}


# ----------------------------------------------------------------------------- the code


@functools.cache
def plugins() -> dict[str, Any]:
    """Every installed ``dynamo.services`` plugin by name (imports them all)."""
    from dynamo_common.service_plugin import discover

    return dict(discover())


def settings_variables(service: str | None) -> set[str]:
    """The ``DYNAMO_*`` variables a service reads (``None``: the settings every service
    shares, which is all ``dynamo migrate`` reads)."""
    from dynamo_common.settings import DynamoSettings

    cls = DynamoSettings if service is None else plugins()[service].settings_class
    prefix = str(cls.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in cls.model_fields}


def unknown_variables(names: Iterable[str], service: str | None) -> list[str]:
    """``DYNAMO_*`` names the service's settings class does not have (a typo, or a setting
    given to the wrong service: pydantic-settings would ignore it without a word)."""
    known = settings_variables(service)
    return sorted(n for n in names if n.startswith("DYNAMO_") and n.upper() not in known)


@functools.cache
def served_paths(service: str) -> frozenset[str]:
    """The paths a service's app serves. Building the app connects to nothing (the lifespan
    does, and it is not run), so placeholder URLs do."""
    plugin = plugins()[service]
    settings = plugin.settings_class(
        database_url="postgresql://nobody@127.0.0.1:1/none", amqp_url="amqp://127.0.0.1:1/"
    )
    app = plugin.create_app(settings)
    return frozenset(getattr(route, "path", "") for route in app.routes)


@functools.cache
def exported_metrics() -> frozenset[str]:
    """Every metric name a service exports on /metrics (the inventory's registry stands for
    all: every service's registry is made by ``create_service_app``)."""
    plugin = plugins()["inventory"]
    settings = plugin.settings_class(
        database_url="postgresql://nobody@127.0.0.1:1/none", amqp_url="amqp://127.0.0.1:1/"
    )
    registry = plugin.create_app(settings).state.metrics_registry
    names: set[str] = set()
    # A labelled metric has no samples before its first use: its names follow from its type.
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    for family in registry.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return frozenset(names)


def cli_problem(argv: list[str]) -> str | None:
    """Why ``dynamo ARGV`` would not start (None: it is a valid command line): the command
    must exist in the CLI, its arguments must parse, and the services it names must be
    installed plugins."""
    from typer.main import get_command

    from dynamo_common.cli import app

    if not argv:
        return "no command: the image's entry point alone only prints the help"
    command = getattr(get_command(app), "commands", {}).get(argv[0])
    if command is None:
        return f"dynamo has no command {argv[0]!r}"
    try:
        context = command.make_context(f"dynamo {argv[0]}", list(argv[1:]))
    except Exception as exc:  # click's usage errors (typer may ship its own click)
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        return f"dynamo {' '.join(argv)}: {message}"
    named: list[str] = []
    if argv[0] == "serve":
        named = [context.params["service"]]
    elif argv[0] == "migrate":
        named = list(context.params.get("services") or [])
    missing = [name for name in named if name not in plugins()]
    if missing:
        return f"dynamo {' '.join(argv)}: no installed service {', '.join(missing)}"
    return None


def served_service(argv: list[str]) -> str | None:
    """The service ``dynamo ARGV`` runs (``serve NAME``), None for anything else."""
    return argv[1] if len(argv) >= 2 and argv[0] == "serve" else None


# ----------------------------------------------------------------------------- compose


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), f"{path} is not a YAML mapping"
    return document


@functools.cache
def _compose_validator() -> Any:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def compose_errors(document: Mapping[str, Any]) -> list[str]:
    """Violations of the Compose Specification schema, as ``path: message``."""
    errors = sorted(_compose_validator().iter_errors(document), key=lambda e: list(e.path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


def compose_environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def compose_dynamo_containers(document: Mapping[str, Any]) -> dict[str, list[str]]:
    """Containers of the services' image (the ones without an entry point of their own) and
    their command lines."""
    out: dict[str, list[str]] = {}
    for name, service in document["services"].items():
        build = service.get("build")
        target = build.get("target") if isinstance(build, dict) else None
        if target == "runtime" and "entrypoint" not in service:
            command = service.get("command") or []
            out[name] = command.split() if isinstance(command, str) else list(command)
    return out


# ----------------------------------------------------------------------------- kubernetes


def kustomize_command() -> list[str]:
    """``kustomize build`` if installed, else ``kubectl kustomize`` (kubectl embeds kustomize)."""
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    raise RuntimeError(
        "neither kustomize nor kubectl is installed: scripts/test.sh installs kubectl "
        "(Debian package kubectl)"
    )


def render(directory: Path) -> list[dict[str, Any]]:
    """The manifests a kustomization renders to, as kustomize itself builds them."""
    result = subprocess.run(
        [*kustomize_command(), str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"kustomize failed on {directory}:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@functools.cache
def _crd_validators() -> dict[tuple[str, str], Any]:
    schema = json.loads((SCHEMAS / "servicemonitor_v1.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    return {("monitoring.coreos.com/v1", "ServiceMonitor"): validator}


def manifest_errors(document: Mapping[str, Any]) -> list[str]:
    """Violations of the Kubernetes (strict: no unknown fields) or CRD schema."""
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError

    name = f"{document.get('kind')}/{document.get('metadata', {}).get('name')}"
    crd = _crd_validators().get((document.get("apiVersion", ""), document.get("kind", "")))
    if crd is not None:
        return [
            f"{name}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in crd.iter_errors(document)
        ]
    try:
        kubernetes_validate.validate(dict(document), KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{name}: {'/'.join(map(str, exc.path))}: {exc.message}"]
    except SchemaNotFoundError as exc:
        return [f"{name}: {exc.message}"]
    return []


def by_kind(documents: Iterable[Mapping[str, Any]], kind: str) -> dict[str, Mapping[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents if d.get("kind") == kind}


def workloads(documents: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    return (d for d in documents if d.get("kind") in WORKLOAD_KINDS)


def containers(workload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def container_variables(
    container: Mapping[str, Any], config_maps: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """The variables a container gets: its own ``env`` and every key of the ConfigMaps it
    loads whole (``envFrom``)."""
    names = [e["name"] for e in container.get("env", [])]
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref is not None:
            config_map = config_maps.get(ref["name"])
            if config_map is None:
                names.append(f"<missing ConfigMap {ref['name']}>")
            else:
                names.extend((config_map.get("data") or {}).keys())
    return names


def variable_problems(documents: list[Mapping[str, Any]]) -> list[str]:
    """Every ``DYNAMO_*`` variable a container gets must be a setting of the service it runs."""
    config_maps = by_kind(documents, "ConfigMap")
    problems = []
    for workload in workloads(documents):
        for container in containers(workload):
            argv = list(container.get("args") or container.get("command") or [])
            service = served_service(argv)
            names = container_variables(container, config_maps)
            problems += [f"{workload['metadata']['name']}: {n}" for n in names if n.startswith("<")]
            unknown = unknown_variables(names, service)
            problems += [
                f"{workload['metadata']['name']} ({service or argv[:1]}): {name} is not a "
                "setting of this service"
                for name in unknown
            ]
    return problems


def probe_problems(documents: list[Mapping[str, Any]]) -> list[str]:
    """Each service container has a readiness probe on /readyz and a liveness probe on
    /healthz, on paths its app really serves, on a port it declares."""
    problems = []
    for workload in workloads(documents):
        name = workload["metadata"]["name"]
        for container in containers(workload):
            service = served_service(list(container.get("args") or []))
            if service is None:
                continue
            ports = {p.get("name") for p in container.get("ports", [])}
            for probe, wanted in {**PROBES, "startupProbe": None}.items():
                spec = container.get(probe)
                if spec is None:
                    if wanted is not None:
                        problems.append(f"{name}: no {probe}")
                    continue
                get = spec.get("httpGet") or {}
                path = get.get("path")
                if wanted is not None and path != wanted:
                    problems.append(f"{name}: {probe} on {path}, not {wanted}")
                if path not in served_paths(service):
                    problems.append(f"{name}: {probe} path {path} is not served by {service}")
                if isinstance(get.get("port"), str) and get["port"] not in ports:
                    problems.append(f"{name}: {probe} on undeclared port {get['port']}")
    return problems


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) matches ``labels``."""
    match = selector.get("matchLabels", selector if "matchExpressions" not in selector else {})
    if any(labels.get(k) != v for k, v in match.items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def dashboard_metrics(dashboard: Mapping[str, Any]) -> set[str]:
    """Metric names the dashboard's queries (panels and template variables) use."""
    import re

    functions = {
        "sum", "avg", "max", "min", "count", "topk", "bottomk", "rate", "irate", "increase",
        "changes", "histogram_quantile", "clamp_min", "clamp_max", "by", "without", "on",
        "ignoring", "and", "or", "unless",
    }  # fmt: skip
    names: set[str] = set()
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else str(query)
            names.update(re.findall(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)", text))
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            query = target["expr"]
            # Label matchers, durations, strings, grouping clauses and numbers go; what is
            # left are functions, operators and metric names.
            query = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", query)
            query = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", query)
            query = re.sub(r"(?<![A-Za-z_:])\d+(\.\d+)?(e[-+]?\d+)?", " ", query)
            words = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", query)
            names.update(w for w in words if w not in functions)
    return names


# ----------------------------------------------------------------------------- compose's nginx


def make_test_pki(directory: Path) -> Path:
    """The local stack's test PKI (deploy/compose/make-test-pki.sh) in ``directory``."""
    subprocess.run(
        ["bash", str(ROOT / "deploy" / "compose" / "make-test-pki.sh"), str(directory)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return directory


def compose_nginx_site(pki: Path, upstream: str, listen: str | None = None) -> str:
    """The nginx site configuration docker-compose mounts, with the container's paths and
    names replaced: certificates from ``pki``, the gateway at ``upstream`` (host:port) and,
    when given, ``listen`` (host:port) instead of the container's port."""
    document = load_compose()
    mounts = dict(reversed(v.split(":")[:2]) for v in document["services"]["nginx"]["volumes"])
    text = (COMPOSE_FILE.parent / mounts["/etc/nginx/conf.d/default.conf"]).read_text()
    assert "/etc/nginx/pki/" in text and "gateway:8080" in text
    text = text.replace("/etc/nginx/pki/", f"{pki}/").replace("gateway:8080", upstream)
    if listen is not None:
        assert "listen 8443 ssl;" in text
        text = text.replace("listen 8443 ssl;", f"listen {listen} ssl;")
    return text


def nginx_main_conf(site: Path, work: Path) -> str:
    """A main configuration that includes ``site`` the way the nginx image's own does, with
    every runtime path under ``work`` (runs unprivileged, in the foreground)."""
    import os

    user = "user root;" if os.geteuid() == 0 else ""
    return (
        f"{user}\ndaemon off;\nworker_processes 1;\npid {work}/nginx.pid;\n"
        f"error_log {work}/error.log;\nevents {{ worker_connections 256; }}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {work}/body;\n"
        f"  proxy_temp_path {work}/proxy;\n  fastcgi_temp_path {work}/fastcgi;\n"
        f"  uwsgi_temp_path {work}/uwsgi;\n  scgi_temp_path {work}/scgi;\n"
        f"  include {site};\n}}\n"
    )
