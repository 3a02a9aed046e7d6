"""One place where conversation changes leave: domain events now, real time after commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy.orm import Session

from omnicanal import dispatch
from omnicanal.conversations.models import Conversation, Message
from omnicanal.realtime import publish_after_commit, publish_all_after_commit


def message_data(message: Message) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "conversation_id": str(message.conversation_id),
        "customer_id": str(message.customer_id),
        "channel": message.channel,
        "direction": message.direction,
        "sender_type": message.sender_type,
        "sender_id": message.sender_id,
        "text": message.text,
        "private": message.private,
        "status": message.status,
        "created_at": message.created_at.isoformat(),
    }


class AboutConversation(Protocol):
    """What an announcement says of a conversation: an ORM row or the inbound writer's plain values."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def customer_id(self) -> uuid.UUID: ...
    @property
    def status(self) -> str: ...
    @property
    def assignee_id(self) -> uuid.UUID | None: ...
    @property
    def team_id(self) -> uuid.UUID | None: ...
    @property
    def last_channel(self) -> str | None: ...
    @property
    def priority(self) -> str: ...


def conversation_data(conversation: AboutConversation) -> dict[str, Any]:
    return {
        "id": str(conversation.id),
        "customer_id": str(conversation.customer_id),
        "status": conversation.status,
        "assignee_id": str(conversation.assignee_id) if conversation.assignee_id else None,
        "team_id": str(conversation.team_id) if conversation.team_id else None,
        "last_channel": conversation.last_channel,
        "priority": conversation.priority,
    }


def announce_assigned(session: Session, conversation_ids: list[uuid.UUID], *, actor: str) -> None:
    """Conversations handed out from the queue, announced like any other assignment."""
    for conversation_id in conversation_ids:
        conversation = session.get(Conversation, conversation_id)
        if conversation is not None:
            announce(session, "conversation.assigned", conversation_data(conversation) | {"actor": actor})


def announce(session: Session, event_type: str, data: dict[str, Any]) -> None:
    """Publish to other domains (webhooks, ...) in this transaction, and to consoles after commit."""
    dispatch.publish(session, event_type, data)
    publish_after_commit(session, {"type": event_type, "data": data})


def announce_all(session: Session, announcements: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """:func:`announce` of several changes in order; consoles get them in one hand-over after commit (a batch
    wakes each listener once, not once per change)."""
    for event_type, data in announcements:
        dispatch.publish(session, event_type, data)
    publish_all_after_commit(session, [{"type": event_type, "data": data} for event_type, data in announcements])
