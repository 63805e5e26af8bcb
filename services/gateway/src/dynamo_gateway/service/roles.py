"""Roles and the identity of a request."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

AuthMethod = Literal["anonymous", "token", "bootstrap", "jwt", "x509"]


class Role(IntEnum):
    """Ordered: each role may do everything the roles below it may."""

    ANONYMOUS = 0
    USER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            known = ", ".join(r.label for r in cls)
            raise ValueError(f"unknown role {text!r}; use one of {known}") from None

    def granted(self) -> list[str]:
        """This role and every role below it, highest first (``X-Dynamo-Roles``)."""
        return [r.label for r in sorted(Role, reverse=True) if r <= self]


ACCOUNT_ROLES = ("user", "operator", "admin")
"""Roles an account can hold (anonymous is the absence of an account)."""


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    role: Role
    method: AuthMethod
    account_id: int | None = None
    """The local account behind the identity (tokens, mapped DNs); None for OIDC tokens."""
    detail: str | None = None
    """Where the identity came from: the issuer of a JWT, the normalised DN of a certificate."""

    @property
    def authenticated(self) -> bool:
        return self.method != "anonymous"


ANONYMOUS = Identity(name="anonymous", role=Role.ANONYMOUS, method="anonymous")
