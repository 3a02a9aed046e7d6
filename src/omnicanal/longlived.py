"""A serving process's long-lived objects kept out of the garbage collector's full passes.

CPython's cyclic collector now and then walks every tracked object in the process (a "generation 2"
pass). In a server those are almost all long-lived: the imported modules, the ORM mappers and schemas,
and the caches that grow as requests come (the catalog rows and promotion index of commerce). With a
catalog of 10,000 products such a pass took 40–170 ms, during which every request waits on the GIL: it
was the largest source of the quote's p99 over HTTP (bench/commerce.py, K2). ``gc.freeze()`` moves the
objects alive at that moment out of the collector's sight (reference counting still frees them).

Enabled only by ``omnicanal serve``: it freezes once when the application is built; again after a full
pass that found many objects alive (what the first requests build: compiled statements, loader caches),
when that number has at least doubled since the last such freeze; and each time a cache has doubled. A
freeze also keeps whatever short-lived objects happen to be alive then, which reference counting frees
unless they are cyclic: the doubling rules keep the number of freezes logarithmic, so that stays bounded.
"""

from __future__ import annotations

import gc
import threading

_enabled = [False]
_frozen_at: dict[str, int] = {}
_lock = threading.Lock()
_SMALLEST = 1_000
# a full pass over this many objects takes ~10 ms of CPU on the benchmark machine
_SURVIVORS = 20_000
_last_survivors = [0]


def enable() -> None:
    """Freeze what exists now (the application, built) and let the caches freeze as they grow."""
    _enabled[0] = True
    gc.collect()
    gc.freeze()
    if _after_full_pass not in gc.callbacks:
        gc.callbacks.append(_after_full_pass)


def _after_full_pass(phase: str, info: dict[str, int]) -> None:
    if phase != "stop" or info.get("generation") != 2:
        return
    survivors = len(gc.get_objects(generation=2))
    if survivors >= max(_SURVIVORS, 2 * _last_survivors[0]):
        _last_survivors[0] = survivors
        gc.freeze()


def grew(cache: str, size: int) -> None:
    """A process-wide cache now holds ``size`` entries: freeze if it doubled since the last freeze."""
    if not _enabled[0] or size < _SMALLEST or size < 2 * _frozen_at.get(cache, 0):
        return
    with _lock:
        if size < 2 * _frozen_at.get(cache, 0):
            return
        _frozen_at[cache] = max(size, _SMALLEST)
        gc.freeze()


def rebuilt(cache: str) -> None:
    """A process-wide cache was built anew (after a change, which is rare): freeze it."""
    if _enabled[0]:
        gc.freeze()
