"""Configured channel instances: one row per connected number, bot, page or integration."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from omnicanal.db import Base, JSONType, UTCDateTime, utcnow, uuid7


class ChannelInstance(Base):
    __tablename__ = "channel_instances"
    __table_args__ = (Index("ix_channel_instances_type", "type", "enabled"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # never secrets
    secrets: Mapped[str] = mapped_column(Text, default="")  # Fernet token of a JSON object
    secret_keys: Mapped[list[str]] = mapped_column(JSONType, default=list)  # which secrets are set
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PushDevice(Base):
    """A device's push token, registered by the app through its API channel; keyed by the ``device_id`` identity."""

    __tablename__ = "push_devices"

    device_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    token: Mapped[str] = mapped_column(Text)
    platform: Mapped[str] = mapped_column(String(16), default="")
    channel_instance_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CallbackTask(Base):
    """Someone to call back: a missed call, or a request from the web chat. One queue for both."""

    __tablename__ = "callback_tasks"
    __table_args__ = (
        Index("ix_callback_tasks_status", "status", "created_at"),
        Index("ix_callback_tasks_customer", "customer_id"),
        Index("ix_callback_tasks_source_customer", "source_customer_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    source_customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reason: Mapped[str] = mapped_column(String(32))  # missed_call / web_request / ...
    source_ref: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)  # e.g. the CallSid
    notes: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(12), default="open")  # open / done
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    done_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
