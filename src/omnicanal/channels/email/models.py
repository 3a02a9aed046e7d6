"""What an email message adds to a conversation message: its Message-ID and subject, for threading."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from omnicanal.db import Base, UTCDateTime, utcnow


class EmailHeader(Base):
    __tablename__ = "email_headers"
    __table_args__ = (
        Index("ix_email_headers_header_id", "header_id"),
        Index("ix_email_headers_conversation", "conversation_id", "created_at"),
        Index("ix_email_headers_source_customer", "source_customer_id"),
    )

    message_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("messages.id"), primary_key=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("conversations.id"))
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    source_customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    header_id: Mapped[str] = mapped_column(String(250))  # the RFC 5322 Message-ID, without <>
    subject: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
