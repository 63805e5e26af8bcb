"""Which service answers a path: the longest configured prefix wins, the rest goes to the
default service (the inventory)."""

from __future__ import annotations

from collections.abc import Mapping

GATEWAY = "gateway"
"""The pseudo-service of the gateway's own endpoints."""


class RouteTable:
    def __init__(self, prefixes: Mapping[str, str], default: str) -> None:
        for prefix in prefixes:
            if not prefix.startswith("/") or prefix.endswith("/"):
                raise ValueError(f"route prefix {prefix!r} must start and not end with '/'")
        # Longest first, so /api/v1/transfers/x can be routed apart from /api/v1/transfers.
        self.prefixes = sorted(prefixes.items(), key=lambda kv: len(kv[0]), reverse=True)
        self.default = default

    def service_for(self, path: str) -> str:
        for prefix, service in self.prefixes:
            # A whole-segment match: /api/v1/transfers, not /api/v1/transfersX.
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                return service
        return self.default

    def services(self) -> list[str]:
        """Every service named by the table, the default first."""
        names = [self.default]
        for _, service in self.prefixes:
            if service not in names:
                names.append(service)
        return names
