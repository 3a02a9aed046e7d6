from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    role: str


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    name: str
    role: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="the only time the key is shown")


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str
    role: str
    password: str
    display_name: str = ""
    language: str = Field(default="es", pattern=r"^(es|en)$")


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    display_name: str
    role: str
    language: str
    active: bool
    created_at: datetime


class Me(BaseModel):
    kind: str
    id: uuid.UUID
    name: str
    role: str
    permissions: list[str]
