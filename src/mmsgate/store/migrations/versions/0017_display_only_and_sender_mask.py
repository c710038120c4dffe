"""a send's display-only group members and its alphanumeric sender mask

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Both nullable: messages stored before carry neither, and read back as none.
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("to_displayonly", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("sender_mask", sa.String(length=11), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("sender_mask")
        batch_op.drop_column("to_displayonly")
