"""The busiest tables index ``source_customer_id`` only for rows a merge moved

Revision ID: 0012_moved_rows_source_indexes
Revises: 0011_catalog_import_recovery
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_moved_rows_source_indexes"
down_revision = "0011_catalog_import_recovery"
branch_labels = None
depends_on = None

MOVED_ROWS = "source_customer_id != customer_id"
TABLES = ("events", "identities", "conversations", "messages")


def upgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_source_customer", table_name=table)
        op.create_index(
            f"ix_{table}_moved_source",
            table,
            ["source_customer_id"],
            sqlite_where=sa.text(MOVED_ROWS),
            postgresql_where=sa.text(MOVED_ROWS),
        )


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_moved_source", table_name=table)
        op.create_index(f"ix_{table}_source_customer", table, ["source_customer_id"])
