"""Driver statements: what the hot paths run on the driver connection of the session's transaction.

Bulk inserts and updates with the columns' own conversions, short lookups, and the values as the driver takes
and gives them (on SQLite a UUID is 32 hex digits and a datetime text). SQLAlchemy's per-statement work cost more
than these statements (bench/README.md, B1 and B2; bench/commerce.py, K1); driver errors are raised as
SQLAlchemy's, so callers retry on them the same way.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from sqlalchemy import JSON, Connection, Executable, Table, Uuid
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.orm import Session

from omnicanal.ids import uuid_of_int

if TYPE_CHECKING:
    from omnicanal.db import Base

_Converter = Callable[[Any], Any]
_T = TypeVar("_T")
_insert_plans: dict[tuple[str, str, tuple[str, ...]], tuple[str, _Rows]] = {}


def _sqlite_utc(value: datetime | None) -> str | None:
    """What UTCDateTime + SQLAlchemy's SQLite DATETIME store, in one step."""
    if value is None:
        return None
    if value.tzinfo is UTC:  # the common case (utcnow()): its text without the offset, in one call
        return value.isoformat(" ", "microseconds")[:-6]
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored; attach a timezone")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_uuid(value: uuid.UUID | None) -> str | None:
    """What ``Uuid`` stores on SQLite (32 hex digits), without the per-value checks of its bind processor.

    The digits come from the integer's bytes: a third of the cost of ``UUID.hex``, which formats in Python.
    """
    return None if value is None else value.int.to_bytes(16, "big").hex()


def _sqlite_json(value: Any) -> str:
    """JSON text for SQLite: the same JSON value the JSON type's ``json.dumps`` writes (which spaces it and escapes
    non-ASCII; orjson writes it compact, in UTF-8) at a fraction of the cost; None is JSON ``null``, as there."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _insert_plan(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> tuple[str, _Rows]:
    key = (dialect.name, table.name, columns)
    plan = _insert_plans.get(key)
    if plan is None:
        quote = dialect.identifier_preparer.quote
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        sql = (
            f"INSERT INTO {quote(table.name)} ({', '.join(quote(name) for name in columns)}) "
            f"VALUES ({', '.join([mark] * len(columns))})"
        )
        missing = [c.name for c in table.c if c.name not in columns and c.default is not None]
        if missing:
            raise ValueError(f"bulk_insert into {table.name} needs the columns with defaults: {missing}")
        plan = _insert_plans[key] = (sql, _Rows(columns, _converters(dialect, table, columns)))
    return plan


def _converters(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> list[_Converter | None]:
    converters: list[_Converter | None] = []
    for name in columns:
        column_type = table.c[name].type
        own = _sqlite_converter(column_type) if dialect.name == "sqlite" else None
        converters.append(own or column_type.dialect_impl(dialect).bind_processor(dialect))
    return converters


def _sqlite_converter(column_type: Any) -> _Converter | None:
    """What the value of a column of this type is stored as on SQLite, in one step, for the types the hot paths
    write most (times, UUIDs, JSON); None for the others, which keep SQLAlchemy's conversion."""
    from omnicanal.db import UTCDateTime  # omnicanal.db imports this module; plans are built once

    if isinstance(column_type, UTCDateTime):
        return _sqlite_utc_once
    if isinstance(column_type, Uuid) and column_type.as_uuid:
        return _sqlite_uuid
    if isinstance(column_type, JSON):
        return _sqlite_json
    return None


def bulk_insert(session: Session, model: type[Base], rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert many rows (all with the keys of the first) with one driver ``executemany``.

    Stores exactly what ``session.execute(insert(table), rows)`` stores (the columns' own bind
    processors convert the values), without compiling the statement and building parameters row by
    row; the ingest benchmark (bench/README.md, B2) measured that work as the largest cost of ingest.
    """
    if not rows:
        return
    table, connection, raw = _table_and_connection(session, model)
    columns = tuple(rows[0])
    sql, plan = _insert_plan(connection.dialect, table, columns)
    _run(connection, raw, sql, plan.parameters(rows), _nothing, many=True)


def _table_and_connection(session: Session, model: type[Base]) -> tuple[Table, Connection, Any]:
    """The model's table, and the transaction's connection (with its ``sqlite3`` one, see :func:`_driver_of`)
    after what the session holds went first."""
    table = model.__table__
    assert isinstance(table, Table)
    session.flush()
    return (table, *_driver_of(session))


_TRANSACTION_CONNECTION = "omnicanal.transaction_connection"


def connection_of(session: Session) -> Connection:
    """``session.connection()``, asked of the session once per transaction and then remembered.

    The driver statements of one transaction (lookups, bulk inserts, updates) each needed the connection,
    and the session's transaction machinery cost as much as a short statement (bench/commerce.py, K1).
    A transaction that ended or failed is never reused: the session is asked again, and it says why not.
    """
    return _driver_of(session)[0]


def _driver_of(session: Session) -> tuple[Connection, Any]:
    """:func:`connection_of` and, on SQLite, its ``sqlite3`` connection (None on other drivers)."""
    remembered = session.info.get(_TRANSACTION_CONNECTION)
    if remembered is not None:
        transaction, connection, raw = remembered
        if transaction.is_active and session.get_transaction() is transaction:
            return connection, raw
    connection = session.connection()
    raw = connection.connection.driver_connection if connection.dialect.name == "sqlite" else None
    session.info[_TRANSACTION_CONNECTION] = (session.get_transaction(), connection, raw)
    return connection, raw


def _as_sqlalchemy_error(connection: Connection, sql: str, params: Any, exc: Exception) -> StatementError:
    dialect = connection.dialect
    return DBAPIError.instance(sql, params, exc, dialect.loaded_dbapi.Error, hide_parameters=True, dialect=dialect)


def _run(connection: Connection, raw: Any, sql: str, params: Any, answer: Callable[[Any], _T], *,
         many: bool = False) -> _T:  # fmt: skip
    """``answer`` of the driver cursor that ran ``sql`` (``executemany`` when ``many``) in the transaction of
    ``connection``; ``raw`` is its ``sqlite3`` connection, or None (see :func:`_driver_of`).

    On SQLite the connection's own ``execute`` makes the cursor in C, a fifth of the cost of opening and closing
    one around the statement, which a short lookup paid twice over (bench/commerce.py, K1). Driver errors are
    raised as :func:`driver_cursor` raises them."""
    if raw is not None:
        try:
            return answer(raw.executemany(sql, params) if many else raw.execute(sql, params))
        except sqlite3.Error as exc:
            raise _as_sqlalchemy_error(connection, sql, params, exc) from exc
    with driver_cursor(connection, sql, params) as cursor:
        if many:
            cursor.executemany(sql, params)
        else:
            cursor.execute(sql, params)
        return answer(cursor)


def _all_rows(cursor: Any) -> list[tuple[Any, ...]]:
    return list(cursor.fetchall())


def _rowcount(cursor: Any) -> int:
    return int(cursor.rowcount)


def _nothing(_cursor: Any) -> None:
    return None


@contextmanager
def driver_cursor(connection: Connection, sql: str, params: Any) -> Iterator[Any]:
    """A driver cursor in the connection's transaction, for running ``sql`` with ``params`` on it; a driver error
    is raised as the error SQLAlchemy would have raised (IntegrityError, OperationalError...: callers retry on
    those), naming ``sql`` without its parameters."""
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        yield cursor
    except connection.dialect.loaded_dbapi.Error as exc:
        raise _as_sqlalchemy_error(connection, sql, params, exc) from exc
    finally:
        cursor.close()


@contextmanager
def sqlite_savepoint(session: Session) -> Iterator[None]:
    """A savepoint on SQLite's driver connection around the block: an exception rolls back its writes alone.

    ``Session.begin_nested`` cost the writer's batches more than their payments' own statements (bench/commerce.py,
    K1). On the way back the session forgets the objects it holds (their state may be the block's), so that
    nothing the block changed in memory outlives its rows; the caller's later reads load them again.
    """
    session.flush()  # what came before belongs to the transaction, not to the block
    raw = _driver_of(session)[1]
    raw.execute("SAVEPOINT omnicanal_block")
    try:
        yield
        session.flush()  # the block's changes go in before the savepoint is let go
    except BaseException:
        raw.execute("ROLLBACK TO omnicanal_block")
        raw.execute("RELEASE omnicanal_block")
        session.expunge_all()
        raise
    raw.execute("RELEASE omnicanal_block")


_B = TypeVar("_B", bound="Base")


def held_objects(session: Session, model: type[_B]) -> list[_B]:
    """The objects of ``model`` (a model without subclasses) that the session holds: those to show what a driver
    statement wrote (with ``set_committed_value``), since the ORM did not see it.

    Picked out by their identity keys: loading every object held cost a batch of the ingest writer a walk over all
    its orders and payments for each payment (bench/commerce.py, K1).
    """
    identity = session.identity_map
    picked = [identity.get(key) for key in identity.keys() if key[0] is model]  # noqa: SIM118 (typed without __iter__)
    return [obj for obj in picked if isinstance(obj, model)]


_driver_sql: dict[tuple[str, str], str] = {}


def driver_rows(session: Session, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (written with ``?`` placeholders) run on the driver connection of the session's transaction.

    For the few lookups of the ingest paths, where SQLAlchemy's per-statement work cost more than
    the statement (bench/README.md, B1). Values come back as the driver gives them: on SQLite a
    UUID column is 32 hex digits (see :func:`uuid_from_db`) and a datetime is text.
    """
    return _on_driver(session, sql, params, _all_rows)


def driver_execute(session: Session, sql: str, params: Sequence[Any]) -> int:
    """Run one statement (``?`` placeholders) like :func:`driver_rows`; returns the number of rows it changed."""
    return _on_driver(session, sql, params, _rowcount)


def _on_driver(session: Session, sql: str, params: Sequence[Any], answer: Callable[[Any], _T]) -> _T:
    connection, raw = _driver_of(session)
    style = connection.dialect.paramstyle
    text = sql
    if style != "qmark":
        text = _driver_sql.get((style, sql)) or _driver_sql.setdefault((style, sql), sql.replace("?", "%s"))
    return _run(connection, raw, text, tuple(params), answer)


def uuid_from_db(value: Any) -> uuid.UUID:
    """A UUID column's value as :func:`driver_rows` returns it, on either database."""
    if isinstance(value, uuid.UUID):
        return value
    if len(value) == 32:  # how SQLAlchemy stores a UUID on SQLite; int() refuses anything not hex
        return uuid_of_int(int(value, 16))
    return uuid.UUID(hex=value)


def is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def uuid_to_db(value: uuid.UUID | None, *, sqlite: bool) -> Any:
    """A UUID as a parameter of a driver statement: what ``Uuid`` binds on that database."""
    return _sqlite_uuid(value) if sqlite else value


def datetime_to_db(value: datetime, *, sqlite: bool) -> Any:
    """A datetime as a parameter of a driver statement: what ``UTCDateTime`` binds on that database."""
    return _sqlite_utc(value) if sqlite else value


def json_from_db(value: Any) -> Any:
    """A JSON column's value as :func:`driver_rows` returns it (text on SQLite, decoded on PostgreSQL)."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


class _Rows:
    """How rows (mappings with the same keys) become driver parameters: the columns' values in order, converted."""

    def __init__(self, columns: tuple[str, ...], converters: list[_Converter | None]) -> None:
        self.columns = columns
        self.converters = converters
        self.values_of = itemgetter(*columns)
        # only the columns that need it are converted: most of a row's values go to the driver as they are
        self.converted = [(index, convert) for index, convert in enumerate(converters) if convert is not None]

    def parameters(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """The rows as driver parameters (the loops run in C; bench, C1)."""
        if len(self.columns) == 1:
            values: list[Any] = [row[self.columns[0]] for row in rows]
            convert = self.converters[0]
            return [(value,) for value in (values if convert is None else map(convert, values))]
        if len(rows) == 1:  # most of the order path's inserts: a row's values taken in C, then a few converted
            row = list(self.values_of(rows[0]))
            for index, convert in self.converted:
                row[index] = convert(row[index])
            return [tuple(row)]
        by_column: list[Any] = list(zip(*map(self.values_of, rows), strict=True))
        for index, convert in self.converted:
            by_column[index] = map(convert, by_column[index])
        return list(zip(*by_column, strict=True))


_update_plans: dict[tuple[str, str, tuple[str, ...], str], tuple[str, _Rows]] = {}


def bulk_update(session: Session, model: type[Base], key: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """``UPDATE … SET <the other keys of the rows> WHERE <key> = ?`` for many rows, one driver ``executemany``.

    What ``connection.execute(update(table).where(...), rows)`` stores, without SQLAlchemy's per-row
    parameter processing (the same converters as :func:`bulk_insert`).
    """
    if not rows:
        return
    table, connection, raw = _table_and_connection(session, model)
    dialect = connection.dialect
    columns = (*(name for name in rows[0] if name != key), key)
    plan_key = (dialect.name, table.name, columns, key)
    plan = _update_plans.get(plan_key)
    if plan is None:
        quote = dialect.identifier_preparer.quote
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        assignments = ", ".join(f"{quote(name)} = {mark}" for name in columns[:-1])
        sql = f"UPDATE {quote(table.name)} SET {assignments} WHERE {quote(key)} = {mark}"
        plan = _update_plans[plan_key] = (sql, _Rows(columns, _converters(dialect, table, columns)))
    sql, rows_plan = plan
    _run(connection, raw, sql, rows_plan.parameters(rows), _nothing, many=True)


_utc_texts: dict[datetime, str] = {}


def _sqlite_utc_once(value: datetime | None) -> str | None:
    """:func:`_sqlite_utc` converting each distinct datetime once (a batch shares its ``now``, and a message its
    ``occurred_at`` with its timeline event)."""
    if value is None:
        return None
    text = _utc_texts.get(value)
    if text is None:
        if len(_utc_texts) >= 4096:
            _utc_texts.clear()
        text = _utc_texts[value] = _sqlite_utc(value)  # type: ignore[assignment]
    return text


Params = Mapping[str, Any] | Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class _DriverPlan:
    """A prebuilt statement compiled once for a dialect: its SQL, its parameters' order and converters."""

    statement: Executable
    sql: str
    converters: dict[str, Callable[[Any], Any]]
    defaults: dict[str, Any]  # the literal values the statement carries (``status == "open"``)
    # positional paramstyle (SQLite): each parameter's name, converter and literal value, in order; else None
    steps: tuple[tuple[str, Callable[[Any], Any] | None, Any], ...] | None

    def parameters(self, params: Mapping[str, Any]) -> Any:
        if self.steps is not None:  # built in one pass: merging into a dict first cost twice as much
            get = params.get
            return tuple([get(name, default) if convert is None else convert(get(name, default))
                          for name, convert, default in self.steps])  # fmt: skip
        values = self.defaults | dict(params)
        for name, convert in self.converters.items():
            values[name] = convert(values[name])
        return values


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
    converters = {name: convert for name, convert in compiled._bind_processors.items() if convert is not None}
    if dialect.name == "sqlite":  # as bulk inserts convert: SQLAlchemy's (decorator, then dialect) cost more (K1)
        converters |= {name: own for name, bind in compiled.binds.items() if (own := _sqlite_converter(bind.type))}
    defaults = compiled.construct_params(_check=False)
    steps = (
        tuple((name, converters.get(name), defaults.get(name)) for name in compiled.positiontup)
        if compiled.positional
        else None
    )
    plan = _DriverPlan(statement, compiled.string, converters, defaults, steps)
    _plans[key] = plan
    return plan


def fetch_rows(session: Session, statement: Executable, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of a prebuilt Core SELECT, run like :func:`run_statement`; values as the driver gives them
    (see :func:`omnicanal.driver_sql.uuid_from_db` and :func:`omnicanal.driver_sql.json_from_db`)."""
    connection, raw = _driver_of(session)
    plan = _plan(statement, connection.dialect)
    if plan is None:
        return [tuple(row) for row in connection.execute(statement, params)]
    return _run(connection, raw, plan.sql, plan.parameters(params), _all_rows)


_Readers = tuple[Callable[[Any], Any] | None, ...]
_readers: dict[tuple[int, str], tuple[Executable, _Readers]] = {}


def _result_readers(statement: Executable, dialect: Dialect) -> _Readers:
    """Each selected column's result conversion on ``dialect`` (None where the driver's value is the value)."""
    key = (id(statement), dialect.name)
    found = _readers.get(key)
    if found is not None and found[0] is statement:
        return found[1]
    columns: Any = statement.selected_columns  # type: ignore[attr-defined]
    readers = tuple(column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns)
    _readers[key] = (statement, readers)
    return readers


def fetch_typed(session: Session, statement: Executable, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """:func:`fetch_rows` with each value converted by its column's type, as ``session.execute`` gives it (UUIDs,
    datetimes, decoded JSON), without SQLAlchemy's per-execution work: the loyalty batch of every paid order
    asked four such questions, and their execution cost its writer more than their rows (bench/commerce.py, K1).
    The caller flushes what the session holds first, if the statement must see it. On other databases than
    SQLite it is ``session.execute``: some of their types' conversions depend on the driver's type codes."""
    connection, raw = _driver_of(session)
    plan = _plan(statement, connection.dialect) if raw is not None else None
    if plan is None:
        return [tuple(row) for row in connection.execute(statement, params)]
    rows = _run(connection, raw, plan.sql, plan.parameters(params), _all_rows)
    readers = _result_readers(statement, connection.dialect)
    if not any(readers):
        return rows
    return [tuple([value if read is None or value is None else read(value)
                   for read, value in zip(readers, row, strict=True)]) for row in rows]  # fmt: skip


def run_statement(session: Session, statement: Executable, params: Params) -> int:
    """Run a prebuilt Core statement in the session's transaction; the number of rows it changed.

    Compiled once per dialect and run on the driver cursor: SQLAlchemy's per-execution work (cache key,
    parameter processing, result set-up) cost several times the UPDATEs of the order path (bench/commerce.py,
    K1). Errors are raised as SQLAlchemy raises them.
    """
    connection, raw = _driver_of(session)
    plan = _plan(statement, connection.dialect)
    if plan is None:
        result = connection.execute(statement, params)
        return int(getattr(result, "rowcount", 0))
    many = not isinstance(params, Mapping)
    values: Any = [plan.parameters(row) for row in params] if many else plan.parameters(params)  # type: ignore[arg-type]
    return _run(connection, raw, plan.sql, values, _rowcount, many=many)
