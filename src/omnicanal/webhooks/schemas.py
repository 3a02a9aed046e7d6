from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from omnicanal.outbox.schemas import AttemptOut


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="https:// (plain http only for localhost)")
    event_types: list[str] = Field(
        description="exact types (message.received), family wildcards (message.*) or '*'", max_length=50
    )
    description: str = Field(default="", max_length=500)


class SubscriptionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=2000)
    event_types: list[str] | None = Field(default=None, max_length=50)
    description: str | None = Field(default=None, max_length=500)
    active: bool | None = Field(default=None, description="false pauses deliveries; true re-enables")


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    url: str
    description: str
    event_types: list[str]
    active: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="shown only now: keep it to verify signatures")


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


class SecretOut(BaseModel):
    id: uuid.UUID
    secret: str = Field(description="the new secret, shown only now")
    previous_secret_expires_at: datetime | None = Field(
        description="until then deliveries carry a signature with the old secret too"
    )


class DeliveryOut(BaseModel):
    id: uuid.UUID = Field(description="also the webhook-id header the receiver gets")
    subscription_id: uuid.UUID | None
    type: str
    timestamp: str
    data: Any
    state: str
    attempts: int
    max_attempts: int
    next_attempt_at: datetime
    last_error: str | None
    replay_of: uuid.UUID | None
    created_at: datetime
    sent_at: datetime | None
    attempt_log: list[AttemptOut]


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None
