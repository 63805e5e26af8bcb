"""One OpenAPI document for the whole API, merged from the services' own documents.

Each service contributes the paths the route table sends to it (a path another service owns
is left out, so the document never promises what the gateway would route elsewhere).
Component names that two services use for different schemas are prefixed with the service's
name and every ``$ref`` of that service rewritten; identical ones are shared. Every operation
is annotated from the permission table: its minimal role (``x-dynamo-min-role``), whether it
needs credentials (``security``), and the gateway's own error responses.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from dynamo_gateway.service.permissions import PermissionTable
from dynamo_gateway.service.roles import Role

JSON = dict[str, Any]
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_REF_PREFIX = "#/components/"

PROBLEM_SCHEMA: JSON = {
    "title": "Problem",
    "type": "object",
    "description": "An RFC 9457 problem document: every error of the API has this shape.",
    "properties": {
        "type": {"type": "string", "default": "about:blank"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "required": ["type", "title", "status"],
    "additionalProperties": True,
}

SECURITY_SCHEMES: JSON = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An OIDC access token (JWT) of a configured issuer, or a Dynamo API "
        "token (dyn_...) of a local account.",
    },
    "x509": {
        "type": "mutualTLS",
        "description": "A grid certificate or proxy presented to the TLS proxy in front of the "
        "gateway; the proxy passes the subject DN, which maps to a local account.",
    },
}


def _problem(description: str) -> JSON:
    return {
        "description": description,
        "content": {
            "application/problem+json": {"schema": {"$ref": _REF_PREFIX + "schemas/Problem"}}
        },
    }


_GATEWAY_ERRORS: dict[str, JSON] = {
    "401": _problem("No valid credentials: the token, certificate or proxy header was refused."),
    "403": _problem("The caller's role is below the one this endpoint needs."),
}
_FORWARD_ERRORS: dict[str, JSON] = {
    "502": _problem("The service answered with something that is not HTTP."),
    "503": _problem("The service behind this endpoint is down or not deployed."),
    "504": _problem("The service did not answer in time."),
}


def _rewrite_refs(node: Any, renames: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        out: JSON = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value in renames:
                out[key] = renames[value]
            else:
                out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


def _prefix(service: str) -> str:
    return "".join(part.capitalize() for part in service.replace("-", "_").split("_"))


def merge_documents(
    own: JSON,
    services: Mapping[str, JSON],
    *,
    service_for: Callable[[str], str],
    own_service: str,
    permissions: PermissionTable,
    title: str = "Dynamo API",
    version: str = "0.1.0",
    unavailable: Mapping[str, str] | None = None,
) -> JSON:
    """``own`` is the gateway's document, ``services`` each service's (by service name);
    ``unavailable`` names the services whose document could not be fetched, with the reason."""
    merged: JSON = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": {},
        "components": {"schemas": {"Problem": PROBLEM_SCHEMA}},
        "tags": [],
    }
    components: dict[str, JSON] = merged["components"]
    tags_seen: set[str] = set()
    operation_ids: set[str] = set()
    sources = [(own_service, own), *sorted(services.items())]
    for service, document in sources:
        document = copy.deepcopy(document)
        renames: dict[str, str] = {}
        for kind, entries in (document.get("components") or {}).items():
            if kind == "securitySchemes":
                continue
            bucket = components.setdefault(kind, {})
            for name, value in entries.items():
                if name not in bucket or bucket[name] == value:
                    continue
                renamed = f"{_prefix(service)}{name}"
                renames[f"{_REF_PREFIX}{kind}/{name}"] = f"{_REF_PREFIX}{kind}/{renamed}"
        document = _rewrite_refs(document, renames)
        for kind, entries in (document.get("components") or {}).items():
            if kind == "securitySchemes":
                continue
            bucket = components.setdefault(kind, {})
            for name, value in entries.items():
                target = renames.get(f"{_REF_PREFIX}{kind}/{name}", f"{_REF_PREFIX}{kind}/{name}")
                bucket[target.rsplit("/", 1)[1]] = value
        for path, item in (document.get("paths") or {}).items():
            if service_for(path) != service:
                continue
            for method in _METHODS:
                operation = item.get(method)
                if not isinstance(operation, dict):
                    continue
                _annotate(operation, method, path, permissions, forwarded=service != own_service)
                operation_id = operation.get("operationId")
                if isinstance(operation_id, str):
                    if operation_id in operation_ids:
                        operation_id = f"{service}_{operation_id}"
                        operation["operationId"] = operation_id
                    operation_ids.add(operation_id)
                for tag in operation.get("tags", []):
                    if tag not in tags_seen:
                        tags_seen.add(tag)
                        merged["tags"].append({"name": tag, "x-dynamo-service": service})
            merged["paths"].setdefault(path, {}).update(item)
    components["securitySchemes"] = copy.deepcopy(SECURITY_SCHEMES)
    merged["info"]["description"] = _description(services, unavailable or {}, permissions)
    merged["x-dynamo-services"] = {
        **{name: {"available": True} for name in services},
        **{name: {"available": False, "reason": why} for name, why in (unavailable or {}).items()},
    }
    return merged


def _annotate(
    operation: JSON, method: str, path: str, permissions: PermissionTable, *, forwarded: bool
) -> None:
    decision = permissions.decide(method, path)
    operation["x-dynamo-min-role"] = decision.need.label
    responses: JSON = operation.setdefault("responses", {})
    if decision.need == Role.ANONYMOUS:
        # Credentials are optional: the empty requirement says anonymous calls are fine.
        operation["security"] = [{}, {"bearer": []}, {"x509": []}]
        responses.setdefault("401", _GATEWAY_ERRORS["401"])
    else:
        operation["security"] = [{"bearer": []}, {"x509": []}]
        for status, response in _GATEWAY_ERRORS.items():
            responses.setdefault(status, response)
    if forwarded:
        for status, response in _FORWARD_ERRORS.items():
            responses.setdefault(status, response)


def _description(
    services: Mapping[str, JSON], unavailable: Mapping[str, str], permissions: PermissionTable
) -> str:
    lines = [
        "The whole Dynamo REST API behind one gateway. Errors are RFC 9457 problem documents "
        "(`application/problem+json`). Lists are paged with `limit` and `offset` and answer "
        "`{items, total, limit, offset}`; name filters accept the wildcards `*` and `?`.",
        "",
        "Reads are "
        + ("public." if permissions.public_reads else "for signed-in users only.")
        + " Every write needs credentials; the role it needs is in `x-dynamo-min-role` "
        "(anonymous < user < operator < admin).",
        "",
        "Services in this document: " + (", ".join(sorted(services)) or "none") + ".",
    ]
    if unavailable:
        lines.append(
            "Not reachable when this document was made (their endpoints are missing): "
            + ", ".join(f"{name} ({why})" for name, why in sorted(unavailable.items()))
            + "."
        )
    return "\n".join(lines)
