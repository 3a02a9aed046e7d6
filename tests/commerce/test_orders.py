"""Quote and checkout charge the same; bad carts change nothing; orders from every channel."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from omnicanal.commerce import orders
from tests.commerce.helpers import API, cart, make_promotion, ok, shop, stock

QUOTE_FIELDS = ("lines", "subtotal", "discount", "tax", "shipping", "total", "currency")


def test_quote_prices_exactly_as_the_order_charges(client: TestClient) -> None:
    data = shop(client)
    make_promotion(client, name="10% shoes", kind="percentage", scope="category", categories=["clothing"], percent=10)
    body = cart(data["customer"]["id"], [("TEE-M", 2), ("RUN-42", 1), ("BOOK-1", 1)])
    quote = ok(client.post(f"{API}/carts/quote", json=body))
    order = ok(client.post(f"{API}/orders", json=body), 201)
    assert {k: order[k] for k in QUOTE_FIELDS} == {k: quote[k] for k in QUOTE_FIELDS}
    assert order["status"] == "pending" and order["id"]
    # 10 % on the clothing category and its subcategory (shoes), not on the book
    assert [line["discount"] for line in order["lines"]] == [400, 800, 0]
    assert order["lines"][0]["discounts"][0]["name"] == "10% shoes"
    assert order["subtotal"] == 4000 + 8000 + 1500
    assert order["discount"] == 1200
    assert order["shipping"] == 499
    assert order["total"] == 13500 - 1200 + 499
    # taxes are inside the prices: 21 % on clothes and shipping, 4 % on the book
    expected_tax = (
        (3600 - round(3600 / 1.21))
        + (7200 - round(7200 / 1.21))
        + (1500 - round(1500 / 1.04))
        + (499 - round(499 / 1.21))
    )
    assert abs(order["tax"] - expected_tax) <= 1
    fetched = ok(client.get(f"{API}/orders/{order['id']}"))
    assert {k: fetched[k] for k in QUOTE_FIELDS} == {k: quote[k] for k in QUOTE_FIELDS}


def test_the_answer_to_placing_an_order_is_the_order_as_read_back(client: TestClient) -> None:
    data = shop(client)
    customer = data["customer"]["id"]
    make_promotion(client, name="10% shoes", kind="percentage", scope="category", categories=["clothing"], percent=10)
    make_promotion(client, name="Welcome", kind="fixed", amount=500, currency="EUR", coupon_codes=["WELCOME"])
    centro = data["centro"]["id"]
    bodies = [
        cart(customer, [("TEE-M", 2), ("RUN-42", 1), ("BOOK-1", 1)], coupons=["welcome"]),
        cart(customer, [("TEE-M", 1)], channel="app", fulfillment={"type": "pickup", "store_id": centro}),
        cart(
            customer,
            [("TEE-M", 1)],
            channel="store",
            fulfillment={
                "type": "ship_from_store",
                "store_id": centro,
                "address": {"line1": "Alcalá 1", "city": "Madrid"},
            },
        ),
    ]
    for number, body in enumerate(bodies):
        key = {"Idempotency-Key": f"answer-{number}"}
        placed = ok(client.post(f"{API}/orders", json=body, headers=key), 201)
        assert placed == ok(client.get(f"{API}/orders/{placed['id']}"))
        assert ok(client.post(f"{API}/orders", json=body, headers=key), 201) == placed  # the stored answer
    assert placed["lines"][0]["discounts"] and placed["fulfillment"]["store_id"] == centro


def test_an_order_that_costs_nothing_is_paid_at_once_and_answered_as_read_back(client: TestClient) -> None:
    data = shop(client)
    make_promotion(client, name="Free tee", kind="percentage", scope="product", skus=["TEE-M"], percent=100)
    body = cart(
        data["customer"]["id"], [("TEE-M", 1)], fulfillment={"type": "pickup", "store_id": data["centro"]["id"]}
    )
    placed = ok(client.post(f"{API}/orders", json=body), 201)
    assert (placed["total"], placed["status"], placed["payment_status"]) == (0, "paid", "paid")
    assert placed == ok(client.get(f"{API}/orders/{placed['id']}"))


def test_an_order_reserves_stock_where_it_comes_from(client: TestClient) -> None:
    data = shop(client)
    warehouse = data["warehouse"]["id"]
    ok(client.post(f"{API}/orders", json=cart(data["customer"]["id"], [("RUN-42", 2)])), 201)
    assert stock(client, warehouse, "RUN-42") == {"sku": "RUN-42", "on_hand": 10, "reserved": 2, "available": 8}


def test_bad_carts_name_the_line_and_change_nothing(client: TestClient) -> None:
    data = shop(client)
    customer = data["customer"]["id"]
    centro = data["centro"]["id"]
    cases = [
        (cart(customer, [("TEE-M", 1), ("NOPE", 1)]), "lines[1].sku", "unknown SKU"),
        (cart(customer, [("TEE-M", 0)]), "lines[0].quantity", "at least 1"),
        (cart(customer, [("TEE-M", -2)]), "lines[0].quantity", "at least 1"),
        (cart(customer, [("RUN-42", 99)]), "lines[0]", "only 13 of RUN-42 in stock"),
        (
            cart(customer, [("BOOK-1", 1)], fulfillment={"type": "pickup", "store_id": centro}),
            "lines[0]",
            "only 0 of BOOK-1 available at Madrid Centro",
        ),
        (cart(customer, [("TEE-M", 1)], coupons=["NOSUCH"]), "coupon_codes[0]", "unknown coupon code"),
    ]
    for body, field, words in cases:
        for path in ("/carts/quote", "/orders"):
            response = client.post(f"{API}{path}", json=body)
            assert response.status_code == 422, (path, body, response.text)
            problem = response.json()
            assert response.headers["content-type"].startswith("application/problem+json")
            assert any(e["field"] == field and words in e["message"] for e in problem["errors"]), problem
    assert ok(client.get(f"{API}/orders"))["items"] == []
    assert stock(client, data["warehouse"]["id"], "RUN-42")["reserved"] == 0


def test_expired_and_exhausted_coupons_are_refused(client: TestClient) -> None:
    data = shop(client)
    customer = data["customer"]["id"]
    make_promotion(
        client,
        name="Old",
        kind="percentage",
        percent=10,
        coupon_codes=["OLD10"],
        starts_at="2020-01-01T00:00:00Z",
        ends_at="2020-02-01T00:00:00Z",
    )
    once = make_promotion(
        client, name="Once", kind="fixed", amount=500, currency="EUR", coupon_codes=["ONCE"], usage_limit=1
    )
    response = client.post(f"{API}/carts/quote", json=cart(customer, [("TEE-M", 1)], coupons=["old10"]))
    assert response.status_code == 422 and "ended" in response.text
    ok(client.post(f"{API}/orders", json=cart(customer, [("TEE-M", 1)], coupons=["ONCE"])), 201)
    response = client.post(f"{API}/orders", json=cart(customer, [("TEE-M", 1)], coupons=["ONCE"]))
    assert response.status_code == 422
    assert response.json()["errors"][0] == {
        "field": "coupon_codes[0]",
        "message": "ONCE: the promotion has been used up",
    }
    assert ok(client.get(f"{API}/promotions/{once['id']}"))["used_count"] == 1


def test_a_coupon_whose_conditions_the_cart_misses_says_why(client: TestClient) -> None:
    data = shop(client)
    make_promotion(
        client, name="Big spender", kind="fixed", amount=1000, currency="EUR", min_subtotal=10000, coupon_codes=["BIG"]
    )
    response = client.post(f"{API}/carts/quote", json=cart(data["customer"]["id"], [("TEE-M", 1)], coupons=["BIG"]))
    assert response.status_code == 422
    assert "needs a subtotal of at least 10000 EUR" in response.text


def test_order_creation_is_idempotent(client: TestClient) -> None:
    data = shop(client)
    body = cart(data["customer"]["id"], [("TEE-M", 1)])
    first = client.post(f"{API}/orders", json=body, headers={"Idempotency-Key": "order-1"})
    again = client.post(f"{API}/orders", json=body, headers={"Idempotency-Key": "order-1"})
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(ok(client.get(f"{API}/orders"))["items"]) == 1
    assert stock(client, data["warehouse"]["id"], "TEE-M")["reserved"] == 1


def test_a_key_reused_for_another_order_or_payment_is_refused_and_a_payment_is_replayed(client: TestClient) -> None:
    data = shop(client)
    body = cart(data["customer"]["id"], [("TEE-M", 1)])
    order = ok(client.post(f"{API}/orders", json=body, headers={"Idempotency-Key": "order-2"}), 201)
    other = client.post(
        f"{API}/orders", json=cart(data["customer"]["id"], [("TEE-M", 2)]), headers={"Idempotency-Key": "order-2"}
    )
    assert other.status_code == 409
    assert "already used for a different request" in other.text
    payment = {"method": "card", "amount": 500}
    paid = client.post(f"{API}/orders/{order['id']}/payments", json=payment, headers={"Idempotency-Key": "pay-1"})
    again = client.post(f"{API}/orders/{order['id']}/payments", json=payment, headers={"Idempotency-Key": "pay-1"})
    assert paid.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == paid.json()["id"]
    more = client.post(
        f"{API}/orders/{order['id']}/payments",
        json={"method": "card", "amount": 600},
        headers={"Idempotency-Key": "pay-1"},
    )
    assert more.status_code == 409
    assert ok(client.get(f"{API}/orders/{order['id']}"))["paid_amount"] == 500
    assert stock(client, data["warehouse"]["id"], "TEE-M")["reserved"] == 1


def test_an_order_by_identities_finds_or_creates_the_customer(client: TestClient) -> None:
    data = shop(client)
    body = cart(None, [("TEE-M", 1)], channel="call_center")
    body["identities"] = [{"type": "email", "value": "ANA@example.com"}]
    order = ok(client.post(f"{API}/orders", json=body), 201)
    assert order["customer_id"] == data["customer"]["id"]
    assert order["channel"] == "call_center"
    body["identities"] = [{"type": "phone", "value": "+34 600 111 222"}]
    other = ok(client.post(f"{API}/orders", json=body), 201)
    assert other["customer_id"] != data["customer"]["id"]
    timeline = ok(client.get(f"{API}/customers/{order['customer_id']}/timeline"))
    assert "order.placed" in [e["type"] for e in timeline["items"]]


def test_the_same_promotion_on_every_channel(client: TestClient) -> None:
    data = shop(client)
    make_promotion(client, name="Tees 2x1", kind="buy_x_get_y", scope="product", skus=["TEE-M", "TEE-L"], buy=1, get=1)
    totals = set()
    for channel in ("web", "app", "store", "call_center", "chat"):
        body = cart(data["customer"]["id"], [("TEE-M", 1), ("TEE-L", 1)], channel=channel)
        totals.add(ok(client.post(f"{API}/carts/quote", json=body))["discount"])
    assert totals == {2000}


def test_channel_price_used_at_checkout_and_marked(client: TestClient) -> None:
    from tests.commerce.helpers import make_product, set_stock

    data = shop(client)
    make_product(client, "Mug", [("MUG-1", 1200)], channel_prices={"MUG-1": {"store": 1000}})
    set_stock(client, data["centro"]["id"], "MUG-1", 5)
    store_body = cart(
        data["customer"]["id"],
        [("MUG-1", 1)],
        channel="store",
        fulfillment={"type": "pickup", "store_id": data["centro"]["id"]},
    )
    line = ok(client.post(f"{API}/carts/quote", json=store_body))["lines"][0]
    assert (line["unit_price"], line["price_channel"]) == (1000, "store")
    web_body = cart(data["customer"]["id"], [("MUG-1", 1)])
    line = ok(client.post(f"{API}/carts/quote", json=web_body))["lines"][0]
    assert (line["unit_price"], line["price_channel"]) == (1200, None)


def test_an_order_can_insist_on_the_quoted_total(client: TestClient) -> None:
    data = shop(client)
    body = cart(data["customer"]["id"], [("TEE-M", 1)])
    quote = ok(client.post(f"{API}/carts/quote", json=body))
    make_promotion(client, name="Flash", kind="percentage", percent=50)  # the price changes after the quote
    response = client.post(f"{API}/orders", json=body | {"expected_total": quote["total"]})
    assert response.status_code == 409 and response.json()["expected_total"] == quote["total"]
    assert ok(client.get(f"{API}/orders"))["items"] == []
    fresh = ok(client.post(f"{API}/carts/quote", json=body))
    order = ok(client.post(f"{API}/orders", json=body | {"expected_total": fresh["total"]}), 201)
    assert order["total"] == fresh["total"] < quote["total"]


def test_order_numbers_are_the_date_and_six_letters_of_the_unambiguous_alphabet() -> None:
    from datetime import UTC, datetime

    from omnicanal.commerce.orders import NUMBER_ALPHABET, _number

    numbers = [_number(datetime(2026, 11, 24, tzinfo=UTC)) for _ in range(2000)]
    assert all(re.fullmatch(rf"261124-[{NUMBER_ALPHABET}]{{6}}", number) for number in numbers)
    assert len(set(numbers)) == 2000
    assert set("".join(number[7:] for number in numbers)) == set(NUMBER_ALPHABET)  # every letter is drawn


def test_an_order_number_drawn_twice_in_a_day_is_drawn_again(client: TestClient, monkeypatch: Any) -> None:
    from omnicanal.commerce import orders

    data = shop(client)
    draw = orders._number
    drawn: list[str] = []

    def unlucky(now: Any) -> str:  # the first three draws give the same number
        number = f"{now:%y%m%d}-AAAAAA" if len(drawn) < 3 else draw(now)
        drawn.append(number)
        return number

    monkeypatch.setattr(orders, "_number", unlucky)
    body = cart(data["customer"]["id"], [("TEE-M", 1)])
    first = ok(client.post(f"{API}/orders", json=body), 201)
    second = ok(client.post(f"{API}/orders", json=body), 201)
    assert first["number"].endswith("-AAAAAA") and second["number"] != first["number"]
    assert drawn[1:3] == [first["number"]] * 2 and len(drawn) == 4  # the clash drawn twice, then a new number
    assert stock(client, data["warehouse"]["id"], "TEE-M")["reserved"] == 2  # nothing reserved twice


def test_the_open_cart_is_found_without_reading_the_carts_of_past_orders(client: TestClient) -> None:
    database = client.app.state.database  # type: ignore[attr-defined]
    if not database.is_sqlite:
        pytest.skip("reads SQLite's query plan; PostgreSQL's planner scans a table this small whatever its indexes")
    with database.read() as session:
        connection = session.connection()
        for statement in (orders._OPEN_CART, orders._OPEN_CARTS_OF):
            compiled = statement.compile(dialect=connection.dialect)
            values = tuple("x" for _ in compiled.positiontup or ())
            plan = " ".join(
                str(row[-1]) for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", values)
            )
            assert "ix_commerce_carts_customer_status (customer_id=? AND status=?)" in plan, plan
