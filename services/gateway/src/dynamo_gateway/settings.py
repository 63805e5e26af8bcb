from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from dynamo_common.settings import DynamoSettings

RoleName = Literal["anonymous", "user", "operator", "admin"]


class OidcIssuer(BaseModel):
    """An OIDC provider whose access tokens the gateway accepts (``DYNAMO_OIDC_ISSUERS`` is a
    JSON list of these)."""

    issuer: str = Field(description="the exact `iss` of its tokens")
    jwks_url: str = Field(
        default="",
        description="its JSON Web Key Set; empty: found in <issuer>/.well-known/"
        "openid-configuration",
    )
    audience: list[str] = Field(min_length=1, description="accepted `aud` values")
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    name: str = Field(
        default="",
        description="short name put before the user name (name:sub); empty: the issuer's host",
    )
    username_claim: str = "sub"
    roles_claim: str = Field(
        default="groups", description="claim holding groups or roles (a list or a string)"
    )
    role_map: dict[str, RoleName] = Field(
        default_factory=dict,
        description='values of the roles claim to Dynamo roles, e.g. {"/cms/dynamo-admins": '
        '"admin"}; the highest role found wins',
    )
    default_role: RoleName = Field(
        default="user", description="the role of a valid token that no role_map entry matches"
    )

    @field_validator("audience", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class GatewaySettings(DynamoSettings):
    service_name: str = "gateway"

    # ---- where the services are (inventory_url is inherited; empty: not deployed, and its
    # paths answer 503). `dynamo up` sets each to where it starts the service.
    transfer_url: str = ""
    detox_url: str = ""
    consistency_url: str = ""
    dealer_url: str = ""
    route_prefixes: dict[str, str] = Field(
        default_factory=lambda: {
            "/api/v1/transfers": "transfer",
            "/api/v1/consistency": "consistency",
            # detox serves its endpoints at the top level of /api/v1
            "/api/v1/cycles": "detox",
            "/api/v1/test-runs": "detox",
            "/api/v1/policies": "detox",
            "/api/v1/decisions": "detox",
            "/api/v1/locks": "detox",
            "/api/v1/popularity": "detox",
            "/api/v1/simulations": "detox",
            "/api/v1/dealer": "dealer",
        },
        description="path prefix -> service; every other /api/v1 path goes to the inventory",
    )

    # ---- forwarding
    connect_timeout: float = Field(default=2.0, gt=0, description="seconds to open a connection")
    read_timeout: float = Field(
        default=60.0,
        gt=0,
        description="seconds to wait for a service's answer (writes wait for their command "
        "reply, 30 s by default, so keep this above it)",
    )
    pool_timeout: float = Field(
        default=5.0, gt=0, description="seconds to wait for a free upstream connection"
    )
    max_in_flight: int = Field(
        default=16,
        ge=1,
        description="requests forwarded at once to one service; more wait their turn (up to "
        "pool_timeout). A Python service answers one request at a time per process anyway",
    )
    max_keepalive: int = Field(
        default=16, ge=0, description="idle connections kept open to each service"
    )
    keepalive_expiry: float = Field(
        default=4.0,
        gt=0,
        description="seconds an idle upstream connection is kept; below uvicorn's 5 s so the "
        "gateway, not the service, closes it (no request is sent on a closing connection)",
    )
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    openapi_cache_seconds: float = Field(default=60.0, ge=0)

    # ---- who may do what
    public_reads: bool = Field(default=True, description="anonymous clients may read")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or networks (CIDR) whose client-DN header is believed",
    )
    client_dn_header: str = "X-SSL-Client-S-DN"
    client_verify_header: str = Field(
        default="X-SSL-Client-Verify",
        description="when a trusted proxy sends it, it must say SUCCESS",
    )
    oidc_issuers: list[OidcIssuer] = Field(default_factory=list)
    jwt_leeway: float = Field(default=30.0, ge=0, description="seconds of clock skew allowed")
    jwks_cache_seconds: float = Field(default=300.0, gt=0)
    jwks_min_refresh_seconds: float = Field(
        default=10.0,
        ge=0,
        description="an unknown key id refetches the key set at most this often",
    )
    token_cache_seconds: float = Field(
        default=30.0,
        ge=0,
        description="a verified API token is trusted this long without hashing it again; "
        "revocation reaches other gateway replicas within this time",
    )
    admin_token: SecretStr = Field(
        default=SecretStr(""),
        description="bootstrap admin token; empty: one is made and kept in admin_token_file",
    )
    admin_token_file: Path | None = Field(
        default=None, description="default: <data_dir>/gateway-admin-token"
    )
    db_pool_size: int = Field(default=4, ge=1)

    @field_validator("transfer_url", "detox_url", "consistency_url", "dealer_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _check(self) -> GatewaySettings:
        secret = self.admin_token.get_secret_value()
        if secret and len(secret) < 24:
            raise ValueError("admin_token must be at least 24 characters long")
        return self

    def service_urls(self) -> dict[str, str]:
        """Every deployed service by name (the ones with a URL)."""
        urls = {
            "inventory": self.inventory_url,
            "transfer": self.transfer_url,
            "detox": self.detox_url,
            "consistency": self.consistency_url,
            "dealer": self.dealer_url,
        }
        return {name: url for name, url in urls.items() if url}

    def bootstrap_token_file(self) -> Path:
        return self.admin_token_file or self.data_dir / "gateway-admin-token"
