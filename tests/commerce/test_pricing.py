"""The pricing rules, one at a time, on the pure engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from omnicanal.commerce.pricing import Context, Item, PromotionIndex, Rule, price_cart, spread

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RATES = {"standard": 2100, "reduced": 1000, "zero": 0}


def context(**overrides: Any) -> Context:
    values: dict[str, Any] = {
        "channel": "web",
        "currency": "EUR",
        "now": NOW,
        "tax_rates": RATES,
        "prices_include_tax": True,
        "shipping": 0,
    }
    values.update(overrides)
    return Context(**values)


def item(
    sku: str,
    price: int,
    quantity: int = 1,
    *,
    product: str | None = None,
    category: str | None = None,
    tax_class: str = "standard",
) -> Item:
    return Item(
        sku=sku,
        product_id=product or f"p-{sku}",
        category_id=category,
        name=sku,
        quantity=quantity,
        unit_price=price,
        tax_class=tax_class,
    )


def rule(id: str, kind: str, scope: str = "cart", **fields: Any) -> Rule:
    return Rule(id=id, name=id, kind=kind, scope=scope, **fields)


def test_no_promotion_prices_are_tax_inclusive() -> None:
    quote = price_cart([item("A", 1210, 2)], [], context())
    assert (quote.subtotal, quote.discount, quote.total) == (2420, 0, 2420)
    assert quote.tax == 420  # 21 % inside 24.20


def test_tax_exclusive_prices_add_tax_on_top() -> None:
    quote = price_cart(
        [item("A", 1000, 2), item("B", 1000, tax_class="reduced")], [], context(prices_include_tax=False)
    )
    assert quote.tax == 420 + 100
    assert quote.total == 3000 + 520


def test_percentage_on_a_product_only() -> None:
    quote = price_cart(
        [item("A", 1000, 2), item("B", 500)],
        [rule("p", "percentage", "product", targets=frozenset({"A"}), percent_bp=1000)],
        context(),
    )
    assert [line.discount for line in quote.lines] == [200, 0]
    assert quote.lines[0].discounts == [{"promotion_id": "p", "name": "p", "kind": "percentage", "amount": 200}]
    assert quote.total == 2300


def test_percentage_on_a_category() -> None:
    lines = [item("A", 1000, category="c1"), item("B", 1000, category="c2")]
    quote = price_cart(
        lines, [rule("c", "percentage", "category", targets=frozenset({"c1"}), percent_bp=5000)], context()
    )
    assert [line.discount for line in quote.lines] == [500, 0]


def test_fixed_amount_on_the_cart_is_spread_over_lines_and_adds_up() -> None:
    lines = [item("A", 1000), item("B", 2000), item("C", 333)]
    quote = price_cart(lines, [rule("f", "fixed", amount=1000)], context())
    assert sum(line.discount for line in quote.lines) == 1000 == quote.discount
    assert quote.lines[1].discount > quote.lines[0].discount > quote.lines[2].discount


def test_fixed_amount_never_below_zero() -> None:
    quote = price_cart(
        [item("A", 300)], [rule("f", "fixed", "product", targets=frozenset({"A"}), amount=500)], context()
    )
    assert quote.lines[0].discount == 300 and quote.total == 0


def test_buy_two_get_one_free_takes_the_cheapest() -> None:
    lines = [item("A", 1000, 2), item("B", 600)]
    quote = price_cart(
        lines, [rule("b", "buy_x_get_y", "product", targets=frozenset({"A", "B"}), buy=2, get=1)], context()
    )
    assert [line.discount for line in quote.lines] == [0, 600]
    quote = price_cart(
        [item("A", 1000, 5)], [rule("b", "buy_x_get_y", "product", targets=frozenset({"A"}), buy=2, get=1)], context()
    )
    assert quote.lines[0].discount == 1000  # 5 units: one full group of 3


def test_bundle_price() -> None:
    lines = [item("A", 1000, 2), item("B", 500, 1)]
    bundle = rule("u", "bundle", "product", bundle=(("A", 1), ("B", 1)), bundle_price=1200)
    quote = price_cart(lines, [bundle], context())
    assert quote.discount == 300  # one set: 15.00 for 12.00
    assert quote.total == 2500 - 300


def test_free_shipping_over_a_minimum() -> None:
    free = rule("s", "free_shipping", min_subtotal=3000)
    cheap = price_cart([item("A", 1000)], [free], context(shipping=499))
    assert cheap.shipping == 499 and cheap.skipped["s"].startswith("needs a subtotal")
    dear = price_cart([item("A", 1000, 3)], [free], context(shipping=499))
    assert (dear.shipping, dear.shipping_discount, dear.total) == (0, 499, 3000)


def test_dates_channels_segments_and_coupons() -> None:
    lines = [item("A", 1000)]
    later = rule("later", "percentage", percent_bp=1000, starts_at=NOW + timedelta(days=1))
    over = rule("over", "percentage", percent_bp=1000, ends_at=NOW)
    store_only = rule("store", "percentage", percent_bp=1000, channels=frozenset({"store"}))
    gold = rule("gold", "percentage", percent_bp=1000, segments=frozenset({"gold"}))
    coupon = rule("coupon", "percentage", percent_bp=1000, requires_coupon=True)
    quote = price_cart(lines, [later, over, store_only, gold, coupon], context())
    assert quote.discount == 0
    assert set(quote.skipped) == {"later", "over", "store", "gold", "coupon"}
    quote = price_cart(lines, [gold, coupon], context(segments=frozenset({"gold"}), coupons={"coupon": "SAVE"}))
    assert quote.discount == 100 + 90
    assert quote.promotions[1]["coupon_code"] == "SAVE"


def test_priority_and_stacking() -> None:
    lines = [item("A", 1000)]
    big = rule("big", "percentage", percent_bp=2000, priority=10, stackable=False)
    small = rule("small", "percentage", percent_bp=1000, priority=1)
    quote = price_cart(lines, sorted([small, big], key=lambda r: -r.priority), context())
    assert quote.discount == 200 and quote.skipped["small"].startswith("does not combine")
    stack = rule("big", "percentage", percent_bp=2000, priority=10)
    quote = price_cart(lines, [stack, small], context())
    assert quote.discount == 200 + 80  # the second on what the first left
    exclusive_late = rule("late", "percentage", percent_bp=5000, priority=0, stackable=False)
    quote = price_cart(lines, [stack, exclusive_late], context())
    assert quote.discount == 200


def test_index_finds_promotions_by_sku_product_category_and_cart() -> None:
    rules = [
        rule("sku", "percentage", "product", targets=frozenset({"A"}), percent_bp=100),
        rule("product", "percentage", "product", targets=frozenset({"p-B"}), percent_bp=100),
        rule("category", "percentage", "category", targets=frozenset({"c"}), percent_bp=100),
        rule("cart", "fixed", amount=1),
        rule("other", "percentage", "product", targets=frozenset({"Z"}), percent_bp=100),
    ]
    index = PromotionIndex(rules)
    found = {r.id for r in index.candidates([item("A", 1), item("B", 1), item("C", 1, category="c")])}
    assert found == {"sku", "product", "category", "cart"}


@given(st.integers(0, 10**9), st.lists(st.integers(0, 10**6), min_size=1, max_size=20))
def test_spread_always_adds_up(amount: int, weights: list[int]) -> None:
    parts = spread(amount, weights)
    if sum(weights) > 0:
        assert sum(parts) == amount
        assert all(part >= 0 for part in parts)
    else:
        assert parts == [0] * len(weights)


@given(
    st.lists(st.tuples(st.integers(1, 100_000), st.integers(1, 20)), min_size=1, max_size=8),
    st.integers(1, 100),
    st.integers(0, 50_000),
    st.booleans(),
)
def test_totals_are_consistent(lines: list[tuple[int, int]], percent: int, amount: int, inclusive: bool) -> None:
    items = [item(f"S{n}", price, quantity) for n, (price, quantity) in enumerate(lines)]
    rules = [rule("p", "percentage", percent_bp=percent * 100), rule("f", "fixed", amount=amount)]
    quote = price_cart(items, rules, context(prices_include_tax=inclusive, shipping=499))
    assert quote.discount == sum(line.discount for line in quote.lines)
    assert all(0 <= line.discount <= line.subtotal for line in quote.lines)
    assert quote.subtotal - quote.discount + quote.shipping + (0 if inclusive else quote.tax) == quote.total
    assert quote.total >= 0
