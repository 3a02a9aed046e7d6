"""SQL pieces the loyalty batches share.

:func:`among` is ``column IN (values)`` with the whole list as ONE bound parameter (a JSON array read by
``json_each`` on SQLite, an array compared with ``= ANY`` on PostgreSQL). A batch of 1,000 orders asks
several such questions of 1,000 customers; an ordinary ``IN`` renders and converts 1,000 parameters each
time, which cost more CPU than the queries themselves (docs/benchmarks-loyalty.md, L1).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
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


def among_param(dialect: str, column: Any, name: str) -> ColumnElement[bool]:
    """:func:`among` with a named parameter, for statements built once per process (see :func:`prebuilt`)."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(column.type)))  # type: ignore[no-any-return]
    listed: Any = select(literal_column("value")).select_from(func.json_each(bindparam(name, type_=String)))
    return column.in_(listed)  # type: ignore[no-any-return]


def among_value(dialect: str, values: Iterable[Any]) -> Any:
    """The value of an :func:`among_param` parameter."""
    if dialect == "postgresql":
        return list(values)
    return orjson.dumps([v.hex if isinstance(v, uuid.UUID) else v for v in values]).decode()


_prebuilt: dict[tuple[str, str], Any] = {}


def prebuilt(dialect: str, name: str, build: Callable[[str], Any]) -> Any:
    """The statement ``build(dialect)``, built once per process and dialect.

    The order-paid reaction runs on every paid order; building its statements each time (and computing their
    cache keys) cost more CPU than running them (bench/commerce.py, K1).
    """
    found = _prebuilt.get((dialect, name))
    if found is None:
        found = _prebuilt[(dialect, name)] = build(dialect)
    return found
