"""Fulfillment: shipments (home delivery, ship-from-store, partial), click & collect with a pickup code and QR.

A pickup order becomes ready once its goods are in the pickup store (units reserved elsewhere are
transferred then); the customer gets the code and the QR code; staff hand it over by scanning or
typing the code. A pickup not collected by its deadline expires and its stock goes back on the shelf.
"""

from __future__ import annotations

import hmac
import io
import secrets
import uuid
from datetime import timedelta

import segno
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from omnicanal.commerce import lifecycle, stores
from omnicanal.commerce.models import Fulfillment, Order, Reservation, Stock
from omnicanal.commerce.orders import get_order, lines_of
from omnicanal.commerce.payments import money_due
from omnicanal.commerce.schemas import ShipmentIn
from omnicanal.db import utcnow, uuid7
from omnicanal.errors import Conflict, FieldError, NotFound, ValidationFailed
from omnicanal.settings import Settings

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
QR_PREFIX = "OCPICKUP"


class WrongPickupCode(ValidationFailed):
    slug = "wrong-pickup-code"
    title = "The pickup code does not match"


def pickup_payload(order: Order) -> str:
    """What the QR code holds: enough to find the order and prove the customer has the code."""
    return f"{QR_PREFIX}:{order.number}:{order.pickup_code}"


def pickup_qr_svg(order: Order) -> bytes:
    if order.pickup_code is None:
        raise NotFound("this order has no pickup code yet (it is not ready for pickup)")
    buffer = io.BytesIO()
    segno.make(pickup_payload(order), error="m").save(buffer, kind="svg", scale=6, border=2)
    return buffer.getvalue()


def pickup_qr_data_uri(order: Order) -> str:
    return segno.make(pickup_payload(order), error="m").svg_data_uri(scale=4, border=2)


def create_fulfillment(
    session: Session, *, order_id: uuid.UUID, data: ShipmentIn, settings: Settings, actor: str
) -> Fulfillment:
    order = get_order(session, order_id, for_update=True)
    if order.fulfillment_type == "pickup":
        return _ready_for_pickup(session, order, settings=settings, actor=actor)
    return _ship(session, order, data, actor=actor)


def _ready_for_pickup(session: Session, order: Order, *, settings: Settings, actor: str) -> Fulfillment:
    lifecycle.check(order, "ready_for_pickup", action="make the order ready for pickup")
    assert order.location_id is not None
    _transfer_to(session, order)
    now = utcnow()
    order.pickup_code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))
    order.pickup_expires_at = now + timedelta(days=settings.commerce_pickup_days)
    stores.set_expiry(session, order.id, order.pickup_expires_at)
    fulfillment = Fulfillment(
        id=uuid7(),
        order_id=order.id,
        type="pickup",
        status="ready_for_pickup",
        location_id=order.location_id,
        lines=[{"sku": line.sku, "quantity": line.quantity} for line in lines_of(session, order.id)],
        created_by=actor,
        created_at=now,
    )
    session.add(fulfillment)
    lifecycle.move(
        session,
        order,
        "ready_for_pickup",
        action="make the order ready for pickup",
        actor=actor,
        pickup_code=order.pickup_code,
        pickup_expires_at=order.pickup_expires_at.isoformat(),
        store_id=str(order.location_id),
    )
    return fulfillment


def _transfer_to(session: Session, order: Order) -> None:
    """Units held for this pickup at other locations move to the pickup store (they arrived)."""
    assert order.location_id is not None
    now = utcnow()
    moving = list(
        session.scalars(
            select(Reservation)
            .where(
                Reservation.order_id == order.id,
                Reservation.state == "held",
                Reservation.location_id != order.location_id,
            )
            .order_by(Reservation.location_id, Reservation.sku)
        )
    )
    for reservation in moving:
        session.execute(
            update(Stock)
            .where(Stock.location_id == reservation.location_id, Stock.sku == reservation.sku)
            .values(
                on_hand=Stock.on_hand - reservation.quantity,
                reserved=Stock.reserved - reservation.quantity,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if session.get(Stock, (order.location_id, reservation.sku)) is None:
            session.add(
                Stock(location_id=order.location_id, sku=reservation.sku, on_hand=0, reserved=0, updated_at=now)
            )
            session.flush()
        session.execute(
            update(Stock)
            .where(Stock.location_id == order.location_id, Stock.sku == reservation.sku)
            .values(
                on_hand=Stock.on_hand + reservation.quantity,
                reserved=Stock.reserved + reservation.quantity,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        reservation.location_id = order.location_id


def _ship(session: Session, order: Order, data: ShipmentIn, *, actor: str) -> Fulfillment:
    if order.status == "pending":
        raise lifecycle.IllegalTransition(
            f"cannot ship: the order is pending (balance due {order.total - order.paid_amount} {order.currency})",
            order_status=order.status,
        )
    due = money_due(session, order)
    if due > 0:
        raise Conflict(f"cannot ship: {due} {order.currency} were refunded and are due again", balance_due=due)
    lines = {line.sku: line for line in lines_of(session, order.id)}
    wanted: dict[str, int] = {}
    if data.lines is None:
        wanted = {sku: line.quantity - line.fulfilled_quantity for sku, line in lines.items()}
        wanted = {sku: quantity for sku, quantity in wanted.items() if quantity > 0}
    else:
        errors = []
        for index, item in enumerate(data.lines):
            line = lines.get(item.sku)
            left = line.quantity - line.fulfilled_quantity if line else 0
            if line is None:
                errors.append(FieldError(f"lines[{index}].sku", f"{item.sku} is not in this order"))
            elif item.quantity < 1:
                errors.append(FieldError(f"lines[{index}].quantity", "must be at least 1"))
            elif item.quantity + wanted.get(item.sku, 0) > left:
                errors.append(FieldError(f"lines[{index}].quantity", f"only {left} of {item.sku} left to ship"))
            else:
                wanted[item.sku] = wanted.get(item.sku, 0) + item.quantity
        if errors:
            raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)
    if not wanted:
        lifecycle.check(order, "fulfilled", action="ship")
        raise Conflict("everything in this order has been shipped already")
    complete = all(line.fulfilled_quantity + wanted.get(sku, 0) >= line.quantity for sku, line in lines.items())
    target = "fulfilled" if complete else "partially_fulfilled"
    lifecycle.check(order, target, action="ship")
    origin = stores.consume(session, order.id, wanted)
    for sku, quantity in wanted.items():
        lines[sku].fulfilled_quantity += quantity
    location_id = next(iter(origin.values()), order.location_id)
    fulfillment = Fulfillment(
        id=uuid7(),
        order_id=order.id,
        type=order.fulfillment_type,
        status="shipped",
        location_id=location_id,
        carrier=data.carrier,
        tracking_number=data.tracking_number,
        lines=[{"sku": sku, "quantity": quantity} for sku, quantity in wanted.items()],
        created_by=actor,
        created_at=utcnow(),
    )
    session.add(fulfillment)
    session.flush()
    lifecycle.move(
        session,
        order,
        target,
        action="ship",
        actor=actor,
        fulfillment_id=str(fulfillment.id),
        carrier=data.carrier,
        tracking_number=data.tracking_number,
        lines=fulfillment.lines,
    )
    return fulfillment


def find_by_pickup(session: Session, scanned: str) -> Order | None:
    """The order a scanned QR code (or a typed ``number``) points to."""
    text = scanned.strip()
    number = text.split(":")[1] if text.upper().startswith(QR_PREFIX + ":") and text.count(":") >= 2 else text
    return session.scalar(select(Order).where(Order.number == number.upper()))


def hand_over(session: Session, *, order_id: uuid.UUID, code: str, actor: str) -> Order:
    """The customer collects: the code (typed, or the QR's content) must match, and nothing may be due."""
    order = get_order(session, order_id, for_update=True)
    lifecycle.check(order, "collected", action="hand over the order")
    given = code.strip().upper()
    if given.startswith(QR_PREFIX + ":"):
        given = given.rsplit(":", 1)[-1]
    if order.pickup_code is None or not hmac.compare_digest(given.encode(), order.pickup_code.encode()):
        raise WrongPickupCode(
            "code: this is not the pickup code of this order; nothing was handed over",
            errors=[FieldError("code", "does not match")],
        )
    due = money_due(session, order)
    if due > 0:
        raise Conflict(f"take the payment first: {due} {order.currency} are still due on this order", balance_due=due)
    lines = lines_of(session, order.id)
    stores.consume(session, order.id, {line.sku: line.quantity - line.fulfilled_quantity for line in lines})
    for line in lines:
        line.fulfilled_quantity = line.quantity
    now = utcnow()
    for fulfillment in session.scalars(
        select(Fulfillment).where(Fulfillment.order_id == order.id, Fulfillment.status == "ready_for_pickup")
    ):
        fulfillment.status = "collected"
        fulfillment.collected_at = now
    lifecycle.move(
        session, order, "collected", action="hand over the order", actor=actor, store_id=str(order.location_id)
    )
    return order
