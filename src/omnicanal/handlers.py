"""Cross-domain reactions, wired once when the app or a worker starts."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnicanal import dispatch
from omnicanal.timeline.service import record_event


def _profile_updated(session: Session, payload: dict[str, Any]) -> None:
    record_event(
        session,
        customer_id=payload["customer_id"],
        type="profile.updated",
        channel="console" if str(payload.get("actor", "")).startswith("user:") else "api",
        properties={"changed": payload["changed"]},
    )


def _merged(session: Session, payload: dict[str, Any]) -> None:
    record_event(
        session,
        customer_id=payload["survivor_id"],
        type="customer.merged",
        channel="system",
        properties={
            "merge_id": str(payload["merge_id"]),
            "merged_id": str(payload["merged_id"]),
            "reason": payload["reason"],
        },
    )


def _merge_undone(session: Session, payload: dict[str, Any]) -> None:
    record_event(
        session,
        customer_id=payload["survivor_id"],
        type="customer.merge_undone",
        channel="system",
        properties={"merge_id": str(payload["merge_id"]), "merged_id": str(payload["merged_id"])},
    )


def _conversation_context(session: Session, conversation_id: uuid.UUID) -> tuple[str, str, dict[str, Any]] | None:
    """What the answers library needs to suggest for a conversation: the customer's last words."""
    from omnicanal.answers.service import customer_variables
    from omnicanal.conversations.models import Conversation, Message

    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        return None
    last_text = session.scalar(
        select(Message.text)
        .where(Message.conversation_id == conversation_id, Message.direction == "inbound")
        .order_by(Message.created_at.desc())
        .limit(1)
    )
    customer = customer_variables(session, conversation.customer_id)
    language = conversation.language or str(customer.get("language") or "es")
    return last_text or "", language, {"customer": customer, "conversation": {"id": str(conversation.id)}}


def _erase_conversations(session: Session, tree: set[uuid.UUID]) -> None:
    from omnicanal.conversations.privacy import erase_conversations
    from omnicanal.realtime import runtime_for
    from omnicanal.settings import Settings

    runtime = runtime_for(session)
    settings = runtime.settings if runtime is not None and runtime.settings is not None else Settings()
    erase_conversations(session, tree, settings=settings)


def register() -> None:
    from omnicanal.answers.service import set_conversation_context_provider
    from omnicanal.channels import privacy as channels_privacy
    from omnicanal.conversations.delivery import outbound_dead, outbound_messages, outbound_sent, outbound_written
    from omnicanal.conversations.privacy import erase_outbox, export_conversations
    from omnicanal.loyalty.handlers import register as register_loyalty
    from omnicanal.outbox.service import on_outcome, on_outcomes_prefetch
    from omnicanal.privacy import service as privacy
    from omnicanal.webhooks import handlers as webhooks

    set_conversation_context_provider(_conversation_context)
    privacy.register("conversations", exporter=export_conversations, eraser=_erase_conversations)
    privacy.register("deliveries", exporter=None, eraser=erase_outbox)
    from omnicanal.commerce.privacy import erase_commerce, export_commerce

    privacy.register("commerce", exporter=export_commerce, eraser=erase_commerce)
    on_outcome("message", sent=outbound_sent, dead=outbound_dead)
    on_outcomes_prefetch(outbound_messages, outbound_written)
    from omnicanal.channels.delivery import register as register_delivery_statuses

    register_delivery_statuses()  # after outbound_sent: statuses that came before the provider id
    from omnicanal.commerce.usage_merges import register as register_usage_merges

    register_usage_merges()
    from omnicanal.conversations.merges import register as register_conversation_merges

    register_conversation_merges()
    webhooks.register()
    channels_privacy.register()
    dispatch.subscribe("customer.updated", _profile_updated)
    dispatch.subscribe("customer.merged", _merged)
    dispatch.subscribe("customer.merge_undone", _merge_undone)
    register_loyalty()
    from omnicanal.loyalty.commerce_adapter import register as register_loyalty_commerce

    register_loyalty_commerce()
