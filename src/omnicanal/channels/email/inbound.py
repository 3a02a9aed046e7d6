"""Taking in email from any source (the SMTP/LMTP receiver, IMAP polling): bounces, threading, storing.

``prepare`` parses and stores the files (no database); ``receive_emails`` is a batch handler for the
ingest writer, so many emails arriving together cost one transaction.

Threading: the sender's address finds the customer, and the customer's one conversation takes the
message (conversations/inbound.py). When the sender is not known, a signed reply address or the
In-Reply-To / References headers name the conversation, and the message joins that customer's
conversation without the unknown address being added to the customer: an address in a header is a
claim, not a proof.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from omnicanal.channels.email.models import EmailHeader
from omnicanal.channels.email.parsing import ParsedEmail, parse_email
from omnicanal.channels.email.reply_address import conversation_of
from omnicanal.conversations.delivery import update_delivery_status
from omnicanal.conversations.inbound import InboundInput, InboundResult, receive
from omnicanal.conversations.models import Conversation, Message
from omnicanal.customers.identities import InvalidIdentity, normalize
from omnicanal.customers.models import Identity
from omnicanal.db import utcnow
from omnicanal.errors import DomainError
from omnicanal.settings import Settings
from omnicanal.storage import discard_attachments, store_attachments

log = logging.getLogger(__name__)
CHANNEL = "email"


@dataclass
class IncomingEmail:
    parsed: ParsedEmail
    recipients: list[str]  # the envelope's RCPT TO, or the headers' To/Cc when polled
    attachments: list[dict[str, Any]] = field(default_factory=list)  # stored records
    notes: list[str] = field(default_factory=list)  # files not accepted, said in the message
    channel_instance_id: uuid.UUID | None = None  # the configured email channel it arrived for


@dataclass
class EmailOutcome:
    """``stored``, ``duplicate``, ``bounce``, ``bounce_unmatched``, ``auto_reply_dropped`` or ``rejected``."""

    outcome: str
    message_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None
    customer_id: uuid.UUID | None = None
    detail: str = ""


def prepare(
    raw: bytes, *, recipients: Sequence[str] = (), settings: Settings, channel_instance_id: uuid.UUID | None = None
) -> IncomingEmail:
    """Parse, and store the files the settings accept (the others are named in the text instead)."""
    parsed = parse_email(raw)
    incoming = IncomingEmail(parsed, [r.lower() for r in recipients] or list(parsed.recipients))
    incoming.channel_instance_id = channel_instance_id
    for file in parsed.attachments:
        record = {"name": file["name"][:200], "content_type": file["content_type"][:100],
                  "data": base64.b64encode(file["data"]).decode()}  # fmt: skip
        try:
            incoming.attachments.extend(store_attachments([record], settings=settings))
        except DomainError as exc:
            incoming.notes.append(f"[attachment {file['name'][:100]!r} not accepted: {exc.detail}]")
    return incoming


def discard(incoming: IncomingEmail, *, settings: Settings) -> None:
    discard_attachments(incoming.attachments, settings=settings)


def _address(raw: str | None, settings: Settings) -> str | None:
    if not raw:
        return None
    try:
        return normalize("email", raw, settings.default_region)
    except InvalidIdentity:
        return None


def _threads(session: Session, items: Sequence[IncomingEmail], secret: str) -> dict[int, Conversation]:
    """Per item (by index): the conversation its reply address or its headers point to."""
    by_token: dict[int, uuid.UUID] = {}
    header_ids: set[str] = set()
    for index, item in enumerate(items):
        for recipient in item.recipients:
            found = conversation_of(secret, recipient)
            if found is not None:
                by_token[index] = found
                break
        else:
            header_ids.update(item.parsed.thread_ids)
    by_header: dict[str, uuid.UUID] = {}
    ids = sorted(header_ids) if header_ids else []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for header, conversation in session.execute(
            select(EmailHeader.header_id, EmailHeader.conversation_id).where(EmailHeader.header_id.in_(chunk))
        ):
            by_header[header] = conversation
        for provider_id, conversation in session.execute(
            select(Message.provider_message_id, Message.conversation_id).where(
                Message.provider_message_id.in_(chunk), Message.channel == CHANNEL
            )
        ):
            by_header[str(provider_id)] = conversation
    wanted: dict[int, uuid.UUID] = dict(by_token)
    for index, item in enumerate(items):
        if index not in wanted:
            found_id = next((by_header[h] for h in item.parsed.thread_ids if h in by_header), None)
            if found_id is not None:
                wanted[index] = found_id
    if not wanted:
        return {}
    conversations = {
        c.id: c for c in session.scalars(select(Conversation).where(Conversation.id.in_(set(wanted.values()))))
    }
    return {index: conversations[cid] for index, cid in wanted.items() if cid in conversations}


def _bounce(session: Session, item: IncomingEmail) -> EmailOutcome:
    bounce = item.parsed.bounce
    assert bounce is not None
    if not bounce.failed:
        return EmailOutcome("bounce", detail=f"delivery status {bounce.action}: nothing to change")
    message = None
    if bounce.original_message_id:
        message = update_delivery_status(
            session, provider_message_id=bounce.original_message_id, status="failed", reason=bounce.reason()
        )
    if message is None:
        log.info("a bounce for a message we do not know (%s)", (bounce.original_message_id or "no id")[:80])
        return EmailOutcome("bounce_unmatched")
    return EmailOutcome("bounce", message_id=message.id, conversation_id=message.conversation_id,
                        customer_id=message.customer_id)  # fmt: skip


def receive_emails(session: Session, items: Sequence[IncomingEmail], *, settings: Settings) -> list[EmailOutcome]:
    outcomes: list[EmailOutcome | None] = [None] * len(items)
    mail = [(i, item) for i, item in enumerate(items) if item.parsed.bounce is None]
    for index, item in enumerate(items):
        if item.parsed.bounce is not None:
            outcomes[index] = _bounce(session, item)
    threads = _threads(session, [item for _, item in mail], settings.secret_key)
    senders = {i: _address(item.parsed.sender, settings) for i, item in mail}
    known = set(
        session.scalars(
            select(Identity.value).where(
                Identity.type == "email", Identity.value.in_({s for s in senders.values() if s})
            )
        )
    )
    inputs: list[InboundInput] = []
    positions: list[tuple[int, IncomingEmail]] = []
    now = utcnow()
    for position, (index, item) in enumerate(mail):
        parsed = item.parsed
        sender = senders[index]
        thread = threads.get(position)
        identities: list[tuple[str, str]] = []
        customer_id: uuid.UUID | None = None
        if sender is not None and (sender in known or thread is None):
            identities = [("email", sender)]
        elif thread is not None:
            customer_id = thread.customer_id
        else:
            outcomes[index] = EmailOutcome("rejected", detail="no sender address and no conversation to join")
            continue
        if parsed.auto_reply and sender not in known and thread is None:
            outcomes[index] = EmailOutcome("auto_reply_dropped")  # nobody we talk to: no customer made for it
            continue
        text = "\n\n".join(part for part in (parsed.text, *item.notes) if part)
        if not text.strip() and not item.attachments:
            text = parsed.subject or "(empty message)"
        occurred_at = parsed.date if parsed.date is not None and parsed.date <= now else now
        inputs.append(
            InboundInput(
                channel=CHANNEL,
                identities=identities,
                customer_id=customer_id,
                text=text[:20_000],
                attachments=item.attachments,
                external_id=parsed.message_id,
                occurred_at=occurred_at,
                reopens=not parsed.auto_reply,
                channel_instance_id=item.channel_instance_id,
            )
        )
        positions.append((index, item))
    results: list[InboundResult] = receive(session, inputs, settings=settings) if inputs else []
    headers = []
    for (index, item), result in zip(positions, results, strict=True):
        if result.error is not None:
            outcomes[index] = EmailOutcome("rejected", detail=result.error.detail)
        elif result.dropped:
            outcomes[index] = EmailOutcome("auto_reply_dropped", customer_id=result.customer_id)
        elif result.duplicate:
            outcomes[index] = EmailOutcome("duplicate", result.message_id, result.conversation_id, result.customer_id)
        else:
            assert result.message_id and result.conversation_id and result.customer_id
            outcomes[index] = EmailOutcome("stored", result.message_id, result.conversation_id, result.customer_id)
            headers.append(
                {
                    "message_id": result.message_id, "conversation_id": result.conversation_id,
                    "customer_id": result.customer_id, "source_customer_id": result.customer_id,
                    "header_id": item.parsed.message_id[:250], "subject": item.parsed.subject[:500],
                    "created_at": now,
                }
            )  # fmt: skip
    if headers:
        session.execute(insert(EmailHeader), headers)
    return [outcome or EmailOutcome("rejected") for outcome in outcomes]
