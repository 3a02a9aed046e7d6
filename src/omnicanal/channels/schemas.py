from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ChannelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(examples=["whatsapp"])
    name: str = Field(min_length=1, max_length=200, examples=["WhatsApp Spain"])
    config: dict[str, Any] = Field(default_factory=dict, examples=[{"phone_number_id": "1234567890"}])
    enabled: bool = True


class ChannelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    config: dict[str, Any] | None = Field(default=None, description="keys to change; null clears an optional key")
    enabled: bool | None = None


class ChannelOut(BaseModel):
    id: uuid.UUID
    type: str
    name: str
    enabled: bool
    config: dict[str, Any] = Field(description="the settings that are not secret")
    secrets_set: list[str] = Field(description="which secret settings hold a value (values are never returned)")
    webhook_paths: list[str]
    created_at: datetime
    updated_at: datetime


class ConfigKeyOut(BaseModel):
    name: str
    required: bool
    secret: bool
    default: Any
    kind: str
    help: str


class ChannelTypeOut(BaseModel):
    name: str
    label: str
    delivers: list[str]
    keys: list[ConfigKeyOut]
    webhook_paths: list[str]
