"""The transfer service's own PostgreSQL schema (``transfer``). No other service reads it."""

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

SCHEMA = "transfer"
metadata = MetaData(schema=SCHEMA)

# A block replica being built (kind transfer) or removed (kind deletion) at a site: the unit
# the inventory hears about. At most one active row per (kind, block, site).
replicas = Table(
    "replicas",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("kind", Text, nullable=False),
    Column("dataset", Text, nullable=False),
    Column("block", Text, nullable=False),
    Column("site", Text, nullable=False),
    Column("group_name", Text, nullable=False),
    Column("state", Text, nullable=False),  # active, complete, deleted, cancelled
    Column("files_total", Integer, nullable=False),
    Column("bytes_total", BigInteger, nullable=False),
    Column("reported_files", Integer, nullable=False, server_default="0"),
    Column("reported_bytes", BigInteger, nullable=False, server_default="0"),
    Column("note", Text),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
    Column("finished", DateTime(timezone=True)),
    Index(
        "replicas_one_active",
        "kind",
        "dataset",
        "block",
        "site",
        unique=True,
        postgresql_where=text("state = 'active'"),
    ),
    Index("replicas_active", "id", postgresql_where=text("state = 'active'")),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("kind", Text, nullable=False),  # transfer, deletion
    Column("state", Text, nullable=False),
    Column("lfn", Text, nullable=False),
    Column("site", Text, nullable=False),  # destination of a transfer, site of a deletion
    Column("dataset", Text),
    Column("block", Text),
    Column("replica_id", BigInteger, ForeignKey("replicas.id")),
    Column("size", BigInteger),  # unknown for orphan deletions
    Column("adler32", Text),
    Column("priority", SmallInteger, nullable=False),
    Column("source", Text),
    Column("protocol", Text),
    Column("source_pfn", Text),
    Column("dest_pfn", Text),
    Column("tape", Boolean, nullable=False, server_default="false"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    # {source site: failed attempts}; {source site: error} for sources that can never deliver.
    Column("failures", JSONB, nullable=False, server_default="{}"),
    Column("ruled_out", JSONB, nullable=False, server_default="{}"),
    Column("reason", Text),
    Column("job_id", Text),  # the backend job this attempt belongs to
    Column("command_id", Text),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
    Column("not_before", DateTime(timezone=True)),
    Column("submitted_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("bytes", BigInteger, nullable=False, server_default="0"),
    # One task stands for a file at a site per kind until it is done or cancelled: a second
    # request for the same file joins it instead of copying twice.
    Index(
        "tasks_one_active",
        "kind",
        "lfn",
        "site",
        unique=True,
        postgresql_where=text("state NOT IN ('done', 'cancelled')"),
    ),
    Index("tasks_lfn_site", "lfn", "site"),
    Index("tasks_replica", "replica_id"),
    Index(
        "tasks_open_by_state",
        "state",
        "kind",
        postgresql_where=text("state NOT IN ('done', 'cancelled')"),
    ),
    Index("tasks_job", "job_id", postgresql_where=text("state = 'submitted'")),
)

# One row per backend job (FTS). Written as an intent, with the correlation id that goes into
# the job's metadata, *before* the job is submitted: after a crash, FTS is asked for jobs with
# that metadata, so a job is never submitted twice and never lost.
jobs = Table(
    "jobs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("backend", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("destination", Text, nullable=False),
    Column("external_id", Text),
    Column("state", Text, nullable=False),  # intent, submitted, finished
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
    Index("jobs_open", "state", postgresql_where=text("state <> 'finished'")),
)

# Every attempt's outcome: the history the REST API pages through and link rates come from.
history = Table(
    "history",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("task_id", BigInteger, nullable=False),
    Column("kind", Text, nullable=False),
    Column("lfn", Text, nullable=False),
    Column("source", Text),
    Column("site", Text, nullable=False),
    Column("result", Text, nullable=False),  # done, failed
    Column("error", Text),
    Column("started", DateTime(timezone=True)),
    Column("finished", DateTime(timezone=True), nullable=False),
    Column("duration", Double, nullable=False, server_default="0"),
    Column("bytes", BigInteger, nullable=False, server_default="0"),
    Index("history_finished", "finished"),
    Index("history_site_finished", "site", "finished"),
    Index("history_task", "task_id"),
)

commands = Table(
    "commands",
    metadata,
    Column("id", Text, primary_key=True),
    Column("type", Text, nullable=False),
    Column("received", DateTime(timezone=True), nullable=False),
    Column("reply", Text, nullable=False),
)

# Events written in the same transaction as the change they announce; a relay publishes them
# (at least once: a crash between the broker's confirm and the mark publishes a row again, with
# the same envelope id, so consumers can tell).
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
