"""Bodies of the gateway's own endpoints (accounts, tokens, DNs)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from dynamo_common.api import Page as Page

AccountRole = Literal["user", "operator", "admin"]
# Account names travel in the X-Dynamo-User header and in URLs: keep them plain.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"


class WhoAmI(BaseModel):
    name: str
    role: str
    roles: list[str] = Field(description="the role and every role it includes")
    method: Literal["anonymous", "token", "bootstrap", "jwt", "x509"]
    account: str | None = Field(description="the local account, if the identity has one")
    detail: str | None = Field(description="issuer of a JWT, or the DN of a certificate")
    public_reads: bool


class AccountIn(BaseModel):
    name: str = Field(pattern=NAME_PATTERN)
    role: AccountRole = "user"
    description: str = Field(default="", max_length=1000)
    dns: list[str] = Field(default_factory=list, description="certificate DNs of this account")


class AccountPatch(BaseModel):
    role: AccountRole | None = None
    disabled: bool | None = None
    description: str | None = Field(default=None, max_length=1000)


class AccountOut(BaseModel):
    name: str
    role: str
    description: str
    disabled: bool
    created: datetime
    dns: list[str]


class TokenIn(BaseModel):
    description: str = Field(default="", max_length=1000)
    expires_in_days: float | None = Field(
        default=None, gt=0, le=3660, description="empty: the token does not expire"
    )


class TokenOut(BaseModel):
    id: str
    account: str
    description: str
    created: datetime
    expires: datetime | None


class NewTokenOut(TokenOut):
    token: str = Field(description="the token itself: shown this once, never stored")


class DnsIn(BaseModel):
    dns: list[str] = Field(min_length=1, max_length=100)


class DnsOut(BaseModel):
    account: str
    dns: list[str]
