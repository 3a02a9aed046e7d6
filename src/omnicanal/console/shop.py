"""Commerce in the console: product and stock lookup, orders, and the store counter screen.

The counter finds a customer by phone, email, loyalty card or a scanned pickup QR code, shows the cart
they left on the web or in the app, their orders waiting for pickup and their returns, takes an in-store
order (paid and handed over at once) and hands pickups over by code. Everything goes through the same
commerce services as the API, so prices, promotions and the return policy are the same.
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import urlencode

from babel.numbers import format_currency, get_currency_precision
from fastapi import APIRouter, Form, Query
from sqlalchemy import select
from starlette.responses import Response

from omnicanal.access.roles import Permission
from omnicanal.commerce import (
    catalog,
    fulfillment,
    lifecycle,
    order_answers,
    orders,
    payments,
    returns,
    store_credit,
    stores,
)
from omnicanal.commerce.models import Location, Order, Price, Product, Stock, Variant
from omnicanal.commerce.schemas import CartIn, PaymentIn, ReturnIn, ShipmentIn
from omnicanal.console.channels import N_
from omnicanal.console.context import Console, ConsoleError, StaffConsole, StaffPostConsole
from omnicanal.console.routes import parse_id, problem_text
from omnicanal.customers.models import Customer
from omnicanal.customers.service import get_customer, search_customers
from omnicanal.errors import DomainError

router = APIRouter(prefix="/console", include_in_schema=False)

PAYMENT_METHODS = ("card", "cash", "wallet", "bank_transfer", "payment_link")

# every status, payment status, method and fulfillment state the screens show, marked for translation
LABELS = {
    "pending": N_("Pending"),
    "paid": N_("Paid"),
    "partially_fulfilled": N_("Partially shipped"),
    "fulfilled": N_("Shipped"),
    "ready_for_pickup": N_("Ready for pickup"),
    "collected": N_("Collected"),
    "partially_returned": N_("Partially returned"),
    "returned": N_("Returned"),
    "cancelled": N_("Cancelled"),
    "expired": N_("Expired"),
    "unpaid": N_("Unpaid"),
    "partially_paid": N_("Partially paid"),
    "partially_refunded": N_("Partially refunded"),
    "refunded": N_("Refunded"),
    "card": N_("Card"),
    "cash": N_("Cash"),
    "wallet": N_("Mobile wallet"),
    "bank_transfer": N_("Bank transfer"),
    "payment_link": N_("Payment link"),
    "shipped": N_("Shipped"),
    "store_credit": N_("Store credit"),
}


def money_formatter(language: str) -> Any:
    def money(amount: int | None, currency: str) -> str:
        if amount is None:
            return "—"
        try:
            return str(
                format_currency(Decimal(amount).scaleb(-get_currency_precision(currency)), currency, locale=language)
            )
        except Exception:
            return f"{amount} {currency}"

    return money


def parse_amount(console: Console, raw: str, currency: str) -> int:
    try:
        value = Decimal(raw.replace(",", ".").strip())
    except InvalidOperation:
        raise DomainError(console._("Write the amount as a number, e.g. 12.50")) from None
    return int((value * (10 ** get_currency_precision(currency))).to_integral_value())


_LINE = re.compile(r"\s*(\S+)(?:\s*[xX×]\s*(\d+)|\s+(-?\d+))\s*")


def parse_lines(console: Console, text: str) -> list[dict[str, Any]]:
    """``SKU`` or ``SKU quantity`` per line (``TEE-M 2``); a SKU typed twice counts once, with both quantities."""
    lines: list[dict[str, Any]] = []
    by_sku: dict[str, dict[str, Any]] = {}
    for raw in text.splitlines():
        if not raw.strip():
            continue
        # "TEE-XL 2", "tee-xl x2", "TEE-M×2": an x separates the quantity only when digits follow it
        typed = _LINE.fullmatch(raw)
        if typed is not None:
            sku, quantity = typed[1].upper(), int(typed[2] or typed[3])
        elif len(raw.split()) == 1:
            sku, quantity = raw.strip().upper(), 1
        else:
            raise DomainError(console._("Write one SKU and its quantity per line, e.g. TEE-M 2"))
        if sku in by_sku:
            by_sku[sku]["quantity"] += quantity
            continue
        by_sku[sku] = {"sku": sku, "quantity": quantity}
        lines.append(by_sku[sku])
    return lines


class CreditShort(DomainError):
    """The store credit typed is more than the customer has (the message is for the clerk, translated)."""


def pay_with_credit(console: Console, session: Any, order: Order, typed: int, actor: str) -> int:
    """Pay the order with its customer's store credit: what was typed, at most what is due; how much was paid.
    Credit that does not cover what was typed is an error that says how much there is."""
    money = money_formatter(console.language)

    def short(available: int) -> CreditShort:
        text = console._(
            "Not enough store credit: the customer has %(available)s and %(typed)s was typed.",
            available=money(available, order.currency),
            typed=money(typed, order.currency),
        )
        return CreditShort(text)

    available = store_credit.balance(session, order.customer_id, order.currency)
    if typed > available:
        raise short(available)
    used = min(typed, order.total - order.paid_amount)
    if used <= 0:
        return 0
    data = PaymentIn(method=store_credit.METHOD, amount=used)
    try:
        payments.record_payment(session, order_id=order.id, data=data, settings=console.settings, actor=actor)
    except store_credit.NotEnoughCredit as exc:  # spent at another till meanwhile
        raise short(int(exc.extra.get("available", 0))) from None
    return used


def _problem(console: Console, exc: DomainError) -> str:
    return exc.detail if isinstance(exc, CreditShort) else problem_text(console, exc)


def _stores(session: Any) -> list[Location]:
    return list(session.scalars(select(Location).where(Location.active.is_(True)).order_by(Location.code)))


def _render(console: Console, template: str, **context: Any) -> Response:
    def label(value: str) -> str:
        return console._(LABELS[value]) if value in LABELS else value

    return console.render(template, money=money_formatter(console.language), label=label, **context)


# -- product and stock lookup ----------------------------------------------------------------------------
@router.get("/shop")
def products(console: StaffConsole, q: Annotated[str, Query()] = "", store: Annotated[str, Query()] = "") -> Response:
    console.require(Permission.CATALOG_READ)
    q = q.strip()[:100]
    rows: list[dict[str, Any]] = []
    with console.db.read() as session:
        locations = _stores(session)
        currency = console.settings.commerce_currency
        stmt = (
            select(Variant.sku, Product.id, Product.name, Variant.attributes)
            .join(Product, Product.id == Variant.product_id)
            .where(Product.active.is_(True))
        )
        if q:
            stmt = stmt.where((Product.name.ilike(f"%{q}%")) | (Variant.sku.ilike(f"{q}%")))
        found = list(session.execute(stmt.order_by(Product.name, Variant.position).limit(50)))
        skus = [row[0] for row in found]
        prices = {
            (sku, channel): amount
            for sku, channel, amount in session.execute(
                select(Price.sku, Price.channel, Price.amount).where(Price.sku.in_(skus), Price.currency == currency)
            )
        }
        levels = {
            (sku, location_id): (on_hand, reserved)
            for sku, location_id, on_hand, reserved in session.execute(
                select(Stock.sku, Stock.location_id, Stock.on_hand, Stock.reserved).where(Stock.sku.in_(skus))
            )
        }
        shown = [loc for loc in locations if not store or str(loc.id) == store]
        for sku, product_id, name, attributes in found:
            channel_prices = {ch: amount for (s, ch), amount in prices.items() if s == sku and ch}
            rows.append({
                "sku": sku, "product_id": product_id, "name": name, "attributes": attributes or {},
                "price": prices.get((sku, "")), "channel_prices": channel_prices,
                "stock": [(loc, *levels.get((sku, loc.id), (0, 0))) for loc in shown],
            })  # fmt: skip
    return _render(console, "shop_products.html", q=q, store=store, stores=locations, shown=shown, rows=rows,
                   currency=currency)  # fmt: skip


# -- orders ------------------------------------------------------------------------------------------------
@router.get("/shop/orders")
def order_list(console: StaffConsole, status: Annotated[str, Query()] = "",
               cursor: Annotated[str | None, Query()] = None) -> Response:  # fmt: skip
    console.require(Permission.ORDERS_READ)
    message = None
    items: list[Order] = []
    next_cursor = None
    names: dict[uuid.UUID, str] = {}
    try:
        with console.db.read() as session:
            items, next_cursor = orders.list_orders(session, status=status or None, limit=50, cursor=cursor)
            names = _names(session, {o.customer_id for o in items})
    except DomainError as exc:
        message = problem_text(console, exc)
    return _render(console, "shop_orders.html", items=items, status_filter=status, next_cursor=next_cursor, names=names,
                   message=message, statuses=lifecycle.STATUSES)  # fmt: skip


def _names(session: Any, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    result = {}
    for customer in session.scalars(select(Customer).where(Customer.id.in_(ids))) if ids else []:
        traits = customer.traits or {}
        name = " ".join(str(traits.get(k)) for k in ("first_name", "last_name") if traits.get(k))
        result[customer.id] = name or str(customer.id)[:8]
    return result


@router.get("/shop/orders/{order_id}")
def order_detail(console: StaffConsole, order_id: str, code: Annotated[str, Query()] = "") -> Response:
    console.require(Permission.ORDERS_READ)
    oid = parse_id(console, order_id, console._("There is no order with this id."))
    with console.db.read() as session:
        try:
            order = orders.get_order(session, oid)
        except DomainError:
            raise ConsoleError(404, console._("There is no order with this id.")) from None
        view = order_answers.order_out(session, order, settings=console.settings)
        store = session.get(Location, order.location_id) if order.location_id else None
        names = _names(session, {order.customer_id})
        qr = fulfillment.pickup_qr_data_uri(order) if order.pickup_code and order.status == "ready_for_pickup" else None
        locations = _stores(session)
        credit = store_credit.balance(session, order.customer_id, order.currency)
    methods = (*PAYMENT_METHODS, store_credit.METHOD) if credit > 0 else PAYMENT_METHODS
    return _render(console, "shop_order.html", order=view, store=store, customer_name=names.get(order.customer_id),
                   qr=qr, code=code, methods=methods, stores=locations, credit=credit)  # fmt: skip


def _act(console: Console, order_id: str, action: Any, done: str) -> Response:
    user = console.require(Permission.ORDERS_WRITE)
    oid = parse_id(console, order_id, console._("There is no order with this id."))
    try:
        with console.db.write() as session:
            action(session, oid, user.actor)
    except DomainError as exc:
        console.flash("error", _problem(console, exc))
    else:
        console.flash("success", done)
    return console.redirect(f"/console/shop/orders/{oid}")


@router.post("/shop/orders/{order_id}/payments")
def take_payment(console: StaffPostConsole, order_id: str, method: Annotated[str, Form()] = "card",
                 amount: Annotated[str, Form()] = "") -> Response:  # fmt: skip
    def act(session: Any, oid: uuid.UUID, actor: str) -> None:
        order = orders.get_order(session, oid)
        cents = parse_amount(console, amount, order.currency) if amount.strip() else order.total - order.paid_amount
        if method == store_credit.METHOD:
            if not amount.strip():  # as much of the credit as the order needs
                cents = min(cents, store_credit.balance(session, order.customer_id, order.currency))
            used = pay_with_credit(console, session, order, max(cents, 1), actor)
            paid = money_formatter(console.language)(used, order.currency)
            console.flash("success", console._("%(amount)s paid with store credit.", amount=paid))
            return
        data = PaymentIn(method=method if method in PAYMENT_METHODS else "card", amount=max(cents, 1))
        payments.record_payment(session, order_id=oid, data=data, settings=console.settings, actor=actor)

    return _act(console, order_id, act, console._("Payment recorded."))


@router.post("/shop/orders/{order_id}/fulfill")
def fulfill(console: StaffPostConsole, order_id: str, carrier: Annotated[str, Form()] = "",
            tracking_number: Annotated[str, Form()] = "") -> Response:  # fmt: skip
    def act(session: Any, oid: uuid.UUID, actor: str) -> None:
        data = ShipmentIn(carrier=carrier[:100], tracking_number=tracking_number[:100])
        fulfillment.create_fulfillment(session, order_id=oid, data=data, settings=console.settings, actor=actor)

    return _act(console, order_id, act, console._("Done: the customer has been told."))


@router.post("/shop/orders/{order_id}/pickup")
def hand_over(console: StaffPostConsole, order_id: str, code: Annotated[str, Form()] = "") -> Response:
    def act(session: Any, oid: uuid.UUID, actor: str) -> None:
        fulfillment.hand_over(session, order_id=oid, code=code, actor=actor)

    return _act(console, order_id, act, console._("Handed over."))


@router.post("/shop/orders/{order_id}/cancel")
def cancel(console: StaffPostConsole, order_id: str) -> Response:
    def act(session: Any, oid: uuid.UUID, actor: str) -> None:
        orders.cancel_order(session, oid, actor=actor)

    return _act(console, order_id, act, console._("Order cancelled."))


@router.post("/shop/orders/{order_id}/return")
def take_return(console: StaffPostConsole, order_id: str, sku: Annotated[str, Form()] = "",
                quantity: Annotated[int, Form()] = 1, store_id: Annotated[str, Form()] = "",
                refund_method: Annotated[str, Form()] = "original",
                reason: Annotated[str, Form()] = "") -> Response:  # fmt: skip
    def act(session: Any, oid: uuid.UUID, actor: str) -> None:
        data = ReturnIn.model_validate({
            "order_id": str(oid), "channel": "store", "store_id": store_id or None,
            "refund_method": "store_credit" if refund_method == "store_credit" else "original",
            "lines": [{"sku": sku.strip().upper(), "quantity": quantity, "reason": reason[:500]}],
        })  # fmt: skip
        returns.create_return(session, data, settings=console.settings, actor=actor)

    return _act(console, order_id, act, console._("Return recorded."))


# -- the store counter --------------------------------------------------------------------------------------
@router.get("/counter")
def counter(console: StaffConsole, q: Annotated[str, Query()] = "", customer: Annotated[str, Query()] = "",
            store: Annotated[str, Query()] = "", lines: Annotated[str, Query()] = "") -> Response:  # fmt: skip
    console.require(Permission.ORDERS_WRITE)
    q = q.strip()[:320]
    message = None
    found: list[Customer] = []
    chosen: Customer | None = None
    context: dict[str, Any] = {}
    with console.db.read() as session:
        locations = _stores(session)
        if q.upper().startswith(fulfillment.QR_PREFIX + ":"):
            order = fulfillment.find_by_pickup(session, q)
            if order is None:
                message = console._("No order matches this QR code.")
            else:
                code = q.rsplit(":", 1)[-1]
                return console.redirect(f"/console/shop/orders/{order.id}?code={code}")
        try:
            if customer:
                customer_id = parse_id(console, customer, console._("There is no customer with this id."))
                chosen = get_customer(session, customer_id, follow_merges=True)
            elif len(q) >= 2:
                found, _ = search_customers(session, q=q, limit=10, cursor=None, settings=console.settings)
                if len(found) == 1:
                    chosen = found[0]
        except DomainError as exc:
            message = problem_text(console, exc)
        if chosen is not None:
            context = _customer_context(session, chosen, console)
            if lines.strip():  # what the clerk typed before an error sent them back here
                context["cart_lines"] = lines[:2000]
    store_id = store or (str(locations[0].id) if locations else "")
    return _render(console, "counter.html", q=q, found=found, chosen=chosen, message=message, stores=locations,
                   store_id=store_id, methods=PAYMENT_METHODS, names=_names_of(found), **context)  # fmt: skip


def _names_of(customers: list[Customer]) -> dict[uuid.UUID, str]:
    result = {}
    for customer in customers:
        traits = customer.traits or {}
        result[customer.id] = " ".join(str(traits.get(k)) for k in ("first_name", "last_name") if traits.get(k))
    return result


def _customer_context(session: Any, customer: Customer, console: Console) -> dict[str, Any]:
    carts = orders.open_carts(session, customer.id)
    recent, _ = orders.list_orders(session, customer_id=customer.id, limit=20)
    awaiting = [
        o
        for o in recent
        if o.status == "ready_for_pickup" or (o.fulfillment_type == "pickup" and o.status in ("pending", "paid"))
    ]
    past_returns = returns.returns_of(session, customer.id)
    credit = returns.store_credit_balance(session, customer.id, console.settings.commerce_currency)
    cart_lines = ""
    if carts:
        cart_lines = "\n".join(f"{line['sku']} {line['quantity']}" for line in carts[0].request.get("lines", []))
    points = None
    if console.can(Permission.LOYALTY_READ):
        from omnicanal.loyalty.service import wallet_out

        points = wallet_out(session, customer.id)
    return {"carts": carts, "recent": recent, "awaiting": awaiting, "returns": past_returns, "credit": credit,
            "cart_lines": cart_lines, "customer_name": _names_of([customer]).get(customer.id),
            "points": points}  # fmt: skip


@router.post("/counter/orders")
def counter_sale(console: StaffPostConsole, customer_id: Annotated[str, Form()] = "",
                 store_id: Annotated[str, Form()] = "", lines: Annotated[str, Form()] = "",
                 coupon: Annotated[str, Form()] = "", method: Annotated[str, Form()] = "card",
                 credit: Annotated[str, Form()] = "",
                 hand_over_now: Annotated[str, Form()] = "") -> Response:  # fmt: skip
    """An in-store order: priced like any other; paid and handed over at once when the customer takes it now.
    ``credit`` is paid with the customer's store credit first (at most the total), ``method`` pays the rest."""
    user = console.require(Permission.ORDERS_WRITE)
    back = f"/console/counter?{urlencode({'customer': customer_id, 'store': store_id, 'lines': lines[:2000]})}"
    currency = console.settings.commerce_currency
    try:
        with console.db.write() as session:
            typed_credit = parse_amount(console, credit, currency) if credit.strip() else 0
            if typed_credit < 0:
                raise DomainError(console._("Write the amount as a number, e.g. 12.50"))
            data = CartIn.model_validate({
                "customer_id": customer_id, "channel": "store", "lines": parse_lines(console, lines),
                "coupon_codes": [coupon.strip()] if coupon.strip() else [],
                "fulfillment": {"type": "pickup", "store_id": store_id, "allow_transfer": not hand_over_now},
            })  # fmt: skip
            order = orders.create_order(session, data, settings=console.settings, actor=user.actor)
            credit_used = pay_with_credit(console, session, order, typed_credit, user.actor) if typed_credit else 0
            if hand_over_now:
                due = order.total - order.paid_amount
                if due > 0:
                    payment = PaymentIn(method=method if method in PAYMENT_METHODS else "card", amount=due)
                    payments.record_payment(session, order_id=order.id, data=payment, settings=console.settings,
                                            actor=user.actor)  # fmt: skip
                fulfillment.create_fulfillment(session, order_id=order.id, data=ShipmentIn(),
                                               settings=console.settings, actor=user.actor)  # fmt: skip
                fulfillment.hand_over(session, order_id=order.id, code=order.pickup_code or "", actor=user.actor)
            order_id = order.id
    except DomainError as exc:
        console.flash("error", _problem(console, exc))
        return console.redirect(back)
    except ValueError as exc:
        console.flash("error", console._("That could not be done: %(detail)s", detail=str(exc).splitlines()[0]))
        return console.redirect(back)
    console.flash("success", console._("Order placed."))
    if credit_used:
        paid = money_formatter(console.language)(credit_used, currency)
        console.flash("success", console._("%(amount)s paid with store credit.", amount=paid))
    return console.redirect(f"/console/shop/orders/{order_id}")


__all__ = ["catalog", "router", "stores"]
