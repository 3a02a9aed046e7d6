"""Catalog imports survive the process that ran them: the file kept until done, the owner and its heartbeat

Revision ID: 0011_catalog_import_recovery
Revises: 0010_loyalty_redeem_function
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import omnicanal.db

revision = "0011_catalog_import_recovery"
down_revision = "0010_loyalty_redeem_function"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("commerce_catalog_imports") as batch:
        batch.add_column(sa.Column("source", sa.Text(), nullable=True))
        batch.add_column(sa.Column("worker", sa.String(length=200), nullable=False, server_default=""))
        batch.add_column(sa.Column("heartbeat_at", omnicanal.db.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("failure", sa.String(length=20), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("commerce_catalog_imports") as batch:
        batch.drop_column("failure")
        batch.drop_column("attempts")
        batch.drop_column("heartbeat_at")
        batch.drop_column("worker")
        batch.drop_column("source")
