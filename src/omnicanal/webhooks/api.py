from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from omnicanal.access.roles import Permission
from omnicanal.access.service import Principal
from omnicanal.idempotency import run_idempotent
from omnicanal.outbox.models import OutboxAttempt, OutboxItem
from omnicanal.outbox.schemas import AttemptOut
from omnicanal.outbox.service import attempts_of
from omnicanal.web import ReadSession, WriteSession, require
from omnicanal.webhooks import service
from omnicanal.webhooks.models import WebhookSubscription
from omnicanal.webhooks.schemas import (
    DeliveryOut,
    DeliveryPage,
    SecretOut,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionList,
    SubscriptionOut,
    SubscriptionPatch,
)

router = APIRouter(prefix="/api/v1", tags=["webhooks"])
Manager = Annotated[Principal, Depends(require(Permission.WEBHOOKS_MANAGE))]


def subscription_out(subscription: WebhookSubscription) -> SubscriptionOut:
    return SubscriptionOut.model_validate(subscription, from_attributes=True)


def delivery_out(item: OutboxItem, attempts: list[OutboxAttempt]) -> DeliveryOut:
    payload = item.payload or {}
    return DeliveryOut(
        id=item.id,
        subscription_id=item.subscription_id,
        type=str(payload.get("type", "")),
        timestamp=str(payload.get("timestamp", "")),
        data=payload.get("data"),
        state=item.state,
        attempts=item.attempts,
        max_attempts=item.max_attempts,
        next_attempt_at=item.next_attempt_at,
        last_error=item.last_error,
        replay_of=item.replay_of,
        created_at=item.created_at,
        sent_at=item.sent_at,
        attempt_log=[AttemptOut.model_validate(a, from_attributes=True) for a in attempts],
    )


@router.get("/webhook-subscriptions", response_model=SubscriptionList)
def list_subscriptions(session: ReadSession, _: Manager) -> SubscriptionList:
    return SubscriptionList(items=[subscription_out(s) for s in service.list_subscriptions(session)])


@router.post("/webhook-subscriptions", status_code=201, response_model=SubscriptionCreated)
def create_subscription(request: Request, data: SubscriptionCreate, session: WriteSession, principal: Manager) -> Any:
    """The response is the only time the signing secret is shown (rotate it to see a new one)."""

    def produce() -> tuple[int, Any]:
        subscription = service.create_subscription(
            session, url=data.url, event_types=data.event_types, description=data.description, actor=principal.label
        )
        out = SubscriptionCreated(**subscription_out(subscription).model_dump(), secret=subscription.secret)
        return 201, out.model_dump(mode="json")

    return run_idempotent(request, session, principal, data.model_dump(mode="json"), produce)


@router.get("/webhook-subscriptions/{subscription_id}", response_model=SubscriptionOut)
def get_subscription(subscription_id: uuid.UUID, session: ReadSession, _: Manager) -> SubscriptionOut:
    return subscription_out(service.get_subscription(session, subscription_id))


@router.patch("/webhook-subscriptions/{subscription_id}", response_model=SubscriptionOut)
def patch_subscription(
    subscription_id: uuid.UUID, changes: SubscriptionPatch, session: WriteSession, _: Manager
) -> SubscriptionOut:
    subscription = service.update_subscription(
        session, subscription_id=subscription_id, changes=changes.model_dump(exclude_unset=True)
    )
    return subscription_out(subscription)


@router.delete("/webhook-subscriptions/{subscription_id}", status_code=204)
def delete_subscription(subscription_id: uuid.UUID, session: WriteSession, _: Manager) -> Response:
    service.delete_subscription(session, subscription_id=subscription_id)
    return Response(status_code=204)


@router.post("/webhook-subscriptions/{subscription_id}/rotate-secret", response_model=SecretOut)
def rotate_secret(subscription_id: uuid.UUID, session: WriteSession, _: Manager) -> SecretOut:
    subscription = service.rotate_secret(session, subscription_id=subscription_id)
    return SecretOut(
        id=subscription.id,
        secret=subscription.secret,
        previous_secret_expires_at=subscription.previous_secret_expires_at,
    )


@router.post("/webhook-subscriptions/{subscription_id}/test", status_code=201, response_model=DeliveryOut)
def send_test(subscription_id: uuid.UUID, request: Request, session: WriteSession, principal: Manager) -> Any:
    """Queue a ``webhook.test`` delivery (also to a disabled subscription, to check a repaired endpoint)."""

    def produce() -> tuple[int, Any]:
        item = service.send_test(session, subscription_id=subscription_id, actor=principal.label)
        session.flush()
        return 201, delivery_out(item, []).model_dump(mode="json")

    return run_idempotent(request, session, principal, {"subscription_id": str(subscription_id)}, produce)


@router.get("/webhook-subscriptions/{subscription_id}/deliveries", response_model=DeliveryPage)
def list_deliveries(
    subscription_id: uuid.UUID, session: ReadSession, _: Manager, state: str | None = None, limit: int = 50,
    cursor: str | None = None,
) -> DeliveryPage:  # fmt: skip
    rows, next_cursor = service.list_deliveries(
        session, subscription_id=subscription_id, state=state, limit=limit, cursor=cursor
    )
    return DeliveryPage(items=[delivery_out(item, attempts) for item, attempts in rows], next_cursor=next_cursor)


@router.get("/webhook-deliveries/{item_id}", response_model=DeliveryOut)
def get_delivery(item_id: uuid.UUID, session: ReadSession, _: Manager) -> DeliveryOut:
    item = service.get_delivery(session, item_id)
    return delivery_out(item, attempts_of(session, item.id))


@router.post("/webhook-deliveries/{item_id}/replay", status_code=201, response_model=DeliveryOut)
def replay_delivery(item_id: uuid.UUID, request: Request, session: WriteSession, principal: Manager) -> Any:
    """Send a finished delivery again, as a new delivery (``replay_of`` names the original)."""

    def produce() -> tuple[int, Any]:
        item = service.replay_delivery(session, item_id=item_id)
        session.flush()
        return 201, delivery_out(item, []).model_dump(mode="json")

    return run_idempotent(request, session, principal, {"item_id": str(item_id)}, produce)
