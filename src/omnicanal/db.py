"""Engines, sessions and the column types every domain shares.

SQLite gets two engines: readers use deferred transactions (WAL lets them run beside the
writer) and writers start with ``BEGIN IMMEDIATE`` so that concurrent writes queue on the
busy timeout instead of failing with "database is locked" half-way through.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, TypeVar

import orjson
from sqlalchemy import JSON, Connection, DateTime, Engine, MetaData, Table, Uuid, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator

from omnicanal.ids import uuid7 as uuid7  # where every domain imports it from
from omnicanal.ids import uuid_of_int
from omnicanal.settings import Settings
from omnicanal.sqlite_checkpoints import WAL_BACKSTOP_PAGES, WalCheckpointer

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


_Converter = Callable[[Any], Any]
_T = TypeVar("_T")
_insert_plans: dict[tuple[str, str, tuple[str, ...]], tuple[str, list[_Converter | None]]] = {}


def _sqlite_utc(value: datetime | None) -> str | None:
    """What UTCDateTime + SQLAlchemy's SQLite DATETIME store, in one step."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored; attach a timezone")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_uuid(value: uuid.UUID | None) -> str | None:
    """What ``Uuid`` stores on SQLite (32 hex digits), without the per-value checks of its bind processor."""
    return None if value is None else value.hex


def _sqlite_json(value: Any) -> str:
    """JSON text for SQLite: the same JSON value the JSON type's ``json.dumps`` writes (which spaces it and escapes
    non-ASCII; orjson writes it compact, in UTF-8) at a fraction of the cost; None is JSON ``null``, as there."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


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
        elif dialect.name == "sqlite" and isinstance(column_type, Uuid):
            converters.append(_sqlite_uuid)
        elif dialect.name == "sqlite" and isinstance(column_type, JSON):
            converters.append(_sqlite_json)
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
    connection = connection_of(session)
    columns = tuple(rows[0])
    sql, converters = _insert_plan(connection.dialect, table, columns)
    _executemany(connection, sql, _driver_params(rows, columns, converters))


_TRANSACTION_CONNECTION = "omnicanal.transaction_connection"


def connection_of(session: Session) -> Connection:
    """``session.connection()``, asked of the session once per transaction and then remembered.

    The driver statements of one transaction (lookups, bulk inserts, updates) each needed the connection,
    and the session's transaction machinery cost as much as a short statement (bench/commerce.py, K1).
    A transaction that ended or failed is never reused: the session is asked again, and it says why not.
    """
    remembered = session.info.get(_TRANSACTION_CONNECTION)
    if remembered is not None:
        transaction, connection = remembered
        if transaction.is_active and session.get_transaction() is transaction:
            return connection  # type: ignore[no-any-return]
    connection = session.connection()
    session.info[_TRANSACTION_CONNECTION] = (session.get_transaction(), connection)
    return connection


def _executemany(connection: Connection, sql: str, params: list[tuple[Any, ...]]) -> None:
    with driver_cursor(connection, sql, params) as cursor:
        cursor.executemany(sql, params)


@contextmanager
def driver_cursor(connection: Connection, sql: str, params: Any) -> Iterator[Any]:
    """A driver cursor in the connection's transaction, for running ``sql`` with ``params`` on it; a driver error
    is raised as the error SQLAlchemy would have raised (IntegrityError, OperationalError...: callers retry on
    those), naming ``sql`` without its parameters."""
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        yield cursor
    except connection.dialect.loaded_dbapi.Error as exc:
        dialect = connection.dialect
        raise DBAPIError.instance(sql, params, exc, dialect.loaded_dbapi.Error, hide_parameters=True,
                                  dialect=dialect) from exc  # fmt: skip
    finally:
        cursor.close()


_driver_sql: dict[tuple[str, str], str] = {}


def driver_rows(session: Session, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (written with ``?`` placeholders) run on the driver connection of the session's transaction.

    For the few lookups of the ingest paths, where SQLAlchemy's per-statement work cost more than
    the statement (bench/README.md, B1). Values come back as the driver gives them: on SQLite a
    UUID column is 32 hex digits (see :func:`uuid_from_db`) and a datetime is text.
    """
    return _on_driver(session, sql, params, lambda cursor: list(cursor.fetchall()))


def driver_execute(session: Session, sql: str, params: Sequence[Any]) -> int:
    """Run one statement (``?`` placeholders) like :func:`driver_rows`; returns the number of rows it changed."""
    return _on_driver(session, sql, params, lambda cursor: int(cursor.rowcount))


def _on_driver(session: Session, sql: str, params: Sequence[Any], answer: Callable[[Any], _T]) -> _T:
    connection = connection_of(session)
    style = connection.dialect.paramstyle
    text = sql
    if style != "qmark":
        text = _driver_sql.get((style, sql)) or _driver_sql.setdefault((style, sql), sql.replace("?", "%s"))
    with driver_cursor(connection, text, params) as cursor:
        cursor.execute(text, tuple(params))
        return answer(cursor)


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
    return value.hex if sqlite and value is not None else value


def datetime_to_db(value: datetime, *, sqlite: bool) -> Any:
    """A datetime as a parameter of a driver statement: what ``UTCDateTime`` binds on that database."""
    return _sqlite_utc(value) if sqlite else value


def json_from_db(value: Any) -> Any:
    """A JSON column's value as :func:`driver_rows` returns it (text on SQLite, decoded on PostgreSQL)."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _driver_params(
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
    connection = connection_of(session)
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
    _executemany(connection, sql, _driver_params(rows, columns, converters))


def _memoized(convert: _Converter | None) -> _Converter | None:
    """Convert each distinct datetime once (a batch shares its ``now``, and a message its ``occurred_at`` with
    its timeline event)."""
    return _sqlite_utc_once if convert is _sqlite_utc else convert


_utc_texts: dict[datetime, str] = {}


def _sqlite_utc_once(value: datetime | None) -> str | None:
    if value is None:
        return None
    text = _utc_texts.get(value)
    if text is None:
        if len(_utc_texts) >= 4096:
            _utc_texts.clear()
        text = _utc_texts[value] = _sqlite_utc(value)  # type: ignore[assignment]
    return text


SQLITE_READERS = 4


@dataclass
class Database:
    """The engines of one process. Build with :func:`create_database`."""

    settings: Settings
    write_engine: Engine
    read_engine: Engine
    write_sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]
    _read_executor: ThreadPoolExecutor | None = field(default=None, repr=False)
    _executor_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _write_turn: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _read_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = field(
        default_factory=weakref.WeakKeyDictionary, repr=False
    )
    checkpointer: WalCheckpointer | None = field(default=None, repr=False)

    @property
    def is_sqlite(self) -> bool:
        return self.settings.is_sqlite

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One command: commit on success, roll back on any error."""
        with self.write_sessions() as session, session.begin():
            yield session

    @contextmanager
    def write_in_turn(self) -> Iterator[Session]:
        """:meth:`write` for a transaction that begins and ends in one thread (the lean handlers).

        On SQLite this process's writers take turns on a lock before ``BEGIN IMMEDIATE``: a writer that
        finds the database locked otherwise sleeps in SQLite's busy handler, whose back-off (1, 2, 5, 10…
        100 ms) overshoots the few milliseconds the holder needs; a waiter on the lock starts the moment
        the holder commits (bench/commerce.py, K2: it was the other source of the quote's p99 over HTTP).
        Only for code that enters and leaves in the same thread: a FastAPI dependency may not.
        """
        if not self.is_sqlite:
            with self.write() as session:
                yield session
            return
        with self._write_turn, self.write() as session:
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

    def _readers(self) -> int:
        size = min(self.settings.db_pool_size, SQLITE_READERS) if self.is_sqlite else self.settings.db_pool_size
        return max(size, 1)

    def read_gate(self) -> asyncio.Semaphore:
        """How many HTTP requests may hold a read session at once (on this event loop).

        Requests beyond it wait on the event loop instead of in worker threads: on SQLite a
        few connections serve reads best (every extra one is one more cold page cache, more
        memory and more threads fighting for the GIL; bench/README.md, B3).
        """
        loop = asyncio.get_running_loop()
        gate = self._read_gates.get(loop)
        if gate is None:
            gate = self._read_gates[loop] = asyncio.Semaphore(self._readers())
        return gate

    async def run_read(self, function: Callable[..., _T], *args: Any) -> _T:
        """``function(*args)`` on one of a few reader threads, for the lean read handlers.

        As many threads as the read gate allows (see :meth:`read_gate`), so requests beyond them
        queue without holding a thread. A plain executor hop costs a fraction of
        ``run_in_threadpool``'s (a capacity limiter and cancel scope per call, bench/README.md B3).
        """
        executor = self._read_executor
        if executor is None:
            with self._executor_lock:
                executor = self._read_executor
                if executor is None:
                    executor = self._read_executor = ThreadPoolExecutor(
                        max_workers=self._readers(), thread_name_prefix="omnicanal-read"
                    )
        return await asyncio.get_running_loop().run_in_executor(executor, function, *args)

    def dispose(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        if self._read_executor is not None:
            self._read_executor.shutdown(wait=False)
            self._read_executor = None
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
        # The most recently returned connection first: each connection keeps its own page cache (up to
        # cache_size), so cycling through every pooled connection (FIFO) grew the process by one full
        # cache per connection a burst had opened (B3 over HTTP passed 300 MiB); LIFO keeps the busy few warm.
        pool_use_lifo=True,
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
        if immediate:  # WalCheckpointer does the checkpoints; this is the backstop
            cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")
        cursor.close()

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # On the driver: through exec_driver_sql the BEGIN cost a sixth of a short transaction (bench, K1)
        with driver_cursor(connection, begin, ()) as cursor:
            cursor.execute(begin)

    return engine


PING_AFTER_IDLE_SECONDS = 2.0


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection on checkout only when it sat idle for a while (``pool_pre_ping`` pings on every
    checkout: one more round trip per transaction, a sixth of a redemption's CPU, docs/benchmarks-loyalty.md L2).
    A connection returned moments ago answered then; one idle longer is pinged, and a dead one is replaced."""

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get("returned_at")
        if returned is None or time.monotonic() - returned < PING_AFTER_IDLE_SECONDS:
            return  # new, or used a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError("the connection did not answer a ping") from exc


def create_database(settings: Settings) -> Database:
    url = settings.database_url
    checkpointer = None
    writers_turn = threading.Lock()
    if settings.is_sqlite:
        write_engine = _sqlite_engine(url, settings, immediate=True)
        read_engine = _sqlite_engine(url, settings, immediate=False)
        path = write_engine.url.database
        if path and path != ":memory:" and not path.startswith("file:"):
            checkpointer = WalCheckpointer(path, writers_turn=writers_turn)
            event.listen(write_engine, "commit", lambda _connection: checkpointer.committed())
    else:
        pool_args: dict[str, Any] = {"pool_size": settings.db_pool_size, "max_overflow": 10}
        if os.environ.get("OMNICANAL_DB_NULLPOOL") == "1":
            pool_args = {"poolclass": NullPool}
        write_engine = create_engine(url, **pool_args)
        _ping_when_idle(write_engine)
        read_engine = write_engine
    return Database(
        settings=settings,
        write_engine=write_engine,
        read_engine=read_engine,
        write_sessions=sessionmaker(write_engine, expire_on_commit=False),
        read_sessions=sessionmaker(read_engine, expire_on_commit=False),
        checkpointer=checkpointer,
        _write_turn=writers_turn,
    )
