"""postback format per account; saveMMS client-reference kept with the template

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Accounts that exist keep the XML postbacks they have always had.
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("postback_format", sa.String(length=8), server_default="xml", nullable=False)
        )
    with op.batch_alter_table("templates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_reference", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("templates", schema=None) as batch_op:
        batch_op.drop_column("client_reference")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("postback_format")
