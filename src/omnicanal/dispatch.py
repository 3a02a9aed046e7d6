"""In-process dispatcher of domain events, run inside the caller's transaction.

Domains publish facts (``customer.merged``) and subscribe to other domains' facts without
importing each other. Handlers run synchronously, in the same session, so their writes
commit or roll back with the command that caused them.

A handler may also give a form that takes many payloads at once. Inside :func:`batched`, a
command run for many requests in one transaction (the ingest writer's batches of payments),
the events such a handler is given wait until the block ends and reach it together: loyalty
reads its rules, wallets and tiers once for every order paid in the batch instead of once
an order (bench/commerce.py, K1).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

Handler = Callable[[Session, dict[str, Any]], None]
ManyHandler = Callable[[Session, Sequence[dict[str, Any]]], None]

_handlers: dict[str, list[Handler]] = defaultdict(list)
_many: dict[Handler, ManyHandler] = {}
_HELD = "omnicanal.dispatch.held"


def subscribe(event_name: str, handler: Handler, *, many: ManyHandler | None = None) -> None:
    """``many``, if given, does for a list of payloads what ``handler`` does for each, in one go."""
    if handler not in _handlers[event_name]:
        _handlers[event_name].append(handler)
    if many is not None:
        _many[handler] = many


def publish(session: Session, event_name: str, payload: dict[str, Any]) -> None:
    held: dict[Handler, list[dict[str, Any]]] | None = session.info.get(_HELD)
    for handler in list(_handlers.get(event_name, ())):
        if held is not None and handler in _many:
            held.setdefault(handler, []).append(payload)
        else:
            handler(session, payload)


@contextmanager
def batched(session: Session) -> Iterator[None]:
    """Hold the events of handlers with a ``many`` form until the block ends, then give each its list.

    The held handlers run last, after every command of the block, still in its transaction. A block that
    raises drops what it held: its transaction is rolled back with it.
    """
    if _HELD in session.info:  # nested: the outer block delivers
        yield
        return
    held: dict[Handler, list[dict[str, Any]]] = {}
    session.info[_HELD] = held
    try:
        yield
    finally:
        del session.info[_HELD]
    while held:  # a held handler may publish more events: those run at once (the block has ended)
        handler, payloads = next(iter(held.items()))
        del held[handler]
        _many[handler](session, payloads)


@contextmanager
def isolated(session: Session) -> Iterator[None]:
    """Inside :func:`batched`, a command whose events are dropped if it raises (its savepoint is rolled back)."""
    held: dict[Handler, list[dict[str, Any]]] | None = session.info.get(_HELD)
    if held is None:
        yield
        return
    marks = {handler: len(payloads) for handler, payloads in held.items()}
    try:
        yield
    except BaseException:
        for handler in list(held):
            del held[handler][marks.get(handler, 0) :]
            if not held[handler]:
                del held[handler]
        raise
