"""transcode cache and per-template reports

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mmsgate.store.schema import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("templates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reports", sa.JSON(), nullable=True))
    op.create_table(
        "transcodes",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("output_key", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("transcodes")
    with op.batch_alter_table("templates", schema=None) as batch_op:
        batch_op.drop_column("reports")
