"""Alembic environment of the dealer schema."""

from dynamo_common.db import run_alembic_env
from dynamo_dealer.repository.tables import SCHEMA, metadata

run_alembic_env(metadata, version_table_schema=SCHEMA)
