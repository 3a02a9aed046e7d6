"""SQLite: the write-ahead log is copied back into the database file off the writer's path."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sqlalchemy import text

from omnicanal.db import create_database
from omnicanal.settings import Settings
from omnicanal.sqlite_checkpoints import WAL_BACKSTOP_PAGES


def test_commits_are_checkpointed_in_the_background_and_dispose_stops_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "omnicanal.db"
    db = create_database(Settings(database_url=f"sqlite:///{path}"))
    checkpointer = db.checkpointer
    assert checkpointer is not None
    with db.write() as session:
        session.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
    for _ in range(5):
        with db.write() as session:
            session.execute(text("INSERT INTO notes (body) VALUES (:body)"), [{"body": "x" * 500}] * 200)

    deadline = time.monotonic() + 10
    while checkpointer.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert checkpointer.checkpoints >= 1
    with db.write_engine.connect() as connection:  # the writer's own checkpoint stays as a backstop only
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == WAL_BACKSTOP_PAGES == 40_000
    db.dispose()
    assert checkpointer._thread is not None and not checkpointer._thread.is_alive()

    # everything committed is in the database, read by a plain connection after the process let go
    with sqlite3.connect(path) as plain:
        assert plain.execute("SELECT count(*) FROM notes").fetchone() == (1000,)


def test_a_long_log_starts_over_while_the_writers_wait_their_turn(tmp_path: Path) -> None:
    path = tmp_path / "omnicanal.db"
    db = create_database(Settings(database_url=f"sqlite:///{path}"))
    checkpointer = db.checkpointer
    assert checkpointer is not None and checkpointer.writers_turn is db._write_turn
    checkpointer.restart_frames = 10**9  # no restart while the log fills, however slow this machine is
    with db.write_in_turn() as session:
        session.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
    wal = Path(f"{path}-wal")
    for _ in range(20):
        with db.write_in_turn() as session:
            session.execute(text("INSERT INTO notes (body) VALUES (:body)"), [{"body": "x" * 500}] * 100)
    longest = wal.stat().st_size

    before = checkpointer.full_copies
    checkpointer.restart_frames = 50
    checkpointer.pending = True
    deadline = time.monotonic() + 10
    while checkpointer.full_copies == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert checkpointer.full_copies > before
    checkpointer.stop()  # nothing else checkpoints from here on
    with db.write_in_turn() as session:  # the next writer starts the log over: it holds only this commit
        session.execute(text("INSERT INTO notes (body) VALUES ('after')"))
    with sqlite3.connect(path) as plain:
        busy, frames, _copied = plain.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0 and 0 < frames < 10
        assert plain.execute("SELECT count(*) FROM notes").fetchone() == (2001,)
    assert wal.stat().st_size == longest  # the file is kept and overwritten, not grown
    db.dispose()
