"""What the gateway's lifespan builds and its endpoints use."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from dynamo_gateway.auth import Authenticator
from dynamo_gateway.forward import Forwarder
from dynamo_gateway.service.openapi import merge_documents
from dynamo_gateway.service.permissions import PermissionTable
from dynamo_gateway.service.routing import GATEWAY, RouteTable
from dynamo_gateway.settings import GatewaySettings

log = logging.getLogger("dynamo.gateway")
JSON = dict[str, Any]


@dataclass
class GatewayRuntime:
    settings: GatewaySettings
    http: httpx.AsyncClient
    pool: asyncpg.Pool
    auth: Authenticator
    forwarder: Forwarder
    routes: RouteTable
    permissions: PermissionTable
    own_openapi: Callable[[], JSON]
    _openapi: JSON | None = None
    _openapi_until: float = 0.0
    _openapi_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def openapi(self) -> JSON:
        """The merged document, rebuilt when older than ``openapi_cache_seconds`` (sooner
        while a service is missing from it, so that it appears once it is up)."""
        if self._openapi is not None and time.monotonic() < self._openapi_until:
            return self._openapi
        async with self._openapi_lock:
            if self._openapi is not None and time.monotonic() < self._openapi_until:
                return self._openapi
            documents, unavailable = await self._fetch_documents()
            merged = merge_documents(
                self.own_openapi(),
                documents,
                service_for=self.service_for,
                own_service=GATEWAY,
                permissions=self.permissions,
                unavailable=unavailable,
            )
            ttl = self.settings.openapi_cache_seconds
            self._openapi = merged
            self._openapi_until = time.monotonic() + (min(ttl, 5.0) if unavailable else ttl)
            return merged

    def service_for(self, path: str) -> str:
        if path == "/api/v1/auth" or path.startswith("/api/v1/auth/"):
            return GATEWAY
        return self.routes.service_for(path)

    async def _fetch_documents(self) -> tuple[dict[str, JSON], dict[str, str]]:
        urls = {
            name: url
            for name, url in self.settings.service_urls().items()
            if name in self.routes.services()
        }
        names = sorted(urls)
        results = await asyncio.gather(
            *(self._fetch_one(urls[name]) for name in names), return_exceptions=True
        )
        documents: dict[str, JSON] = {}
        unavailable: dict[str, str] = {}
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("no OpenAPI document from %s: %r", name, result)
                unavailable[name] = str(result) or type(result).__name__
            else:
                documents[name] = result
        for name in self.routes.services():
            if name not in urls:
                unavailable[name] = "not deployed"
        return documents, unavailable

    async def _fetch_one(self, base: str) -> JSON:
        response = await self.http.get(f"{base}/openapi.json", timeout=5.0)
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, dict):
            raise ValueError("not an OpenAPI document")
        return document
