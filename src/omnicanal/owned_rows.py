"""Rows a merge moved: the only ones looked up by ``source_customer_id`` (merge undo, erasure)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, FromClause, Index, text

# The rows a merge moved to another customer. Only undo and erasure look rows up by ``source_customer_id``, and
# only these; on the busiest tables (events, messages, conversations, identities, and the order path's orders,
# payments, carts and loyalty spend) that index holds them alone, instead of one random entry more for every row
# written (bench/README.md, B1 and C1; bench/commerce.py, K1).
MOVED_ROWS = "source_customer_id != customer_id"


def moved_rows_index(table: str) -> Index:
    """The partial index of ``source_customer_id`` over the moved rows of ``table``."""
    return Index(
        f"ix_{table}_moved_source",
        "source_customer_id",
        sqlite_where=text(MOVED_ROWS),
        postgresql_where=text(MOVED_ROWS),
    )


def moved(table: FromClause) -> ColumnElement[bool]:
    """:data:`MOVED_ROWS` of ``table``, for statements that the partial index serves."""
    return table.c.source_customer_id != table.c.customer_id
