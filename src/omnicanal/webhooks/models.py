"""Webhook subscriptions. Their deliveries are outbox items (``kind="webhook"``, ``subscription_id`` set)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from omnicanal.db import Base, JSONType, UTCDateTime, utcnow, uuid7


class WebhookSubscription(Base):
    """An integrator's endpoint and the event types it wants.

    ``secret`` is kept readable (``whsec_`` + base64 key) because every delivery is signed with it; it is
    shown to the integrator only on creation and on rotation. After a rotation the previous secret also
    signs deliveries until ``previous_secret_expires_at``, so receivers can switch over without a gap.
    """

    __tablename__ = "webhook_subscriptions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(Text, default="")
    event_types: Mapped[list[str]] = mapped_column(JSONType, default=list)
    secret: Mapped[str] = mapped_column(String(200))
    previous_secret: Mapped[str | None] = mapped_column(String(200), nullable=True)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
