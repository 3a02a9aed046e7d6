"""New rows and hot-path updates of commerce without the unit of work's per-statement cost.

Placing and paying an order used to flush ORM objects and run ORM-enabled UPDATEs, whose statement
building and bookkeeping cost more CPU than the database work (bench/commerce.py, K1). New rows go in
with one driver ``executemany`` per table (:func:`omnicanal.driver_sql.bulk_insert`) and then join the session as
if they had just been loaded, so later changes to them are flushed as usual. Updates run prebuilt Core
statements on the session's connection (their compiled form is cached once per process).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar, cast

from sqlalchemy import Executable, Table, bindparam, inspect, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import instance_state, set_committed_value

from omnicanal.db import Base
from omnicanal.driver_sql import bulk_insert, driver_rows, run_statement, uuid_to_db

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
    return _held_as_loaded(session, model, values)


def _held_as_loaded(session: Session, model: type[_M], values: Mapping[str, Any]) -> _M:
    """An object of ``model`` with ``values`` (every mapped attribute), in the session as if just loaded."""
    obj = cast(_M, inspect(model).class_manager.new_instance())
    obj.__dict__.update(values)
    make_transient_to_detached(obj)
    if _attach is None:
        session.add(obj)
    else:
        # Session.add without its save-update cascade, which walked the mapper's relationships for every row
        # (a few percent of the order path's writer, K1): an object made from column values relates to nothing
        _attach(session, instance_state(obj))
    return obj


# the step of Session.add that attaches one object (private: without it, Session.add itself is used)
_attach: Callable[[Session, Any], None] | None = getattr(Session, "_save_or_update_impl", None)


_readers: dict[tuple[type[Base], str], tuple[str, list[tuple[str, Callable[[Any], Any] | None]]]] = {}


def load_by_ids(session: Session, model: type[_M], ids: Collection[uuid.UUID]) -> list[_M]:
    """The objects of ``model`` (primary key ``id``) with these ids, read with one driver statement on SQLite and
    held by the session as the ORM would load them; an object the session already holds is kept as it is.

    Each value goes through its column type's own result conversion, so the objects are what ``select(model)``
    gives. The ORM's select of a payment batch's orders cost its writer a tenth of its CPU over HTTP
    (bench/commerce.py, K1). Other databases use the ORM's select.
    """
    if not ids:
        return []
    dialect = session.get_bind().dialect
    if dialect.name != "sqlite":
        return list(session.scalars(select(model).where(model.id.in_(set(ids)))))  # type: ignore[attr-defined]
    columns, readers = _reader(model, dialect)
    wanted = sorted(set(ids))
    marks = ", ".join("?" * len(wanted))
    rows = driver_rows(session, f"SELECT {columns} FROM {table_of(model).name} WHERE id IN ({marks})",
                       [uuid_to_db(wanted_id, sqlite=True) for wanted_id in wanted])  # fmt: skip
    identity = session.identity_map
    found: list[_M] = []
    for row in rows:
        values = {name: value if convert is None else convert(value)
                  for (name, convert), value in zip(readers, row, strict=True)}  # fmt: skip
        held = identity.get((model, (values["id"],), None))
        found.append(held if held is not None else _held_as_loaded(session, model, values))
    return found


def _reader(model: type[Base], dialect: Dialect) -> tuple[str, list[tuple[str, Callable[[Any], Any] | None]]]:
    """The model's columns as a SELECT list, and each one's attribute with its result conversion on ``dialect``."""
    plan = _readers.get((model, dialect.name))
    if plan is None:
        table = table_of(model)
        pairs = _columns(model)
        quote = dialect.identifier_preparer.quote
        readers: list[tuple[str, Callable[[Any], Any] | None]] = [
            (attribute, cast(Any, table.c[column].type.dialect_impl(dialect).result_processor(dialect, None)))
            for attribute, column in pairs
        ]
        plan = _readers[(model, dialect.name)] = (", ".join(quote(column) for _, column in pairs), readers)
    return plan


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
