"""New rows and hot-path updates of commerce without the unit of work's per-statement cost.

Placing and paying an order used to flush ORM objects and run ORM-enabled UPDATEs, whose statement
building and bookkeeping cost more CPU than the database work (bench/commerce.py, K1). New rows go in
with one driver ``executemany`` per table (:func:`omnicanal.driver_sql.bulk_insert`) and then join the session as
if they had just been loaded, so later changes to them are flushed as usual. Updates run prebuilt Core
statements on the session's connection (their compiled form is cached once per process).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from sqlalchemy import Executable, Table, bindparam, inspect, update
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from omnicanal.db import Base
from omnicanal.driver_sql import bulk_insert, run_statement

_columns_of: dict[type[Base], list[tuple[str, str]]] = {}


def _columns(model: type[Base]) -> list[tuple[str, str]]:
    """(attribute, column) pairs of a model."""
    found = _columns_of.get(model)
    if found is None:
        found = _columns_of[model] = [(prop.key, prop.columns[0].name) for prop in inspect(model).column_attrs]
    return found


def table_of(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


_M = TypeVar("_M", bound=Base)


def insert_loaded(session: Session, model: type[_M], values: Mapping[str, Any]) -> _M:
    """Insert one row of ``model`` (``values``: every mapped attribute) with one driver statement, and hand back
    its object as if it had just been loaded: in the session, nothing of it left to flush.

    The object is built straight from the values, not through the model's constructor, whose per-attribute
    instrumentation cost twenty times as much as the row (bench/commerce.py, K1). The model's defaults are
    not applied, so every column must be given.
    """
    columns = _columns(model)
    if len(values) != len(columns) or any(attribute not in values for attribute, _ in columns):
        missing = sorted({attribute for attribute, _ in columns} - set(values))
        extra = sorted(set(values) - {attribute for attribute, _ in columns})
        raise ValueError(f"insert_loaded({model.__name__}): missing {missing}, not columns {extra}")
    bulk_insert(session, model, [{column: values[attribute] for attribute, column in columns}])
    obj = cast(_M, inspect(model).class_manager.new_instance())
    obj.__dict__.update(values)
    make_transient_to_detached(obj)
    session.add(obj)
    return obj


_updates: dict[tuple[type[Base], tuple[str, ...]], Executable] = {}


def update_loaded(session: Session, obj: Base, **values: Any) -> None:
    """Set columns of a loaded object with one prebuilt UPDATE by its ``id``, as if the values had been loaded.

    The object is not left dirty, so the next flush has nothing of it to write: the unit of work's flush of one
    changed order cost more CPU than the rest of a payment's statements (bench/commerce.py, K1). An object
    not in the database yet (added, not flushed) gets the values as plain attribute changes.
    """
    model = type(obj)
    names = tuple(values)
    statement = _updates.get((model, names))
    if statement is None:
        table = table_of(model)
        statement = _updates[(model, names)] = (
            update(table).where(table.c.id == bindparam("b_id")).values({n: bindparam(n) for n in names})
        )
    state: Any = inspect(obj)
    if state.pending or state.transient or run_statement(session, statement, {"b_id": obj.id, **values}) != 1:  # type: ignore[attr-defined]
        for name, value in values.items():
            setattr(obj, name, value)
        return
    for name, value in values.items():
        set_committed_value(obj, name, value)
