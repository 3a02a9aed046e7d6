from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class ConsentChannel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    TELEGRAM = "telegram"
    PHONE = "phone"
    PUSH = "push"
    POSTAL = "postal"


class ConsentPurpose(StrEnum):
    MARKETING = "marketing"
    TRANSACTIONAL = "transactional"
    SURVEYS = "surveys"


class ConsentStatus(StrEnum):
    GRANTED = "granted"
    DENIED = "denied"
    WITHDRAWN = "withdrawn"


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: ConsentStatus
    source: str = Field(min_length=1, max_length=32, examples=["web", "pos", "sms"])
    proof: str = Field(default="", max_length=4000, examples=["Checkbox on the web sign-up form v3"])


class ConsentOut(BaseModel):
    channel: str
    purpose: str
    status: str
    source: str
    proof: str
    changed_at: datetime
    changed_by: str


class ConsentList(BaseModel):
    items: list[ConsentOut]
