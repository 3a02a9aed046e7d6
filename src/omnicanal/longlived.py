"""A serving process's long-lived objects kept out of the garbage collector's full passes.

CPython's cyclic collector now and then walks every tracked object in the process (a "generation 2"
pass). In a server those are almost all long-lived: the imported modules, the ORM mappers and schemas,
and the caches that grow as requests come (the catalog rows and promotion index of commerce). With a
catalog of 10,000 products such a pass took 40–170 ms, during which every request waits on the GIL: it
was the largest source of the quote's p99 over HTTP (bench/commerce.py, K2). ``gc.freeze()`` moves the
objects alive at that moment out of the collector's sight (reference counting still frees them).

Enabled only by ``omnicanal serve``: it freezes once when the application is built, and again each time
a cache has doubled since it last did, so that at most about half of a cache is ever walked and the few
short-lived objects that happen to be alive at a freeze stay bounded (a logarithmic number of freezes).
"""

from __future__ import annotations

import gc
import threading

_enabled = [False]
_frozen_at: dict[str, int] = {}
_lock = threading.Lock()
_SMALLEST = 1_000


def enable() -> None:
    """Freeze what exists now (the application, built) and let the caches freeze as they grow."""
    _enabled[0] = True
    gc.collect()
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
