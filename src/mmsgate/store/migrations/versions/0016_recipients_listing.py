"""an index for listing an account's recipients newest first (GET /v1/messages)

Revision ID: 0016
Revises: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_recipients_account_created",
        "recipients",
        ["account_id", "created_at", "tracking_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_recipients_account_created", table_name="recipients")
