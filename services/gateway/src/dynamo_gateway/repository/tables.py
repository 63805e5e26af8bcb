"""The gateway's own PostgreSQL schema (``gateway``): local accounts, their API tokens and
the certificate DNs that map to them. No other service reads it."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
)

SCHEMA = "gateway"
metadata = MetaData(schema=SCHEMA)

accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, Identity(), primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("role", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("disabled", Boolean, nullable=False, server_default="false"),
    Column("created", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("role IN ('user', 'operator', 'admin')", name="accounts_role"),
)

tokens = Table(
    "tokens",
    metadata,
    # The key id, the clear part of dyn_<key id>_<secret>; the secret is only hashed.
    Column("id", Text, primary_key=True),
    Column(
        "account_id",
        Integer,
        ForeignKey(f"{SCHEMA}.accounts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("hash", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("created", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires", DateTime(timezone=True)),
    Index("tokens_account", "account_id"),
)

account_dns = Table(
    "account_dns",
    metadata,
    # Normalised slash form, proxy RDNs removed (dynamo_gateway.service.dn).
    Column("dn", Text, primary_key=True),
    Column(
        "account_id",
        Integer,
        ForeignKey(f"{SCHEMA}.accounts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("created", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("account_dns_account", "account_id"),
)
