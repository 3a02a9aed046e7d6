"""The common redemption on PostgreSQL in one round trip: one call of the ``loyalty_redeem`` function.

:mod:`omnicanal.loyalty.redeem_function` holds the function (what :func:`omnicanal.loyalty.rewards.redeem` does
for a live customer with a wallet, a new ``request_id``, a product or external reward open to every tier and no
debt lots). The call runs in autocommit: the statement is its own transaction, so no BEGIN or COMMIT travels,
and PostgreSQL keeps the plans of the statements inside the function for the life of the connection.

:func:`redeem_on_loop` makes the call from the event loop itself, on a few connections of its own
(:class:`LoopConnections`) through libpq's asynchronous calls, with the parameters and the answer as text: no
worker thread, no pool checkout events, no type adaptation. A thread hop and psycopg's adaptation cost more
CPU than the rest of the server's work for a redemption (docs/benchmarks-loyalty.md, L2). When all of its
connections are busy it answers :data:`NO_CONNECTION` and the caller takes :func:`redeem`, the same call from
a worker thread on a connection of the engine's pool.

Whatever the function leaves to the general path (``outcome = 'general'``, nothing written) answers ``None``:
the caller then takes :func:`~omnicanal.loyalty.rewards.redeem`, which gives the same answers and errors.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
import weakref
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg import pq
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from omnicanal.db import PING_AFTER_IDLE_SECONDS, Database, utcnow
from omnicanal.loyalty.ledger import InsufficientPoints
from omnicanal.loyalty.notifications import CHANNELS, PURPOSE
from omnicanal.loyalty.redeem_function import CLAIMED_MEANWHILE
from omnicanal.loyalty.rewards import OutOfStock, new_code
from omnicanal.realtime import runtime_for

_CALL = "SELECT * FROM loyalty_redeem(%s, %s, %s, %s, %s, %s, %s, %s, %s)"
_CHANNELS = list(CHANNELS)

# the same call for libpq, prepared once per connection of LoopConnections; parameters and answer as text
_STATEMENT: Final = b"omnicanal_loyalty_redeem"
_PREPARE: Final = (
    b"SELECT outcome, redeemed_id, cost, available, reward_name, noticed"
    b" FROM loyalty_redeem($1::uuid, $2::uuid, $3, $4, $5, $6::timestamptz, $7, $8, $9::text[])"
)
_PURPOSE: Final = PURPOSE["reward_code"].encode()
_CHANNELS_TEXT: Final = ("{" + ",".join(f'"{name}"' for name in CHANNELS) + "}").encode()
_CLAIMED_MEANWHILE: Final = CLAIMED_MEANWHILE.encode()


class _NoConnection:
    def __repr__(self) -> str:
        return "NO_CONNECTION"


NO_CONNECTION: Final = _NoConnection()  # every loop connection is busy: make the call from a thread (redeem)


def redeem(
    db: Database,
    *,
    customer_id: uuid.UUID,
    reward_id: uuid.UUID,
    request_id: str,
    channel: str,
    actor: str,
) -> dict[str, Any] | None:
    """The redemption answer (the fields of ``RedemptionOut``), or None: take the general path. Blocking."""
    now = utcnow()
    code = new_code("LR-")
    params = (customer_id, reward_id, request_id, channel, actor, now, code, PURPOSE["reward_code"], _CHANNELS)
    pooled = db.write_engine.raw_connection()
    connection: Any = pooled.driver_connection
    connection.autocommit = True  # one statement, its own transaction
    try:
        try:
            row = connection.execute(_CALL, params, prepare=True).fetchone()
        except psycopg.Error as exc:
            if exc.sqlstate == CLAIMED_MEANWHILE:
                return None  # nothing was written; the general path answers (a conflict)
            raise
    finally:
        if not connection.closed:
            connection.autocommit = False
        pooled.close()
    request = {"customer_id": customer_id, "reward_id": reward_id, "request_id": request_id, "channel": channel}
    return _answer(db, tuple(row), request, code, now)


async def redeem_on_loop(
    db: Database,
    *,
    customer_id: uuid.UUID,
    reward_id: uuid.UUID,
    request_id: str,
    channel: str,
    actor: str,
) -> dict[str, Any] | _NoConnection | None:
    """:func:`redeem` from the event loop, without a thread; :data:`NO_CONNECTION` when all connections are busy."""
    connections = loop_connections(db.write_engine, db.settings.db_pool_size)
    connection = connections.take()
    if connection is None:
        if not connections.may_open():
            return NO_CONNECTION
        opening = asyncio.get_running_loop().run_in_executor(None, connections.open)
        try:
            connection = await asyncio.shield(opening)
        except asyncio.CancelledError:  # the connection still opens: it joins the others
            opening.add_done_callback(connections.keep)
            raise
    now = utcnow()
    code = new_code("LR-")
    params = [
        str(customer_id).encode(),
        str(reward_id).encode(),
        request_id.encode(),
        channel.encode(),
        actor.encode(),
        now.isoformat().encode(),
        code.encode(),
        _PURPOSE,
        _CHANNELS_TEXT,
    ]
    if time.monotonic() - connection.returned_at >= PING_AFTER_IDLE_SECONDS:
        try:  # a connection idle for a while may be dead: ask first
            connection.pgconn.send_query(b"")
            await connection.results()
        except psycopg.OperationalError:
            connections.discard(connection)
            return NO_CONNECTION  # the engine's pool replaces its own dead connections
        except BaseException:
            connections.discard(connection)
            raise
    try:
        connection.pgconn.send_query_prepared(_STATEMENT, params)
        (result,) = await connection.results()
    except BaseException:
        connections.discard(connection)  # broken, or left mid-call (cancelled): never reused
        raise
    connections.give_back(connection)
    if result.status != pq.ExecStatus.TUPLES_OK:
        if result.error_field(pq.DiagnosticField.SQLSTATE) == _CLAIMED_MEANWHILE:
            return None  # nothing was written; the general path answers (a conflict)
        raise psycopg.errors.error_from_result(result, encoding=connection.encoding)
    outcome, redemption_id, cost, available, name, noticed = (result.get_value(0, n) for n in range(6))
    if outcome == b"general":
        return None
    assert outcome is not None and cost is not None and available is not None
    row = (
        outcome.decode(),
        None if redemption_id is None else uuid.UUID(redemption_id.decode()),
        int(cost),
        int(available),
        None if name is None else name.decode(),
        noticed == b"t",
    )
    request = {"customer_id": customer_id, "reward_id": reward_id, "request_id": request_id, "channel": channel}
    return _answer(db, row, request, code, now)


def _answer(
    db: Database, row: tuple[Any, ...], request: dict[str, Any], code: str, now: datetime
) -> dict[str, Any] | None:
    """The function's row ``(outcome, redemption_id, cost, available, reward_name, noticed)`` as the answer."""
    outcome, redemption_id, cost, available, name, noticed = row
    if outcome == "general":
        return None
    if outcome == "insufficient":
        raise InsufficientPoints(f"{cost} points asked, {available} available", available=available, asked=cost)
    if outcome == "out_of_stock":
        raise OutOfStock(f"the reward {name!r} is out of stock")
    if noticed:
        _wake_outbox(db)
    return {
        "id": redemption_id,
        "customer_id": request["customer_id"],
        "reward_id": request["reward_id"],
        "request_id": request["request_id"],
        "points": cost,
        "code": code,
        "status": "issued",
        "channel": request["channel"],
        "created_at": now,
    }


def _wake_outbox(db: Database) -> None:
    with Session(db.write_engine) as session:  # binds the engine only, to find its runtime; no connection
        runtime = runtime_for(session)
    if runtime is not None:
        runtime.outbox_wakeup.set()


class LoopConnection:
    """A connection of :class:`LoopConnections`: autocommit, the call prepared, driven through libpq."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.connection = connection
        self.pgconn = connection.pgconn
        self.encoding = connection.info.encoding
        self.returned_at = time.monotonic()

    async def results(self) -> list[pq.abc.PGresult]:
        """The results of the query just sent, waiting on the event loop for the socket."""
        pgconn = self.pgconn
        loop = asyncio.get_running_loop()
        while pgconn.flush():
            await _ready(loop, pgconn.socket, write=True)
        results = []
        while True:
            pgconn.consume_input()
            while pgconn.is_busy():
                await _ready(loop, pgconn.socket, write=False)
                pgconn.consume_input()
            result = pgconn.get_result()
            if result is None:
                break
            results.append(result)
        if pgconn.status != pq.ConnStatus.OK:
            raise psycopg.OperationalError(f"the connection was lost: {pgconn.get_error_message()}")
        return results


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, *, write: bool) -> None:
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await ready
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


class LoopConnections:
    """Up to ``size`` connections for :func:`redeem_on_loop`, opened when needed (in a worker thread: connecting
    blocks), taken by one call at a time; usable from any event loop in any thread (the tests run several)."""

    def __init__(self, engine: Engine, size: int) -> None:
        self._engine = weakref.ref(engine)  # the engine holds this (its dispose listener), not the reverse
        self._size = size
        self._idle: list[LoopConnection] = []
        self._count = 0  # open or being opened
        self._lock = threading.Lock()

    def take(self) -> LoopConnection | None:
        try:
            return self._idle.pop()  # the most recently used: its backend is the warmest
        except IndexError:
            return None

    def may_open(self) -> bool:
        """Reserve the right to open one more connection (then :meth:`open` it)."""
        with self._lock:
            if self._count >= self._size:
                return False
            self._count += 1
            return True

    def open(self) -> LoopConnection:
        try:
            # a connection as the engine makes them (its URL, its connect arguments and events), then ours alone
            engine = self._engine()
            if engine is None:
                raise psycopg.OperationalError("the database engine is gone")
            pooled = engine.raw_connection()
            connection: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
            pooled.detach()
            connection.autocommit = True
            prepared = connection.pgconn.prepare(_STATEMENT, _PREPARE)
            if prepared.status != pq.ExecStatus.COMMAND_OK:
                error = psycopg.errors.error_from_result(prepared, encoding=connection.info.encoding)
                connection.close()
                raise error
            return LoopConnection(connection)
        except BaseException:
            with self._lock:
                self._count -= 1
            raise

    def give_back(self, connection: LoopConnection) -> None:
        connection.returned_at = time.monotonic()
        self._idle.append(connection)

    def keep(self, opened: asyncio.Future[LoopConnection]) -> None:
        """Give back a connection opened for a call that went away meanwhile."""
        if not opened.cancelled() and opened.exception() is None:
            self.give_back(opened.result())

    def discard(self, connection: LoopConnection) -> None:
        connection.connection.close()
        with self._lock:
            self._count -= 1

    def close(self) -> None:
        while (connection := self.take()) is not None:
            self.discard(connection)


_by_engine: weakref.WeakKeyDictionary[Engine, LoopConnections] = weakref.WeakKeyDictionary()
_by_engine_lock = threading.Lock()


def loop_connections(engine: Engine, size: int) -> LoopConnections:
    """The engine's :class:`LoopConnections`, closed with the engine's pool (``Engine.dispose``)."""
    connections = _by_engine.get(engine)
    if connections is None:
        with _by_engine_lock:
            connections = _by_engine.get(engine)
            if connections is None:
                connections = _by_engine[engine] = LoopConnections(engine, max(size, 1))
                event.listen(engine, "engine_disposed", lambda _engine: connections.close())
    return connections
