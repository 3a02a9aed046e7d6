"""A received message records when the customer edited it

Revision ID: 0015_message_edited_at
Revises: 0014_conversation_joins
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import omnicanal.db

revision = "0015_message_edited_at"
down_revision = "0014_conversation_joins"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("edited_at", omnicanal.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("edited_at")
