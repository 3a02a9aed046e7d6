"""Writing to the outbox, claiming due items, recording outcomes, and the dead-letter retry."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from omnicanal.db import utcnow, uuid7
from omnicanal.driver_sql import bulk_insert, bulk_update, connection_of, held_objects
from omnicanal.errors import Conflict, NotFound, ValidationFailed
from omnicanal.outbox.models import OutboxAttempt, OutboxItem
from omnicanal.pagination import check_limit, decode_cursor, encode_cursor
from omnicanal.realtime import wake_outbox_after_commit

STATES = ("pending", "sending", "sent", "dead")
OutcomeHandler = Callable[[Session, OutboxItem], None]
_on_sent: dict[str, list[OutcomeHandler]] = {}
_on_dead: dict[str, list[OutcomeHandler]] = {}


def on_outcome(kind: str, *, sent: OutcomeHandler | None = None, dead: OutcomeHandler | None = None) -> None:
    """Let the domain that wrote an item react when it is delivered or given up on."""
    if sent is not None and sent not in _on_sent.setdefault(kind, []):
        _on_sent[kind].append(sent)
    if dead is not None and dead not in _on_dead.setdefault(kind, []):
        _on_dead[kind].append(dead)


def enqueue(
    session: Session,
    *,
    kind: str,
    channel: str,
    payload: dict[str, Any],
    message_id: uuid.UUID | None = None,
    subscription_id: uuid.UUID | None = None,
    replay_of: uuid.UUID | None = None,
    max_attempts: int = 8,
    customer_id: uuid.UUID | None = None,
) -> OutboxItem:
    item = OutboxItem(
        id=uuid7(),
        kind=kind,
        channel=channel,
        payload=payload,
        state="pending",
        attempts=0,
        max_attempts=max_attempts,
        next_attempt_at=utcnow(),
        message_id=message_id,
        subscription_id=subscription_id,
        replay_of=replay_of,
        customer_id=customer_id,
    )
    session.add(item)
    wake_outbox_after_commit(session)
    return item


def backoff(attempt: int, *, base: float = 2.0, cap: float = 3600.0) -> timedelta:
    """Exponential with full jitter: 2 s, 4 s, 8 s ... capped at an hour."""
    return timedelta(seconds=random.uniform(0.5, 1.0) * min(cap, base * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    kind: str
    channel: str
    payload: dict[str, Any]
    attempt: int


def _due(now: datetime, channels: dict[str, int] | None) -> ColumnElement[bool]:
    outbox = _outbox
    due = or_(
        and_(outbox.c.state == "pending", outbox.c.next_attempt_at <= now),
        and_(outbox.c.state == "sending", outbox.c.lease_until < now),
    )
    exhausted = sorted(channel for channel, left in (channels or {}).items() if left <= 0)
    if exhausted:
        return and_(due, outbox.c.channel.not_in(exhausted))
    return due


def any_due(session: Session, *, now: datetime, channels: dict[str, int] | None = None) -> bool:
    """Whether :func:`claim_due` would find anything: a read, so an idle worker never takes the write lock."""
    return session.execute(select(_outbox.c.id).where(_due(now, channels)).limit(1)).first() is not None


def claim_due(
    session: Session, *, now: datetime, limit: int, lease: timedelta, channels: dict[str, int] | None = None
) -> list[Claimed]:
    """Take due items (and items whose sender died mid-send) and lease them to this worker.

    ``channels`` caps how many of each channel may be taken (per-channel rate limits).
    """
    outbox = _outbox
    stmt = select(
        outbox.c.id, outbox.c.kind, outbox.c.channel, outbox.c.payload, outbox.c.attempts, outbox.c.state,
        outbox.c.max_attempts,
    ).where(_due(now, channels))  # fmt: skip
    stmt = stmt.order_by(outbox.c.next_attempt_at).limit(limit)
    session.flush()  # read and written through the connection (no ORM objects; bench, C4)
    connection = connection_of(session)
    if connection.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    taken: list[Claimed] = []
    abandoned: list[tuple[uuid.UUID, int]] = []
    budget = dict(channels or {})
    lease_until = now + lease
    for item_id, kind, channel, payload, attempts, state, max_attempts in connection.execute(stmt):
        if state == "sending" and attempts >= max_attempts:
            # its sender stopped during every attempt it had (an item that kills the worker would otherwise be
            # taken again forever): it goes to the dead letters, where an operator can look at it
            abandoned.append((item_id, attempts))
            continue
        if channel in budget:
            if budget[channel] <= 0:
                continue
            budget[channel] -= 1
        taken.append(Claimed(item_id, kind, channel, dict(payload), attempts + 1))
    bulk_update(
        session,
        OutboxItem,
        "id",
        [{"state": "sending", "attempts": item.attempt, "lease_until": lease_until, "id": item.id} for item in taken],
    )
    _sync_held(session, {item.id: {"state": "sending", "attempts": item.attempt, "lease_until": lease_until}
                         for item in taken})  # fmt: skip
    for item_id, attempts in abandoned:
        detail = f"the sender stopped during each of its {attempts} attempts (its lease ran out every time)"
        record_failure(
            session, item_id=item_id, detail=detail, permanent=True, started_at=now, duration_ms=0, attempt=attempts
        )
    return taken


_outbox = cast(Table, OutboxItem.__table__)


def _sync_held(session: Session, changes: dict[uuid.UUID, dict[str, Any]]) -> None:
    """Items the session already holds as objects show what was written without the ORM."""
    if not changes:
        return
    for held in held_objects(session, OutboxItem):
        if held.id in changes:
            for name, value in changes[held.id].items():
                set_committed_value(held, name, value)


def _log_attempt(
    session: Session, item: OutboxItem, started_at: datetime, duration_ms: int, outcome: str,
    status_code: int | None, detail: str,
) -> None:  # fmt: skip
    session.add(
        OutboxAttempt(
            item_id=item.id,
            number=item.attempts,
            started_at=started_at,
            duration_ms=duration_ms,
            outcome=outcome,
            status_code=status_code,
            detail=detail,
        )
    )


def record_sent(
    session: Session, *, item_id: uuid.UUID, provider_id: str | None, started_at: datetime, duration_ms: int,
    status_code: int | None = None, detail: str = "",
) -> None:  # fmt: skip
    item = session.get(OutboxItem, item_id)
    if not _mark_sent(session, item, provider_id, started_at, duration_ms, status_code, detail):
        return
    assert item is not None
    session.flush()
    _run_handlers(session, item, "sent")


def _mark_sent(
    session: Session, item: OutboxItem | None, provider_id: str | None, started_at: datetime, duration_ms: int,
    status_code: int | None, detail: str,
) -> bool:  # fmt: skip
    if item is None or item.state == "sent":
        return False  # another worker (that took the item over after a lease ran out) recorded it already
    item.state = "sent"
    item.provider_id = provider_id
    item.sent_at = utcnow()
    item.lease_until = None
    item.last_error = None
    _log_attempt(session, item, started_at, duration_ms, "sent", status_code, detail)
    return True


def _run_handlers(session: Session, item: OutboxItem, state: str) -> None:
    for handler in (_on_sent if state == "sent" else _on_dead if state == "dead" else {}).get(item.kind, []):
        handler(session, item)


def record_failure(
    session: Session, *, item_id: uuid.UUID, detail: str, permanent: bool, started_at: datetime,
    duration_ms: int, status_code: int | None = None, attempt: int | None = None,
) -> str:  # fmt: skip
    """Schedule a retry, or move the item to dead letters; returns the new state.

    ``attempt``: the attempt number the caller made. A failure of an attempt that no longer owns
    the item (it was sent meanwhile, or another worker took it over after the lease ran out) changes
    nothing: rescheduling it would send the item once more, or undo a delivery.
    """
    item = session.get(OutboxItem, item_id)
    state, changed = _mark_failed(session, item, detail, permanent, started_at, duration_ms, status_code, attempt)
    if changed:
        assert item is not None
        session.flush()
        _run_handlers(session, item, state)
    return state


def _mark_failed(
    session: Session, item: OutboxItem | None, detail: str, permanent: bool, started_at: datetime,
    duration_ms: int, status_code: int | None, attempt: int | None,
) -> tuple[str, bool]:  # fmt: skip
    if item is None:
        return "missing", False
    if item.state != "sending" or (attempt is not None and attempt != item.attempts):
        return item.state, False
    dead = permanent or item.attempts >= item.max_attempts
    item.last_error = detail[:2000]
    item.lease_until = None
    if dead:
        item.state = "dead"
    else:
        item.state = "pending"
        item.next_attempt_at = utcnow() + backoff(item.attempts)
    _log_attempt(session, item, started_at, duration_ms, "dead" if dead else "retry", status_code, detail[:2000])
    return item.state, True


@dataclass(frozen=True)
class Outcome:
    """What one attempt at an item ended with: ``sent``, else a failure (``detail``, ``permanent``)."""

    item_id: uuid.UUID
    attempt: int
    started_at: datetime
    duration_ms: int
    sent: bool
    provider_id: str | None = None
    status_code: int | None = None
    detail: str = ""
    permanent: bool = False


def record_outcomes(session: Session, outcomes: list[Outcome]) -> list[str]:
    """Record many attempts at once: each exactly as :func:`record_sent` / :func:`record_failure` would.

    One read of the items (and one flush) for all of them instead of one each; the outcome handlers
    then run per item, in order. Returns each item's state afterwards.
    """
    ids = sorted({outcome.item_id for outcome in outcomes})
    items: dict[uuid.UUID, OutboxItem] = {}
    for start in range(0, len(ids), 500):
        for found in session.scalars(select(OutboxItem).where(OutboxItem.id.in_(ids[start : start + 500]))):
            items[found.id] = found
    # The same rules as _mark_sent / _mark_failed, applied to the loaded objects as committed values and
    # written with one executemany per table instead of the ORM's flush of each object (bench, C4).
    changed: list[tuple[OutboxItem, str]] = []
    attempts: list[dict[str, Any]] = []
    states: list[str] = []
    for outcome in outcomes:
        item = items.get(outcome.item_id)
        if outcome.sent:
            if item is not None and item.state != "sent":
                _commit_values(item, state="sent", provider_id=outcome.provider_id, sent_at=utcnow(),
                               lease_until=None, last_error=None)  # fmt: skip
                attempts.append(_attempt_row(item, outcome, "sent", outcome.detail))
                changed.append((item, "sent"))
            states.append(item.state if item is not None else "missing")
            continue
        if item is None:
            states.append("missing")
            continue
        if item.state != "sending" or outcome.attempt != item.attempts:
            states.append(item.state)
            continue
        dead = outcome.permanent or item.attempts >= item.max_attempts
        detail = outcome.detail[:2000]
        if dead:
            _commit_values(item, last_error=detail, lease_until=None, state="dead")
        else:
            _commit_values(item, last_error=detail, lease_until=None, state="pending",
                           next_attempt_at=utcnow() + backoff(item.attempts))  # fmt: skip
        attempts.append(_attempt_row(item, outcome, "dead" if dead else "retry", detail))
        changed.append((item, item.state))
        states.append(item.state)
    # in id order, as erasure locks them (conversations/privacy.py): no two writers wait on each other
    written = {item.id: item for item, _ in sorted(changed, key=lambda pair: pair[0].id)}
    bulk_update(session, OutboxItem, "id", [{name: getattr(item, name) for name in _OUTCOME_COLUMNS} | {"id": item.id}
                                            for item in written.values()])  # fmt: skip
    bulk_insert(session, OutboxAttempt, attempts)
    # held while the handlers run: the identity map alone may drop unchanged rows
    prefetched = [prefetch(session, [item for item, _ in changed]) for prefetch, _ in _prefetchers]
    for item, state in changed:
        _run_handlers(session, item, state)
    for _, finish in _prefetchers:
        if finish is not None:
            finish(session)
    del prefetched
    return states


_OUTCOME_COLUMNS = ("state", "provider_id", "sent_at", "lease_until", "last_error", "next_attempt_at")


def _commit_values(item: OutboxItem, **values: Any) -> None:
    for name, value in values.items():
        set_committed_value(item, name, value)


def _attempt_row(item: OutboxItem, outcome: Outcome, result: str, detail: str) -> dict[str, Any]:
    return {
        "item_id": item.id, "number": item.attempts, "started_at": outcome.started_at,
        "duration_ms": outcome.duration_ms, "outcome": result, "status_code": outcome.status_code, "detail": detail,
    }  # fmt: skip


_prefetchers: list[tuple[Callable[[Session, list[OutboxItem]], Any], Callable[[Session], None] | None]] = []


def on_outcomes_prefetch(
    prefetch: Callable[[Session, list[OutboxItem]], Any], finish: Callable[[Session], None] | None = None
) -> None:
    """Let a domain read, in one query, the rows its outcome handlers will need for a batch of items
    (:func:`record_outcomes`); ``prefetch`` returns them, so that they stay loaded while the handlers run.
    ``finish`` runs after the batch's handlers (e.g. to store what they changed in one statement)."""
    if all(prefetch is not known for known, _ in _prefetchers):
        _prefetchers.append((prefetch, finish))


def retry(session: Session, *, item_id: uuid.UUID) -> OutboxItem:
    """Give a dead item a fresh set of attempts (the console's retry button)."""
    item = session.get(OutboxItem, item_id)
    if item is None:
        raise NotFound(f"outbox item {item_id} not found")
    if item.state != "dead":
        raise Conflict(f"only dead items can be retried; this one is {item.state}")
    item.state = "pending"
    item.max_attempts = item.attempts + max(3, item.max_attempts // 2)
    item.next_attempt_at = utcnow()
    session.flush()
    wake_outbox_after_commit(session)
    return item


def replay(session: Session, *, item_id: uuid.UUID) -> OutboxItem:
    """Send a delivered (or dead) item again, as a new item that points to the original."""
    original = session.get(OutboxItem, item_id)
    if original is None:
        raise NotFound(f"outbox item {item_id} not found")
    if original.state in ("pending", "sending"):
        raise Conflict("this item is still being delivered")
    return enqueue(
        session,
        kind=original.kind,
        channel=original.channel,
        payload=dict(original.payload),
        message_id=original.message_id,
        subscription_id=original.subscription_id,
        replay_of=original.id,
        customer_id=original.customer_id,
    )


def list_items(
    session: Session, *, state: str | None, kind: str | None = None, subscription_id: uuid.UUID | None = None,
    limit: int = 50, cursor: str | None = None,
) -> tuple[list[OutboxItem], str | None]:  # fmt: skip
    limit = check_limit(limit)
    stmt = select(OutboxItem)
    if state is not None:
        if state not in STATES:
            raise ValidationFailed.on_field("state", f"must be one of: {', '.join(STATES)}")
        stmt = stmt.where(OutboxItem.state == state)
    if kind is not None:
        stmt = stmt.where(OutboxItem.kind == kind)
    if subscription_id is not None:
        stmt = stmt.where(OutboxItem.subscription_id == subscription_id)
    after = decode_cursor(cursor, size=1)
    if after is not None:
        try:
            stmt = stmt.where(OutboxItem.id < uuid.UUID(str(after[0])))
        except ValueError:
            raise ValidationFailed.on_field("cursor", "is not a cursor this API returned") from None
    rows = list(session.scalars(stmt.order_by(OutboxItem.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor([str(rows[limit - 1].id)]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def attempts_of(session: Session, item_id: uuid.UUID) -> list[OutboxAttempt]:
    return list(
        session.scalars(select(OutboxAttempt).where(OutboxAttempt.item_id == item_id).order_by(OutboxAttempt.id))
    )


def release_stale_leases(session: Session, *, now: datetime) -> int:
    """Items whose sender died are due again (claim_due also takes them; this is for reporting)."""
    result = session.execute(
        update(OutboxItem)
        .where(OutboxItem.state == "sending", OutboxItem.lease_until < now)
        .values(state="pending", next_attempt_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
