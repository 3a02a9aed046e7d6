"""Email: the Message-ID and subject of each email message, for threading

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import omnicanal.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_headers",
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("conversation_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("source_customer_id", sa.Uuid(), nullable=False),
        sa.Column("header_id", sa.String(length=250), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("created_at", omnicanal.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"]),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"]),
        sa.ForeignKeyConstraint(["source_customer_id"], ["customers.id"]),
        sa.PrimaryKeyConstraint("message_id"),
    )
    op.create_index("ix_email_headers_conversation", "email_headers", ["conversation_id", "created_at"])
    op.create_index("ix_email_headers_header_id", "email_headers", ["header_id"])
    op.create_index("ix_email_headers_source_customer", "email_headers", ["source_customer_id"])


def downgrade() -> None:
    op.drop_index("ix_email_headers_source_customer", table_name="email_headers")
    op.drop_index("ix_email_headers_header_id", table_name="email_headers")
    op.drop_index("ix_email_headers_conversation", table_name="email_headers")
    op.drop_table("email_headers")
