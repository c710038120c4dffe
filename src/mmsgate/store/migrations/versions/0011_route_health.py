"""route health: each MM7 route's health as the workers last found it

Revision ID: 0011
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mmsgate.store.schema import UtcDateTime

revision = "0011"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "route_health",
        sa.Column("route", sa.String(length=64), nullable=False),
        sa.Column("healthy", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("since", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("route"),
    )


def downgrade() -> None:
    op.drop_table("route_health")
