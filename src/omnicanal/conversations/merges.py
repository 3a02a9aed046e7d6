"""One open conversation per customer after a merge, and both threads back after the merge is undone.

A merge re-points every conversation of the merged customer at the survivor, so a customer who wrote
under two records now has two open threads. The thread with the latest message stays open and takes the
other's messages; the other is resolved, and the join is recorded: which messages moved and in which
state the absorbed conversation was. Undoing the merge moves exactly those messages back and gives the
absorbed conversation its state again, whatever was said in the joined thread meanwhile (those messages
stay where they were written).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Uuid, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from omnicanal.conversations.models import Conversation, Message
from omnicanal.conversations.notify import announce, announce_assigned, conversation_data
from omnicanal.db import Base, JSONType, UTCDateTime, utcnow
from omnicanal.ids import as_uuid
from omnicanal.routing import service as routing

NOT_RESOLVED = ("open", "pending", "snoozed")


class ConversationJoin(Base):
    """A conversation absorbed into another by a customer merge (what undoing the merge needs)."""

    __tablename__ = "conversation_joins"

    merge_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("conversations.id"), primary_key=True)
    into_conversation_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("conversations.id"))
    status_before: Mapped[str] = mapped_column(String(16))
    snooze_until_before: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    message_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def on_merged(session: Session, payload: dict[str, Any]) -> None:
    survivor_id = as_uuid(payload["survivor_id"])
    # locked in id order, as the inbound writer locks a customer's conversations (no deadlock between the two)
    threads = list(
        session.scalars(
            select(Conversation)
            .where(Conversation.customer_id == survivor_id, Conversation.status.in_(NOT_RESOLVED))
            .order_by(Conversation.id)
            .with_for_update()
        )
    )
    if len(threads) < 2:
        return
    threads.sort(key=lambda conversation: (conversation.last_message_at, conversation.id), reverse=True)
    kept, absorbed = threads[0], threads[1:]
    now = utcnow()
    freed: list[uuid.UUID] = []
    for other in absorbed:
        moved = [str(message_id) for message_id in session.scalars(
            select(Message.id).where(Message.conversation_id == other.id).order_by(Message.id)
        )]  # fmt: skip
        session.execute(
            update(Message)
            .where(Message.conversation_id == other.id)
            .values(conversation_id=kept.id)
            .execution_options(synchronize_session=False)
        )
        session.add(
            ConversationJoin(
                merge_id=as_uuid(payload["merge_id"]),
                conversation_id=other.id,
                into_conversation_id=kept.id,
                status_before=other.status,
                snooze_until_before=other.snooze_until,
                message_ids=moved,
                joined_at=now,
            )
        )
        other.status = "resolved"
        other.resolved_at = now
        other.snooze_until = None
        other.updated_at = now
        routing.release(session, other)
        if other.assignee_id is not None:
            freed.append(other.assignee_id)
    kept.updated_at = now
    session.flush()
    for other in absorbed:
        data = conversation_data(other) | {"actor": "merge", "joined_into": str(kept.id)}
        announce(session, "conversation.resolved", data)
    for agent_id in dict.fromkeys(freed):
        announce_assigned(session, routing.drain_queue(session, agent_id), actor="routing")


def on_merge_undone(session: Session, payload: dict[str, Any]) -> None:
    joins = list(
        session.scalars(
            select(ConversationJoin)
            .where(ConversationJoin.merge_id == as_uuid(payload["merge_id"]))
            .order_by(ConversationJoin.conversation_id)
        )
    )
    now = utcnow()
    for join in joins:
        locked = {
            conversation.id: conversation
            for conversation in session.scalars(
                select(Conversation)
                .where(Conversation.id.in_([join.conversation_id, join.into_conversation_id]))
                .order_by(Conversation.id)
                .with_for_update()
            )
        }
        other, into = locked[join.conversation_id], locked[join.into_conversation_id]
        if join.message_ids:
            session.execute(
                update(Message)
                .where(
                    Message.id.in_([uuid.UUID(message_id) for message_id in join.message_ids]),
                    Message.conversation_id == into.id,
                )
                .values(conversation_id=other.id)
                .execution_options(synchronize_session=False)
            )
        into.last_message_at = _latest(session, into.id) or into.last_message_at
        into.updated_at = now
        if other.status == "resolved":  # nobody touched it since: it goes back to how the merge found it
            other.status = join.status_before
            other.snooze_until = join.snooze_until_before
            other.resolved_at = None
            other.updated_at = now
            if other.assignee_id is not None:
                routing.take_slot(session, other.assignee_id, force=True)
            session.flush()
            announce(session, f"conversation.{other.status}", conversation_data(other) | {"actor": "merge undone"})
        session.delete(join)
    session.flush()


def _latest(session: Session, conversation_id: uuid.UUID) -> datetime | None:
    latest: datetime | None = session.scalar(
        select(func.max(Message.created_at)).where(Message.conversation_id == conversation_id)
    )
    return latest


def register() -> None:
    from omnicanal import dispatch

    dispatch.subscribe("customer.merged", on_merged)
    dispatch.subscribe("customer.merge_undone", on_merge_undone)
