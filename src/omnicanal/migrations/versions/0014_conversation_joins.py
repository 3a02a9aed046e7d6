"""A customer merge joins the customer's open conversations; the join is recorded so the merge's undo parts them

Revision ID: 0014_conversation_joins
Revises: 0013_fulfillment_collected_at
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import omnicanal.db

revision = "0014_conversation_joins"
down_revision = "0013_fulfillment_collected_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversation_joins",
        sa.Column("merge_id", sa.Uuid(), nullable=False),
        sa.Column("conversation_id", sa.Uuid(), nullable=False),
        sa.Column("into_conversation_id", sa.Uuid(), nullable=False),
        sa.Column("status_before", sa.String(length=16), nullable=False),
        sa.Column("snooze_until_before", omnicanal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "message_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("joined_at", omnicanal.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"]),
        sa.ForeignKeyConstraint(["into_conversation_id"], ["conversations.id"]),
        sa.PrimaryKeyConstraint("merge_id", "conversation_id"),
    )


def downgrade() -> None:
    op.drop_table("conversation_joins")
