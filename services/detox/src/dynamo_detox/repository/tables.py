"""Detox's own PostgreSQL schema (``detox``). No other service reads it."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

SCHEMA = "detox"
metadata = MetaData(schema=SCHEMA)

# Policy texts by their sha256: a cycle names the text it ran, however often it ran.
policies = Table(
    "policies",
    metadata,
    Column("digest", Text, primary_key=True),
    Column("partition", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
)

cycles = Table(
    "cycles",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("kind", Text, nullable=False),  # real, test
    Column("partition", Text, nullable=False),
    Column("policy_digest", Text, ForeignKey("policies.digest"), nullable=False),
    Column("status", Text, nullable=False),  # queued, running, done, failed
    Column("requested_by", Text),
    Column("comment", Text, nullable=False, server_default=""),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("started", DateTime(timezone=True)),
    Column("finished", DateTime(timezone=True)),
    Column("decided_at", Double, comment="the cycle's clock (epoch seconds)"),
    Column("inventory_seq", BigInteger),
    Column("iterations", Integer, nullable=False, server_default="0"),
    Column("sites", Integer, nullable=False, server_default="0"),
    Column("sites_triggered", Integer, nullable=False, server_default="0"),
    Column("replicas_deleted", Integer, nullable=False, server_default="0"),
    Column("bytes_deleted", BigInteger, nullable=False, server_default="0"),
    Column("bytes_handed_over", BigInteger, nullable=False, server_default="0"),
    Column("missing_providers", JSONB, nullable=False, server_default="[]"),
    Column("warnings", JSONB, nullable=False, server_default="[]"),
    Column("error", Text),
    Index("cycles_by_partition", "kind", "partition", "id"),
    Index(
        "cycles_one_active_real",
        "partition",
        unique=True,
        postgresql_where=text("kind = 'real' AND status IN ('queued', 'running')"),
    ),
)

cycle_sites = Table(
    "cycle_sites",
    metadata,
    Column("cycle_id", BigInteger, ForeignKey("cycles.id", ondelete="CASCADE"), nullable=False),
    Column("site", Text, nullable=False),
    Column("quota", BigInteger, nullable=False),
    Column("used_before", BigInteger, nullable=False),
    Column("used_after", BigInteger, nullable=False),
    Column("deleted", BigInteger, nullable=False),
    Column("handed_over", BigInteger, nullable=False),
    Column("protected", BigInteger, nullable=False),
    Column("triggered", Boolean, nullable=False),
    Column("stopped", Boolean, nullable=False),
    Column("candidates_left", Integer, nullable=False),
    Index("cycle_sites_key", "cycle_id", "site", unique=True),
)

# One row per part of a dataset replica that one line decided (most replicas: one row).
decisions = Table(
    "decisions",
    metadata,
    Column("cycle_id", BigInteger, ForeignKey("cycles.id", ondelete="CASCADE"), nullable=False),
    Column("site", Text, nullable=False),
    Column("dataset", Text, nullable=False),
    Column("blocks", ARRAY(Text), comment="null: every block replica at the site"),
    Column("decision", Text, nullable=False),  # delete, keep, protect
    Column("action", Text, nullable=False),  # the statement: Protect, DismissBlock, ...
    Column("line", Integer, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("handed_to", Text),
    Column("iteration", Integer, nullable=False),
    Index("decisions_by_site", "cycle_id", "site", "dataset"),
    Index("decisions_by_dataset", "dataset", "cycle_id"),
)

# The commands a real cycle sends, stored before they go so that a restart sends what is left.
commands = Table(
    "commands",
    metadata,
    Column("id", Text, primary_key=True),
    Column("cycle_id", BigInteger, ForeignKey("cycles.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("items", JSONB, nullable=False),
    Column("status", Text, nullable=False),  # pending, done
    Column("accepted", JSONB, nullable=False, server_default="[]"),
    Column("rejected", JSONB, nullable=False, server_default="[]"),
    Column("reason", Text),
    Column("updated", DateTime(timezone=True), nullable=False),
    Index("commands_pending", "cycle_id", "seq", postgresql_where=text("status = 'pending'")),
)

locks = Table(
    "locks",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("dataset", Text, nullable=False),
    Column("block", Text),
    Column("sites", Text, nullable=False),
    Column("until", DateTime(timezone=True), nullable=False),
    Column("owner", Text, nullable=False),
    Column("comment", Text, nullable=False, server_default=""),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
    Column("released", DateTime(timezone=True)),
    Column("released_by", Text),
    Index("locks_active", "until", postgresql_where=text("released IS NULL")),
)

accesses = Table(
    "accesses",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("dataset", Text, nullable=False),
    Column("site", Text, nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("count", Integer, nullable=False),
    Index("accesses_by_time", "time"),
    Index("accesses_by_dataset", "dataset", "site"),
)
