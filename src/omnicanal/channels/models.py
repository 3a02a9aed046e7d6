"""Configured channel instances: one row per connected number, bot, page or integration."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Index, String, Text, Uuid
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
