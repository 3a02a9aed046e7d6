"""Jobs started together, as concurrent requests from several clients would be."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def all_at_once(jobs: Sequence[Callable[[], Any]]) -> None:
    """Run every job on its own thread, all released by one barrier; raise if any failed."""
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def job(task: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            task()
        except BaseException as exc:
            errors.append(exc)

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        list(pool.map(job, jobs))
    assert not errors, errors
