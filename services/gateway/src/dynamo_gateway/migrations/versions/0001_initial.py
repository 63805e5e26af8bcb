"""Initial gateway schema: accounts, API tokens, certificate DNs.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from alembic import op

from dynamo_gateway.repository.tables import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The first revision creates the tables from their definitions; later revisions are
    # explicit op.* steps so that history stays reproducible.
    metadata.create_all(op.get_bind())


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
