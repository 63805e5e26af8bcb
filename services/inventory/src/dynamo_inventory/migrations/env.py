"""Alembic environment of the inventory schema."""

from dynamo_common.db import run_alembic_env
from dynamo_inventory.repository.tables import SCHEMA, metadata

run_alembic_env(metadata, version_table_schema=SCHEMA)
