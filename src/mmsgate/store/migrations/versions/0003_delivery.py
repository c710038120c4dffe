"""delivery: the carrier's message id and the handset on each recipient

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recipients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("carrier_message_id", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("handset", sa.Text(), nullable=True))
        batch_op.create_index("ix_recipients_carrier_message", ["carrier_message_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("recipients", schema=None) as batch_op:
        batch_op.drop_index("ix_recipients_carrier_message")
        batch_op.drop_column("handset")
        batch_op.drop_column("carrier_message_id")
