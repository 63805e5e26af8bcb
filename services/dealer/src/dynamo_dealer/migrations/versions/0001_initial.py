"""Initial dealer schema: requests, subscriptions, cycles, decisions, placements, commands.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from alembic import op

from dynamo_dealer.repository.tables import metadata

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
