"""Orders from every channel: placed from a prepared cart, read back, cancelled, expired."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from omnicanal.commerce import lifecycle, promotions, stores
from omnicanal.commerce.checkout import (
    PreparedCart,
    Shopper,
    identity_keys,
    known_customer,
    prepare_cart,
    shopper,
)
from omnicanal.commerce.models import Cart, Fulfillment, Order, OrderLine
from omnicanal.commerce.rows import insert_loaded, load_by_ids, table_of
from omnicanal.commerce.schemas import CartIn
from omnicanal.customers.resolution import Resolver
from omnicanal.customers.service import get_customer
from omnicanal.db import utcnow, uuid7
from omnicanal.driver_sql import (
    bulk_insert,
    bulk_update,
    fetch_rows,
    is_sqlite,
    json_from_db,
    run_statement,
    uuid_from_db,
)
from omnicanal.errors import Conflict, NotFound, ValidationFailed
from omnicanal.ids import random_bits
from omnicanal.pagination import check_limit, decode_cursor, encode_cursor
from omnicanal.settings import Settings
from omnicanal.timeline.models import Event
from omnicanal.timeline.service import observed_event_row

NUMBER_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
NUMBER_LENGTH = 6


def resolve_customer(session: Session, data: CartIn, settings: Settings) -> Shopper:
    """The ordering customer: by id, or found (or created) from identities by identity resolution."""
    if data.customer_id is None and not data.identities:
        raise ValidationFailed.on_field("customer_id", "an order needs a customer_id or identities")
    keys = identity_keys(data, settings)
    if data.customer_id is not None and not keys:
        try:
            return shopper(session, data.customer_id)
        except NotFound:
            raise ValidationFailed.on_field("customer_id", f"customer {data.customer_id} not found") from None
    resolver = Resolver(session, settings, now=utcnow())
    try:
        resolution = resolver.resolve(keys, customer_id=data.customer_id, source=f"order:{data.channel}")
    except NotFound as exc:
        raise ValidationFailed.on_field("customer_id", exc.detail) from None
    resolver.flush()
    session.flush()
    return Shopper.of(get_customer(session, resolution.customer_id, follow_merges=True))


def _number(now: datetime) -> str:
    # one draw of 30 random bits, five a character (32 letters), from the ids' buffer of the OS's randomness:
    # secrets.choice read it once a character, six system calls an order inside the writer's turn (K1)
    bits = random_bits(5 * NUMBER_LENGTH)
    return f"{now:%y%m%d}-" + "".join(NUMBER_ALPHABET[(bits >> (5 * i)) & 31] for i in range(NUMBER_LENGTH))


_NUMBER_DRAWS = 3


def _number_clashed(error: IntegrityError) -> bool:
    """True when an order's insert failed because its number was drawn before the same day (30 random bits:
    among 100,000 orders of a day, about five pairs)."""
    text = str(error.orig)
    return "uq_commerce_orders_number" in text or "commerce_orders.number" in text


def _insert_order(session: Session, values: dict[str, Any]) -> Order:
    """Insert the order, drawing its number again if it clashed, on every channel. SQLite backs out only the failed
    statement; on PostgreSQL a failed statement ends the transaction, so there the insert has a savepoint."""
    sqlite = is_sqlite(session)
    for draw in range(1, _NUMBER_DRAWS + 1):
        try:
            if sqlite:
                return insert_loaded(session, Order, values)
            with session.begin_nested():
                session.connection()  # the SAVEPOINT goes out here: the driver statement below asks no connection
                return insert_loaded(session, Order, values)
        except IntegrityError as clash:
            if draw == _NUMBER_DRAWS or not _number_clashed(clash):
                raise
            values["number"] = _number(values["created_at"])
    raise AssertionError("unreachable")


def create_order(session: Session, data: CartIn, *, settings: Settings, actor: str) -> Order:
    """Place an order: price it as the quote does, reserve its stock, count its promotions. All or nothing."""
    return place_order(session, data, settings=settings, actor=actor)[0]


def place_order(
    session: Session, data: CartIn, *, settings: Settings, actor: str
) -> tuple[Order, list[dict[str, Any]]]:
    """:func:`create_order`, also handing back the lines' rows (so the answer needs not read them again)."""
    customer = resolve_customer(session, data, settings)
    now = utcnow()
    cart = prepare_cart(session, data, settings=settings, customer=customer, now=now, for_order=True)
    quote = cart.quote
    if data.expected_total is not None and data.expected_total != quote.total:
        raise Conflict(
            f"the total is now {quote.total} {quote.currency}, not the {data.expected_total} quoted "
            "(a price, promotion or stock changed); nothing was ordered",
            total=quote.total,
            expected_total=data.expected_total,
        )
    order = _insert_order(
        session,
        dict(
            id=uuid7(),
            number=_number(now),
            customer_id=customer.id,
            source_customer_id=customer.id,
            channel=data.channel,
            status="pending",
            payment_status="unpaid",
            currency=quote.currency,
            subtotal=quote.subtotal,
            discount=quote.discount,
            tax=quote.tax,
            shipping=quote.shipping,
            total=quote.total,
            paid_amount=0,
            refunded_amount=0,
            prices_include_tax=quote.prices_include_tax,
            fulfillment_type=data.fulfillment.type,
            location_id=cart.location.id if cart.location else None,
            address=data.fulfillment.address or {},
            coupon_codes=[promotions.normalize_code(c) for c in data.coupon_codes],
            promotions=quote.promotions,
            shipping_discount=quote.shipping_discount,
            pickup_code=None,
            pickup_expires_at=None,
            created_by=actor,
            created_at=now,
            updated_at=now,
        ),
    )
    # plain rows (one executemany): an ORM object a line cost more than its insert, and nothing in this
    # transaction changes a line after it is placed (bench/commerce.py, K1)
    order_lines = [
        {"id": uuid7(), "order_id": order.id, "position": position, "sku": line.sku,
         "product_id": uuid.UUID(item.product_id), "name": line.name, "quantity": line.quantity,
         "unit_price": line.unit_price, "price_channel": line.price_channel, "subtotal": line.subtotal,
         "discount": line.discount, "tax": line.tax, "tax_rate": line.tax_rate, "total": line.total,
         "discounts": line.discounts, "fulfilled_quantity": 0, "returned_quantity": 0}
        for position, (item, line) in enumerate(zip(cart.items, quote.lines, strict=True))
    ]  # fmt: skip
    bulk_insert(session, OrderLine, order_lines)
    expires = now + timedelta(minutes=settings.commerce_reservation_minutes) if quote.total > 0 else None
    stores.reserve(session, cart.holds, order_id=order.id, expires_at=expires)
    promotions.claim(session, quote.promotions, customer_key=customer.id, limited=cart.limited)
    _close_ordered_carts(session, customer.id, data, now=now)
    lifecycle.announce(session, order, "order.placed", actor=actor, lines=len(quote.lines))
    if quote.total == 0:
        order.payment_status = "paid"
        lifecycle.move(session, order, "paid", action="mark the order paid", actor=actor)
    return order, order_lines


_cart = table_of(Cart).c
_OPEN_CARTS_OF = select(_cart.id, _cart.channel, _cart.request).where(
    _cart.customer_id == bindparam("b_customer_id"), _cart.status == "open"
)
_CART_ORDERED = (
    update(table_of(Cart)).where(_cart.id == bindparam("b_id")).values(status="ordered", updated_at=bindparam("now"))
)


def _close_ordered_carts(session: Session, customer_id: uuid.UUID, data: CartIn, *, now: datetime) -> None:
    """The carts this order used up: the one of its own channel, and any other holding exactly its lines (the
    web cart an agent ordered for the customer). A cart of another channel with other goods stays open: a
    purchase at the counter does not throw away what the customer left on the web."""
    ordered = _line_totals(line.model_dump() for line in data.lines)
    done = [
        {"b_id": uuid_from_db(cart_id), "now": now}
        for cart_id, channel, request in fetch_rows(session, _OPEN_CARTS_OF, {"b_customer_id": customer_id})
        if channel == data.channel or _line_totals((json_from_db(request) or {}).get("lines") or []) == ordered
    ]
    if done:
        run_statement(session, _CART_ORDERED, done)


def _line_totals(lines: Any) -> dict[str, int]:
    totals: dict[str, int] = {}
    for line in lines:
        totals[str(line["sku"])] = totals.get(str(line["sku"]), 0) + int(line["quantity"])
    return totals


def get_order(session: Session, order_id: uuid.UUID, *, for_update: bool = False) -> Order:
    # by primary key (Session.get: a loader query built once, ~half the CPU of an ORM select; every payment
    # reads its order); FOR UPDATE always asks the database, even for an order the session holds
    lock = for_update and session.get_bind().dialect.name == "postgresql"
    order = session.get(Order, order_id, with_for_update=True if lock else None)
    if order is None:
        raise NotFound(f"order {order_id} not found")
    return order


def load_orders(session: Session, order_ids: Sequence[uuid.UUID]) -> list[Order]:
    """Orders about to be read one by one with :func:`get_order`, loaded with one query; hold the list until then
    (the session keeps them only weakly). ``get_order(for_update=True)`` reads each again on PostgreSQL."""
    if len(order_ids) < 2:
        return []
    return load_by_ids(session, Order, order_ids)


def lines_of(session: Session, order_id: uuid.UUID) -> list[OrderLine]:
    return list(session.scalars(select(OrderLine).where(OrderLine.order_id == order_id).order_by(OrderLine.position)))


def list_orders(
    session: Session,
    *,
    customer_id: uuid.UUID | None = None,
    status: str | None = None,
    store_id: uuid.UUID | None = None,
    limit: int = 25,
    cursor: str | None = None,
) -> tuple[list[Order], str | None]:
    """Newest first."""
    limit = check_limit(limit)
    stmt = select(Order)
    if customer_id is not None:
        stmt = stmt.where(Order.customer_id == customer_id)
    if status:
        if status not in lifecycle.STATUSES:
            raise ValidationFailed.on_field("status", f"unknown status; one of: {', '.join(lifecycle.STATUSES)}")
        stmt = stmt.where(Order.status == status)
    if store_id is not None:
        stmt = stmt.where(Order.location_id == store_id)
    after = decode_cursor(cursor, size=1)
    if after is not None:
        try:
            stmt = stmt.where(Order.id < uuid.UUID(str(after[0])))
        except ValueError:
            raise ValidationFailed.on_field("cursor", "is not a cursor this API returned") from None
    rows = list(session.scalars(stmt.order_by(Order.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor([str(rows[limit - 1].id)]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def cancel_order(session: Session, order_id: uuid.UUID, *, actor: str, reason: str = "") -> Order:
    """Cancel before anything left the building: stock goes back, promotion uses are given back, payments refunded."""
    order = get_order(session, order_id, for_update=True)
    lifecycle.check(order, "cancelled", action="cancel the order")
    _undo_sale(session, order, actor=actor, reason="order cancelled")
    lifecycle.move(session, order, "cancelled", action="cancel the order", actor=actor, reason=reason)
    return order


def _undo_sale(session: Session, order: Order, *, actor: str, reason: str) -> None:
    """A sale that did not happen (cancelled, or not collected in time): its stock back on the shelf, its promotion
    and coupon uses given back, what was paid refunded."""
    from omnicanal.commerce.payments import refund_everything

    stores.release(session, order.id)
    promotions.release_claims(session, order.promotions or [], customer_key=order.customer_id)
    refund_everything(session, order, actor=actor, reason=reason)


def expire_due(session: Session, *, now: datetime | None = None) -> int:
    """Unpaid orders past their reservation and pickups not collected in time: stock goes back on the shelf."""
    from omnicanal.commerce.models import Reservation

    now = now or utcnow()
    unpaid = set(
        session.scalars(
            select(Reservation.order_id)
            .join(Order, Order.id == Reservation.order_id)
            .where(Reservation.state == "held", Reservation.expires_at < now, Order.status == "pending")
            .limit(200)
        )
    )
    uncollected = set(
        session.scalars(
            select(Order.id).where(Order.status == "ready_for_pickup", Order.pickup_expires_at < now).limit(200)
        )
    )
    for order_id in sorted(unpaid | uncollected):
        order = get_order(session, order_id, for_update=True)
        if order.status not in ("pending", "ready_for_pickup"):
            continue
        _undo_sale(session, order, actor="system", reason="not collected in time")
        for fulfillment in session.scalars(
            select(Fulfillment).where(Fulfillment.order_id == order.id, Fulfillment.status == "ready_for_pickup")
        ):
            fulfillment.status = "expired"
        lifecycle.move(session, order, "expired", action="expire the order", actor="system")
    return len(unpaid | uncollected)


def save_cart(
    session: Session,
    data: CartIn,
    *,
    settings: Settings,
    total: int,
    currency: str,
    customer_id: uuid.UUID | None = None,
) -> None:
    """Remember the customer's latest cart on this channel, so the store or an agent can pick it up.

    ``customer_id``: the customer the quote already found (else found again from ``data``).
    """
    if customer_id is None:
        customer = known_customer(session, data, settings)
        if customer is None:
            return
        customer_id = customer.id
    save_carts(session, [cart_save(data, customer_id=customer_id, total=total, currency=currency)])


@dataclass(frozen=True)
class CartSave:
    """A priced cart to remember (what :func:`save_cart` stores), as plain values a writer thread can take."""

    customer_id: uuid.UUID
    channel: str
    request: dict[str, Any]
    total: int
    currency: str


def cart_save(data: CartIn, *, customer_id: uuid.UUID, total: int, currency: str) -> CartSave:
    request = data.model_dump(mode="json", exclude={"customer_id", "identities"})
    return CartSave(customer_id, data.channel, request, total, currency)


def cart_unchanged(session: Session, save: CartSave) -> bool:
    """The customer's open cart on this channel is already this one (saving it again would change nothing)."""
    found = _open_cart(session, save)
    return found is not None and found[1] == save.request


def _open_cart(session: Session, save: CartSave) -> tuple[uuid.UUID, Any] | None:
    rows = fetch_rows(session, _OPEN_CART, {"b_customer_id": save.customer_id, "b_channel": save.channel})
    return None if not rows else (uuid_from_db(rows[0][0]), json_from_db(rows[0][1]))


def save_carts(session: Session, saves: Sequence[CartSave]) -> list[None]:
    """:func:`save_cart` for many carts, in order, with one insert per table (a batch of the ingest writer).

    A cart equal to the open one changes nothing; otherwise the open cart is replaced (or one opened) and
    a ``cart.updated`` event recorded, exactly as one :func:`save_cart` after the other would.
    """
    now = utcnow()
    current: dict[tuple[uuid.UUID, str], dict[str, Any] | None] = {}
    new_rows: list[dict[str, Any]] = []
    changed: dict[uuid.UUID, dict[str, Any]] = {}
    events: list[dict[str, Any]] = []
    for save in saves:
        key = (save.customer_id, save.channel)
        if key not in current:
            found = _open_cart(session, save)
            current[key] = None if found is None else {"id": found[0], "request": found[1], "new": False}
        entry = current[key]
        if entry is not None and entry["request"] == save.request:
            continue
        values = {"request": save.request, "total": save.total, "currency": save.currency, "updated_at": now}
        if entry is None:
            row = {"id": uuid7(), "customer_id": save.customer_id, "source_customer_id": save.customer_id,
                   "channel": save.channel, "status": "open", **values}  # fmt: skip
            new_rows.append(row)
            current[key] = {"id": row["id"], "request": save.request, "new": True, "row": row}
        elif entry["new"]:
            entry["row"].update(values)
            entry["request"] = save.request
        else:
            changed[entry["id"]] = {**values, "id": entry["id"]}
            entry["request"] = save.request
        properties = {"lines": save.request["lines"], "total": save.total, "currency": save.currency}
        events.append(observed_event_row(customer_id=save.customer_id, type="cart.updated", channel=save.channel,
                                         properties=properties, now=now))  # fmt: skip
    bulk_insert(session, Cart, new_rows)
    bulk_update(session, Cart, "id", list(changed.values()))
    bulk_insert(session, Event, events)
    return [None] * len(saves)


_OPEN_CART = select(_cart.id, _cart.request).where(
    _cart.customer_id == bindparam("b_customer_id"), _cart.channel == bindparam("b_channel"), _cart.status == "open"
)


def open_carts(session: Session, customer_id: uuid.UUID) -> list[Cart]:
    return list(
        session.scalars(
            select(Cart).where(Cart.customer_id == customer_id, Cart.status == "open").order_by(Cart.updated_at.desc())
        )
    )


def quote(session: Session, data: CartIn, *, settings: Settings) -> PreparedCart:
    customer = known_customer(session, data, settings)
    return prepare_cart(session, data, settings=settings, customer=customer)
