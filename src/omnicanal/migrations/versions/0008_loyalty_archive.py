"""Loyalty: rules and rewards referred to by the ledger are archived instead of deleted

Revision ID: 0008_loyalty_archive
Revises: 0007
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import omnicanal.db

revision = "0008_loyalty_archive"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("loyalty_rewards") as batch_op:
        batch_op.add_column(sa.Column("archived_at", omnicanal.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("loyalty_rules") as batch_op:
        batch_op.add_column(sa.Column("archived_at", omnicanal.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("loyalty_rules") as batch_op:
        batch_op.drop_column("archived_at")
    with op.batch_alter_table("loyalty_rewards") as batch_op:
        batch_op.drop_column("archived_at")
