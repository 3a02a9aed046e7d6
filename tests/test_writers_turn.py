"""The writers' turn: one holder at a time across threads and processes, reentrant in its holder."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

from omnicanal.db import create_database
from omnicanal.settings import Settings
from omnicanal.writers_turn import WritersTurn


def _count_in_turn(lock_path: str | None, counter: str, rounds: int, go: Any) -> None:
    turn = WritersTurn(lock_path)
    go.wait(30)
    for _ in range(rounds):
        with turn:
            value = int(Path(counter).read_text())
            time.sleep(0.0005)  # a read-modify-write that loses updates unless the turn excludes the others
            Path(counter).write_text(str(value + 1))


def test_processes_take_turns(tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    lock_path = str(tmp_path / "db.sqlite-writers")
    spawn = multiprocessing.get_context("spawn")
    go = spawn.Event()
    workers = [spawn.Process(target=_count_in_turn, args=(lock_path, str(counter), 60, go)) for _ in range(3)]
    for worker in workers:
        worker.start()
    time.sleep(1.5)  # all three started (and waiting), so that their rounds overlap
    go.set()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert counter.read_text() == "180"


def test_threads_take_turns_and_the_holder_may_take_it_again(tmp_path: Path) -> None:
    turn = WritersTurn(str(tmp_path / "db.sqlite-writers"))
    inside = 0
    most_inside = 0
    guard = threading.Lock()

    def write() -> None:
        nonlocal inside, most_inside
        for _ in range(50):
            with turn, turn:  # reentrant: the ingest writer gathers in the turn, its transaction takes it again
                with guard:
                    inside += 1
                    most_inside = max(most_inside, inside)
                time.sleep(0.0001)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most_inside == 1


def test_a_turn_left_by_an_error_is_free_again(tmp_path: Path) -> None:
    turn = WritersTurn(str(tmp_path / "db.sqlite-writers"))
    try:
        with turn:
            raise ValueError("a failed transaction")
    except ValueError:
        pass
    other = WritersTurn(str(tmp_path / "db.sqlite-writers"))  # another open file: as another process would
    released = threading.Event()

    def take() -> None:
        with other:
            released.set()

    thread = threading.Thread(target=take)
    thread.start()
    assert released.wait(5)
    thread.join()


def test_a_sqlite_file_database_takes_turns_with_other_processes(tmp_path: Path) -> None:
    db = create_database(Settings(database_url=f"sqlite:///{tmp_path / 'shop.db'}", environment="test"))
    try:
        assert db.writers_turn.lock_path == str(tmp_path / "shop.db-writers")
        with db.write_in_turn():
            assert (tmp_path / "shop.db-writers").exists()
    finally:
        db.dispose()
