from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from omnicanal.customers.schemas import IdentityIn


class Expiring(BaseModel):
    points: int
    expires_at: datetime


class WalletOut(BaseModel):
    customer_id: uuid.UUID
    balance: int
    pending: int
    tier: str | None
    expiring: list[Expiring]


class EntryOut(BaseModel):
    id: uuid.UUID
    points: int
    reason: str
    source: str
    note: str
    actor: str
    created_at: datetime
    available_from: datetime
    expires_at: datetime | None


class LedgerPage(BaseModel):
    items: list[EntryOut]
    next_cursor: str | None


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    customer_id: uuid.UUID | None = None
    identities: list[IdentityIn] | None = None
    type: str = Field(min_length=1, max_length=100, examples=["survey.answered", "social.share", "visit"])
    channel: str = Field(default="api", max_length=32)
    properties: dict[str, Any] = Field(default_factory=dict)


class EarnedOut(BaseModel):
    customer_id: uuid.UUID
    points: int
    reason: str
    source: str


class EventResult(BaseModel):
    id: str
    customer_id: uuid.UUID
    points: int
    earned: list[EarnedOut]


class CodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: uuid.UUID
    code: str = Field(min_length=1, max_length=64)


class CodeResult(BaseModel):
    customer_id: uuid.UUID
    points: int
    balance: int


class CodeBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch: str = Field(min_length=1, max_length=100)
    count: int
    points: int


class CodeBatchOut(BaseModel):
    batch: str
    points: int
    codes: list[str]


Period = Literal["day", "week", "month", "lifetime"]


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    kind: Literal["spend", "event"]
    event_type: str | None = Field(default=None, max_length=100)
    points: int
    per_amount: int | None = None
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    rounding: Literal["down", "half_up", "up"] = "down"
    multiplier: float = 1.0
    product_multipliers: dict[str, float] = Field(default_factory=dict)
    category_multipliers: dict[str, float] = Field(default_factory=dict)
    caps: dict[str, int] = Field(default_factory=dict, examples=[{"day": 10}])
    channels: list[str] = Field(default_factory=list)
    tiers: list[str] = Field(default_factory=list)
    segments: dict[str, Any] = Field(default_factory=dict, description="customer traits that must match")
    conditions: dict[str, Any] = Field(default_factory=dict, description="event properties that must match")
    once_per: list[str] | None = Field(default=None, description="earn once ever per these event properties")
    expiry_days: int | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    active: bool = True


class RuleOut(RuleIn):
    id: uuid.UUID
    created_at: datetime
    archived_at: datetime | None = None


class TierIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    threshold: int = Field(ge=0)
    basis: Literal["points", "spend"] = "points"
    window_days: int = Field(default=365, ge=1, le=3660)
    retention_threshold: int | None = Field(default=None, ge=0)
    multiplier: float = Field(default=1.0, gt=0)


class TierOut(TierIn):
    id: uuid.UUID


class RewardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    kind: Literal["voucher", "product", "external"]
    cost_points: int = Field(gt=0)
    stock: int | None = Field(default=None, ge=0)
    value: dict[str, Any] = Field(default_factory=dict, examples=[{"amount": 500, "currency": "EUR"}])
    supplier_ref: str | None = Field(default=None, max_length=200)
    tiers: list[str] = Field(default_factory=list)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    active: bool = True


class RewardOut(RewardIn):
    id: uuid.UUID
    archived_at: datetime | None = None


class RedemptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reward_id: uuid.UUID
    request_id: str = Field(min_length=1, max_length=200)
    channel: str = Field(default="api", max_length=32)


class RedemptionOut(BaseModel):
    id: uuid.UUID
    customer_id: uuid.UUID
    reward_id: uuid.UUID
    request_id: str
    points: int
    code: str
    status: str
    channel: str
    created_at: datetime


class AdjustmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: int
    reason: str = Field(min_length=3, max_length=500)
    request_id: str = Field(min_length=1, max_length=200)
