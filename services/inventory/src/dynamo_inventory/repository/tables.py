"""The inventory's own PostgreSQL schema (``inventory``). No other service reads it."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA = "inventory"
metadata = MetaData(schema=SCHEMA)

sites = Table(
    "sites",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False, unique=True),
    Column("storage_type", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("host", Text, nullable=False, server_default=""),
    Column("protocols", JSONB, nullable=False, server_default="[]"),
    Column("quotas", JSONB, nullable=False, server_default="{}"),
)

groups = Table(
    "groups",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False, unique=True),
    Column("olevel", Text, nullable=False),
)

datasets = Table(
    "datasets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False, unique=True),
    Column("status", Text, nullable=False),
    Column("data_type", Text, nullable=False, server_default=""),
    Column("software_version", Text, nullable=False, server_default=""),
    Column("is_open", Boolean, nullable=False),
    Column("last_update", DateTime(timezone=True), nullable=False),
)

blocks = Table(
    "blocks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("dataset_id", Integer, ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("num_files", Integer, nullable=False),
    Column("is_open", Boolean, nullable=False),
    Column("last_update", DateTime(timezone=True), nullable=False),
    UniqueConstraint("dataset_id", "name"),
    CheckConstraint("size >= 0 AND num_files >= 0", name="block_sizes_not_negative"),
)

files = Table(
    "files",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("block_id", Integer, ForeignKey("blocks.id", ondelete="CASCADE"), nullable=False),
    Column("lfn", Text, nullable=False, unique=True),
    Column("size", BigInteger, nullable=False),
    Column("adler32", Text),
    Column("crc32", BigInteger),
    CheckConstraint("size >= 0", name="file_size_not_negative"),
    Index("files_block_id", "block_id"),
)

dataset_replicas = Table(
    "dataset_replicas",
    metadata,
    Column("dataset_id", Integer, ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False),
    Column("site_id", Integer, ForeignKey("sites.id"), nullable=False),
    Column("group_id", Integer, nullable=False),
    Column("growing", Boolean, nullable=False),
    Column("last_update", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("dataset_id", "site_id"),
)

block_replicas = Table(
    "block_replicas",
    metadata,
    Column("block_id", Integer, ForeignKey("blocks.id", ondelete="CASCADE"), nullable=False),
    Column("site_id", Integer, ForeignKey("sites.id"), nullable=False),
    Column("group_id", Integer, nullable=False),
    Column("is_custodial", Boolean, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("num_files", Integer, nullable=False),
    Column("last_update", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("block_id", "site_id"),
    CheckConstraint("size >= 0 AND num_files >= 0", name="replica_sizes_not_negative"),
    Index("block_replicas_site_id", "site_id"),
)

containers = Table(
    "containers",
    metadata,
    Column("name", Text, primary_key=True),
    Column("datasets", JSONB, nullable=False),
)

partitions = Table(
    "partitions",
    metadata,
    Column("name", Text, primary_key=True),
    Column("condition", Text),
    Column("subpartitions", JSONB, nullable=False, server_default="[]"),
    Column("description", Text, nullable=False, server_default=""),
)

# The event log doubles as the outbox: rows are written in the same transaction as the change,
# the relay publishes rows with published = false, and `events?after=SEQ` reads it.
events = Table(
    "events",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("type", Text, nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("envelope", Text, nullable=False),
    Column("published", Boolean, nullable=False, server_default="false"),
    Index("events_unpublished", "seq", postgresql_where="NOT published"),
)

# One row: the last sequence number written. Every command transaction moves it from the value
# the writer expects to the next one, so two writers can never both commit the same sequence
# and the numbers stay gap-free.
writer_state = Table(
    "writer_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

commands = Table(
    "commands",
    metadata,
    Column("id", Text, primary_key=True),
    Column("type", Text, nullable=False),
    Column("received", DateTime(timezone=True), nullable=False),
    Column("reply", Text, nullable=False),
)
