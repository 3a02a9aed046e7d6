"""What every inbound webhook shares.

The order is always: find the configured channel (404), verify the request with the channel's
secret before parsing anything (401/403, logged without personal data), parse, then hand the
messages to the ingest writer, which stores them in the next shared transaction and answers as
soon as it has committed: an acknowledged message is never lost, and a provider's retry of a
message already stored (same provider message id) is recognized as a duplicate by
``conversations.inbound.receive`` through the ``(channel, external_id)`` key. Anything slow that
is not needed to store the message (fetching media, replies) happens after the answer, through
the outbox.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from omnicanal.channels.delivery import before_statuses, hold_unknown
from omnicanal.channels.service import ConfiguredChannel, directory
from omnicanal.conversations.delivery import update_delivery_status
from omnicanal.conversations.inbound import InboundInput, InboundResult
from omnicanal.db import Database
from omnicanal.errors import DomainError, Forbidden, NotFound, PayloadTooLarge, Unauthenticated
from omnicanal.timeline.writer import IngestWriter

log = logging.getLogger("omnicanal.channels.webhooks")
MAX_BODY_BYTES = 2 * 1024 * 1024


async def configured(request: Request, channel_id: str, type_name: str) -> ConfiguredChannel:
    """The enabled channel of this type with this id, or a 404 that tells nothing more."""
    try:
        key = uuid.UUID(channel_id)
    except ValueError:
        raise NotFound("no such channel") from None
    db: Database = request.app.state.database
    found_directory = directory(db)
    hit, found = found_directory.cached(key)
    if not hit:
        found = await run_in_threadpool(found_directory.get, key)
    if found is None or found.type != type_name:
        raise NotFound("no such channel")
    return found


async def raw_body(request: Request, *, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    body = await request.body()
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
    return body


def rejected(channel: ConfiguredChannel, reason: str, *, status: int = 403) -> DomainError:
    """The error to raise for a forged, replayed or unsigned request; logged with ids only."""
    log.warning("webhook rejected: type=%s channel=%s reason=%s", channel.type, channel.id, reason)
    if status == 401:
        return Unauthenticated("the request is not signed")
    return Forbidden("the request signature is not valid")


def hmac_hex(key: str, body: bytes, algorithm: str = "sha256") -> str:
    return hmac.new(key.encode(), body, getattr(hashlib, algorithm)).hexdigest()


def same(expected: str, given: str) -> bool:
    """Constant-time comparison of two signatures."""
    return hmac.compare_digest(expected.encode(), given.encode())


async def store(request: Request, items: Sequence[InboundInput]) -> list[InboundResult]:
    """Store messages in the ingest writer's next transaction; returns when they are committed."""
    if not items:
        return []
    writer: IngestWriter = request.app.state.ingest_writer
    results: list[InboundResult] = await writer.run(request.app.state.receive_messages, list(items))
    for item, result in zip(items, results, strict=True):
        if result.error is not None:
            # a message we cannot take (e.g. a blocked identity) must not make the provider retry forever
            log.info("inbound %s message %s not stored: %s", item.channel, item.external_id[:80], result.error.slug)
    return results


@dataclass(frozen=True)
class StatusUpdate:
    provider_message_id: str
    status: str  # sent / delivered / read / failed
    reason: str | None = None


def apply_statuses(session: Session, updates: Sequence[StatusUpdate]) -> list[bool]:
    """Provider status callbacks; True where a message was found."""
    found = []
    before_statuses(session, [update.provider_message_id for update in updates])
    for update in updates:
        message = update_delivery_status(
            session, provider_message_id=update.provider_message_id, status=update.status, reason=update.reason
        )
        if message is None:  # a later part of a reply, or an id not recorded yet: see channels.delivery
            owner = hold_unknown(
                session, provider_message_id=update.provider_message_id, status=update.status, reason=update.reason
            )
            found.append(owner is not None)
            continue
        found.append(True)
    return found


async def store_statuses(request: Request, updates: Sequence[StatusUpdate]) -> list[bool]:
    if not updates:
        return []
    writer: IngestWriter = request.app.state.ingest_writer
    return await writer.run(apply_statuses, list(updates))


async def in_writer(request: Request, handler: Callable[[Session, Sequence[Any]], list[Any]],
                    items: Sequence[Any]) -> list[Any]:  # fmt: skip
    """Any other write a webhook makes (consent changes, links), in the writer's next transaction."""
    writer: IngestWriter = request.app.state.ingest_writer
    return await writer.run(handler, list(items))
