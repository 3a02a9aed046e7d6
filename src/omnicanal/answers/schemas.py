from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AnswerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(examples=["Horario de apertura"])
    body: str = Field(
        description="Markdown subset: **bold**, *italic*, [text](https://url), line breaks, '- ' lists; "
        "variables as {{customer.first_name}}",
        examples=["¡Hola {{customer.first_name}}! Abrimos de lunes a sábado de **10:00 a 21:00**."],
    )
    language: str = Field(description="BCP 47: 'es', 'en', 'es-MX'", examples=["es"])
    tags: list[str] = Field(default_factory=list, examples=[["tiendas", "horario"]])
    shortcut: str | None = Field(default=None, description="unique per language", examples=["horario"])
    active: bool = True


class AnswerUpdate(BaseModel):
    """Only the fields given change; ``shortcut: null`` removes the shortcut."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = None
    body: str | None = None
    language: str | None = None
    tags: list[str] | None = None
    shortcut: str | None = None
    active: bool | None = None


class AnswerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    body: str
    language: str
    tags: list[str]
    shortcut: str | None
    active: bool
    created_at: datetime
    updated_at: datetime
    created_by: str
    updated_by: str


class AnswerPage(BaseModel):
    items: list[AnswerOut]
    next_cursor: str | None


class SuggestionOut(BaseModel):
    answer: AnswerOut
    score: float
    same_language: bool = Field(description="false: no answer in the customer's language matched")


class SuggestionList(BaseModel):
    items: list[SuggestionOut]
    text: str
    language: str


class RenderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(examples=["sms", "email", "whatsapp", "telegram", "webchat"])
    context: dict[str, Any] = Field(
        default_factory=dict, examples=[{"order": {"number": "A-1042"}, "agent": {"name": "Carlos"}}]
    )
    customer_id: uuid.UUID | None = Field(default=None, description="fills customer.* from the profile")
    keep_missing: bool = Field(default=False, description="leave unfilled {{variables}} visible instead of empty")


class RenderedOut(BaseModel):
    channel: str
    text: str
    html: str | None
    length: int = Field(description="SMS: GSM-7 septets or UTF-16 units; otherwise characters of text")
    segments: int | None
    encoding: str | None
    missing_variables: list[str]
