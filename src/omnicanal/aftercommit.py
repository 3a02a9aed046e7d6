"""Work that must wait until the transaction is committed (publishing, waking workers).

Nothing talks to the outside world before commit: services register callbacks here, and they
run only if and when the session's transaction commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
_KEY = "omnicanal.after_commit"
_ONCE = "omnicanal.after_commit.once"


def on_commit(session: Session, callback: Callable[[], None], *, once_key: str | None = None) -> None:
    """Run ``callback`` after this transaction commits; ``once_key`` keeps one callback per key."""
    if once_key is not None:
        keys: set[str] = session.info.setdefault(_ONCE, set())
        if once_key in keys:
            return
        keys.add(once_key)
    session.info.setdefault(_KEY, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    session.info.pop(_ONCE, None)
    callbacks = session.info.pop(_KEY, [])
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log.exception("after-commit callback failed")


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_KEY, None)
    session.info.pop(_ONCE, None)
