from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from omnicanal.conversations.reply_content import InteractiveIn, LocationIn, ReplyAttachmentIn
from omnicanal.customers.schemas import IdentityIn


class AttachmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    content_type: str = Field(min_length=3, max_length=100)
    url: str | None = Field(default=None, max_length=2000, description="where the provider keeps it")
    data: str | None = Field(default=None, description="the file itself, base64")


class InboundMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(max_length=32)
    identities: list[IdentityIn] = Field(default_factory=list, max_length=20)
    customer_id: uuid.UUID | None = None
    text: str = Field(default="", max_length=20_000)
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=10)
    external_id: str = Field(min_length=1, max_length=200)
    occurred_at: datetime | None = None


class InboundAccepted(BaseModel):
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    customer_id: uuid.UUID
    duplicate: bool


class ReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, max_length=20_000)
    answer_id: uuid.UUID | None = None
    channel: str | None = None
    private: bool = False
    context: dict[str, Any] = Field(default_factory=dict, description="values for the answer's variables")
    attachments: list[ReplyAttachmentIn] = Field(default_factory=list, max_length=10)
    interactive: InteractiveIn | None = Field(default=None, description="WhatsApp: reply buttons or a list")
    location: LocationIn | None = Field(default=None, description="WhatsApp: a place, sent as a pin after the text")


class MessageOut(BaseModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    customer_id: uuid.UUID
    channel: str
    direction: str
    sender_type: str
    sender_id: str | None
    text: str
    attachments: list[dict[str, Any]]
    private: bool
    mentions: list[str]
    status: str
    failure_reason: str | None
    external_id: str | None
    provider_message_id: str | None
    channel_instance_id: uuid.UUID | None = None
    occurred_at: datetime
    edited_at: datetime | None = None
    created_at: datetime


class MessagePage(BaseModel):
    items: list[MessageOut]
    next_cursor: str | None


class SlaOut(BaseModel):
    first_response_due_at: datetime | None
    resolution_due_at: datetime | None
    first_response_breached: bool
    resolution_breached: bool


class ConversationOut(BaseModel):
    id: uuid.UUID
    customer_id: uuid.UUID
    customer_name: str | None = None
    status: str
    snooze_until: datetime | None
    assignee_id: uuid.UUID | None
    team_id: uuid.UUID | None
    priority: str
    labels: list[str]
    language: str | None
    last_channel: str | None
    last_message_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    created_at: datetime
    sla: SlaOut


class ConversationPage(BaseModel):
    items: list[ConversationOut]
    next_cursor: str | None


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: str
    snooze_until: datetime | None = None


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None


class ConversationPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: str | None = Field(default=None, pattern=r"^(low|normal|high|urgent)$")
    labels: list[str] | None = Field(default=None, max_length=30)


class ReplyOptionOut(BaseModel):
    channel: str
    available: bool
    reason: str
    address: str | None
    template_only: bool
