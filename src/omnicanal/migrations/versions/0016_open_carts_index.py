"""A customer's open carts are found by customer and status

Every order leaves an ordered cart behind, and the open cart was looked up through an index of the customer
alone: each quote and each order read all the customer's past carts to find the open one.

Revision ID: 0016_open_carts_index
Revises: 0015_message_edited_at
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0016_open_carts_index"
down_revision = "0015_message_edited_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_commerce_carts_customer_status", "commerce_carts", ["customer_id", "status"])
    op.drop_index("ix_commerce_carts_customer_id", table_name="commerce_carts")


def downgrade() -> None:
    op.create_index("ix_commerce_carts_customer_id", "commerce_carts", ["customer_id"])
    op.drop_index("ix_commerce_carts_customer_status", table_name="commerce_carts")
