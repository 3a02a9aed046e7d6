"""The pricing engine: one pure function prices a cart, for the quote and for checkout alike.

Nothing here touches the database. The caller hands over the cart's items (with their prices),
the promotions that may apply (indexed once per promotion change, see :class:`PromotionIndex`)
and the context (channel, currency, customer segments, coupons, time); :func:`price_cart`
answers with every amount itemized per line.

Rules, in the order they are applied:
- promotions run by ``priority`` (highest first), then by age (oldest first);
- each one discounts what earlier ones left of a line, never below zero;
- a promotion that is not ``stackable`` applies only to lines no other promotion discounted, and
  once it applied, no later promotion touches those lines;
- percentages and shares are rounded half up per line; a cart-level amount is spread over the lines
  in proportion to what is left of them (largest remainder), so the lines always add up to the total;
- taxes: each line at its tax class's rate, on what the customer pays for it; shipping at the
  standard rate. With tax-inclusive prices the tax is the part of the amount that is tax.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

KINDS = ("percentage", "fixed", "buy_x_get_y", "bundle", "free_shipping")
SCOPES = ("product", "category", "cart")


@dataclass(frozen=True)
class Item:
    """A cart line with its catalog facts, ready to price."""

    sku: str
    product_id: str
    category_id: str | None
    name: str
    quantity: int
    unit_price: int
    tax_class: str = "standard"
    price_channel: str = ""  # the channel of an explicit channel price, "" for the price list


@dataclass(frozen=True)
class Rule:
    """A promotion as the engine sees it."""

    id: str
    name: str
    kind: str
    scope: str
    targets: frozenset[str] = frozenset()  # SKUs, product ids and category ids (with their descendants)
    percent_bp: int = 0  # percentage in basis points (1250 = 12.5 %)
    amount: int = 0  # fixed amount off (per unit on product/category scope, once on the cart)
    currency: str | None = None  # amounts are in this currency; the promotion skips carts in another
    buy: int = 0
    get: int = 0
    get_percent_bp: int = 10000
    bundle: tuple[tuple[str, int], ...] = ()
    bundle_price: int = 0
    min_subtotal: int = 0
    min_quantity: int = 0
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    priority: int = 0
    order: int = 0
    stackable: bool = True
    requires_coupon: bool = False
    limited: bool = False  # has a usage limit (in total or per customer): counted at checkout
    segments: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()

    def live(self, now: datetime) -> bool:
        return (self.starts_at is None or self.starts_at <= now) and (self.ends_at is None or now < self.ends_at)

    def index_keys(self) -> Iterable[str]:
        if self.kind == "bundle":
            return (sku for sku, _ in self.bundle)
        return self.targets

    def matches(self, item: Item) -> bool:
        if self.kind == "bundle":
            return any(item.sku == sku for sku, _ in self.bundle)
        if self.scope == "cart":
            return True
        return item.sku in self.targets or item.product_id in self.targets or (item.category_id or "") in self.targets


class PromotionIndex:
    """The active promotions, indexed by SKU, product and category, built once per change."""

    def __init__(self, rules: Sequence[Rule], *, version: int = 0) -> None:
        self.version = version
        self.rules = {rule.id: rule for rule in rules}
        self.by_key: dict[str, list[Rule]] = {}
        self.cart_wide: list[Rule] = []
        for rule in rules:
            if rule.scope == "cart" and rule.kind != "bundle":
                self.cart_wide.append(rule)
                continue
            for key in rule.index_keys():
                self.by_key.setdefault(key, []).append(rule)

    def candidates(self, items: Sequence[Item]) -> list[Rule]:
        found: dict[str, Rule] = {rule.id: rule for rule in self.cart_wide}
        for item in items:
            for key in (item.sku, item.product_id, item.category_id):
                if key is not None:
                    for rule in self.by_key.get(key, ()):
                        found[rule.id] = rule
        return sorted(found.values(), key=lambda rule: (-rule.priority, rule.order))


@dataclass(frozen=True)
class Context:
    channel: str
    currency: str
    now: datetime
    tax_rates: dict[str, int]
    prices_include_tax: bool
    shipping: int
    segments: frozenset[str] = frozenset()
    coupons: dict[str, str] = field(default_factory=dict)  # promotion id -> the coupon code given for it


@dataclass
class LineQuote:
    sku: str
    name: str
    quantity: int
    unit_price: int
    price_channel: str
    subtotal: int
    tax_rate: int
    discount: int = 0
    discounts: list[dict[str, Any]] = field(default_factory=list)
    tax: int = 0
    total: int = 0
    locked: bool = False  # a non-stackable promotion took this line

    def remaining(self) -> int:
        return self.subtotal - self.discount


@dataclass
class Quote:
    currency: str
    lines: list[LineQuote]
    subtotal: int
    discount: int
    tax: int
    shipping: int
    shipping_discount: int
    total: int
    promotions: list[dict[str, Any]]
    prices_include_tax: bool
    skipped: dict[str, str]  # promotion id -> why it did not apply (for coupons the customer gave)


def round_half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


def spread(amount: int, weights: Sequence[int]) -> list[int]:
    """``amount`` split in proportion to ``weights`` (largest remainder): the parts add up exactly."""
    total = sum(weights)
    if total <= 0 or amount <= 0:
        return [0] * len(weights)
    shares = [amount * weight // total for weight in weights]
    remainders = sorted(range(len(weights)), key=lambda i: -((amount * weights[i]) % total))
    for index in remainders[: amount - sum(shares)]:
        shares[index] += 1
    return shares


def _eligible(rule: Rule, context: Context) -> str | None:
    """Why ``rule`` cannot apply in this context, or None."""
    if not rule.live(context.now):
        return "is not running now" if rule.starts_at and context.now < rule.starts_at else "has ended"
    if rule.requires_coupon and rule.id not in context.coupons:
        return "needs a coupon code"
    if rule.channels and context.channel not in rule.channels:
        return f"does not apply on the {context.channel} channel"
    if rule.currency and rule.currency != context.currency:
        return f"applies to carts in {rule.currency}"
    if rule.segments and not (rule.segments & context.segments):
        return "is reserved for other customers"
    return None


def _unit_discounts(rule: Rule, lines: list[LineQuote], indexes: list[int]) -> dict[int, int]:
    """Buy X get Y: in every group of X+Y units (dearest first), the cheapest Y are discounted."""
    units = sorted(
        ((lines[i].unit_price, i) for i in indexes for _ in range(lines[i].quantity)), key=lambda unit: -unit[0]
    )
    group = rule.buy + rule.get
    result: dict[int, int] = {}
    if rule.buy <= 0 or rule.get <= 0:
        return result
    for start in range(0, len(units) - group + 1, group):
        for price, index in units[start + rule.buy : start + group]:
            result[index] = result.get(index, 0) + round_half_up(price * rule.get_percent_bp, 10000)
    return result


def _discounts_of(rule: Rule, lines: list[LineQuote], indexes: list[int], context: Context) -> dict[int, int]:
    if rule.kind == "percentage":
        return {i: round_half_up(lines[i].remaining() * rule.percent_bp, 10000) for i in indexes}
    if rule.kind == "fixed":
        if rule.scope == "cart":
            shares = spread(
                min(rule.amount, sum(lines[i].remaining() for i in indexes)), [lines[i].remaining() for i in indexes]
            )
            return dict(zip(indexes, shares, strict=True))
        return {i: rule.amount * lines[i].quantity for i in indexes}
    if rule.kind == "buy_x_get_y":
        return _unit_discounts(rule, lines, indexes)
    if rule.kind == "bundle":
        by_sku = {lines[i].sku: i for i in indexes}
        if any(sku not in by_sku for sku, _ in rule.bundle):
            return {}
        sets = min(lines[by_sku[sku]].quantity // need for sku, need in rule.bundle)
        if sets <= 0:
            return {}
        parts = [lines[by_sku[sku]].unit_price * need * sets for sku, need in rule.bundle]
        saving = sum(parts) - rule.bundle_price * sets
        shares = spread(max(saving, 0), parts)
        return {by_sku[sku]: share for (sku, _), share in zip(rule.bundle, shares, strict=True)}
    return {}


def price_cart(items: Sequence[Item], rules: Sequence[Rule], context: Context) -> Quote:
    """Price ``items`` with the promotions among ``rules`` that apply (``rules`` sorted as applied)."""
    standard_rate = context.tax_rates.get("standard", 0)
    lines = [
        LineQuote(
            sku=item.sku,
            name=item.name,
            quantity=item.quantity,
            unit_price=item.unit_price,
            price_channel=item.price_channel,
            subtotal=item.unit_price * item.quantity,
            tax_rate=context.tax_rates.get(item.tax_class, standard_rate),
        )
        for item in items
    ]
    subtotal = sum(line.subtotal for line in lines)
    shipping = context.shipping
    shipping_discount = 0
    applied: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for rule in rules:
        reason = _eligible(rule, context)
        if reason is not None:
            skipped[rule.id] = reason
            continue
        indexes = [i for i, item in enumerate(items) if rule.matches(item)]
        if not indexes and rule.scope != "cart":
            skipped[rule.id] = "applies to none of the items in the cart"
            continue
        base = sum(lines[i].subtotal for i in indexes)
        if base < rule.min_subtotal:
            skipped[rule.id] = f"needs a subtotal of at least {rule.min_subtotal} {context.currency}"
            continue
        if sum(lines[i].quantity for i in indexes) < rule.min_quantity:
            skipped[rule.id] = f"needs at least {rule.min_quantity} items"
            continue
        if rule.kind == "free_shipping":
            if shipping - shipping_discount > 0:
                amount = shipping - shipping_discount
                shipping_discount += amount
                applied.append(_applied(rule, context, amount, target="shipping"))
            else:
                skipped[rule.id] = "shipping is already free"
            continue
        if not rule.stackable and any(lines[i].discount for i in indexes):
            skipped[rule.id] = "does not combine with a promotion already applied"
            continue
        if any(lines[i].locked for i in indexes):  # the lines a non-stackable promotion took are out of reach
            indexes = [i for i in indexes if not lines[i].locked]
            if not indexes:
                skipped[rule.id] = "does not combine with a promotion already applied"
                continue
        amounts = _discounts_of(rule, lines, indexes, context)
        total = 0
        for index, amount in amounts.items():
            amount = min(amount, lines[index].remaining())
            if amount <= 0:
                continue
            line = lines[index]
            line.discount += amount
            line.discounts.append(_applied(rule, context, amount))
            total += amount
            if not rule.stackable:
                line.locked = True
        if total <= 0:
            skipped[rule.id] = "gives no discount on this cart"
            continue
        applied.append(_applied(rule, context, total))

    tax = 0
    for line in lines:
        net = line.remaining()
        if context.prices_include_tax:
            line.tax = net - round_half_up(net * 10000, 10000 + line.tax_rate)
            line.total = net
        else:
            line.tax = round_half_up(net * line.tax_rate, 10000)
            line.total = net + line.tax
        tax += line.tax
    shipping_net = shipping - shipping_discount
    if context.prices_include_tax:
        tax += shipping_net - round_half_up(shipping_net * 10000, 10000 + standard_rate)
        shipping_charged = shipping_net
    else:
        shipping_tax = round_half_up(shipping_net * standard_rate, 10000)
        tax += shipping_tax
        shipping_charged = shipping_net
    discount = sum(line.discount for line in lines)
    total = sum(line.total for line in lines) + shipping_charged
    if not context.prices_include_tax:
        total += tax - sum(line.tax for line in lines)
    return Quote(
        currency=context.currency,
        lines=lines,
        subtotal=subtotal,
        discount=discount,
        tax=tax,
        shipping=shipping_charged,
        shipping_discount=shipping_discount,
        total=total,
        promotions=applied,
        prices_include_tax=context.prices_include_tax,
        skipped=skipped,
    )


def _applied(rule: Rule, context: Context, amount: int, *, target: str = "items") -> dict[str, Any]:
    entry: dict[str, Any] = {"promotion_id": rule.id, "name": rule.name, "kind": rule.kind, "amount": amount}
    if target != "items":
        entry["target"] = target
    code = context.coupons.get(rule.id)
    if code:
        entry["coupon_code"] = code
    return entry
