"""SQLite's write-ahead log copied back into the database file off the writer's path."""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger(__name__)


class WalCheckpointer:
    """Copies SQLite's write-ahead log back into the database file on a thread of its own.

    SQLite does it by default inside the commit that finds the log past 1,000 pages, so every few
    write batches one commit also copied and synced thousands of pages while requests waited on it
    (a third of the commit time in the batch ingest benchmark, bench/README.md B2). Here the writer
    only marks that it committed; every ``interval`` seconds this thread runs a passive checkpoint,
    which never blocks readers or the writer. The write connections keep SQLite's own checkpoint as
    a backstop, at :data:`WAL_BACKSTOP_PAGES`, should this thread fall behind.
    """

    def __init__(self, path: str, interval: float = 0.5) -> None:
        self.path = path
        self.interval = interval
        self.pending = False
        self.checkpoints = 0
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def committed(self) -> None:
        self.pending = True
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._stopped.is_set():
                    self._thread = threading.Thread(target=self._run, name="omnicanal-checkpoint", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stopped.wait(self.interval):
                if self.pending:
                    self.pending = False
                    self._checkpoint(connection)
            if self.pending:
                self._checkpoint(connection)
        finally:
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
        except sqlite3.Error:  # the file went away (a test's temporary directory); the backstop remains
            log.debug("passive checkpoint of %s failed", self.path, exc_info=True)

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


# The log only starts over from its beginning when a writer finds it fully copied, and under a steady write load
# it never is: the writer appends while the passive checkpoint copies. So the log grows until this backstop, and
# the writer's own checkpoint then copies the tail and syncs both files inside a commit (60-110 ms on the
# benchmark machine, bench/README.md B1). At 10,000 pages that stall came every ~2 s of event ingest and set
# the p99; at 40,000 pages (a log file of up to ~160 MiB, kept allocated and overwritten) it comes every ~9 s.
# Readers do not pay for a long log: they search only the frames not yet copied into the database.
WAL_BACKSTOP_PAGES = 40_000
