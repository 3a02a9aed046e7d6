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
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import JSON, DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator

from omnicanal.driver_sql import driver_cursor
from omnicanal.ids import uuid7 as uuid7  # where every domain imports it from
from omnicanal.settings import Settings
from omnicanal.sqlite_checkpoints import WAL_BACKSTOP_PAGES, WalCheckpointer
from omnicanal.writers_turn import WritersTurn

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


_T = TypeVar("_T")


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
    _write_turn: WritersTurn = field(default_factory=WritersTurn, repr=False)
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

        On SQLite the writers of this process, and of every process on the database file, take turns
        before ``BEGIN IMMEDIATE`` (:class:`WritersTurn`): a waiter starts the moment the holder commits
        (bench/commerce.py, K2: SQLite's busy handler was the other source of the quote's p99 over HTTP).
        Only for code that enters and leaves in the same thread: a FastAPI dependency may not.
        """
        if not self.is_sqlite:
            with self.write() as session:
                yield session
            return
        with self._write_turn, self.write() as session:
            yield session

    @property
    def writers_turn(self) -> WritersTurn:
        """The turn :meth:`write_in_turn` takes (see there)."""
        return self._write_turn

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
        self._write_turn.close()
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


def sqlite_file(url: str) -> str | None:
    """The absolute path of the file a SQLite URL names; None for an in-memory or URI database (and other
    databases), which no other process can share."""
    path = make_url(url).database
    if not url.startswith("sqlite") or not path or path == ":memory:" or path.startswith("file:"):
        return None
    return os.path.abspath(path)


def create_database(settings: Settings) -> Database:
    url = settings.database_url
    checkpointer = None
    writers_turn = WritersTurn()
    if settings.is_sqlite:
        write_engine = _sqlite_engine(url, settings, immediate=True)
        read_engine = _sqlite_engine(url, settings, immediate=False)
        path = sqlite_file(url)
        if path is not None:
            writers_turn = WritersTurn(f"{path}-writers")
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
