"""Managing subscriptions and their deliveries. Keyword-only, session passed in, never commits."""

from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnicanal.db import utcnow, uuid7
from omnicanal.errors import Conflict, NotFound, ValidationFailed
from omnicanal.outbox import service as outbox
from omnicanal.outbox.models import OutboxAttempt, OutboxItem
from omnicanal.webhooks.events import TEST_EVENT, clean_event_types
from omnicanal.webhooks.fanout import CHANNEL, KIND, invalidate_after_commit
from omnicanal.webhooks.models import WebhookSubscription

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format marker, not a secret
SECRET_BYTES = 32
# after a rotation the old secret keeps signing (next to the new one) this long
ROTATION_GRACE = timedelta(hours=24)
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
MAX_URL = 2000


def new_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes, as the Standard Webhooks libraries read it."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def clean_url(url: str) -> str:
    url = url.strip()
    if len(url) > MAX_URL:
        raise ValidationFailed.on_field("url", f"at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValidationFailed.on_field("url", "is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise ValidationFailed.on_field("url", "must be an absolute https:// URL")
    if parts.scheme == "http" and host not in LOCAL_HOSTS:
        raise ValidationFailed.on_field("url", "must use https:// (plain http only for localhost)")
    if parts.fragment:
        raise ValidationFailed.on_field("url", "must not carry a #fragment")
    return url


def list_subscriptions(session: Session) -> list[WebhookSubscription]:
    return list(session.scalars(select(WebhookSubscription).order_by(WebhookSubscription.id)))


def get_subscription(session: Session, subscription_id: uuid.UUID) -> WebhookSubscription:
    subscription = session.get(WebhookSubscription, subscription_id)
    if subscription is None:
        raise NotFound(f"webhook subscription {subscription_id} not found")
    return subscription


def create_subscription(
    session: Session, *, url: str, event_types: list[str], description: str, actor: str
) -> WebhookSubscription:
    now = utcnow()
    subscription = WebhookSubscription(
        id=uuid7(),
        url=clean_url(url),
        description=description.strip(),
        event_types=clean_event_types(event_types),
        secret=new_secret(),
        active=True,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    session.add(subscription)
    session.flush()
    invalidate_after_commit(session)
    return subscription


def update_subscription(
    session: Session, *, subscription_id: uuid.UUID, changes: dict[str, Any]
) -> WebhookSubscription:
    """Partial update of url, event_types, description, active. Re-enabling clears ``disabled_reason``."""
    subscription = get_subscription(session, subscription_id)
    if changes.get("url") is not None:
        subscription.url = clean_url(changes["url"])
    if changes.get("event_types") is not None:
        subscription.event_types = clean_event_types(changes["event_types"])
    if changes.get("description") is not None:
        subscription.description = str(changes["description"]).strip()
    active = changes.get("active")
    if active is True and not subscription.active:
        subscription.active = True
        subscription.disabled_reason = None
        subscription.disabled_at = None
    elif active is False and subscription.active:
        disable(session, subscription, reason="disabled through the API")
    subscription.updated_at = utcnow()
    session.flush()
    invalidate_after_commit(session)
    return subscription


def disable(session: Session, subscription: WebhookSubscription, *, reason: str) -> None:
    subscription.active = False
    subscription.disabled_reason = reason
    subscription.disabled_at = utcnow()
    subscription.updated_at = subscription.disabled_at
    invalidate_after_commit(session)


def delete_subscription(session: Session, *, subscription_id: uuid.UUID) -> None:
    """Gone for good; its pending deliveries fail (permanently) when the worker reaches them."""
    session.delete(get_subscription(session, subscription_id))
    session.flush()
    invalidate_after_commit(session)


def rotate_secret(session: Session, *, subscription_id: uuid.UUID) -> WebhookSubscription:
    subscription = get_subscription(session, subscription_id)
    now = utcnow()
    subscription.previous_secret = subscription.secret
    subscription.previous_secret_expires_at = now + ROTATION_GRACE
    subscription.secret = new_secret()
    subscription.updated_at = now
    session.flush()
    return subscription


@dataclass(frozen=True)
class SigningTarget:
    """What the transport needs to send one delivery."""

    url: str
    secrets: tuple[str, ...]
    active: bool


def signing_target(session: Session, subscription_id: uuid.UUID, *, now: datetime) -> SigningTarget | None:
    subscription = session.get(WebhookSubscription, subscription_id)
    if subscription is None:
        return None
    keys = [subscription.secret]
    expires = subscription.previous_secret_expires_at
    if subscription.previous_secret and expires is not None and expires > now:
        keys.append(subscription.previous_secret)
    return SigningTarget(url=subscription.url, secrets=tuple(keys), active=subscription.active)


def send_test(session: Session, *, subscription_id: uuid.UUID, actor: str) -> OutboxItem:
    """A ``webhook.test`` delivery; sent even to a disabled subscription, to check a repaired endpoint."""
    subscription = get_subscription(session, subscription_id)
    return outbox.enqueue(
        session,
        kind=KIND,
        channel=CHANNEL,
        payload={
            "subscription_id": str(subscription.id),
            "url": subscription.url,
            "type": TEST_EVENT,
            "timestamp": utcnow().isoformat(),
            "data": {"subscription_id": str(subscription.id), "requested_by": actor},
        },
        subscription_id=subscription.id,
        max_attempts=1,
    )


def list_deliveries(
    session: Session, *, subscription_id: uuid.UUID, state: str | None, limit: int, cursor: str | None
) -> tuple[list[tuple[OutboxItem, list[OutboxAttempt]]], str | None]:
    """Newest first, each with its attempt log (one query for all the page's attempts)."""
    get_subscription(session, subscription_id)
    items, next_cursor = outbox.list_items(
        session, state=state, kind=KIND, subscription_id=subscription_id, limit=limit, cursor=cursor
    )
    log: dict[uuid.UUID, list[OutboxAttempt]] = {item.id: [] for item in items}
    if items:
        for attempt in session.scalars(
            select(OutboxAttempt).where(OutboxAttempt.item_id.in_(list(log))).order_by(OutboxAttempt.id)
        ):
            log[attempt.item_id].append(attempt)
    return [(item, log[item.id]) for item in items], next_cursor


def get_delivery(session: Session, item_id: uuid.UUID) -> OutboxItem:
    item = session.get(OutboxItem, item_id)
    if item is None or item.kind != KIND:
        raise NotFound(f"webhook delivery {item_id} not found")
    return item


def replay_delivery(session: Session, *, item_id: uuid.UUID) -> OutboxItem:
    """Send a finished delivery again as a new delivery (new ``webhook-id``) pointing at the original."""
    item = get_delivery(session, item_id)
    if item.subscription_id is None:
        raise Conflict("this delivery has no subscription")
    subscription = session.get(WebhookSubscription, item.subscription_id)
    if subscription is None:
        raise Conflict("the subscription of this delivery was deleted")
    if not subscription.active:
        raise Conflict(
            f"the subscription is disabled ({subscription.disabled_reason}); re-enable it first",
            subscription_id=str(subscription.id),
        )
    return outbox.replay(session, item_id=item.id)


def delivery_dead(session: Session, item: OutboxItem) -> None:
    """Outbox outcome: an endpoint that answered 410 Gone does not want any more deliveries."""
    if item.subscription_id is None:
        return
    last = session.scalar(
        select(OutboxAttempt.status_code)
        .where(OutboxAttempt.item_id == item.id)
        .order_by(OutboxAttempt.id.desc())
        .limit(1)
    )
    if last != 410:
        return
    subscription = session.get(WebhookSubscription, item.subscription_id)
    if subscription is not None and subscription.active:
        disable(
            session,
            subscription,
            reason=f"the endpoint answered 410 Gone to delivery {item.id} at {utcnow().isoformat()}",
        )
