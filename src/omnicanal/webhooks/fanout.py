"""Domain events -> one outbox item per matching active subscription, in the publishing transaction.

The inbound message path publishes on every message, so the active subscriptions are kept per process
(per database engine) for a few seconds: with no subscriptions an event costs a dict lookup, no query.
A subscription change made in this process clears the cache when it commits; other processes see it
within ``TTL_SECONDS``.
"""

from __future__ import annotations

import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from omnicanal.aftercommit import on_commit
from omnicanal.db import utcnow
from omnicanal.outbox.service import enqueue
from omnicanal.webhooks.events import EVENT_TYPES, jsonable, matches
from omnicanal.webhooks.models import WebhookSubscription

TTL_SECONDS = 5.0
KIND = "webhook"
CHANNEL = "webhook"


@dataclass(frozen=True)
class Target:
    id: uuid.UUID
    url: str
    patterns: tuple[str, ...]


@dataclass
class _Snapshot:
    expires: float
    targets: tuple[Target, ...]
    by_type: dict[str, tuple[Target, ...]] = field(default_factory=dict)

    def for_type(self, event_type: str) -> tuple[Target, ...]:
        found = self.by_type.get(event_type)
        if found is None:
            found = tuple(t for t in self.targets if any(matches(p, event_type) for p in t.patterns))
            self.by_type[event_type] = found
        return found


_snapshots: weakref.WeakKeyDictionary[Engine, _Snapshot] = weakref.WeakKeyDictionary()
_lock = threading.Lock()
_generation = 0


def invalidate() -> None:
    """Forget every cached snapshot (a subscription changed)."""
    global _generation
    with _lock:
        _generation += 1
        _snapshots.clear()


def invalidate_after_commit(session: Session) -> None:
    on_commit(session, invalidate)


def _engine(session: Session) -> Engine:
    bind = session.get_bind()
    return bind if isinstance(bind, Engine) else bind.engine


def _snapshot(session: Session) -> _Snapshot:
    engine = _engine(session)
    now = time.monotonic()
    snapshot = _snapshots.get(engine)
    if snapshot is not None and snapshot.expires > now:
        return snapshot
    generation = _generation
    rows = session.execute(
        select(WebhookSubscription.id, WebhookSubscription.url, WebhookSubscription.event_types).where(
            WebhookSubscription.active.is_(True)
        )
    ).all()
    snapshot = _Snapshot(
        expires=now + TTL_SECONDS, targets=tuple(Target(row[0], row[1], tuple(row[2] or ())) for row in rows)
    )
    with _lock:
        # a subscription committed while we were reading: keep nothing that may predate it
        if generation == _generation:
            _snapshots[engine] = snapshot
    return snapshot


def targets_for(session: Session, event_type: str) -> tuple[Target, ...]:
    return _snapshot(session).for_type(event_type)


def fan_out(session: Session, event_type: str, payload: dict[str, Any]) -> int:
    """Enqueue the event for every active subscription that wants it; returns how many."""
    targets = targets_for(session, event_type)
    if not targets:
        return 0
    data = jsonable(payload)
    timestamp = utcnow().isoformat()
    about = _customer_of(payload)
    for target in targets:
        enqueue(
            session,
            kind=KIND,
            channel=CHANNEL,
            payload={
                "subscription_id": str(target.id),
                "url": target.url,
                "type": event_type,
                "timestamp": timestamp,
                "data": data,
            },
            subscription_id=target.id,
            customer_id=about,
        )
    return len(targets)


def _customer_of(payload: dict[str, Any]) -> uuid.UUID | None:
    """The customer an event is about, so erasure reaches the deliveries that carry it."""
    raw = payload.get("customer_id") or payload.get("survivor_id")
    try:
        return raw if isinstance(raw, uuid.UUID) else uuid.UUID(str(raw)) if raw else None
    except ValueError:
        return None


def _handler_for(event_type: str) -> Callable[[Session, dict[str, Any]], None]:
    def handle(session: Session, payload: dict[str, Any]) -> None:
        fan_out(session, event_type, payload)

    handle.__name__ = f"webhooks_{event_type.replace('.', '_')}"
    return handle


# Built once, so registering again (every create_app) finds the same handlers and adds nothing.
HANDLERS: dict[str, Callable[[Session, dict[str, Any]], None]] = {name: _handler_for(name) for name in EVENT_TYPES}
