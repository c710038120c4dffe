"""SMS-with-link fallback: the hosted page and the SMS parts

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mmsgate.store.schema import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fallbacks",
        sa.Column("tracking_id", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=True),
        sa.Column("link_expires_at", UtcDateTime(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("slides", sa.JSON(), nullable=False),
        sa.Column("sms_text", sa.Text(), nullable=False),
        sa.Column("sms_coding", sa.String(length=8), nullable=False),
        sa.Column("sms_parts", sa.Integer(), nullable=False),
        sa.Column("sms_route", sa.String(length=64), nullable=True),
        sa.Column("opened_at", UtcDateTime(), nullable=True),
        sa.Column("opens", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["tracking_id"], ["recipients.tracking_id"]),
        sa.PrimaryKeyConstraint("tracking_id"),
    )
    op.create_index("ix_fallbacks_token", "fallbacks", ["token"], unique=True)
    op.create_table(
        "sms_parts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tracking_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("route", sa.String(length=64), nullable=False),
        sa.Column("smsc_message_id", sa.String(length=128), nullable=False),
        sa.Column("stat", sa.String(length=16), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["tracking_id"], ["recipients.tracking_id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sms_parts_receipt", "sms_parts", ["route", "smsc_message_id"])
    op.create_index("ix_sms_parts_tracking", "sms_parts", ["tracking_id"])


def downgrade() -> None:
    op.drop_index("ix_sms_parts_tracking", table_name="sms_parts")
    op.drop_index("ix_sms_parts_receipt", table_name="sms_parts")
    op.drop_table("sms_parts")
    op.drop_index("ix_fallbacks_token", table_name="fallbacks")
    op.drop_table("fallbacks")
