"""Turning a cart request into a priced, allocated cart: the one function the quote and checkout share.

:func:`prepare_cart` checks every line (and says which one is wrong and why), finds the prices
for the channel and currency, picks where the stock comes from, resolves coupons, and prices the
cart with :func:`omnicanal.commerce.pricing.price_cart`. The quote answers with its result; an
order stores exactly that result, so a customer is charged what they were quoted.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from omnicanal.commerce import promotions as promo
from omnicanal.commerce.catalog import CatalogItem, catalog_items, versions
from omnicanal.commerce.models import Location
from omnicanal.commerce.pricing import Context, Item, Quote, price_cart
from omnicanal.commerce.schemas import CartIn, LineOut, QuoteOut
from omnicanal.commerce.stores import Hold, availability
from omnicanal.customers.identities import normalize_identity
from omnicanal.customers.models import Customer, Identity
from omnicanal.customers.resolution import implied
from omnicanal.db import utcnow
from omnicanal.driver_sql import driver_rows, is_sqlite, json_from_db, uuid_from_db, uuid_to_db
from omnicanal.errors import FieldError, NotFound, ValidationFailed
from omnicanal.settings import Settings

MAX_QUANTITY = 10_000


class CartRefused(ValidationFailed):
    """A cart that cannot be priced or ordered as asked; ``errors`` name each line and why."""

    slug = "cart-refused"
    title = "The cart cannot be ordered as it is"


@dataclass
class PreparedCart:
    customer_id: uuid.UUID | None
    customer: Shopper | None
    channel: str
    currency: str
    items: list[Item]
    catalog: dict[str, CatalogItem]
    quote: Quote
    holds: list[Hold] = field(default_factory=list)
    location: Location | None = None
    limited: set[str] = field(default_factory=set)  # promotions among the candidates with a usage limit


def identity_keys(data: CartIn, settings: Settings) -> list[tuple[str, str]]:
    return [
        (i.type, normalize_identity(i.type, i.value, region=settings.default_region, field=f"identities[{n}]"))
        for n, i in enumerate(data.identities)
    ]


@dataclass(frozen=True)
class Shopper:
    """The customer a cart is priced for: the live customer (merges followed) and the traits pricing reads."""

    id: uuid.UUID
    traits: Mapping[str, Any]

    @classmethod
    def of(cls, customer: Customer) -> Shopper:
        return cls(customer.id, customer.traits or {})


_SHOPPER_SQL = "SELECT merged_into_id, erased_at, traits FROM customers WHERE id = ?"


def shopper(session: Session, customer_id: uuid.UUID) -> Shopper:
    """What ``get_customer(..., follow_merges=True)`` finds, read with one driver statement a hop instead of an
    ORM load (two per order: bench/commerce.py, K1); raises :class:`NotFound` as it does."""
    sqlite = is_sqlite(session)
    current = customer_id
    seen: set[uuid.UUID] = set()
    while True:
        rows = driver_rows(session, _SHOPPER_SQL, [uuid_to_db(current, sqlite=sqlite)])
        if not rows or (not seen and rows[0][1] is not None) or current in seen:
            raise NotFound(f"customer {customer_id} not found")
        seen.add(current)
        merged_into, _, traits = rows[0]
        if merged_into is None:
            return Shopper(current, json_from_db(traits) or {})
        current = uuid_from_db(merged_into)


def known_customer(session: Session, data: CartIn, settings: Settings) -> Shopper | None:
    """The customer a cart names, without creating anyone (a quote changes nothing)."""
    if data.customer_id is not None:
        try:
            return shopper(session, data.customer_id)
        except Exception:
            raise ValidationFailed.on_field("customer_id", f"customer {data.customer_id} not found") from None
    keys = implied(identity_keys(data, settings))
    if not keys:
        return None
    owner = session.scalar(
        select(Identity.customer_id)
        .where(Identity.value.in_({v for _, v in keys}))
        .where(Identity.type.in_({t for t, _ in keys}))
        .limit(1)
    )
    return shopper(session, owner) if owner else None


def segments_of(customer: Shopper | None) -> frozenset[str]:
    if customer is None:
        return frozenset()
    attributes = (customer.traits or {}).get("attributes") or {}
    found: set[str] = set()
    for key in ("tier", "segment", "segments"):
        value = attributes.get(key)
        if isinstance(value, list):
            found |= {str(v) for v in value}
        elif value:
            found.add(str(value))
    return frozenset(found)


def _price(item: CatalogItem, currency: str, channel: str) -> tuple[int, str] | None:
    explicit = item.prices.get((currency, channel))
    if explicit is not None:
        return explicit, channel
    base = item.prices.get((currency, ""))
    return (base, "") if base is not None else None


@dataclass(frozen=True)
class Source:
    """A location that ships, as allocation sees it (cached per process until the catalog changes)."""

    id: uuid.UUID
    kind: str
    code: str


_sources_cache: weakref.WeakKeyDictionary[Engine, tuple[int, list[Source]]] = weakref.WeakKeyDictionary()


def shipping_sources(session: Session, version: int) -> list[Source]:
    engine = session.get_bind().engine
    cached = _sources_cache.get(engine)
    if cached is None or cached[0] != version:
        rows = session.execute(
            select(Location.id, Location.kind, Location.code).where(Location.active.is_(True), Location.ships.is_(True))
        )
        cached = _sources_cache[engine] = (version, [Source(*row) for row in rows])
    return cached[1]


def _allocate(
    session: Session, data: CartIn, items: list[Item], errors: list[FieldError], *, version: int
) -> tuple[list[Hold], Location | None]:
    """Where each line's units come from; a line that cannot be served gets an error."""
    fulfillment = data.fulfillment
    location: Location | None = None
    if fulfillment.type in ("pickup", "ship_from_store"):
        if fulfillment.store_id is None:
            errors.append(FieldError("fulfillment.store_id", f"{fulfillment.type} needs the store_id of a store"))
            return [], None
        location = session.get(Location, fulfillment.store_id)
        if location is None or not location.active:
            errors.append(FieldError("fulfillment.store_id", f"unknown store {fulfillment.store_id}"))
            return [], None
        if fulfillment.type == "pickup" and not location.pickup:
            errors.append(FieldError("fulfillment.store_id", f"{location.name} does not hand over pickups"))
            return [], None
        if fulfillment.type == "ship_from_store" and not location.ships:
            errors.append(FieldError("fulfillment.store_id", f"{location.name} does not ship"))
            return [], None
    levels = availability(session, [item.sku for item in items])
    sources = {source.id: source for source in shipping_sources(session, version)}
    # warehouses first, then the stores that ship; most stock first
    holds: list[Hold] = []
    taken: dict[tuple[uuid.UUID, str], int] = {}
    for index, item in enumerate(items):
        stock = levels.get(item.sku, {})

        def free(location_id: uuid.UUID, sku: str = item.sku, stock: dict[uuid.UUID, int] = stock) -> int:
            return stock.get(location_id, 0) - taken.get((location_id, sku), 0)

        wanted = item.quantity
        here = f"lines[{index}]"
        if location is not None:
            at_store = max(free(location.id), 0)
            if at_store >= wanted or not (fulfillment.type == "pickup" and fulfillment.allow_transfer):
                if at_store < wanted:
                    errors.append(FieldError(here, f"only {at_store} of {item.sku} available at {location.name}"))
                    continue
                holds.append(Hold(location.id, item.sku, wanted, index))
                taken[(location.id, item.sku)] = taken.get((location.id, item.sku), 0) + wanted
                continue
        order = sorted(
            (loc for loc in sources.values() if location is None or loc.id != location.id),
            key=lambda loc: (loc.kind != "warehouse", -free(loc.id), loc.code),
        )
        if location is not None:  # pickup with transfer: what the store has first, the rest from elsewhere
            order.insert(0, Source(location.id, location.kind, location.code))
        remaining = wanted
        planned: list[Hold] = []
        for source in order:
            take = min(max(free(source.id), 0), remaining)
            if take > 0:
                planned.append(Hold(source.id, item.sku, take, index))
                remaining -= take
            if remaining == 0:
                break
        if remaining > 0:
            available = wanted - remaining
            errors.append(FieldError(here, f"only {available} of {item.sku} in stock, {wanted} asked"))
            continue
        for hold in planned:
            taken[(hold.location_id, hold.sku)] = taken.get((hold.location_id, hold.sku), 0) + hold.quantity
        holds.extend(planned)
    return holds, location


def prepare_cart(
    session: Session,
    data: CartIn,
    *,
    settings: Settings,
    customer: Shopper | None,
    now: datetime | None = None,
    for_order: bool = False,
) -> PreparedCart:
    """Check, allocate and price a cart; raise :class:`CartRefused` naming every bad line."""
    now = now or utcnow()
    currency = data.currency or settings.commerce_currency
    errors: list[FieldError] = []
    if not data.lines:
        errors.append(FieldError("lines", "a cart needs at least one line"))
    version = versions(session)
    catalog = catalog_items(session, [line.sku for line in data.lines], version=version.get("catalog", 0))
    items: list[Item] = []
    first_line: dict[str, int] = {}
    for index, line in enumerate(data.lines):
        here = f"lines[{index}]"
        # one line per SKU: shipping, handover and returns find an order's units by SKU
        if first_line.setdefault(line.sku, index) != index:
            errors.append(FieldError(f"{here}.sku", f"{line.sku} is already on lines[{first_line[line.sku]}]"))
            continue
        found = catalog.get(line.sku)
        if found is None:
            errors.append(FieldError(f"{here}.sku", f"unknown SKU {line.sku!r}"))
            continue
        if line.quantity < 1:
            errors.append(FieldError(f"{here}.quantity", f"must be at least 1 (got {line.quantity})"))
            continue
        if line.quantity > MAX_QUANTITY:
            errors.append(FieldError(f"{here}.quantity", f"must be at most {MAX_QUANTITY}"))
            continue
        price = _price(found, currency, data.channel)
        if price is None:
            errors.append(FieldError(here, f"{line.sku} has no price in {currency}"))
            continue
        items.append(
            Item(
                sku=line.sku,
                product_id=str(found.product_id),
                category_id=str(found.category_id) if found.category_id else None,
                name=found.names.get(_language(customer), found.name),
                quantity=line.quantity,
                unit_price=price[0],
                tax_class=found.tax_class,
                price_channel=price[1],
            )
        )
    if for_order and data.fulfillment.type in ("delivery", "ship_from_store") and not data.fulfillment.address:
        errors.append(FieldError("fulfillment.address", f"{data.fulfillment.type} needs the delivery address"))
    holds: list[Hold] = []
    location: Location | None = None
    if not errors:
        holds, location = _allocate(session, data, items, errors, version=version.get("catalog", 0))

    # coupons: each one names its promotion; a code that cannot apply is an error, not a silent no-op
    promotion_index = promo.active_index(session, version=version.get("promotions", 0))
    codes = [promo.normalize_code(code) for code in data.coupon_codes]
    coupons = promo.coupons_by_code(session, codes)
    coupon_for: dict[str, str] = {}
    for n, code in enumerate(codes):
        coupon = coupons.get(code)
        here = f"coupon_codes[{n}]"
        if coupon is None:
            errors.append(FieldError(here, f"{code}: unknown coupon code"))
        elif coupon.usage_limit is not None and coupon.used_count >= coupon.usage_limit:
            errors.append(FieldError(here, f"{code}: this coupon has been used up"))
        elif str(coupon.promotion_id) not in promotion_index.rules:
            errors.append(FieldError(here, f"{code}: the promotion of this coupon has ended"))
        elif str(coupon.promotion_id) in coupon_for:
            errors.append(FieldError(here, f"{code}: another code of the same promotion is already in the cart"))
        else:
            coupon_for[str(coupon.promotion_id)] = code
    if errors:
        raise CartRefused("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)

    rules = promotion_index.candidates(items)
    limited = {rule.id for rule in rules if rule.limited}
    spent = promo.exhausted(session, sorted(limited), customer_key=customer.id if customer else None)
    for promotion_id, why in spent.items():
        spent_code = coupon_for.get(promotion_id)
        if spent_code is not None:
            errors.append(FieldError(f"coupon_codes[{codes.index(spent_code)}]", f"{spent_code}: the promotion {why}"))
    rules = [rule for rule in rules if rule.id not in spent]
    context = Context(
        channel=data.channel,
        currency=currency,
        now=now,
        tax_rates=settings.commerce_tax_rates,
        prices_include_tax=settings.commerce_prices_include_tax,
        shipping=settings.commerce_shipping_by_currency.get(currency, settings.commerce_shipping).get(
            data.fulfillment.type, 0
        ),
        segments=segments_of(customer),
        coupons=coupon_for,
    )
    quote = price_cart(items, rules, context)
    applied = {entry["promotion_id"] for entry in quote.promotions} if coupon_for else set()
    for promotion_id, given_code in coupon_for.items():
        reason = quote.skipped.get(promotion_id)
        if reason is None and promotion_id not in applied:  # not even a candidate: none of its items is here
            reason = "applies to none of the items in the cart"
        if reason is not None and promotion_id not in spent:
            errors.append(
                FieldError(f"coupon_codes[{codes.index(given_code)}]", f"{given_code}: the promotion {reason}")
            )
    if errors:
        raise CartRefused("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)
    return PreparedCart(
        customer_id=customer.id if customer else None,
        customer=customer,
        channel=data.channel,
        currency=currency,
        items=items,
        catalog=catalog,
        quote=quote,
        holds=holds,
        location=location,
        limited=limited,
    )


def _language(customer: Shopper | None) -> str:
    if customer is None:
        return ""
    return str((customer.traits or {}).get("language") or "")


def quote_out(cart: PreparedCart) -> QuoteOut:
    quote = cart.quote
    return QuoteOut(
        customer_id=cart.customer_id,
        channel=cart.channel,
        currency=quote.currency,
        lines=[line_out(line.__dict__) for line in quote.lines],
        subtotal=quote.subtotal,
        discount=quote.discount,
        tax=quote.tax,
        shipping=quote.shipping,
        shipping_discount=quote.shipping_discount,
        total=quote.total,
        prices_include_tax=quote.prices_include_tax,
        promotions=quote.promotions,
    )


def line_out(values: Mapping[str, Any]) -> LineOut:
    return LineOut(**line_json(values))


_LINE_FIELDS = tuple(LineOut.model_fields)


def line_json(values: Mapping[str, Any]) -> dict[str, Any]:
    """A priced line as the API answers it (``LineOut``'s fields, all JSON values), from its values or row."""
    return {name: values[name] for name in _LINE_FIELDS} | {"price_channel": values["price_channel"] or None}
