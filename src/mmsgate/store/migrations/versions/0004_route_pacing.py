"""route pacing: the next free send slot of each rate-limited route

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "route_pacing",
        sa.Column("route", sa.String(length=64), nullable=False),
        sa.Column("next_slot", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("route"),
    )


def downgrade() -> None:
    op.drop_table("route_pacing")
