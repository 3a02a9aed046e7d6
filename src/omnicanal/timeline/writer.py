"""The ingest writer: one thread that turns many concurrent requests into few transactions.

Requests hand their prepared events to the writer and await the result. The writer drains
whatever is waiting, stores it in one transaction (one commit for many requests), and wakes
each caller. On SQLite this is the single writer DESIGN.md asks for; on PostgreSQL it cuts
commits and round trips the same way, and concurrent writers in other processes are handled
by retrying the transaction on a unique-key race or a deadlock.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from omnicanal.db import Database
from omnicanal.errors import DomainError
from omnicanal.timeline.service import EventInput, IngestResult, ingest

log = logging.getLogger(__name__)
_RETRIES = 4


# A batch handler stores many items in the caller's session and answers one result per item.
BatchHandler = Callable[[Session, Sequence[Any]], list[Any]]


@dataclass
class _Job:
    handler: BatchHandler
    events: Sequence[Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[Any]]


def _deliver(job: _Job, results: list[Any] | None, error: BaseException | None) -> None:
    _deliver_all([(job, results, error)])


_Outcome = tuple[_Job, list[Any] | None, BaseException | None]


def _settle(outcomes: list[_Outcome]) -> None:
    for job, results, error in outcomes:
        if job.future.done():
            continue
        if error is not None:
            job.future.set_exception(error)
        else:
            assert results is not None
            job.future.set_result(results)


def _deliver_all(outcomes: list[_Outcome]) -> None:
    """Wake each event loop once for all its jobs: every wake-up is a write to the loop's self-pipe."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, group in by_loop.items():
        loop.call_soon_threadsafe(_settle, group)


class IngestWriter:
    """One writer thread for the process (see the module's docstring).

    While requests are arriving together (the last batch gathered several), the writer waits for the rest of a
    burst before it begins: until as many have come as the largest of the last 16 batches held (requests
    answered together tend to come back together; the largest, so that one small batch does not make the
    next ones small), or none has come for ``linger_gap`` seconds, and never more than ``linger_max``.
    On one process the writer and the event loop take turns on the GIL; started at once, the writer stored
    the first few of a burst while the loop, slowed by it, answered and read the others, and each small batch
    paid the transaction's fixed cost (~1.5 ms). Waiting, it stores the whole burst in one transaction while
    the loop runs alone (bench/conversations.py, C1 in interleaved runs: +22-32 % messages/s, a fifth to a
    quarter less CPU a message). A request arriving alone is stored at once.
    """

    def __init__(
        self, database: Database, *, max_events: int = 500, linger_gap: float = 0.0015, linger_max: float = 0.006
    ) -> None:
        self.database = database
        self.max_events = max_events
        self.linger_gap = linger_gap
        self.linger_max = linger_max
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    thread_name = "omnicanal-ingest"

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def waiting(self) -> int:
        """Jobs queued and not yet taken into a batch."""
        return self._queue.qsize()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    async def submit(self, events: Sequence[EventInput]) -> list[IngestResult]:
        return await self.run(self._ingest_events, events)

    async def run(self, handler: BatchHandler, items: Sequence[Any]) -> list[Any]:
        """Store ``items`` with ``handler`` in the next shared transaction; one result per item."""
        if self._thread is None:
            raise RuntimeError("the ingest writer is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._queue.put(_Job(handler, items, loop, future))
        return await future

    async def run_one(self, handler: BatchHandler, item: Any) -> Any:
        """:meth:`run` for one item. A handler may answer an item's refusal (a :class:`DomainError`) instead of
        raising it, so that the other items of its batch go on: the refusal is raised here, to its caller."""
        answers = await self.run(handler, [item])
        if isinstance(answers[0], DomainError):
            raise answers[0]
        return answers[0]

    def _ingest_events(self, session: Session, events: Sequence[Any]) -> list[Any]:
        return ingest(session, events, settings=self.database.settings)

    def _run(self) -> None:
        recent: deque[int] = deque([1], maxlen=16)  # requests in each of the last batches
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            stopping = self._gather(jobs, linger=recent[-1] > 1, enough=max(recent))
            with self._turn():
                # what came while another process's writer held the turn joins this batch
                stopping = self._gather(jobs, linger=False, enough=0) or stopping
                recent.append(len(jobs))
                self._store(jobs)
            if stopping:
                return

    def _turn(self) -> AbstractContextManager[object]:
        """Held while a batch is gathered and stored: on SQLite the writers' turn (:meth:`Database.write_in_turn`);
        PostgreSQL's writers of every process write at once."""
        return self.database.writers_turn if self.database.is_sqlite else nullcontext()

    def _gather(self, jobs: list[_Job], *, linger: bool, enough: int) -> bool:
        """Add what is waiting to ``jobs`` and, lingering, what follows closely until there are ``enough``;
        True when told to stop."""
        count = sum(len(job.events) for job in jobs)
        deadline = time.monotonic() + self.linger_max
        while count < self.max_events:
            try:
                extra = self._queue.get_nowait()
            except queue.Empty:
                if not linger or len(jobs) >= enough:
                    return False
                wait = min(self.linger_gap, deadline - time.monotonic())
                if wait <= 0:
                    return False
                try:
                    extra = self._queue.get(timeout=wait)
                except queue.Empty:
                    return False
            if extra is None:
                return True
            jobs.append(extra)
            count += len(extra.events)
        return False

    def _store(self, jobs: list[_Job]) -> None:
        try:
            results = self._transaction(jobs)
        except Exception as exc:
            if len(jobs) == 1:
                if not isinstance(exc, DomainError):  # a request refused (a 4xx for its caller) is no failure
                    # its caller logs it too, with the request; this names the batch handler that failed
                    handler = getattr(jobs[0].handler, "__qualname__", "a job")
                    log.exception("%s in %s failed", handler, type(self).__name__)
                _deliver(jobs[0], None, exc)
                return
            # One bad request must not fail its neighbours: try each on its own.
            for job in jobs:
                self._store([job])
            return
        _deliver_all([(job, job_results, None) for job, job_results in zip(jobs, results, strict=True)])

    def _transaction(self, jobs: list[_Job]) -> list[list[Any]]:
        for attempt in range(_RETRIES):
            try:
                # in turn with this process's other writers (the lean commerce handlers): on SQLite a writer
                # that finds the lock taken sleeps in the busy handler far longer than the holder needs it
                with self.database.write_in_turn() as session:
                    return self._handle(session, jobs)
            except (IntegrityError, OperationalError) as exc:
                if attempt == _RETRIES - 1 or not _retryable(exc):
                    raise
                log.info("ingest raced another writer; retrying (%s)", type(exc).__name__)
        raise AssertionError("unreachable")

    @staticmethod
    def _handle(session: Session, jobs: list[_Job]) -> list[list[Any]]:
        """Each handler once, over the items of all its jobs, in order of first appearance."""
        by_handler: dict[BatchHandler, list[_Job]] = {}
        for job in jobs:
            by_handler.setdefault(job.handler, []).append(job)
        answers: dict[int, list[Any]] = {}
        for handler, group in by_handler.items():
            results = handler(session, [item for job in group for item in job.events])
            offset = 0
            for job in group:
                answers[id(job)] = results[offset : offset + len(job.events)]
                offset += len(job.events)
        return [answers[id(job)] for job in jobs]


class BatchReader(IngestWriter):
    """The writer's queue and thread for reads: what is waiting runs in one read transaction, nothing lingers.

    A request's read handed to anyio's thread pool cost the event loop six times what handing it to this
    queue does (capacity limiter, cancel scope, run-vars; bench/commerce.py, K1's quotes), and each read
    paid for its own transaction. A handler answers one result per item and should return a refusal as a
    value (see :meth:`IngestWriter.run_one`): an exception fails the batch, which then runs each job alone.
    """

    def __init__(self, database: Database, *, max_events: int = 500) -> None:
        super().__init__(database, max_events=max_events, linger_gap=0.0, linger_max=0.0)

    thread_name = "omnicanal-reads"

    def _turn(self) -> AbstractContextManager[object]:
        return nullcontext()

    def _transaction(self, jobs: list[_Job]) -> list[list[Any]]:
        with self.database.read() as session:
            return self._handle(session, jobs)


def _retryable(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    code = getattr(exc.orig, "sqlstate", None)
    return code in {"40001", "40P01"}
