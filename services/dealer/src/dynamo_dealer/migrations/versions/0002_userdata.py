"""User data: user datasets, the blocks Dynamo makes for them, and their files.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = "dealer"


def upgrade() -> None:
    op.create_table(
        "userdata_datasets",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),  # open complete deleting
        sa.Column("home", sa.Text, comment="the site the dataset is consolidated at"),
        sa.Column("next_block", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        schema=S,
    )
    op.create_index("userdata_datasets_by_owner", "userdata_datasets", ["owner"], schema=S)
    op.create_table(
        "userdata_blocks",
        sa.Column(
            "dataset",
            sa.Text,
            sa.ForeignKey(f"{S}.userdata_datasets.name", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("site", sa.Text, nullable=False),
        sa.Column("num_files", sa.Integer, nullable=False, server_default="0"),
        sa.Column("size", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("is_open", sa.Boolean, nullable=False, server_default="true"),
        sa.PrimaryKeyConstraint("dataset", "name"),
        schema=S,
    )
    # A block never spans sites (one site per row). Injections of a dataset run one at a
    # time, and files join the first open block of their site.
    op.create_index(
        "userdata_blocks_open",
        "userdata_blocks",
        ["dataset", "site"],
        schema=S,
        postgresql_where=sa.text("is_open"),
    )
    op.create_table(
        "userdata_files",
        sa.Column("lfn", sa.Text, primary_key=True),
        sa.Column("dataset", sa.Text, nullable=False),
        sa.Column("block", sa.Text, nullable=False),
        sa.Column("site", sa.Text, nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("adler32", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset", "block"],
            [f"{S}.userdata_blocks.dataset", f"{S}.userdata_blocks.name"],
            ondelete="CASCADE",
        ),
        schema=S,
    )
    op.create_index("userdata_files_by_owner", "userdata_files", ["owner"], schema=S)
    op.create_index("userdata_files_by_block", "userdata_files", ["dataset", "block"], schema=S)


def downgrade() -> None:
    op.drop_table("userdata_files", schema=S)
    op.drop_table("userdata_blocks", schema=S)
    op.drop_table("userdata_datasets", schema=S)
