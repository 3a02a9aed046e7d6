"""Provider message ids and the status callbacks that refer to them.

A reply a provider takes as several messages (WhatsApp: one per file) gets one provider id per part;
:class:`OutboundPart` remembers each, so that a retry sends only the parts still missing and a status
callback about any part finds the reply. A status callback may also arrive before the id it names is
known here (the provider answers the send, then calls back at once, while the outcome is being
recorded): :class:`HeldStatus` keeps it until the id is recorded, then it is applied.

On PostgreSQL one advisory lock orders the two: a status that finds no message takes it exclusively
before holding itself; recording ids takes it shared before looking for held statuses. Whichever
commits first, the other sees it. SQLite has one writer, which orders them already.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, Uuid, delete, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from omnicanal.conversations.models import Message
from omnicanal.db import Base, UTCDateTime, utcnow

HOLD_FOR = timedelta(days=2)  # a status nobody claims by then was about a message that is not ours
_LOCK_KEY = 0x6F63_0009  # the advisory lock shared by status callbacks and id recording
_LOCKED = "omnicanal.delivery_lock"


class OutboundPart(Base):
    __tablename__ = "outbound_parts"
    __table_args__ = (Index("ix_outbound_parts_provider_id", "provider_message_id"),)

    outbox_item_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("outbox.id"), primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    provider_message_id: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class HeldStatus(Base):
    __tablename__ = "held_delivery_statuses"
    __table_args__ = (Index("ix_held_delivery_statuses_provider_id", "provider_message_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider_message_id: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def _lock(session: Session, *, shared: bool) -> None:
    if session.get_bind().dialect.name != "postgresql":
        return
    held = session.info.get(_LOCKED)
    if held == "exclusive" or (held == "shared" and shared):
        return
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    session.execute(text(f"SELECT {function}(:key)"), {"key": _LOCK_KEY})
    session.info[_LOCKED] = "shared" if shared else "exclusive"
    # session.info outlives the transaction: forget the lock when it ends
    from sqlalchemy import event

    def _forget(*_: object) -> None:
        session.info.pop(_LOCKED, None)

    event.listen(session, "after_transaction_end", _forget, once=True)


def message_of_part(session: Session, provider_message_id: str) -> uuid.UUID | None:
    return session.scalar(
        select(OutboundPart.message_id).where(OutboundPart.provider_message_id == provider_message_id).limit(1)
    )


def sent_parts(session: Session, outbox_item_id: uuid.UUID) -> dict[int, str]:
    """The parts of an outbox item already accepted by the provider, and their ids."""
    rows = session.execute(
        select(OutboundPart.part, OutboundPart.provider_message_id).where(OutboundPart.outbox_item_id == outbox_item_id)
    )
    return {part: provider_id for part, provider_id in rows}


def record_part(
    session: Session, *, outbox_item_id: uuid.UUID, part: int, message_id: uuid.UUID, provider_message_id: str
) -> None:
    """One part went out: remember its id, and apply any status that came for it first."""
    session.add(OutboundPart(outbox_item_id=outbox_item_id, part=part, message_id=message_id,
                             provider_message_id=provider_message_id))  # fmt: skip
    session.flush()
    release_held(session, {provider_message_id: message_id})


def hold_unknown(session: Session, *, provider_message_id: str, status: str, reason: str | None) -> uuid.UUID | None:
    """A status callback for an id no message has (yet): the message it turns out to be, else held for later."""
    from omnicanal.conversations.delivery import update_delivery_status

    _lock(session, shared=False)
    message_id = session.scalar(select(Message.id).where(Message.provider_message_id == provider_message_id).limit(1))
    if message_id is None:
        message_id = message_of_part(session, provider_message_id)
    if message_id is not None:
        update_delivery_status(session, message_id=message_id, status=status, reason=reason)
        return message_id
    session.add(HeldStatus(provider_message_id=provider_message_id, status=status, reason=reason))
    return None


def held_for(session: Session, provider_ids: Iterable[str]) -> list[HeldStatus]:
    wanted = sorted(set(provider_ids))
    if not wanted:
        return []
    _lock(session, shared=True)
    found: list[HeldStatus] = []
    for start in range(0, len(wanted), 500):
        found.extend(
            session.scalars(
                select(HeldStatus)
                .where(HeldStatus.provider_message_id.in_(wanted[start : start + 500]))
                .order_by(HeldStatus.id)
            )
        )
    return found


def release_held(session: Session, messages: dict[str, uuid.UUID], *, held: list[HeldStatus] | None = None) -> int:
    """Apply the held statuses of these provider ids to their messages, in the order they arrived."""
    from omnicanal.conversations.delivery import update_delivery_status

    statuses = held if held is not None else held_for(session, messages)
    applied = 0
    for status in statuses:
        message_id = messages.get(status.provider_message_id)
        if message_id is None:
            continue
        update_delivery_status(session, message_id=message_id, status=status.status, reason=status.reason)
        session.delete(status)
        applied += 1
    return applied


def forget_stale(session: Session, *, now: datetime | None = None) -> int:
    """Held statuses nobody claimed in time (a periodic job)."""
    result = session.execute(delete(HeldStatus).where(HeldStatus.received_at < (now or utcnow()) - HOLD_FOR))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def before_statuses(session: Session, provider_ids: Iterable[str]) -> None:
    """Before a batch of status callbacks touches any message: if some id is unknown, take the lock first.

    Taken before any message row is updated, as :func:`prefetch_held` does on the other side, so the two
    never wait for each other in opposite orders.
    """
    if session.get_bind().dialect.name != "postgresql":
        return  # one writer: nothing to order
    wanted = sorted(set(provider_ids))
    known: set[str] = set()
    for start in range(0, len(wanted), 500):
        known.update(
            str(found)
            for found in session.scalars(
                select(Message.provider_message_id).where(Message.provider_message_id.in_(wanted[start : start + 500]))
            )
        )
    if len(known) < len(wanted):
        _lock(session, shared=False)


_PREFETCHED = "omnicanal.held_statuses"


def prefetch_held(session: Session, items: list[Any]) -> list[HeldStatus]:
    """Outbox outcomes (one batch): the statuses held for the provider ids just recorded, in one query."""
    sent = [item for item in items if item.kind == "message" and item.state == "sent" and item.provider_id]
    if not sent:
        return []
    held = held_for(session, [str(item.provider_id) for item in sent])
    by_id: dict[str, list[HeldStatus]] = {}
    for status in held:
        by_id.setdefault(status.provider_message_id, []).append(status)
    stash: dict[uuid.UUID, list[HeldStatus]] = session.info.setdefault(_PREFETCHED, {})
    for item in sent:
        stash[item.id] = by_id.get(str(item.provider_id), [])
    return held


def release_on_sent(session: Session, item: Any) -> None:
    """Outbox outcome handler: the provider id of a reply is recorded; statuses that came first apply now."""
    if item.message_id is None or not item.provider_id:
        return
    from omnicanal.conversations.delivery import outbound_written

    stash: dict[uuid.UUID, list[HeldStatus]] = session.info.get(_PREFETCHED, {})
    provider_ids = {str(item.provider_id): item.message_id}
    held = stash.pop(item.id, None)
    if held is None:
        held = held_for(session, provider_ids)
    if not held:
        return
    # The batch keeps the messages it marks "sent" to write them at its end; write them now, or that
    # write would land after (and undo) the held status applied here.
    outbound_written(session)
    release_held(session, provider_ids, held=held)


def register() -> None:
    from omnicanal.outbox.service import on_outcome, on_outcomes_prefetch

    on_outcome("message", sent=release_on_sent)  # after conversations' own handler, which records the id
    on_outcomes_prefetch(prefetch_held)
