"""Order notifications: each status change offered on the customer's preferred channel, in their language.

Only channels with a current *transactional* consent grant and an address qualify; the customer's
``attributes.preferred_channel`` goes first, then email, SMS, WhatsApp and push. The notice is a
message in the customer's conversation (so agents see it) and leaves through the outbox after commit;
on WhatsApp it goes as an approved template, which may be sent outside the 24-hour window.
"""

from __future__ import annotations

import uuid
from typing import Any

from babel.numbers import get_currency_precision
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from omnicanal.commerce.models import Order
from omnicanal.consent.models import ConsentChange
from omnicanal.conversations.models import Conversation, Message
from omnicanal.customers.models import Customer, Identity
from omnicanal.db import utcnow, uuid7
from omnicanal.driver_sql import fetch_rows
from omnicanal.outbox.service import enqueue
from omnicanal.timeline.service import record_event

FALLBACK_ORDER = ("email", "sms", "whatsapp", "push")
REACH = {"email": ("email",), "sms": ("phone",), "whatsapp": ("whatsapp", "phone"), "push": ("device_id",)}

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "order.placed": "Thank you! We received your order {number} ({total}).",
        "order.paid": "Payment received for your order {number}. Thank you!",
        "order.payment_requested": "To pay your order {number} ({amount}), open {link}",
        "order.partially_fulfilled": "Part of your order {number} is on its way ({carrier} {tracking_number}).",
        "order.fulfilled": "Your order {number} is on its way ({carrier} {tracking_number}).",
        "order.ready_for_pickup": "Your order {number} is ready for pickup at {store}. Your pickup code: {pickup_code}"
        " (until {pickup_until}).",
        "order.collected": "You collected your order {number}. Enjoy it!",
        "order.returned": "We received your return for order {number}; refund: {refund}.",
        "order.refunded": "We refunded {amount} for your order {number}.",
        "order.cancelled": "Your order {number} has been cancelled.",
        "order.expired": "Your order {number} expired and has been cancelled.",
    },
    "es": {
        "order.placed": "¡Gracias! Hemos recibido tu pedido {number} ({total}).",
        "order.paid": "Hemos recibido el pago de tu pedido {number}. ¡Gracias!",
        "order.payment_requested": "Para pagar tu pedido {number} ({amount}), abre {link}",
        "order.partially_fulfilled": "Parte de tu pedido {number} está en camino ({carrier} {tracking_number}).",
        "order.fulfilled": "Tu pedido {number} está en camino ({carrier} {tracking_number}).",
        "order.ready_for_pickup": "Tu pedido {number} está listo para recoger en {store}. Código de recogida:"
        " {pickup_code} (hasta el {pickup_until}).",
        "order.collected": "Has recogido tu pedido {number}. ¡Que lo disfrutes!",
        "order.returned": "Hemos recibido tu devolución del pedido {number}; reembolso: {refund}.",
        "order.refunded": "Te hemos reembolsado {amount} del pedido {number}.",
        "order.cancelled": "Tu pedido {number} ha sido cancelado.",
        "order.expired": "Tu pedido {number} ha caducado y se ha cancelado.",
    },
}


def money(amount: int, currency: str) -> str:
    places = get_currency_precision(currency)  # minor units: 2 for EUR, 0 for JPY, 3 for KWD
    return f"{amount / 10**places:.{places}f} {currency}"


_consent = ConsentChange.__table__.c
# every order and payment asks: a Core statement, prebuilt
_GRANTS = (
    select(_consent.channel, _consent.status)
    .where(_consent.customer_id == bindparam("b_customer_id"), _consent.purpose == "transactional")
    .order_by(_consent.changed_at, _consent.id)
)


def _transactional_grants(session: Session, customer_id: uuid.UUID) -> set[str]:
    latest: dict[str, str] = {}
    session.flush()
    for channel, status in fetch_rows(session, _GRANTS, {"b_customer_id": customer_id}):
        latest[channel] = status
    return {channel for channel, status in latest.items() if status == "granted"}


def pick_channel(session: Session, customer: Customer) -> tuple[str, str] | None:
    """(channel, address) to notify this customer on, or None when no channel qualifies."""
    return _pick_channel(session, customer, _transactional_grants(session, customer.id))


def _pick_channel(session: Session, customer: Customer, grants: set[str]) -> tuple[str, str] | None:
    if not grants:
        return None
    identities: dict[str, str] = {}
    for kind, value in session.execute(
        select(Identity.type, Identity.value).where(Identity.customer_id == customer.id).order_by(Identity.added_at)
    ):
        identities.setdefault(kind, value)
    preferred = str(((customer.traits or {}).get("attributes") or {}).get("preferred_channel") or "")
    for channel in dict.fromkeys([preferred, *FALLBACK_ORDER]):
        if channel not in grants or channel not in REACH:
            continue
        address = next((identities[kind] for kind in REACH[channel] if kind in identities), None)
        if address is not None:
            return channel, address
    return None


def _text(event: str, language: str, order: Order, details: dict[str, Any], session: Session) -> str | None:
    texts = TEXTS.get(language[:2]) or TEXTS["es"]
    template = texts.get(event)
    if template is None:
        return None
    store = ""
    if order.location_id is not None:
        from omnicanal.commerce.models import Location

        location = session.get(Location, order.location_id)
        store = location.name if location else ""
    values = {
        "number": order.number,
        "total": money(order.total, order.currency),
        "store": store,
        "amount": money(int(details.get("amount", 0)), order.currency),
        "link": details.get("link", ""),
        "carrier": details.get("carrier", ""),
        "tracking_number": details.get("tracking_number", ""),
        "pickup_code": order.pickup_code or "",
        "refund": money(int(details.get("refund_amount", 0)), order.currency),
        "pickup_until": order.pickup_expires_at.date().isoformat() if order.pickup_expires_at else "",
    }
    return template.format(**values).replace(" ( )", "")


def notify_customer(session: Session, order: Order, event: str, details: dict[str, Any]) -> Message | None:
    if event not in TEXTS["en"]:
        return None
    # the consent grants first: without one there is nothing to send, and no need to load the customer
    grants = _transactional_grants(session, order.customer_id)
    if not grants:
        return None
    customer = session.get(Customer, order.customer_id)
    if customer is None or customer.erased_at is not None:
        return None
    target = _pick_channel(session, customer, grants)
    if target is None:
        return None
    channel, address = target
    language = str((customer.traits or {}).get("language") or "es")
    text = _text(event, language, order, details, session)
    if text is None:
        return None
    now = utcnow()
    conversation = session.scalar(
        select(Conversation)
        .where(Conversation.customer_id == customer.id)
        .order_by(Conversation.last_message_at.desc())
        .limit(1)
    )
    if conversation is None:
        # a notice alone is no work for an agent: the conversation starts resolved, the customer's answer reopens it
        conversation = Conversation(
            id=uuid7(),
            customer_id=customer.id,
            source_customer_id=customer.id,
            status="resolved",
            language=language,
            last_channel=channel,
            last_message_at=now,
            resolved_at=now,
            created_at=now,
            updated_at=now,
        )
        session.add(conversation)
    message = Message(
        id=uuid7(),
        conversation_id=conversation.id,
        customer_id=customer.id,
        source_customer_id=customer.id,
        channel=channel,
        direction="outbound",
        sender_type="system",
        sender_id="commerce",
        text=text,
        status="queued",
        occurred_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(message)
    conversation.last_message_at = now
    conversation.updated_at = now
    session.flush()
    payload: dict[str, Any] = {
        "message_id": str(message.id),
        "conversation_id": str(conversation.id),
        "to": address,
        "text": text,
        "format": "plain",
        "language": language,
        "order_id": str(order.id),
        "event": event,
    }
    if channel == "whatsapp":
        payload["template"] = {"name": event.replace(".", "_"), "language": language, "parameters": [order.number]}
    enqueue(session, kind="message", channel=channel, payload=payload, message_id=message.id, customer_id=customer.id)
    record_event(
        session,
        customer_id=customer.id,
        type="notification.sent",
        channel=channel,
        properties={"order_id": str(order.id), "event": event, "message_id": str(message.id), "language": language},
    )
    return message
