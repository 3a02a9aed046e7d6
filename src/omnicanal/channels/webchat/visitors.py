"""Who a web chat visitor is, what they see of their conversation, and how their messages are stored.

An anonymous visitor is a ``device_id`` identity (a random id the widget keeps in the browser). A site
that knows its user passes an identity *and* an HMAC-SHA256 of the identity's value, keyed with the
channel's ``identity_secret``; only then does the device join that customer (a merge through the
normal resolution rules). A claim without a valid signature is never used: anyone can type an email.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnicanal.conversations.models import Message
from omnicanal.customers.identities import InvalidIdentity, normalize
from omnicanal.customers.models import Identity
from omnicanal.customers.resolution import Resolver
from omnicanal.db import utcnow
from omnicanal.settings import Settings

CHANNEL = "web"
VERIFIABLE_TYPES = ("email", "external", "phone", "loyalty_card")
HISTORY_LIMIT = 50


def identity_hash(secret: str, value: str) -> str:
    """What the site's server computes for its logged-in user: hex HMAC-SHA256 of the identity's value."""
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()


def verified_identity(secret: str | None, claim: Any, *, region: str) -> tuple[str, str] | None:
    """The normalized identity when ``claim`` (``{"type", "value", "hash"}``) is signed with ``secret``."""
    if not secret or not isinstance(claim, dict):
        return None
    kind, value, given = claim.get("type"), claim.get("value"), claim.get("hash")
    if kind not in VERIFIABLE_TYPES or not isinstance(value, str) or not isinstance(given, str):
        return None
    if not hmac.compare_digest(identity_hash(secret, value).encode(), given.strip().lower().encode()):
        return None
    try:
        return str(kind), normalize(str(kind), value, region)
    except InvalidIdentity:
        return None


def device_identity(device_id: Any, *, region: str) -> tuple[str, str] | None:
    if not isinstance(device_id, str) or not 8 <= len(device_id) <= 100:
        return None
    try:
        return "device_id", normalize("device_id", device_id, region)
    except InvalidIdentity:
        return None


@dataclass(frozen=True)
class Identify:
    identities: list[tuple[str, str]]  # the device first, then the verified identity


def identify(session: Session, items: Sequence[Identify], *, settings: Settings) -> list[uuid.UUID]:
    """Ingest-writer batch handler: the device joins the verified customer (created if new)."""
    resolver = Resolver(session, settings, now=utcnow())
    resolver.prefetch(key for item in items for key in item.identities)
    found = [resolver.resolve(item.identities, source=CHANNEL).customer_id for item in items]
    resolver.flush()
    return found


@dataclass(frozen=True)
class CallbackRequest:
    identities: list[tuple[str, str]]
    phone: str  # normalized; a number to call, not an identity: nobody proved it is theirs
    notes: str
    conversation_id: uuid.UUID | None
    source_ref: str  # the widget's client id: a resent request is one request


def request_callbacks(session: Session, items: Sequence[CallbackRequest], *, settings: Settings) -> list[uuid.UUID]:
    """Ingest-writer batch handler: a visitor asks to be called; it joins the call center's callback queue."""
    from omnicanal.channels.voice.callbacks import request_callback

    resolver = Resolver(session, settings, now=utcnow())
    resolver.prefetch(key for item in items for key in item.identities)
    customers = [resolver.resolve(item.identities, source=CHANNEL).customer_id for item in items]
    resolver.flush()
    return [
        request_callback(
            session, customer_id=customer, reason="web_request", phone=item.phone,
            conversation_id=item.conversation_id, notes=item.notes, source_ref=item.source_ref,
        ).id
        for customer, item in zip(customers, items, strict=True)
    ]  # fmt: skip


def customer_of(session: Session, identities: Sequence[tuple[str, str]]) -> uuid.UUID | None:
    """The customer owning the strongest of these identities (the verified one comes last, so it wins)."""
    if not identities:
        return None
    owners: dict[tuple[str, str], uuid.UUID] = {}
    for kind, value, customer in session.execute(
        select(Identity.type, Identity.value, Identity.customer_id).where(
            Identity.value.in_({value for _, value in identities})
        )
    ):
        owners[(kind, value)] = customer
    for key in reversed(identities):
        if key in owners:
            return owners[key]
    return None


def widget_message(message: Message, *, secret: str | None = None) -> dict[str, Any]:
    """What the visitor's browser gets: never private notes, never internal ids of staff.

    With ``secret`` (the server's secret key) each file carries the signed link the visitor opens it by.
    """
    shown: dict[str, Any] = {
        "id": str(message.id),
        "conversation_id": str(message.conversation_id),
        "direction": message.direction,
        "sender_type": message.sender_type,
        "text": message.text,
        "attachments": [
            {"name": a.get("name"), "content_type": a.get("content_type"), "size": a.get("size")}
            for a in message.attachments or []
        ],
        "created_at": message.created_at.isoformat(),
    }
    if secret is not None:
        from omnicanal.channels.webchat.files import file_links

        for shown_file, link in zip(shown["attachments"], file_links(secret, message), strict=True):
            if link is not None:
                shown_file["url"] = link
    return shown


def history(
    session: Session, customer_id: uuid.UUID, *, limit: int = HISTORY_LIMIT, secret: str | None = None
) -> list[dict[str, Any]]:
    """The customer's latest web chat messages, oldest first."""
    rows = session.scalars(
        select(Message)
        .where(Message.customer_id == customer_id, Message.channel == CHANNEL, Message.private.is_(False))
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(limit)
    )
    return [widget_message(m, secret=secret) for m in reversed(list(rows))]
