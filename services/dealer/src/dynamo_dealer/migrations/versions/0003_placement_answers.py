"""Placements close on evidence: the answer to the command that creates their replica.

``answered_seq`` is the inventory sequence number from which the read model shows what that
answer left behind (null while unanswered); ``refusal`` is why the command was refused. A
placement whose replica is absent is over only when refused or once the read model has
reached ``answered_seq``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

S = "dealer"


def upgrade() -> None:
    # Explicit steps, and the columns stay out of repository.tables' metadata: 0001 creates
    # that metadata as a whole, and must keep creating exactly what it created.
    op.add_column(
        "placements",
        sa.Column(
            "answered_seq",
            sa.BigInteger,
            comment="inventory seq from which the read model shows the creation's answer",
        ),
        schema=S,
    )
    op.add_column(
        "placements",
        sa.Column("refusal", sa.Text, comment="why the creation or transfer was refused"),
        schema=S,
    )
    # Placements in flight whose command was answered before this revision: the sequence
    # number of the answer was not kept, but any read model loaded after the upgrade is past
    # it, so 0 is true evidence. Those still pending get theirs when the command is resent.
    op.execute(
        f"""
        UPDATE {S}.placements p SET refusal = coalesce(r.item->>'reason', 'refused')
        FROM {S}.commands c, jsonb_array_elements(c.rejected) AS r(item)
        WHERE p.state = 'flying' AND c.state = 'done' AND c.cycle_id = p.cycle_id
          AND r.item->>'dataset' = p.dataset AND r.item->>'site' = p.site
          AND (r.item->>'block') IS NOT DISTINCT FROM p.block
        """
    )
    op.execute(
        f"""
        UPDATE {S}.placements p SET answered_seq = 0
        FROM {S}.commands c, jsonb_array_elements(c.placements) AS i(item)
        WHERE p.state = 'flying' AND c.state = 'done' AND c.cycle_id = p.cycle_id
          AND i.item->>'dataset' = p.dataset AND i.item->>'site' = p.site
          AND (i.item->>'block') IS NOT DISTINCT FROM p.block
        """
    )


def downgrade() -> None:
    op.drop_column("placements", "refusal", schema=S)
    op.drop_column("placements", "answered_seq", schema=S)
