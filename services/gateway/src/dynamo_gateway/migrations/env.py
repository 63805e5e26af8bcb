"""Alembic environment of the gateway schema."""

from dynamo_common.db import run_alembic_env
from dynamo_gateway.repository.tables import SCHEMA, metadata

run_alembic_env(metadata, version_table_schema=SCHEMA)
