"""Approved WhatsApp templates: the only messages allowed outside the 24-hour customer-service window."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from omnicanal.access.roles import Permission
from omnicanal.access.service import Principal
from omnicanal.channels.models import ChannelInstance
from omnicanal.conversations.models import Message
from omnicanal.conversations.notify import announce, message_data
from omnicanal.conversations.schemas import MessageOut
from omnicanal.conversations.service import channel_options, get_conversation, last_channel_instance, message_out
from omnicanal.customers.service import get_customer
from omnicanal.db import utcnow
from omnicanal.errors import Conflict, ValidationFailed
from omnicanal.idempotency import run_idempotent
from omnicanal.outbox.service import enqueue
from omnicanal.web import WriteSession, require

router = APIRouter(prefix="/api/v1", tags=["conversations"])
Writer = Annotated[Principal, Depends(require(Permission.CONVERSATIONS_WRITE))]


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=512, examples=["order_ready"])
    language: str = Field(default="es", min_length=2, max_length=15, examples=["es", "en_US"])
    parameters: list[str] = Field(default_factory=list, max_length=20, examples=[["Ana", "A-1042"]])


def _instance(session: Session, customer_id: uuid.UUID) -> ChannelInstance | None:
    instance_id = last_channel_instance(session, customer_id, "whatsapp")
    if instance_id is not None:
        found = session.get(ChannelInstance, instance_id)
        if found is not None and found.enabled:
            return found
    return session.scalar(
        select(ChannelInstance)
        .where(ChannelInstance.type == "whatsapp", ChannelInstance.enabled.is_(True))
        .order_by(ChannelInstance.created_at)
        .limit(1)
    )


def send_template(session: Session, *, conversation_id: uuid.UUID, template: TemplateIn, author_id: str) -> Message:
    conversation = get_conversation(session, conversation_id)
    customer = get_customer(session, conversation.customer_id, follow_merges=True)
    option = next(o for o in channel_options(session, conversation) if o.channel == "whatsapp")
    if option.address is None:
        raise Conflict(f"cannot send on whatsapp: {option.reason}", channel="whatsapp")
    instance = _instance(session, customer.id)
    if instance is None:
        raise Conflict("no WhatsApp channel is connected", channel="whatsapp")
    if template.name not in (instance.config.get("templates") or ()):
        raise ValidationFailed.on_field("name", f"{template.name!r} is not an approved template of {instance.name}")
    now = utcnow()
    summary = f"[{template.name}] " + " · ".join(template.parameters)
    message = Message(
        conversation_id=conversation.id, customer_id=customer.id, source_customer_id=customer.id,
        channel="whatsapp", direction="outbound", sender_type="agent", sender_id=author_id, text=summary.strip(),
        status="queued", channel_instance_id=instance.id, occurred_at=now, created_at=now, updated_at=now,
    )  # fmt: skip
    session.add(message)
    session.flush()
    body: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
    if template.parameters:
        parameters = [{"type": "text", "text": value} for value in template.parameters]
        body["components"] = [{"type": "body", "parameters": parameters}]
    enqueue(
        session, kind="message", channel="whatsapp", message_id=message.id, customer_id=customer.id,
        payload={"message_id": str(message.id), "conversation_id": str(conversation.id), "to": option.address,
                 "text": message.text, "template": body, "channel_instance_id": str(instance.id)},
    )  # fmt: skip
    conversation.last_message_at = now
    conversation.updated_at = now
    announce(session, "message.created", message_data(message))
    return message


@router.post("/conversations/{conversation_id}/templates", response_model=MessageOut, status_code=201)
def post_template(
    conversation_id: uuid.UUID, data: TemplateIn, request: Request, session: WriteSession, principal: Writer
) -> Any:
    """An approved WhatsApp template with its parameters: allowed when the 24-hour window is closed."""

    def produce() -> tuple[int, Any]:
        author = str(principal.id) if principal.kind == "user" else principal.label
        message = send_template(session, conversation_id=conversation_id, template=data, author_id=author)
        return 201, message_out(message).model_dump(mode="json")

    return run_idempotent(
        request, session, principal, data.model_dump(mode="json"), produce, customer_of=lambda c: c["customer_id"]
    )
