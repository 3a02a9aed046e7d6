"""Channel and commerce gaps: reply parts' ids, early delivery statuses, promotion uses moved by merges,
catalog imports over the API

Revision ID: 0009_channel_commerce_gaps
Revises: 0007
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import omnicanal.db

revision = "0009_channel_commerce_gaps"
down_revision = "0008_loyalty_archive"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "held_delivery_statuses",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("provider_message_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("received_at", omnicanal.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_held_delivery_statuses")),
    )
    op.create_index("ix_held_delivery_statuses_provider_id", "held_delivery_statuses", ["provider_message_id"])
    op.create_table(
        "outbound_parts",
        sa.Column("outbox_item_id", sa.Uuid(), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("provider_message_id", sa.String(length=200), nullable=False),
        sa.Column("created_at", omnicanal.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["outbox_item_id"], ["outbox.id"], name=op.f("fk_outbound_parts_outbox_item_id_outbox")
        ),
        sa.PrimaryKeyConstraint("outbox_item_id", "part", name=op.f("pk_outbound_parts")),
    )
    op.create_index("ix_outbound_parts_provider_id", "outbound_parts", ["provider_message_id"])
    op.create_table(
        "commerce_promotion_usage_merges",
        sa.Column("merge_id", sa.Uuid(), nullable=False),
        sa.Column("promotion_id", sa.Uuid(), nullable=False),
        sa.Column("survivor_id", sa.Uuid(), nullable=False),
        sa.Column("moved", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["promotion_id"],
            ["commerce_promotions.id"],
            name=op.f("fk_commerce_promotion_usage_merges_promotion_id_commerce_promotions"),
        ),
        sa.PrimaryKeyConstraint("merge_id", "promotion_id", name=op.f("pk_commerce_promotion_usage_merges")),
    )
    op.create_table(
        "commerce_catalog_imports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("products", sa.Integer(), nullable=False),
        sa.Column("variants", sa.Integer(), nullable=False),
        sa.Column(
            "rejected", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", omnicanal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", omnicanal.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commerce_catalog_imports")),
    )


def downgrade() -> None:
    op.drop_table("commerce_catalog_imports")
    op.drop_table("commerce_promotion_usage_merges")
    op.drop_index("ix_outbound_parts_provider_id", table_name="outbound_parts")
    op.drop_table("outbound_parts")
    op.drop_index("ix_held_delivery_statuses_provider_id", table_name="held_delivery_statuses")
    op.drop_table("held_delivery_statuses")
