"""A fulfillment records when a pickup was handed over (the return window starts then)

Revision ID: 0013_fulfillment_collected_at
Revises: 0012_moved_rows_source_indexes
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import omnicanal.db

revision = "0013_fulfillment_collected_at"
down_revision = "0012_moved_rows_source_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("commerce_fulfillments") as batch:
        batch.add_column(sa.Column("collected_at", omnicanal.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("commerce_fulfillments") as batch:
        batch.drop_column("collected_at")
