"""Engines, sessions and the column types every domain shares.

SQLite gets two engines: readers use deferred transactions (WAL lets them run beside the
writer) and writers start with ``BEGIN IMMEDIATE`` so that concurrent writes queue on the
busy timeout instead of failing with "database is locked" half-way through.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, MetaData, Table, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator

from omnicanal.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python, UTC in storage whatever the database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; attach a timezone")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def uuid7() -> uuid.UUID:
    """Time-ordered UUID (RFC 9562 version 7): new rows land at the end of the index."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(secrets.token_bytes(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


_Converter = Callable[[Any], Any]
_insert_plans: dict[tuple[str, str, tuple[str, ...]], tuple[str, list[_Converter | None]]] = {}


def _sqlite_utc(value: datetime | None) -> str | None:
    """What UTCDateTime + SQLAlchemy's SQLite DATETIME store, in one step."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored; attach a timezone")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _insert_plan(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> tuple[str, list[_Converter | None]]:
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
        plan = _insert_plans[key] = (sql, _converters(dialect, table, columns))
    return plan


def _converters(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> list[_Converter | None]:
    converters: list[_Converter | None] = []
    for name in columns:
        column_type = table.c[name].type
        if dialect.name == "sqlite" and isinstance(column_type, UTCDateTime):
            converters.append(_sqlite_utc)
        else:
            converters.append(column_type.dialect_impl(dialect).bind_processor(dialect))
    return converters


def bulk_insert(session: Session, model: type[Base], rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert many rows (all with the keys of the first) with one driver ``executemany``.

    Stores exactly what ``session.execute(insert(table), rows)`` stores (the columns' own bind
    processors convert the values), without compiling the statement and building parameters row by
    row; the ingest benchmark (bench/README.md, B2) measured that work as the largest cost of ingest.
    """
    if not rows:
        return
    table = model.__table__
    assert isinstance(table, Table)
    session.flush()
    connection = session.connection()
    columns = tuple(rows[0])
    sql, converters = _insert_plan(connection.dialect, table, columns)
    connection.exec_driver_sql(sql, _driver_rows(rows, columns, converters))


def _driver_rows(
    rows: Sequence[Mapping[str, Any]], columns: tuple[str, ...], converters: list[_Converter | None]
) -> list[tuple[Any, ...]]:
    """The rows as driver parameters, converted column by column (the loops run in C; bench, C1)."""
    if len(columns) == 1:
        values: list[Any] = [row[columns[0]] for row in rows]
        convert = _memoized(converters[0])
        return [(value,) for value in (values if convert is None else map(convert, values))]
    by_column: list[Any] = list(zip(*map(itemgetter(*columns), rows), strict=True))
    for index, convert in enumerate(converters):
        if convert is not None:
            by_column[index] = map(_memoized(convert), by_column[index])  # type: ignore[arg-type]
    return list(zip(*by_column, strict=True))


_update_plans: dict[tuple[str, str, tuple[str, ...], str], tuple[str, list[_Converter | None]]] = {}


def bulk_update(session: Session, model: type[Base], key: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """``UPDATE … SET <the other keys of the rows> WHERE <key> = ?`` for many rows, one driver ``executemany``.

    What ``connection.execute(update(table).where(...), rows)`` stores, without SQLAlchemy's per-row
    parameter processing (the same converters as :func:`bulk_insert`).
    """
    if not rows:
        return
    table = model.__table__
    assert isinstance(table, Table)
    session.flush()
    connection = session.connection()
    dialect = connection.dialect
    columns = (*(name for name in rows[0] if name != key), key)
    plan_key = (dialect.name, table.name, columns, key)
    plan = _update_plans.get(plan_key)
    if plan is None:
        quote = dialect.identifier_preparer.quote
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        assignments = ", ".join(f"{quote(name)} = {mark}" for name in columns[:-1])
        sql = f"UPDATE {quote(table.name)} SET {assignments} WHERE {quote(key)} = {mark}"
        plan = _update_plans[plan_key] = (sql, _converters(dialect, table, columns))
    sql, converters = plan
    connection.exec_driver_sql(sql, _driver_rows(rows, columns, converters))


def _memoized(convert: _Converter | None) -> _Converter | None:
    """Convert each distinct datetime once per statement (a batch shares its ``now``)."""
    if convert is not _sqlite_utc:
        return convert
    seen: dict[datetime, Any] = {}

    def cached(value: Any) -> Any:
        if value is None:
            return None
        out = seen.get(value)
        if out is None:
            out = seen[value] = _sqlite_utc(value)
        return out

    return cached


SQLITE_READERS = 4


@dataclass
class Database:
    """The engines of one process. Build with :func:`create_database`."""

    settings: Settings
    write_engine: Engine
    read_engine: Engine
    write_sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]
    _read_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = field(
        default_factory=weakref.WeakKeyDictionary, repr=False
    )

    @property
    def is_sqlite(self) -> bool:
        return self.settings.is_sqlite

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One command: commit on success, roll back on any error."""
        with self.write_sessions() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.read_sessions() as session, session.begin():
            yield session

    @contextmanager
    def sqlite_read(self) -> Iterator[Any]:
        """SQLite only: a driver (``sqlite3``) connection of the read pool inside a read transaction.

        For reads where SQLAlchemy's per-statement work costs more than the statements
        (the customer 360, bench/README.md B3); everything else uses :meth:`read`.
        """
        assert self.is_sqlite
        pooled = self.read_engine.raw_connection()
        try:
            connection: Any = pooled.driver_connection
            connection.execute("BEGIN")
            try:
                yield connection
            finally:
                connection.execute("COMMIT")
        finally:
            pooled.close()

    def read_gate(self) -> asyncio.Semaphore:
        """How many HTTP requests may hold a read session at once (on this event loop).

        Requests beyond it wait on the event loop instead of in worker threads: on SQLite a
        few connections serve reads best (every extra one is one more cold page cache, more
        memory and more threads fighting for the GIL; bench/README.md, B3).
        """
        loop = asyncio.get_running_loop()
        gate = self._read_gates.get(loop)
        if gate is None:
            size = min(self.settings.db_pool_size, SQLITE_READERS) if self.is_sqlite else self.settings.db_pool_size
            gate = self._read_gates[loop] = asyncio.Semaphore(max(size, 1))
        return gate

    def dispose(self) -> None:
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()


def _sqlite_engine(url: str, settings: Settings, *, immediate: bool) -> Engine:
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": settings.sqlite_busy_timeout_ms / 1000},
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(settings.sqlite_busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Page cache per connection; no mmap. Pages of a memory-mapped file count in the process's
        # resident memory once per connection that maps them: with mmap a reader pool under the 360
        # benchmark (bench/README.md, B3) passed 1 GiB. The OS page cache serves the reads instead.
        cursor.execute(f"PRAGMA cache_size=-{16384 if not immediate else 65536}")
        cursor.execute("PRAGMA mmap_size=0")
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def create_database(settings: Settings) -> Database:
    url = settings.database_url
    if settings.is_sqlite:
        write_engine = _sqlite_engine(url, settings, immediate=True)
        read_engine = _sqlite_engine(url, settings, immediate=False)
    else:
        pool_args: dict[str, Any] = {"pool_size": settings.db_pool_size, "max_overflow": 10, "pool_pre_ping": True}
        if os.environ.get("OMNICANAL_DB_NULLPOOL") == "1":
            pool_args = {"poolclass": NullPool}
        write_engine = create_engine(url, **pool_args)
        read_engine = write_engine
    return Database(
        settings=settings,
        write_engine=write_engine,
        read_engine=read_engine,
        write_sessions=sessionmaker(write_engine, expire_on_commit=False),
        read_sessions=sessionmaker(read_engine, expire_on_commit=False),
    )
