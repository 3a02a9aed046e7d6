"""Conversations belong to a customer, not to a channel; messages keep their channel."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from omnicanal.db import Base, JSONType, UTCDateTime, utcnow, uuid7
from omnicanal.owned_rows import moved_rows_index


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_customer_status", "customer_id", "status"),
        # The inbox orders by (last_message_at DESC, id DESC): indexes ending in both columns give the
        # page straight from the index, without sorting every matching row (bench, C2).
        Index("ix_conversations_inbox", "status", "assignee_id", "last_message_at", "id"),
        Index("ix_conversations_team", "team_id", "status", "last_message_at", "id"),
        moved_rows_index("conversations"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    source_customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    status: Mapped[str] = mapped_column(String(16), default="open")
    snooze_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("staff_users.id"), nullable=True)
    team_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("teams.id"), nullable=True)
    priority: Mapped[str] = mapped_column(String(8), default="normal")
    labels: Mapped[list[str]] = mapped_column(JSONType, default=list)
    language: Mapped[str | None] = mapped_column(String(8), nullable=True)
    last_channel: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_message_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_inbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    first_response_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolution_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reopened_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        # NULL external ids (agent replies) never collide, on SQLite and PostgreSQL alike
        UniqueConstraint("channel", "external_id", name="uq_messages_channel_external_id"),
        Index("ix_messages_conversation_time", "conversation_id", "created_at"),
        Index("ix_messages_customer", "customer_id"),
        moved_rows_index("messages"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    conversation_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("conversations.id"))
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    source_customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    channel: Mapped[str] = mapped_column(String(32))
    direction: Mapped[str] = mapped_column(String(10))  # inbound / outbound / internal
    sender_type: Mapped[str] = mapped_column(String(10))  # customer / agent / bot / system
    sender_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    text: Mapped[str] = mapped_column(Text, default="")
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    mentions: Mapped[list[str]] = mapped_column(JSONType, default=list)
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    provider_message_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(10), default="received")
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    answer_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    # the configured channel (channels/) it came in on or left through; replies leave through it
    channel_instance_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # when the customer last changed its text on the channel (Telegram lets them edit a sent message)
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
