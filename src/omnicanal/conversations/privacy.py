"""What conversations and the outbox hold about a customer, exported and erased.

Erasure keeps the shape of the work (how many conversations and messages, on which channels,
when) and removes what was said, the files, and the addresses deliveries carried.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import String, cast, literal, select, update
from sqlalchemy.orm import Session

from omnicanal.conversations.models import Conversation, Message
from omnicanal.outbox.models import OutboxAttempt, OutboxItem
from omnicanal.settings import Settings
from omnicanal.storage import blob_store


def export_conversations(session: Session, tree: set[uuid.UUID]) -> Any:
    conversations = []
    for conversation in session.scalars(
        select(Conversation).where(Conversation.customer_id.in_(tree)).order_by(Conversation.created_at)
    ):
        messages = session.scalars(
            select(Message)
            .where(Message.conversation_id == conversation.id, Message.private.is_(False))
            .order_by(Message.created_at)
        )
        conversations.append(
            {
                "id": conversation.id,
                "status": conversation.status,
                "created_at": conversation.created_at,
                "resolved_at": conversation.resolved_at,
                "messages": [
                    {
                        "channel": m.channel,
                        "direction": m.direction,
                        "sender_type": m.sender_type,
                        "text": m.text,
                        "attachments": [
                            {"name": a.get("name"), "content_type": a.get("content_type")} for a in m.attachments or []
                        ],
                        "status": m.status,
                        "occurred_at": m.occurred_at,
                    }
                    for m in messages
                ],
            }
        )
    return conversations


def erase_conversations(session: Session, tree: set[uuid.UUID], *, settings: Settings) -> None:
    # The outbox worker writes an outcome to the outbox row, then to its message: take the outbox rows
    # first too (in id order, as the worker writes them), or the two can wait on each other (PostgreSQL).
    session.execute(
        select(OutboxItem.id).where(OutboxItem.customer_id.in_(tree)).order_by(OutboxItem.id).with_for_update()
    )
    store = blob_store(settings)
    for attachments in session.scalars(select(Message.attachments).where(Message.customer_id.in_(tree))):
        for attachment in attachments or []:
            key = attachment.get("key")
            if key:
                store.delete(str(key))
    session.execute(
        update(Message)
        .where(Message.customer_id.in_(tree))
        .values(
            text="",
            attachments=[],
            mentions=[],
            failure_reason=None,
            # provider ids (e-mail Message-IDs especially) can embed an address
            external_id=literal("erased_") + cast(Message.id, String),
            provider_message_id=None,
        )
    )
    session.execute(update(Conversation).where(Conversation.customer_id.in_(tree)).values(labels=[]))


def erase_outbox(session: Session, tree: set[uuid.UUID]) -> None:
    """Deliveries about the customer lose their payload; those not yet made are cancelled."""
    items = select(OutboxItem.id).where(OutboxItem.customer_id.in_(tree))
    session.execute(update(OutboxAttempt).where(OutboxAttempt.item_id.in_(items)).values(detail=""))
    session.execute(
        update(OutboxItem)
        .where(OutboxItem.customer_id.in_(tree), OutboxItem.state.in_(("pending", "sending")))
        .values(state="dead", last_error="cancelled: the customer's data was erased")
    )
    session.execute(update(OutboxItem).where(OutboxItem.customer_id.in_(tree)).values(payload={}, provider_id=None))
