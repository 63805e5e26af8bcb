"""The "what if" simulations: a packaged scenario run with a changed detox policy, and its result.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = "detox"


def upgrade() -> None:
    # Explicit steps, and the table stays out of repository.tables' metadata: 0001 creates
    # that metadata as a whole, and must keep creating exactly what it created.
    op.create_table(
        "simulations",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("scenario", sa.Text, nullable=False),
        sa.Column("days", sa.Double, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("policy", sa.Text, comment="the detox policy text that runs"),
        sa.Column("policy_changed", sa.Boolean, nullable=False),
        sa.Column("status", sa.Text, nullable=False),  # queued, running, done, failed
        sa.Column("requested_by", sa.Text),
        sa.Column("comment", sa.Text, nullable=False, server_default=""),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started", sa.DateTime(timezone=True)),
        sa.Column("finished", sa.DateTime(timezone=True)),
        sa.Column("error", sa.Text),
        sa.Column("result", JSONB, comment="the simulator's result.json"),
        schema=S,
    )
    op.create_index(
        "simulations_waiting",
        "simulations",
        ["id"],
        schema=S,
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )


def downgrade() -> None:
    op.drop_table("simulations", schema=S)
