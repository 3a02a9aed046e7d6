"""SQLite's write-ahead log copied back into the database file off the writer's path."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading

from omnicanal.writers_turn import WritersTurn

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

    def __init__(
        self,
        path: str,
        interval: float = 0.5,
        *,
        writers_turn: WritersTurn | None = None,
        restart_frames: int = 0,
    ) -> None:
        self.path = path
        self.interval = interval
        self.writers_turn = writers_turn
        self.restart_frames = restart_frames or WAL_RESTART_FRAMES
        self.pending = False
        self.checkpoints = 0
        # passes that left the log fully copied under the writers' turn: the next writer starts it over, unless a
        # reader is still on its last frames
        self.full_copies = 0
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
            # as the other connections (a checkpoint syncs the same way under FULL; never OFF here)
            connection.execute("PRAGMA synchronous=NORMAL")
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
            frames = _passive(connection)[1]
            self.checkpoints += 1
            if self.writers_turn is not None and frames >= self.restart_frames:
                self._let_the_log_restart(connection)
        except sqlite3.Error:  # the file went away (a test's temporary directory); the backstop remains
            log.debug("passive checkpoint of %s failed", self.path, exc_info=True)

    def _let_the_log_restart(self, connection: sqlite3.Connection) -> None:
        """Copy the whole log while the writers wait their turn, so that the next writer starts it over.

        A second pass first copies what the writers appended during the last one, and the database file is
        synced outside the turn (passes that do not reach the log's end leave their copies unsynced). Passes
        then go on until one finds at most :data:`TURN_FRAMES` new frames, so the pass under the writers' turn
        copies about one batch's frames: the writers wait for two small syncs and a short copy instead of the
        frames appended during the big sync (C1: a pass under the turn of 8-16 ms instead of 13-33, p99
        a fifth to a third lower, docs/benchmarks-conversations.md). Readers still on older frames keep it
        from finishing: then the log goes on growing and a later pass tries again.
        """
        assert self.writers_turn is not None
        frames = _passive(connection)[1]
        descriptor = os.open(self.path, os.O_RDONLY)
        try:
            os.fdatasync(descriptor)
        finally:
            os.close(descriptor)
        for _ in range(CATCH_UP_PASSES):
            before, frames = frames, _passive(connection)[1]
            if 0 <= frames - before <= TURN_FRAMES:
                break
        with self.writers_turn:
            busy, frames, copied = _passive(connection)
        if not busy and frames == copied:
            self.full_copies += 1

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


# The log only starts over from its beginning when a writer finds it fully copied, and under a steady write load
# it never is: the writer appends while the passive checkpoint copies. Left alone the log grows until this
# backstop, and the writer's own checkpoint then copies the tail and syncs both files inside a commit (55-110 ms
# on the benchmark machine, every ~6 s of event ingest, bench/README.md B1). So past WAL_RESTART_FRAMES a pass
# copies the last frames while the writers (of every process on the file) wait their turn (10-21 ms, every ~2 s
# under B1's load) and the next writer starts the log over; the backstop remains for readers that keep the log
# from being fully copied. Readers do not pay for a long log: they search only the frames not yet
# copied into the database.
WAL_BACKSTOP_PAGES = 40_000
WAL_RESTART_FRAMES = 10_000
# Before the pass under the writers' turn, catch up until a pass finds about one write batch's frames (a batch of
# 32 inbound messages appends ~200), and give up after a few passes should the writers outrun them.
TURN_FRAMES = 256
CATCH_UP_PASSES = 4


def _passive(connection: sqlite3.Connection) -> tuple[int, int, int]:
    """A passive checkpoint: (busy, frames in the log, frames copied into the database).

    Busy is 1, and both counts -1, when another connection was checkpointing."""
    busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(busy), int(frames), int(copied)
