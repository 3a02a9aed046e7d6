"""Inbox indexes end in (last_message_at, id), the listing's order

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_conversations_inbox")
        batch_op.drop_index("ix_conversations_team")
        batch_op.create_index(
            "ix_conversations_inbox", ["status", "assignee_id", "last_message_at", "id"], unique=False
        )
        batch_op.create_index("ix_conversations_team", ["team_id", "status", "last_message_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_conversations_team")
        batch_op.drop_index("ix_conversations_inbox")
        batch_op.create_index("ix_conversations_team", ["team_id", "status", "last_message_at"], unique=False)
        batch_op.create_index("ix_conversations_inbox", ["status", "assignee_id", "last_message_at"], unique=False)
