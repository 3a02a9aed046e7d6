"""Files a provider holds for a received message, fetched after the webhook was answered.

The webhook queues an outbox item of kind ``media`` (payload: message id, attachment index and the
provider's file id); the channel's transport downloads the file and calls :func:`attach_file`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from omnicanal.conversations.inbound import InboundInput, InboundResult
from omnicanal.conversations.models import Message
from omnicanal.db import Database, uuid7
from omnicanal.outbox.models import OutboxItem
from omnicanal.outbox.service import enqueue
from omnicanal.outbox.transports import DeliveryError, classify_response
from omnicanal.storage import blob_store, type_allowed


def fetch_list(items: Sequence[InboundInput], results: Sequence[InboundResult], id_key: str) -> list[tuple[Any, ...]]:
    """(message id, customer id, index, file id, channel id, channel, duplicate) for each provider file of the
    stored messages. A provider's retry of a message already stored is in the list too: should queueing its
    fetches have failed the first time (the provider saw an error, so it retries), they are queued now."""
    return [
        (result.message_id, result.customer_id, index, attachment[id_key], item.channel_instance_id, item.channel,
         result.duplicate)
        for item, result in zip(items, results, strict=True)
        if result.message_id is not None
        for index, attachment in enumerate(item.attachments)
        if attachment.get(id_key)
    ]  # fmt: skip


def queue_fetches(session: Session, items: Sequence[tuple[Any, ...]]) -> list[None]:
    for message_id, customer_id, index, file_id, channel_id, channel, duplicate in items:
        if duplicate and not _still_to_fetch(session, message_id, index):
            continue
        enqueue(
            session, kind="media", channel=channel, customer_id=customer_id, max_attempts=5,
            payload={"message_id": str(message_id), "index": index, "file_id": file_id,
                     "channel_instance_id": str(channel_id)},
        )  # fmt: skip
    return [None for _ in items]


def _still_to_fetch(session: Session, message_id: uuid.UUID, index: int) -> bool:
    """Whether a retried message's file is neither stored nor queued (its fetch was queued with the message's
    first delivery, under the customer who owned the message then)."""
    message = session.get(Message, message_id)
    if message is None or index >= len(message.attachments or []) or message.attachments[index].get("key"):
        return False  # erased meanwhile, or already stored
    owners = {message.source_customer_id, message.customer_id}
    queued = session.scalars(
        select(OutboxItem.payload).where(OutboxItem.kind == "media", OutboxItem.customer_id.in_(owners))
    )
    return not any(payload.get("message_id") == str(message_id) and payload.get("index") == index for payload in queued)


def attach_file(database: Database, payload: dict[str, Any], data: bytes, content_type: str) -> str | None:
    """Store the file and point the message's attachment at it; None when the message is gone or erased."""
    # a provider's file id, or the last part of its URL's path (Twilio and Meta's Messenger give a URL)
    given = str(payload["file_id"])
    name = (urlsplit(given).path if "://" in given else given).rstrip("/").rsplit("/", 1)[-1] or "file"
    key = f"{uuid7().hex}/{name[:80]}".replace("..", "_")
    store = blob_store(database.settings)
    store.put(key, data, content_type)
    with database.write() as session:
        message = session.get(Message, uuid.UUID(payload["message_id"]))
        index = int(payload["index"])
        if message is None or index >= len(message.attachments or []):  # erased meanwhile
            store.delete(key)
            return None
        attachments = [dict(a) for a in message.attachments]
        attachments[index] |= {"key": key, "size": len(data), "content_type": content_type,
                               "sha256": hashlib.sha256(data).hexdigest()}  # fmt: skip
        message.attachments = attachments
        flag_modified(message, "attachments")
    return key


def fetch_into_store(database: Database, payload: dict[str, Any], client: httpx.Client, **get: Any) -> str | None:
    """GET the file at the payload's URL (``file_id``) and :func:`attach_file` it, after checking its type and size
    (a refused file is a permanent failure: fetching it again would not change it)."""
    try:
        download = client.get(str(payload["file_id"]), follow_redirects=True, **get)
        classify_response(download)
    except httpx.HTTPError as exc:
        raise DeliveryError(type(exc).__name__) from None  # a provider's URL may hold a token: never log it
    settings = database.settings
    content_type = download.headers.get("content-type", "application/octet-stream").split(";")[0].strip()
    if not type_allowed(content_type, settings.attachment_types):
        raise DeliveryError(f"{content_type!r} is not in OMNICANAL_ATTACHMENT_TYPES", permanent=True)
    if len(download.content) > settings.attachment_max_bytes:
        raise DeliveryError("the file is larger than OMNICANAL_ATTACHMENT_MAX_BYTES", permanent=True)
    return attach_file(database, payload, download.content, content_type)
