"""New rows and hot-path updates of commerce without the unit of work's per-statement cost.

Placing and paying an order used to flush ORM objects and run ORM-enabled UPDATEs, whose statement
building and bookkeeping cost more CPU than the database work (bench/commerce.py, K1). New rows go in
with one driver ``executemany`` per table (:func:`omnicanal.driver_sql.bulk_insert`) and then join the session as
if they had just been loaded, so later changes to them are flushed as usual. Updates run prebuilt Core
statements on the session's connection (their compiled form is cached once per process).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Executable, Table, inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, make_transient_to_detached

from omnicanal.db import Base
from omnicanal.driver_sql import bulk_insert, connection_of, driver_cursor

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


def insert_new(session: Session, objects: Sequence[Base]) -> None:
    """Insert new objects of one model with one executemany; they join the session as loaded rows.

    Every column is stored as the object holds it: set each one (the model's defaults are not applied).
    """
    if not objects:
        return
    model = type(objects[0])
    columns = _columns(model)
    rows = [{column: getattr(obj, attribute) for attribute, column in columns} for obj in objects]
    table: Any = model.__table__
    for column in table.c:
        if column.default is not None and any(row[column.name] is None for row in rows):
            raise ValueError(f"insert_new({model.__name__}): {column.name} must be set (its default is not applied)")
    bulk_insert(session, model, rows)
    for obj in objects:
        make_transient_to_detached(obj)
        session.add(obj)


Params = Mapping[str, Any] | Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class _DriverPlan:
    """A prebuilt statement compiled once for a dialect: its SQL, its parameters' order and converters."""

    statement: Executable
    sql: str
    names: tuple[str, ...] | None  # positional paramstyle (SQLite): the order of the parameters
    converters: dict[str, Callable[[Any], Any]]
    defaults: dict[str, Any]  # the literal values the statement carries (``status == "open"``)

    def parameters(self, params: Mapping[str, Any]) -> Any:
        values = self.defaults | dict(params)
        for name, convert in self.converters.items():
            values[name] = convert(values[name])
        return values if self.names is None else tuple(values[name] for name in self.names)


_plans: dict[tuple[int, str], _DriverPlan | None] = {}


def _plan(statement: Executable, dialect: Dialect) -> _DriverPlan | None:
    key = (id(statement), dialect.name)
    plan = _plans.get(key)
    if plan is not None and plan.statement is statement:
        return plan
    compiled: Any = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    if any(bind.expanding for bind in compiled.binds.values()) or not hasattr(compiled, "_bind_processors"):
        _plans[key] = None  # IN lists and the like: left to SQLAlchemy
        return None
    names = tuple(compiled.positiontup) if compiled.positional else None
    converters = {name: convert for name, convert in compiled._bind_processors.items() if convert is not None}
    plan = _DriverPlan(statement, compiled.string, names, converters, compiled.construct_params(_check=False))
    _plans[key] = plan
    return plan


def fetch_rows(session: Session, statement: Executable, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of a prebuilt Core SELECT, run like :func:`run_statement`; values as the driver gives them
    (see :func:`omnicanal.driver_sql.uuid_from_db` and :func:`omnicanal.driver_sql.json_from_db`)."""
    connection = connection_of(session)
    plan = _plan(statement, connection.dialect)
    if plan is None:
        return [tuple(row) for row in connection.execute(statement, params)]
    values = plan.parameters(params)
    with driver_cursor(connection, plan.sql, values) as cursor:
        cursor.execute(plan.sql, values)
        return list(cursor.fetchall())


def run_statement(session: Session, statement: Executable, params: Params) -> int:
    """Run a prebuilt Core statement in the session's transaction; the number of rows it changed.

    Compiled once per dialect and run on the driver cursor: SQLAlchemy's per-execution work (cache key,
    parameter processing, result set-up) cost several times the UPDATEs of the order path (bench/commerce.py,
    K1). Errors are raised as SQLAlchemy raises them.
    """
    connection = connection_of(session)
    plan = _plan(statement, connection.dialect)
    if plan is None:
        result = connection.execute(statement, params)
        return int(getattr(result, "rowcount", 0))
    many = not isinstance(params, Mapping)
    values: Any = [plan.parameters(row) for row in params] if many else plan.parameters(params)  # type: ignore[arg-type]
    with driver_cursor(connection, plan.sql, values) as cursor:
        if many:
            cursor.executemany(plan.sql, values)
        else:
            cursor.execute(plan.sql, values)
        return int(cursor.rowcount)
