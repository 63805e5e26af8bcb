"""The consistency service's own PostgreSQL schema (``consistency``). No other service reads it."""

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
    SmallInteger,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA = "consistency"
metadata = MetaData(schema=SCHEMA)

# One row per site ever seen in the inventory. ``id`` keys the advisory lock that keeps two
# workers from checking the same site at once.
sites = Table(
    "sites",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, unique=True),
    Column("state", Text, nullable=False, server_default="enabled"),
    Column("state_reason", Text, nullable=False, server_default=""),
    Column("state_changed", DateTime(timezone=True)),
    # A check asked for through the API: taken before any scheduled one.
    Column("requested", DateTime(timezone=True)),
    Column("requested_dry_run", Boolean, nullable=False, server_default="false"),
    # A flagged run an operator approved, waiting for a worker to carry it out.
    Column("approval_run", BigInteger),
    Column("approval_first_strike", Boolean, nullable=False, server_default="false"),
    Column("approval_requested", DateTime(timezone=True)),
    # When the last check ended (whatever its outcome): the scheduler's ordering.
    Column("last_check", DateTime(timezone=True)),
    Column("last_run_id", BigInteger),
)

runs = Table(
    "runs",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("site", Text, nullable=False),
    Column("worker", Text, nullable=False),
    Column("started", DateTime(timezone=True), nullable=False),
    Column("finished", DateTime(timezone=True)),
    Column("duration", Double),
    Column("status", Text, nullable=False),  # running, done, failed
    Column("dry_run", Boolean, nullable=False, server_default="false"),
    Column("protocol", Text),
    Column("roots", JSONB, nullable=False, server_default="[]"),
    Column("inventory_seq", BigInteger),
    Column("files_listed", BigInteger, nullable=False, server_default="0"),
    Column("dirs_listed", BigInteger, nullable=False, server_default="0"),
    Column("unlisted_dirs", Integer, nullable=False, server_default="0"),
    Column("empty_dirs_removed", Integer, nullable=False, server_default="0"),
    Column("expected_files", BigInteger, nullable=False, server_default="0"),
    Column("missing_files", Integer, nullable=False, server_default="0"),
    Column("missing_bytes", BigInteger, nullable=False, server_default="0"),
    Column("missing_blocks", Integer, nullable=False, server_default="0"),
    Column("missing_confirmed", Integer, nullable=False, server_default="0"),
    Column("unrecoverable_files", Integer, nullable=False, server_default="0"),
    Column("unrecoverable_bytes", BigInteger, nullable=False, server_default="0"),
    Column("orphan_files", Integer, nullable=False, server_default="0"),
    Column("orphan_bytes", BigInteger, nullable=False, server_default="0"),
    Column("ignored_files", BigInteger, nullable=False, server_default="0"),
    Column("ignored_bytes", BigInteger, nullable=False, server_default="0"),
    Column("skipped_recent", BigInteger, nullable=False, server_default="0"),
    Column("skipped_in_flight", BigInteger, nullable=False, server_default="0"),
    Column("skipped_unlisted", BigInteger, nullable=False, server_default="0"),
    Column("outside_files", BigInteger, nullable=False, server_default="0"),
    Column("transfers_requested", Integer, nullable=False, server_default="0"),
    Column("deletions_requested", Integer, nullable=False, server_default="0"),
    Column("replicas_reported", Integer, nullable=False, server_default="0"),
    Column("action", Text, nullable=False, server_default="none"),
    Column("reason", Text, nullable=False, server_default=""),
    Column("action_detail", Text, nullable=False, server_default=""),
    Column("approved", DateTime(timezone=True)),
    Column("error", Text),
    Index("runs_site_started", "site", "started"),
)

# The lists behind a run's counts: missing files, orphans, unlisted and removed directories.
run_files = Table(
    "run_files",
    metadata,
    Column("run_id", BigInteger, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("kind", Text, nullable=False),  # missing, orphan, unlisted, empty_dir
    Column("path", Text, nullable=False),
    Column("size", BigInteger),
    Column("dataset", Text),
    Column("block", Text),
    Column("listed_size", BigInteger),
    Column("strike", SmallInteger),  # missing: 1 first seen, 2 also missing in the check before
    Column("unrecoverable", Boolean, nullable=False, server_default="false"),
    Column("source", Text),
    Column("acted", Boolean, nullable=False, server_default="false"),
    Column("note", Text),
    Index("run_files_run_kind_path", "run_id", "kind", "path"),
)

# Events written in the same transaction as the run they announce; a relay publishes them.
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("type", Text, nullable=False),
    Column("envelope", Text, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("published", Boolean, nullable=False, server_default="false"),
    Index("outbox_unpublished", "id", postgresql_where=text("NOT published")),
)
