"""The dealer's own PostgreSQL schema (``dealer``). No other service reads it."""

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
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

SCHEMA = "dealer"
metadata = MetaData(schema=SCHEMA)

requests = Table(
    "requests",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("requester", Text, nullable=False),
    Column("state", Text, nullable=False),  # new activated completed rejected cancelled
    Column("items", JSONB, nullable=False),  # as asked
    Column("resolved", JSONB, nullable=False),  # [[dataset, block or null], ...]
    Column("sites", JSONB, nullable=False),
    Column("n_copies", Integer, nullable=False),
    Column("group", Text, nullable=False),
    Column("comment", Text, nullable=False, server_default=""),
    Column("size", BigInteger, nullable=False, server_default="0"),
    Column("reason", Text),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
    Index("requests_by_requester", "requester", "id"),
    Index("requests_open", "state", postgresql_where=text("state IN ('new', 'activated')")),
)

deletion_requests = Table(
    "deletion_requests",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("requester", Text, nullable=False),
    Column("state", Text, nullable=False),  # new activated completed rejected cancelled
    Column("dataset", Text, nullable=False),
    Column("block", Text),
    Column("site", Text, nullable=False),
    Column("comment", Text, nullable=False, server_default=""),
    Column("size", BigInteger, nullable=False, server_default="0"),
    Column("reason", Text),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
    Index("deletion_requests_by_requester", "requester", "id"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("item", Text, nullable=False),
    Column("site", Text, nullable=False),
    Column("group", Text, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    UniqueConstraint("item", "site", name="subscriptions_item_site"),
)

cycles = Table(
    "cycles",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("status", Text, nullable=False),  # queued running done failed
    Column("dry_run", Boolean, nullable=False, server_default="false"),
    Column("requested_by", Text),
    Column("comment", Text, nullable=False, server_default=""),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("started", DateTime(timezone=True)),
    Column("finished", DateTime(timezone=True)),
    Column("inventory_seq", BigInteger),
    Column("detox_cycle", BigInteger, comment="the detox cycle the balancer worked from"),
    Column("proposals", Integer, nullable=False, server_default="0"),
    Column("accepted", Integer, nullable=False, server_default="0"),
    Column("rejected", Integer, nullable=False, server_default="0"),
    Column("deferred", Integer, nullable=False, server_default="0"),
    Column("merged", Integer, nullable=False, server_default="0"),
    Column("bytes_placed", BigInteger, nullable=False, server_default="0"),
    Column("per_plugin", JSONB, nullable=False, server_default="{}"),
    Column("warnings", JSONB, nullable=False, server_default="[]"),
    Column("error", Text),
    Index(
        "cycles_one_active",
        "dry_run",
        unique=True,
        postgresql_where=text("status IN ('queued', 'running')"),
    ),
)

decisions = Table(
    "decisions",
    metadata,
    Column("cycle_id", BigInteger, ForeignKey("cycles.id", ondelete="CASCADE"), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("plugin", Text, nullable=False),
    Column("reference", Text, nullable=False),
    Column("dataset", Text, nullable=False),
    Column("block", Text),
    Column("requested_site", Text),
    Column("site", Text),
    Column("group", Text, nullable=False),
    Column("priority", Double, nullable=False),
    Column("weight", Double, nullable=False),
    Column("decision", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("proposal_reason", Text, nullable=False),
    Column("volume", BigInteger, nullable=False),
    Column("merged_into", Integer),
    Index("decisions_by_cycle", "cycle_id", "idx", unique=True),
    Index("decisions_by_reference", "plugin", "reference"),
)

placements = Table(
    "placements",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("cycle_id", BigInteger, ForeignKey("cycles.id", ondelete="CASCADE"), nullable=False),
    Column("dataset", Text, nullable=False),
    Column("block", Text),
    Column("site", Text, nullable=False),
    Column("group", Text, nullable=False),
    Column("volume", BigInteger, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("reference", Text, nullable=False),
    Column("placed", DateTime(timezone=True), nullable=False),
    Column("blocks", ARRAY(Text), nullable=False, server_default="{}"),
    Column("mark_bytes", BigInteger, nullable=False, server_default="0"),
    Column("mark_time", DateTime(timezone=True), nullable=False),
    Column("state", Text, nullable=False),  # flying, over
    Index("placements_flying", "site", postgresql_where=text("state = 'flying'")),
)
# Migration 0003 adds to placements ``answered_seq`` (BigInteger: the inventory sequence
# number from which the read model shows the answer to the creation command, null while
# unanswered) and ``refusal`` (Text: why a command was refused). They stay out of this
# metadata because 0001 creates it as a whole and must keep creating what it created.

commands = Table(
    "commands",
    metadata,
    Column("id", Text, primary_key=True),
    Column("cycle_id", BigInteger, ForeignKey("cycles.id", ondelete="CASCADE"), nullable=False),
    Column("placements", JSONB, nullable=False),
    Column("state", Text, nullable=False),  # pending, done
    Column("accepted", Integer, nullable=False, server_default="0"),
    Column("rejected", JSONB, nullable=False, server_default="[]"),
    Column("reason", Text),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("finished", DateTime(timezone=True)),
    Index("commands_pending", "cycle_id", postgresql_where=text("state = 'pending'")),
)
