"""The turn SQLite's writers take before ``BEGIN IMMEDIATE``: this process's threads, and every process on the file.

A writer that finds the database locked sleeps in SQLite's busy handler, whose back-off (1, 2, 5, 10… 100 ms)
overshoots the few milliseconds the holder needs. Waiting on a lock instead, the next writer starts the moment
the holder is done. Threads of one process wait on a ``threading.Lock``; processes sharing the database file
(``omnicanal serve --workers``, a ``worker`` beside the server) wait on an exclusive ``flock`` of a lock file
beside it, which the kernel hands over as soon as the holder lets go and frees should the holder die.
"""

from __future__ import annotations

import fcntl
import os
import threading
from types import TracebackType


class WritersTurn:
    """A context manager: held by one writer at a time, across threads and (with ``lock_path``) processes.

    Reentrant: the ingest writer holds the turn while it gathers the requests that came as it waited, and
    the transaction it then runs takes the turn again."""

    def __init__(self, lock_path: str | None = None) -> None:
        self.lock_path = lock_path
        self._threads = threading.RLock()
        self._depth = 0
        self._descriptor: int | None = None
        self._opened_by = 0

    def __enter__(self) -> WritersTurn:
        self._threads.acquire()
        if self.lock_path is None or self._depth > 0:
            self._depth += 1
            return self
        try:
            fcntl.flock(self._lock_file(), fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise
        self._depth = 1
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            self._depth -= 1
            if self._depth == 0 and self._descriptor is not None:
                fcntl.flock(self._descriptor, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _lock_file(self) -> int:
        # A forked child shares its parent's open file, and with it the parent's lock: it opens its own.
        if self._descriptor is None or self._opened_by != os.getpid():
            assert self.lock_path is not None
            self._descriptor = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._opened_by = os.getpid()
        return self._descriptor

    def close(self) -> None:
        if self._descriptor is not None and self._opened_by == os.getpid():
            with self._threads:
                os.close(self._descriptor)
                self._descriptor = None
