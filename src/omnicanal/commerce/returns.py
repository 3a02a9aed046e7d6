"""Returns anywhere, under one policy: an online order back in a store, a store purchase back by mail.

The policy (window and exclusions, from settings) is checked here and only here, whichever channel
the return comes through. The refund is what the customer paid for the units (their share of the
line's total, discounts included); it goes back to the original payment or becomes store credit.
Units come back on the shelf of the location that received them, unless they came back damaged.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from omnicanal.commerce import lifecycle, stores
from omnicanal.commerce.models import Category, Fulfillment, Location, Order, Product, Return, StoreCredit
from omnicanal.commerce.orders import get_order, lines_of
from omnicanal.commerce.payments import refund, refundable_amount
from omnicanal.commerce.schemas import ReturnIn, ReturnOut
from omnicanal.db import utcnow, uuid7
from omnicanal.errors import FieldError, ValidationFailed
from omnicanal.settings import Settings


class ReturnRefused(ValidationFailed):
    slug = "return-refused"
    title = "The return is not accepted"


def _delivered_at(session: Session, order: Order) -> datetime:
    """When the last goods reached the customer: a shipment when it left, a pickup when it was handed over."""
    reached = func.coalesce(Fulfillment.collected_at, Fulfillment.created_at)
    last = session.scalar(
        select(reached)
        .where(Fulfillment.order_id == order.id, Fulfillment.status.in_(("shipped", "collected")))
        .order_by(reached.desc())
        .limit(1)
    )
    return last or order.created_at


def _receiving_location(session: Session, data: ReturnIn, order: Order) -> Location:
    if data.store_id is not None:
        location = session.get(Location, data.store_id)
        if location is None or not location.active:
            raise ValidationFailed.on_field("store_id", f"unknown store {data.store_id}")
        return location
    if data.channel in ("store",):
        raise ValidationFailed.on_field("store_id", "a return in a store names the store receiving it")
    # by mail: back to the first warehouse (else the store the order came from)
    warehouse = session.scalar(
        select(Location).where(Location.kind == "warehouse", Location.active.is_(True)).order_by(Location.code)
    )
    if warehouse is not None:
        return warehouse
    if order.location_id is not None:
        found = session.get(Location, order.location_id)
        if found is not None:
            return found
    raise ValidationFailed.on_field("store_id", "name the location receiving the goods")


def create_return(session: Session, data: ReturnIn, *, settings: Settings, actor: str) -> Return:
    order = get_order(session, data.order_id, for_update=True)
    if order.status not in ("fulfilled", "collected", "partially_fulfilled", "partially_returned"):
        raise ReturnRefused(
            f"an order that is {order.status} has nothing handed over to return", order_status=order.status
        )
    now = utcnow()
    delivered = _delivered_at(session, order)
    deadline = delivered + timedelta(days=settings.commerce_return_days)
    if now > deadline:
        raise ReturnRefused(
            f"the return window of {settings.commerce_return_days} days ended on {deadline.date().isoformat()}",
            errors=[FieldError("order_id", "outside the return window")],
        )
    location = _receiving_location(session, data, order)
    lines = {line.sku: line for line in lines_of(session, order.id)}
    excluded = set(settings.commerce_return_exclusions)
    categories = dict(session.execute(select(Category.id, Category.slug)).all()) if excluded else {}
    errors: list[FieldError] = []
    asked: dict[str, int] = {}
    for index, item in enumerate(data.lines):
        here = f"lines[{index}]"
        line = lines.get(item.sku)
        if line is None:
            errors.append(FieldError(f"{here}.sku", f"{item.sku} was not bought in this order"))
            continue
        if item.quantity < 1:
            errors.append(FieldError(f"{here}.quantity", "must be at least 1"))
            continue
        returnable = line.fulfilled_quantity - line.returned_quantity - asked.get(item.sku, 0)
        if item.quantity > returnable:
            errors.append(
                FieldError(f"{here}.quantity", f"only {max(returnable, 0)} of {item.sku} can still be returned")
            )
            continue
        if excluded:
            product = session.get(Product, line.product_id)
            slug = categories.get(product.category_id) if product and product.category_id else None
            if item.sku in excluded or (slug and slug in excluded):
                errors.append(FieldError(here, f"{item.sku} cannot be returned (excluded by the return policy)"))
                continue
        asked[item.sku] = asked.get(item.sku, 0) + item.quantity
    if errors:
        raise ReturnRefused("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)

    amount = 0
    out_lines = []
    for item in data.lines:
        line = lines[item.sku]
        # the units' share of what the customer paid for the line; cumulative, so the parts add up to the total
        already = line.total * line.returned_quantity // line.quantity
        share = line.total * (line.returned_quantity + item.quantity) // line.quantity - already
        line.returned_quantity += item.quantity
        amount += share
        restocked = item.condition != "damaged"
        if restocked:
            stores.restock(session, location_id=location.id, sku=item.sku, quantity=item.quantity)
        out_lines.append(
            {
                "sku": item.sku,
                "quantity": item.quantity,
                "reason": item.reason,
                "condition": item.condition,
                "refund": share,
                "restocked": restocked,
            }
        )
    amount = min(amount, refundable_amount(session, order))
    record = Return(
        id=uuid7(),
        order_id=order.id,
        customer_id=order.customer_id,
        source_customer_id=order.customer_id,
        channel=data.channel,
        location_id=location.id,
        lines=out_lines,
        refund_method=data.refund_method,
        refund_amount=amount,
        currency=order.currency,
        created_by=actor,
        created_at=now,
    )
    session.add(record)
    session.flush()
    if amount > 0:
        if data.refund_method == "original":
            refund(
                session, order_id=order.id, amount=amount, actor=actor, reference=f"return {record.id}", announce=False
            )
        else:
            session.add(
                StoreCredit(
                    id=uuid7(),
                    customer_id=order.customer_id,
                    source_customer_id=order.customer_id,
                    amount=amount,
                    currency=order.currency,
                    reason=f"return of order {order.number}",
                    return_id=record.id,
                    created_at=now,
                )
            )
    everything = all(line.returned_quantity >= line.quantity for line in lines.values())
    details = {
        "return_id": str(record.id),
        "refund_amount": amount,
        "refund_method": data.refund_method,
        "lines": out_lines,
        "store_id": str(location.id),
        "return_channel": data.channel,
    }
    if order.status == "partially_fulfilled":
        # units are still to ship: the order stays open for them (a partially_returned order cannot ship)
        lifecycle.announce(session, order, "order.returned", actor=actor, **details)
        return record
    lifecycle.move(
        session,
        order,
        "returned" if everything else "partially_returned",
        action="take the return",
        actor=actor,
        **details,
    )
    return record


def return_out(record: Return, order: Order) -> ReturnOut:
    return ReturnOut(
        id=record.id,
        order_id=record.order_id,
        customer_id=record.customer_id,
        channel=record.channel,
        store_id=record.location_id,
        lines=record.lines,
        refund_method=record.refund_method,
        refund_amount=record.refund_amount,
        currency=record.currency,
        order_status=order.status,
        created_at=record.created_at,
    )


def store_credit_balance(session: Session, customer_id: uuid.UUID, currency: str) -> int:
    return sum(
        session.scalars(
            select(StoreCredit.amount).where(StoreCredit.customer_id == customer_id, StoreCredit.currency == currency)
        )
    )


def returns_of(session: Session, customer_id: uuid.UUID) -> list[Return]:
    return list(
        session.scalars(select(Return).where(Return.customer_id == customer_id).order_by(Return.created_at.desc()))
    )
