from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from omnicanal.customers.schemas import IdentityIn

EVENT_CHANNELS = frozenset(
    {
        "web", "app", "store", "pos", "call_center", "phone", "email", "sms", "whatsapp", "telegram",
        "facebook", "instagram", "x", "social", "push", "postal", "api", "console", "system",
    }
)  # fmt: skip

EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_.:-]{0,99}$"


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    type: str = Field(pattern=EVENT_TYPE_PATTERN, examples=["page.viewed", "order.placed"])
    channel: str = Field(max_length=32, examples=["web", "pos", "whatsapp"])
    occurred_at: datetime
    identities: list[IdentityIn] = Field(default_factory=list, max_length=20)
    customer_id: uuid.UUID | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class EventAccepted(BaseModel):
    event_id: str
    customer_id: uuid.UUID
    duplicate: bool


class BatchItemResult(BaseModel):
    index: int
    event_id: str | None = None
    customer_id: uuid.UUID | None = None
    duplicate: bool | None = None
    error: dict[str, Any] | None = None


class BatchResult(BaseModel):
    results: list[BatchItemResult]


class EventOut(BaseModel):
    id: str
    type: str
    channel: str
    occurred_at: datetime
    received_at: datetime
    customer_id: uuid.UUID
    properties: dict[str, Any]


class TimelinePage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None
