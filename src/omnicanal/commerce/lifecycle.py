"""The order state machine (docs/commerce.md draws it) and how every change is announced.

A change of status goes through :func:`move`, which refuses an illegal transition with a clear
error, and :func:`announce`, which records the timeline event, publishes the domain event for
other domains (loyalty listens to ``order.paid`` and ``order.returned``) and offers the customer
a notification, all in the caller's transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from omnicanal import dispatch
from omnicanal.commerce.models import Order
from omnicanal.commerce.rows import update_loaded
from omnicanal.db import utcnow
from omnicanal.errors import Conflict
from omnicanal.timeline.service import record_event

TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"paid", "ready_for_pickup", "cancelled", "expired"}),
    "paid": frozenset({"partially_fulfilled", "fulfilled", "ready_for_pickup", "cancelled"}),
    "partially_fulfilled": frozenset({"partially_fulfilled", "fulfilled", "partially_returned"}),
    "ready_for_pickup": frozenset({"collected", "expired", "cancelled"}),
    "fulfilled": frozenset({"partially_returned", "returned"}),
    "collected": frozenset({"partially_returned", "returned"}),
    "partially_returned": frozenset({"partially_returned", "returned"}),
    "returned": frozenset(),
    "cancelled": frozenset(),
    "expired": frozenset(),
}
STATUSES = tuple(TRANSITIONS)
OPEN_STATUSES = ("pending", "paid", "partially_fulfilled", "ready_for_pickup")

# the status an order reaches -> the domain event published
EVENTS = {
    "paid": "order.paid",
    "partially_fulfilled": "order.partially_fulfilled",
    "fulfilled": "order.fulfilled",
    "ready_for_pickup": "order.ready_for_pickup",
    "collected": "order.collected",
    "partially_returned": "order.returned",
    "returned": "order.returned",
    "cancelled": "order.cancelled",
    "expired": "order.expired",
}


class IllegalTransition(Conflict):
    slug = "illegal-transition"
    title = "The order cannot do that in its current status"


def check(order: Order, target: str, *, action: str) -> None:
    if target not in TRANSITIONS[order.status]:
        allowed = ", ".join(sorted(TRANSITIONS[order.status])) or "nothing (it is final)"
        raise IllegalTransition(
            f"cannot {action}: the order is {order.status}; from {order.status} it can only become {allowed}",
            order_status=order.status,
            wanted=target,
        )


def move(session: Session, order: Order, target: str, *, action: str, actor: str, **details: Any) -> None:
    check(order, target, action=action)
    previous = order.status
    update_loaded(session, order, status=target, updated_at=utcnow())
    announce(session, order, EVENTS[target], actor=actor, previous=previous, **details)


def moved(session: Session, order: Order, *, previous: str, actor: str, **details: Any) -> None:
    """Announce the status an order has just reached, set by the caller with :func:`check`'s leave (a payment
    changes its amount, payment status and status in one statement)."""
    announce(session, order, EVENTS[order.status], actor=actor, previous=previous, **details)


def payload(order: Order, **details: Any) -> dict[str, Any]:
    return {
        "order_id": str(order.id),
        "number": order.number,
        "customer_id": str(order.customer_id),
        "channel": order.channel,
        "status": order.status,
        "payment_status": order.payment_status,
        "currency": order.currency,
        "total": order.total,
        "paid_amount": order.paid_amount,
        "refunded_amount": order.refunded_amount,
        "fulfillment_type": order.fulfillment_type,
        **details,
    }


def announce(session: Session, order: Order, event: str, *, actor: str, **details: Any) -> None:
    """Timeline event + domain event + the customer's notification, in this transaction."""
    from omnicanal.commerce.notifications import notify_customer

    data = payload(order, **details)
    session.flush()
    record_event(
        session,
        customer_id=order.customer_id,
        type=event,
        channel=_timeline_channel(order.channel),
        properties={k: v for k, v in data.items() if k != "customer_id"} | {"actor": actor},
    )
    dispatch.publish(session, event, data)
    notify_customer(session, order, event, details)


def _timeline_channel(channel: str) -> str:
    from omnicanal.timeline.schemas import EVENT_CHANNELS

    return channel if channel in EVENT_CHANNELS else "web"  # "chat": the web chat
