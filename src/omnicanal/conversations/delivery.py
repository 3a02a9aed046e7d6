"""What happens to a message after it is sent: outbox outcomes and the provider's delivery statuses."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from omnicanal.conversations.models import Message
from omnicanal.conversations.notify import announce, message_data
from omnicanal.db import utcnow
from omnicanal.driver_sql import bulk_update, connection_of
from omnicanal.errors import ValidationFailed

_STATUS_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}


def update_delivery_status(
    session: Session, *, message_id: uuid.UUID | None = None, provider_message_id: str | None = None,
    status: str, reason: str | None = None,
) -> Message | None:  # fmt: skip
    """Provider callbacks: status only moves forward (a late "delivered" never undoes "read", nor "sent" "failed")."""
    if status not in (*_STATUS_RANK, "failed"):
        raise ValidationFailed.on_field("status", "must be queued, sent, delivered, read or failed")
    stmt = select(Message)
    if message_id is not None:
        stmt = stmt.where(Message.id == message_id)
    elif provider_message_id is not None:
        stmt = stmt.where(Message.provider_message_id == provider_message_id)
    else:
        raise ValidationFailed.on_field("message_id", "give a message id or a provider message id")
    # locked: another server process taking a later status for it at once must not be overwritten by this one
    message = session.scalar(stmt.with_for_update().execution_options(populate_existing=True))
    if message is None:
        return None
    if status == "failed":
        if message.status == "read":
            return message
        reason = reason or "the provider reported a failure"
        if message.status == "failed" and message.failure_reason == reason:
            return message  # the provider retrying the same callback: nothing new to store or announce
        message.failure_reason = reason
    elif message.status == "failed" and status != "queued":
        # a failure is final: callbacks arrive out of order, and a late "sent" must not hide it ("queued"
        # is the outbox sending it again, after which outbound_sent moves it on)
        return message
    elif _STATUS_RANK.get(message.status, -1) >= _STATUS_RANK[status]:
        return message
    message.status = status
    message.updated_at = utcnow()
    session.flush()
    event = "message.failed" if status == "failed" else f"message.{status}"
    announce(session, event, message_data(message) | {"failure_reason": message.failure_reason})
    return message


def outbound_sent(session: Session, item: Any) -> None:
    """Outbox outcome: the provider accepted the message."""
    if item.message_id is None:
        return
    batch: _OutboundBatch | None = session.info.get(_OUTBOUND)
    row = batch.rows.get(item.message_id) if batch is not None else None
    if row is not None and session.identity_map.get(identity_key(Message, item.message_id)) is None:
        assert batch is not None
        # the same rules as below, on the batch's copy of the row, written by outbound_written
        if row["provider_message_id"] is None:
            row["provider_message_id"] = item.provider_id
            batch.changed[item.message_id] = row
        if row["status"] in ("queued", "failed"):
            row |= {"status": "sent", "failure_reason": None, "updated_at": utcnow()}
            batch.changed[item.message_id] = row
            announce(session, "message.sent", {name: _as_data(name, row[name]) for name in _MESSAGE_DATA})
        return
    message = session.get(Message, item.message_id)
    if message is None:
        return
    if message.provider_message_id is None:
        message.provider_message_id = item.provider_id
    # "failed" too: a dead-lettered message that a supervisor retried and that then went out
    if message.status in ("queued", "failed"):
        message.status = "sent"
        message.failure_reason = None
        message.updated_at = utcnow()
        announce(session, "message.sent", message_data(message))


_OUTBOUND = "omnicanal.outbound_messages"
# what notify.message_data gives, in its order
_MESSAGE_DATA = ("id", "conversation_id", "customer_id", "channel", "direction", "sender_type", "sender_id", "text",
                 "private", "status", "created_at")  # fmt: skip
_messages = cast(Table, Message.__table__)
_OUTBOUND_ROWS = select(
    *(_messages.c[name] for name in _MESSAGE_DATA), _messages.c.provider_message_id, _messages.c.failure_reason,
    _messages.c.updated_at,
).where(_messages.c.id.in_(bindparam("ids", expanding=True)))  # fmt: skip


def _as_data(name: str, value: Any) -> Any:
    if name == "created_at":
        return value.isoformat()
    if name in ("id", "conversation_id", "customer_id"):
        return str(value)
    return value


@dataclass
class _OutboundBatch:
    """The messages of a batch of outbox outcomes, read with Core; the rows the handlers changed."""

    rows: dict[uuid.UUID, dict[str, Any]]
    changed: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)


def outbound_messages(session: Session, items: list[Any]) -> _OutboundBatch:
    """The messages of a batch of outbox outcomes, read at once for :func:`outbound_sent` (bench, C4: no ORM
    objects; :func:`outbound_written` stores what the handlers changed in one statement)."""
    ids = sorted({item.message_id for item in items if item.kind == "message" and item.message_id is not None})
    rows: dict[uuid.UUID, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        for row in connection_of(session).execute(_OUTBOUND_ROWS, {"ids": ids[start : start + 500]}).mappings():
            rows[row["id"]] = dict(row)
    batch = session.info[_OUTBOUND] = _OutboundBatch(rows)
    return batch


def outbound_written(session: Session) -> None:
    """Store the messages the outcome handlers of the batch changed (see :func:`outbound_messages`)."""
    batch: _OutboundBatch | None = session.info.pop(_OUTBOUND, None)
    if batch is None or not batch.changed:
        return
    bulk_update(
        session,
        Message,
        "id",
        [
            {"provider_message_id": row["provider_message_id"], "status": row["status"],
             "failure_reason": row["failure_reason"], "updated_at": row["updated_at"], "id": message_id}
            for message_id, row in batch.changed.items()
        ],
    )  # fmt: skip


def outbound_dead(session: Session, item: Any) -> None:
    if item.message_id is not None:
        if _OUTBOUND in session.info:
            outbound_written(session)  # what the batch changed so far, before the ORM reads the message
        update_delivery_status(session, message_id=item.message_id, status="failed", reason=item.last_error)
