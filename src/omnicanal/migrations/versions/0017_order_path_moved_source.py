"""The order path's tables index ``source_customer_id`` only for rows a merge moved

Orders, payments, carts and loyalty's spend rows gained one random index entry each for a lookup that only
merge undo makes, and only for moved rows (as 0012 did for events, identities, conversations and messages).

Revision ID: 0017_order_path_moved_source
Revises: 0016_open_carts_index
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_order_path_moved_source"
down_revision = "0016_open_carts_index"
branch_labels = None
depends_on = None

MOVED_ROWS = "source_customer_id != customer_id"
FULL_INDEXES = {
    "commerce_orders": "ix_commerce_orders_source_customer",
    "commerce_payments": "ix_commerce_payments_source_customer",
    "commerce_carts": "ix_commerce_carts_source_customer",
    "loyalty_spend": "ix_loyalty_spend_source_customer_id",
}


def upgrade() -> None:
    for table, full_index in FULL_INDEXES.items():
        op.drop_index(full_index, table_name=table)
        op.create_index(
            f"ix_{table}_moved_source",
            table,
            ["source_customer_id"],
            sqlite_where=sa.text(MOVED_ROWS),
            postgresql_where=sa.text(MOVED_ROWS),
        )


def downgrade() -> None:
    for table, full_index in FULL_INDEXES.items():
        op.drop_index(f"ix_{table}_moved_source", table_name=table)
        op.create_index(full_index, table, ["source_customer_id"])
