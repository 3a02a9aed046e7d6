from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel


class AttemptOut(BaseModel):
    number: int
    started_at: datetime
    duration_ms: int
    outcome: str
    status_code: int | None
    detail: str


class OutboxItemOut(BaseModel):
    id: uuid.UUID
    kind: str
    channel: str
    state: str
    attempts: int
    max_attempts: int
    next_attempt_at: datetime
    last_error: str | None
    provider_id: str | None
    message_id: uuid.UUID | None
    subscription_id: uuid.UUID | None
    replay_of: uuid.UUID | None
    created_at: datetime
    sent_at: datetime | None
    payload: dict[str, Any]


class OutboxItemDetail(OutboxItemOut):
    attempt_log: list[AttemptOut]


class OutboxPage(BaseModel):
    items: list[OutboxItemOut]
    next_cursor: str | None
