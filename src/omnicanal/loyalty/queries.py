"""SQL pieces the loyalty batches share.

:func:`among` is ``column IN (values)`` with the whole list as ONE bound parameter (a JSON array read by
``json_each`` on SQLite, an array compared with ``= ANY`` on PostgreSQL). A batch of 1,000 orders asks
several such questions of 1,000 customers; an ordinary ``IN`` renders and converts 1,000 parameters each
time, which cost more CPU than the queries themselves (docs/benchmarks-loyalty.md, L1).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import ColumnElement, String, any_, bindparam, func, literal_column, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def insert(session: Session, model: Any) -> Any:
    """The dialect's INSERT (for ``on_conflict_do_nothing``)."""
    module: Any = postgresql if is_postgres(session) else sqlite
    return module.insert(model)


def among(session: Session, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """``column IN values`` as one bound parameter, whatever the number of values."""
    items = list(values)
    if is_postgres(session):
        return column == any_(bindparam(None, items, type_=ARRAY(column.type)))  # type: ignore[no-any-return]
    # SQLite stores UUIDs as 32 hex digits (sqlalchemy.Uuid without native support)
    text = orjson.dumps([v.hex if isinstance(v, uuid.UUID) else v for v in items]).decode()
    listed: Any = select(literal_column("value")).select_from(func.json_each(bindparam(None, text, type_=String)))
    return column.in_(listed)  # type: ignore[no-any-return]
