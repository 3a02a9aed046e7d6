"""Bugs found reviewing the commerce domain against issue #5, each proven through the public API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omnicanal.db import Database
from omnicanal.settings import Settings
from tests.commerce.helpers import API, cart, make_promotion, ok, shop, stock
from tests.commerce.test_payments_fulfillment import _pickup_code, pay, place


def test_a_cart_naming_a_sku_on_two_lines_is_refused_naming_the_line(client: TestClient) -> None:
    # Before: accepted, then shipping, handover and returns found the units by SKU and saw only the last line:
    # "ship everything" shipped 2 of 3, marked the order fulfilled and left 1 unit reserved forever.
    data = shop(client)
    body = cart(data["customer"]["id"], [("TEE-M", 1), ("BOOK-1", 1), ("TEE-M", 2)])
    for path in ("/carts/quote", "/orders"):
        response = client.post(f"{API}{path}", json=body)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["errors"] == [{"field": "lines[2].sku", "message": "TEE-M is already on lines[0]"}]
    assert stock(client, data["warehouse"]["id"], "TEE-M")["reserved"] == 0
    assert ok(client.get(f"{API}/orders"))["items"] == []


def test_the_counter_adds_up_a_sku_typed_twice() -> None:
    from omnicanal.console.shop import parse_lines

    assert parse_lines(cast(Any, None), "TEE-M\nbook-1 2\ntee-m 2") == [
        {"sku": "TEE-M", "quantity": 3},
        {"sku": "BOOK-1", "quantity": 2},
    ]


def test_the_counter_reads_a_lowercase_sku_with_an_x_in_it() -> None:
    # Before: every lowercase "x" was taken for "times": "tee-xl 2" became SKU "TEE-" and the clerk was told to
    # write one SKU and its quantity per line; "box-1 2" became one unit of SKU "BO".
    from omnicanal.console.shop import parse_lines

    assert parse_lines(cast(Any, None), "tee-xl 2\nbox-1\nTEE-M x3\nrun-42x2") == [
        {"sku": "TEE-XL", "quantity": 2},
        {"sku": "BOX-1", "quantity": 1},
        {"sku": "TEE-M", "quantity": 3},
        {"sku": "RUN-42", "quantity": 2},
    ]


def test_a_return_from_a_partly_shipped_order_still_lets_the_rest_ship(client: TestClient) -> None:
    data = shop(client)
    warehouse = data["warehouse"]["id"]
    order = place(client, data, [("TEE-M", 1), ("BOOK-1", 1)])
    pay(client, order, order["total"])
    first = {"lines": [{"sku": "TEE-M", "quantity": 1}], "carrier": "GLS", "tracking_number": "T1"}
    ok(client.post(f"{API}/orders/{order['id']}/fulfillments", json=first), 201)
    body = {"order_id": order["id"], "channel": "web", "lines": [{"sku": "TEE-M", "quantity": 1}]}
    ok(client.post(f"{API}/returns", json=body), 201)
    # the book was paid for and is still reserved: it must be possible to ship it (or at least to release it)
    rest = client.post(f"{API}/orders/{order['id']}/fulfillments", json={"carrier": "GLS", "tracking_number": "T2"})
    assert rest.status_code == 201, rest.text
    assert stock(client, warehouse, "BOOK-1")["reserved"] == 0


def test_a_coupon_for_products_not_in_the_cart_says_why(client: TestClient) -> None:
    data = shop(client)
    make_promotion(
        client,
        name="Shoe week",
        kind="percentage",
        scope="product",
        skus=["RUN-42"],
        percent=20,
        coupon_codes=["RUN20"],
    )
    body = cart(data["customer"]["id"], [("TEE-M", 1)], coupons=["RUN20"])
    for path in ("/carts/quote", "/orders"):
        response = client.post(f"{API}{path}", json=body)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["errors"][0]["field"] == "coupon_codes[0]"
    assert ok(client.get(f"{API}/orders"))["items"] == []


def test_the_return_window_of_a_pickup_starts_when_it_is_collected(
    client: TestClient, db: Database, settings: Settings
) -> None:
    from omnicanal.commerce.models import Fulfillment

    settings.commerce_return_days = 5  # a short window, shorter than the 7 days a pickup waits in the store
    data = shop(client)
    centro = data["centro"]["id"]
    order = place(client, data, [("TEE-M", 1)], fulfillment={"type": "pickup", "store_id": centro})
    pay(client, order, order["total"])
    ok(client.post(f"{API}/orders/{order['id']}/fulfillments", json={}), 201)
    with db.write() as session:  # made ready 6 days ago; collected today, a day before its pickup deadline
        for row in session.scalars(select(Fulfillment)):
            row.created_at = row.created_at - timedelta(days=6)
    ok(client.post(f"{API}/orders/{order['id']}/pickup", json={"code": _pickup_code(client, order["id"])}))
    body = {"order_id": order["id"], "channel": "store", "store_id": centro, "lines": [{"sku": "TEE-M", "quantity": 1}]}
    returned = client.post(f"{API}/returns", json=body)
    # before: 422 "the return window of 5 days ended" (counted from when the order was made ready)
    assert returned.status_code == 201, returned.text


def test_store_credit_given_for_a_return_is_not_refunded_again_in_money(client: TestClient) -> None:
    data = shop(client)
    order = place(client, data, [("TEE-M", 1)])
    pay(client, order, order["total"])
    ok(client.post(f"{API}/orders/{order['id']}/fulfillments", json={}), 201)
    body = {
        "order_id": order["id"],
        "channel": "mail",
        "refund_method": "store_credit",
        "lines": [{"sku": "TEE-M", "quantity": 1}],
    }
    credited = ok(client.post(f"{API}/returns", json=body), 201)
    assert credited["refund_amount"] == order["total"] - order["shipping"]
    # only the shipping is left of what was paid: refunding the whole total again pays the goods back twice
    again = client.post(f"{API}/orders/{order['id']}/payments", json={"kind": "refund", "amount": order["total"]})
    assert again.status_code == 422, again.text
    assert ok(client.get(f"{API}/orders/{order['id']}"))["refunded_amount"] == 0
    shipping = {"kind": "refund", "amount": order["shipping"]}
    ok(client.post(f"{API}/orders/{order['id']}/payments", json=shipping), 201)  # what is left can go back


def test_a_refused_order_by_identities_creates_no_customer(client: TestClient) -> None:
    shop(client)
    body = cart(None, [("NOPE", 1)], channel="call_center")
    body["identities"] = [{"type": "email", "value": "new.person@example.com"}]
    refused = client.post(f"{API}/orders", json=body)
    assert refused.status_code == 422
    found = ok(client.get(f"{API}/customers", params={"identity": "email:new.person@example.com"}))
    assert found["items"] == []


def test_problem_details_keep_the_http_status_and_name_the_order_status(client: TestClient) -> None:
    # Before: the order's status went out as the problem's "status" member ("status": "pending" on a 409/422),
    # where RFC 9457 puts the HTTP status code.
    data = shop(client)
    order = place(client, data, [("TEE-M", 1)])
    ship = client.post(f"{API}/orders/{order['id']}/fulfillments", json={})
    assert ship.status_code == 409
    assert ship.json()["status"] == 409 and ship.json()["order_status"] == "pending"
    body = {"order_id": order["id"], "channel": "web", "lines": [{"sku": "TEE-M", "quantity": 1}]}
    early = client.post(f"{API}/returns", json=body)
    assert early.status_code == 422
    assert early.json()["status"] == 422 and early.json()["order_status"] == "pending"
    ok(client.post(f"{API}/orders/{order['id']}/cancel"))
    again = client.post(f"{API}/orders/{order['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["status"] == 409 and again.json()["order_status"] == "cancelled"
    payment = client.post(f"{API}/orders/{order['id']}/payments", json={"method": "card", "amount": 100})
    assert payment.status_code == 409
    assert payment.json()["status"] == 409 and payment.json()["order_status"] == "cancelled"


def test_an_unpaid_pickup_that_expires_uncollected_gives_its_coupon_back(client: TestClient, db: Database) -> None:
    # docs/commerce.md: expiring "gives back the promotion uses (if unpaid)". Before: only a pending order did; a
    # pickup made ready to be paid at the counter, never collected nor paid, kept the customer's coupon spent.
    from omnicanal.commerce.orders import expire_due
    from omnicanal.db import utcnow

    data = shop(client)
    centro = data["centro"]["id"]
    promotion = make_promotion(client, name="Welcome", kind="percentage", percent=10, usage_limit=1)
    code = ok(client.post(f"{API}/promotions/{promotion['id']}/coupons", json={"count": 1}), 201)["codes"][0]
    fulfillment = {"type": "pickup", "store_id": centro}
    order = place(client, data, [("TEE-M", 1)], fulfillment=fulfillment, coupons=[code])
    ok(client.post(f"{API}/orders/{order['id']}/fulfillments", json={}), 201)  # ready; to be paid at the counter
    with db.write() as session:
        assert expire_due(session, now=utcnow() + timedelta(days=8)) == 1
    assert ok(client.get(f"{API}/orders/{order['id']}"))["status"] == "expired"
    assert ok(client.get(f"{API}/promotions/{promotion['id']}"))["used_count"] == 0
    again = client.post(f"{API}/carts/quote", json=cart(data["customer"]["id"], [("TEE-M", 1)], coupons=[code]))
    assert again.status_code == 200, again.text


def test_an_uncollected_pickup_gives_its_coupon_back_like_a_cancelled_one(client: TestClient, db: Database) -> None:
    # A paid pickup that expires uncollected is refunded in full: the sale did not happen, so its single-use
    # coupon comes back as on a cancellation (before: the uses came back only for an unpaid order).
    from omnicanal.commerce.orders import expire_due
    from omnicanal.db import utcnow

    data = shop(client)
    centro = data["centro"]["id"]
    promotion = make_promotion(client, name="Welcome", kind="percentage", percent=10, coupon_codes=["HELLO"])
    generated = ok(client.post(f"{API}/promotions/{promotion['id']}/coupons", json={"count": 1}), 201)["codes"][0]
    order = place(client, data, [("TEE-M", 1)], fulfillment={"type": "pickup", "store_id": centro}, coupons=[generated])
    pay(client, order, order["total"])
    ok(client.post(f"{API}/orders/{order['id']}/fulfillments", json={}), 201)
    with db.write() as session:
        assert expire_due(session, now=utcnow() + timedelta(days=8)) == 1
    assert ok(client.get(f"{API}/orders/{order['id']}"))["payment_status"] == "refunded"
    again = client.post(f"{API}/carts/quote", json=cart(data["customer"]["id"], [("TEE-M", 1)], coupons=[generated]))
    assert again.status_code == 200, again.text


def test_a_non_stackable_promotion_keeps_only_its_own_lines_from_later_ones(client: TestClient) -> None:
    # docs/commerce.md: a non-stackable promotion "applies only to lines nothing else discounted, and then nothing
    # after it touches those lines". Before: a later cart-wide promotion skipped the whole cart, other lines too.
    data = shop(client)
    make_promotion(
        client, name="Runner deal", kind="percentage", scope="product", skus=["RUN-42"], percent=20, priority=10,
        stackable=False,
    )  # fmt: skip
    make_promotion(client, name="Everything", kind="percentage", percent=10)
    body = cart(data["customer"]["id"], [("RUN-42", 1), ("TEE-M", 1)])
    quote = ok(client.post(f"{API}/carts/quote", json=body))
    assert [line["discount"] for line in quote["lines"]] == [1600, 200]
    assert [p["name"] for p in quote["promotions"]] == ["Runner deal", "Everything"]
    order = ok(client.post(f"{API}/orders", json=body), 201)
    assert order["total"] == quote["total"] and order["discount"] == 1800


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_payment_link_confirmed_twice_at_once_counts_once(client: TestClient) -> None:
    # The provider retries its confirmation: every capture read the payment as pending before waiting for the
    # order's lock, so each one added the amount again (a half payment could be counted as the full total).
    from concurrent.futures import ThreadPoolExecutor

    data = shop(client)
    order = place(client, data, [("RUN-42", 1)])
    half = order["total"] // 2
    link = pay(client, order, half, "payment_link")
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: client.post(f"{API}/payments/{link['id']}/capture"), range(8)))
    assert sorted(r.status_code for r in responses) == [200] + [409] * 7, [r.text for r in responses]
    after = ok(client.get(f"{API}/orders/{order['id']}"))
    assert after["paid_amount"] == half and after["status"] == "pending"


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_an_order_sent_twice_at_once_with_one_idempotency_key_is_placed_once_and_answered_twice(
    client: TestClient,
) -> None:
    # Requests sent at once with one key all missed it in their lookup; all but the first failed on the unique
    # (principal, key) insert with a 500. Now the losers run again, find the stored answer and repeat it.
    from concurrent.futures import ThreadPoolExecutor

    data = shop(client)
    body = cart(data["customer"]["id"], [("TEE-M", 1)])

    def send(_: int) -> Any:
        return client.post(f"{API}/orders", json=body, headers={"Idempotency-Key": "retry-1"})

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(send, range(6)))
    assert len(ok(client.get(f"{API}/orders"))["items"]) == 1
    assert [r.status_code for r in responses] == [201] * 6, [r.text[:200] for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1


def test_notifications_write_amounts_with_the_currency_s_own_decimals(client: TestClient, db: Database) -> None:
    # Before: every amount was divided by 100, so a 1500 JPY order was announced as "15.00 JPY".
    import uuid

    from omnicanal.conversations.models import Message
    from tests.commerce.helpers import make_customer, make_product, make_store, set_stock

    make_product(client, "Tenugui", [("TENU-1", 1500)], currency="JPY")
    store = make_store(client, "TKY1", name="Tokyo")
    set_stock(client, store["id"], "TENU-1", 5)
    customer = make_customer(client, "kenji@example.com", language="en")
    consent = {"status": "granted", "source": "web"}
    ok(client.put(f"{API}/customers/{customer['id']}/consents/email/transactional", json=consent))
    body = cart(customer["id"], [("TENU-1", 1)], fulfillment={"type": "pickup", "store_id": store["id"]})
    body["currency"] = "JPY"
    order = ok(client.post(f"{API}/orders", json=body), 201)
    assert order["total"] == 1500 and order["currency"] == "JPY"
    with db.read() as session:
        texts = [
            m.text for m in session.scalars(select(Message).where(Message.customer_id == uuid.UUID(customer["id"])))
        ]
    assert texts == [f"Thank you! We received your order {order['number']} (1500 JPY)."]


def test_a_pickup_refunded_in_full_is_not_handed_over_for_nothing(client: TestClient) -> None:
    data = shop(client)
    centro = data["centro"]["id"]
    order = place(client, data, [("TEE-M", 1)], fulfillment={"type": "pickup", "store_id": centro})
    pay(client, order, order["total"])
    ok(client.post(f"{API}/orders/{order['id']}/payments", json={"kind": "refund", "amount": order["total"]}), 201)
    ok(client.post(f"{API}/orders/{order['id']}/fulfillments", json={}), 201)
    handed = client.post(f"{API}/orders/{order['id']}/pickup", json={"code": _pickup_code(client, order["id"])})
    assert handed.status_code == 409, handed.text
    assert "still due" in handed.json()["detail"]
    assert ok(client.get(f"{API}/orders/{order['id']}"))["status"] == "ready_for_pickup"  # nothing changed


def test_a_store_purchase_leaves_the_web_cart_open_and_an_agent_ordering_it_closes_it(client: TestClient) -> None:
    # Before: placing any order closed every open cart of the customer, so buying socks at the counter threw
    # away the web cart the call center was about to order for them.
    data = shop(client)
    customer = data["customer"]["id"]
    ok(client.post(f"{API}/carts/quote", json=cart(customer, [("TEE-M", 2)], channel="web")))
    store_sale = cart(customer, [("RUN-42", 1)], channel="store")
    ok(client.post(f"{API}/orders", json=store_sale), 201)
    carts = ok(client.get(f"{API}/customers/{customer}/carts"))
    assert [(c["channel"], c["lines"]) for c in carts] == [("web", [{"sku": "TEE-M", "quantity": 2}])]
    # the agent orders what the customer left on the web: that cart is done
    ok(client.post(f"{API}/orders", json=cart(customer, [("TEE-M", 2)], channel="call_center")), 201)
    assert ok(client.get(f"{API}/customers/{customer}/carts")) == []


def test_a_currency_with_its_own_shipping_prices_is_charged_them(client: TestClient, settings: Settings) -> None:
    # Before: shipping had one price list in minor units of any currency, so a yen cart paid 499 yen (~3 euros)
    # for a delivery priced 4.99 euros; a currency can now carry its own.
    from tests.commerce.helpers import make_customer, make_product, make_store, set_stock

    settings.commerce_shipping_by_currency = {"JPY": {"delivery": 800, "ship_from_store": 800, "pickup": 0}}
    make_product(client, "Tenugui", [("TENU-1", 1500)], currency="JPY")
    make_product(client, "Pañuelo", [("PANU-1", 1500)])
    store = make_store(client, "TKY1", name="Tokyo")
    set_stock(client, store["id"], "TENU-1", 5)
    set_stock(client, store["id"], "PANU-1", 5)
    customer = make_customer(client, "kenji@example.com", language="en")["id"]
    yen = cart(customer, [("TENU-1", 1)]) | {"currency": "JPY"}
    assert ok(client.post(f"{API}/carts/quote", json=yen))["shipping"] == 800
    assert ok(client.post(f"{API}/carts/quote", json=cart(customer, [("PANU-1", 1)])))["shipping"] == 499
