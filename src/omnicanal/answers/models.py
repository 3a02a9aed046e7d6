"""Canned answers: one text per language, rendered for whatever channel it is sent on."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, Index, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from omnicanal.db import Base, JSONType, UTCDateTime, utcnow, uuid7


class Answer(Base):
    __tablename__ = "answers"
    __table_args__ = (
        # NULL shortcuts never collide, so answers without one need no placeholder
        UniqueConstraint("language", "shortcut", name="uq_answers_language_shortcut"),
        Index("ix_answers_language_active", "language", "active"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(16))
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    shortcut: Mapped[str | None] = mapped_column(String(64), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Derived on every write, for portable filtering (LIKE works the same on SQLite and PostgreSQL):
    # ``search_text`` = title, body, tags and shortcut lowercased without accents; ``tag_index`` = ",a,b,".
    search_text: Mapped[str] = mapped_column(Text, default="")
    tag_index: Mapped[str] = mapped_column(Text, default=",")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    updated_by: Mapped[str] = mapped_column(String(200))
