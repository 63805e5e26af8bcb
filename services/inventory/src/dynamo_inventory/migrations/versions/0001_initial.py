"""Initial inventory schema.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from alembic import op

from dynamo_inventory.repository.tables import SCHEMA, metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    # The first revision creates the tables from their definitions; later revisions are
    # explicit op.* steps so that history stays reproducible.
    metadata.create_all(bind)
    op.execute(f"INSERT INTO {SCHEMA}.writer_state (id, seq) VALUES (1, 0)")


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
