"""Loyalty with real commerce orders, end to end through the public API."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omnicanal.commerce.models import Coupon
from omnicanal.db import Database
from omnicanal.settings import Settings
from tests.commerce.helpers import API, cart, ok, shop
from tests.console.helpers import log_in
from tests.loyalty.helpers import event_rule, make_available, new_customer, spend_rule, wallet


def paid_order(client: TestClient, customer_id: str, lines: list[tuple[str, int]], **kw: Any) -> dict[str, Any]:
    order = ok(client.post(f"{API}/orders", json=cart(customer_id, lines, **kw)), 201)
    due = order["total"] - order["paid_amount"]
    if due:
        ok(client.post(f"{API}/orders/{order['id']}/payments", json={"method": "card", "amount": due}), 201)
    return order


def line(order: dict[str, Any], sku: str) -> dict[str, Any]:
    return next(item for item in order["lines"] if item["sku"] == sku)


def test_a_paid_order_earns_per_line_and_a_return_takes_back_that_line(client: TestClient, db: Database) -> None:
    data = shop(client)
    customer = data["customer"]["id"]
    # the multiplier is set on the parent category: shoes are clothing too
    spend_rule(client, category_multipliers={"clothing": 2})
    order = paid_order(client, customer, [("TEE-M", 2), ("RUN-42", 1), ("BOOK-1", 1)])
    tee, shoe, book = line(order, "TEE-M"), line(order, "RUN-42"), line(order, "BOOK-1")
    expected = {"TEE-M": tee["total"] // 100 * 2, "RUN-42": shoe["total"] // 100 * 2, "BOOK-1": book["total"] // 100}
    assert order["shipping"] > 0  # shipping earns nothing
    pending = sum(expected.values())
    assert (wallet(client, customer)["balance"], wallet(client, customer)["pending"]) == (0, pending)
    make_available(db, customer)  # the return window is over
    assert wallet(client, customer)["balance"] == pending

    ok(client.post(f"{API}/orders/{order['id']}/fulfillments", json={}), 201)
    body = {"order_id": order["id"], "channel": "mail", "lines": [{"sku": "RUN-42", "quantity": 1, "reason": "size"}]}
    ok(client.post(f"{API}/returns", json=body), 201)
    assert wallet(client, customer)["balance"] == pending - expected["RUN-42"]
    ledger = ok(client.get(f"{API}/customers/{customer}/loyalty/ledger"))["items"]
    reversal = [entry for entry in ledger if entry["reason"] == "return"]
    assert [entry["points"] for entry in reversal] == [-expected["RUN-42"]]
    again = client.post(f"{API}/returns", json=body)
    assert again.status_code == 422  # nothing left of that line to return, and no more points taken
    assert wallet(client, customer)["balance"] == pending - expected["RUN-42"]


def test_a_voucher_reward_is_a_single_use_coupon_at_every_checkout(client: TestClient, db: Database) -> None:
    data = shop(client)
    customer = data["customer"]["id"]
    ok(client.post(f"{API}/customers/{customer}/loyalty/adjustments",
                   json={"points": 600, "reason": "welcome gift", "request_id": "gift-1"}), 201)  # fmt: skip
    reward = ok(
        client.post(
            f"{API}/rewards",
            json={
                "name": "5 EUR off",
                "kind": "voucher",
                "cost_points": 500,
                "value": {"amount": 500, "currency": "EUR"},
            },
        ),
        201,
    )
    redeemed = ok(client.post(f"{API}/customers/{customer}/redemptions",
                              json={"reward_id": reward["id"], "request_id": "r-1"}), 201)  # fmt: skip
    code = redeemed["code"]
    body = cart(customer, [("TEE-M", 1)], channel="app", coupons=[code])
    without = ok(client.post(f"{API}/carts/quote", json=cart(customer, [("TEE-M", 1)], channel="app")))
    quote = ok(client.post(f"{API}/carts/quote", json=body))
    assert quote["total"] == without["total"] - 500
    order = ok(client.post(f"{API}/orders", json=body), 201)
    assert order["total"] == quote["total"] and order["coupon_codes"] == [code]

    # used once: a second order (any channel) does not get the discount again
    store_body = cart(customer, [("TEE-M", 1)], channel="store", coupons=[code],
                      fulfillment={"type": "pickup", "store_id": data["centro"]["id"]})  # fmt: skip
    for path in ("carts/quote", "orders"):
        refused = client.post(f"{API}/{path}", json=store_body)
        assert refused.status_code == 422 and "used up" in refused.json()["detail"]

    # a second voucher of the same reward uses the same promotion, with a code of its own
    ok(client.post(f"{API}/customers/{customer}/loyalty/adjustments",
                   json={"points": 500, "reason": "again", "request_id": "gift-2"}), 201)  # fmt: skip
    other = ok(client.post(f"{API}/customers/{customer}/redemptions",
                           json={"reward_id": reward["id"], "request_id": "r-2"}), 201)["code"]  # fmt: skip
    assert other != code
    loyalty_promotions = [p for p in ok(client.get(f"{API}/promotions")) if p["name"] == "Loyalty reward: 5 EUR off"]
    assert len(loyalty_promotions) == 1 and loyalty_promotions[0]["requires_coupon"]


def test_a_percentage_voucher_discounts_the_cart(client: TestClient) -> None:
    data = shop(client)
    customer = data["customer"]["id"]
    ok(client.post(f"{API}/customers/{customer}/loyalty/adjustments",
                   json={"points": 100, "reason": "gift", "request_id": "gift-1"}), 201)  # fmt: skip
    reward = ok(client.post(f"{API}/rewards", json={"name": "10 percent", "kind": "voucher", "cost_points": 100,
                                                     "value": {"percent": 10}}), 201)  # fmt: skip
    code = ok(client.post(f"{API}/customers/{customer}/redemptions",
                          json={"reward_id": reward["id"], "request_id": "r-1"}), 201)["code"]  # fmt: skip
    quote = ok(client.post(f"{API}/carts/quote", json=cart(customer, [("TEE-M", 1)], coupons=[code])))
    assert quote["discount"] == 200


def test_referral_pays_both_sides_on_the_first_paid_commerce_order(client: TestClient) -> None:
    data = shop(client)
    spend_rule(client)
    event_rule(client, "referral.referrer", 200)
    event_rule(client, "referral.referred", 100)
    friend = data["customer"]["id"]
    newcomer = ok(client.post(f"{API}/customers", json={"identities": [{"type": "email", "value": "n@example.com"}]}),
                  201)["id"]  # fmt: skip
    code = ok(client.post(f"{API}/customers/{friend}/loyalty/referral-code"))["referral_code"]
    signup = {"id": "signup-1", "customer_id": newcomer, "type": "referral.signup", "properties": {"code": code}}
    assert client.post(f"{API}/loyalty/events", json=signup).status_code == 200
    unpaid = ok(client.post(f"{API}/orders", json=cart(newcomer, [("TEE-M", 1)])), 201)
    assert wallet(client, friend)["balance"] == 0  # placed is not paid
    ok(client.post(f"{API}/orders/{unpaid['id']}/payments", json={"method": "card", "amount": unpaid["total"]}), 201)
    paid_order(client, newcomer, [("TEE-L", 1)])
    assert wallet(client, friend)["balance"] == 200
    assert wallet(client, newcomer)["balance"] == 100


def test_an_offline_pos_sending_a_sale_twice_earns_once(client: TestClient) -> None:
    data = shop(client)
    customer = data["customer"]["id"]
    spend_rule(client)
    centro = data["centro"]["id"]
    body = cart(customer, [("TEE-M", 1)], channel="store", fulfillment={"type": "pickup", "store_id": centro})
    orders = [client.post(f"{API}/orders", json=body, headers={"Idempotency-Key": "pos-7-ticket-42"}) for _ in range(3)]
    assert {r.status_code for r in orders} == {201} and len({r.json()["id"] for r in orders}) == 1
    order = orders[0].json()
    for _ in range(2):
        client.post(
            f"{API}/orders/{order['id']}/payments",
            json={"method": "cash", "amount": order["total"]},
            headers={"Idempotency-Key": "pos-7-ticket-42-cash"},
        )
    assert wallet(client, customer)["pending"] == order["total"] // 100


def test_a_pickup_paid_at_the_counter_earns_when_collected(client: TestClient) -> None:
    data = shop(client)
    customer = data["customer"]["id"]
    spend_rule(client)
    body = cart(customer, [("TEE-M", 1)], fulfillment={"type": "pickup", "store_id": data["centro"]["id"]})
    order = ok(client.post(f"{API}/orders", json=body), 201)
    ok(client.post(f"{API}/orders/{order['id']}/fulfillments", json={}), 201)  # ready, not paid yet
    ok(client.post(f"{API}/orders/{order['id']}/payments", json={"method": "cash", "amount": order["total"]}), 201)
    assert wallet(client, customer)["pending"] == 0
    from tests.commerce.test_payments_fulfillment import _pickup_code

    ok(client.post(f"{API}/orders/{order['id']}/pickup", json={"code": _pickup_code(client, order["id"])}))
    assert wallet(client, customer)["pending"] == order["total"] // 100


def test_the_store_counter_shows_the_points_and_redeems_there(client: TestClient, app: Any, db: Database) -> None:
    data = shop(client)
    customer, centro = data["customer"]["id"], data["centro"]["id"]
    ok(client.post(f"{API}/customers/{customer}/loyalty/adjustments",
                   json={"points": 700, "reason": "gift", "request_id": "gift-1"}), 201)  # fmt: skip
    reward = ok(client.post(f"{API}/rewards", json={"name": "5 EUR off", "kind": "voucher", "cost_points": 500,
                                                     "value": {"amount": 500, "currency": "EUR"}}), 201)  # fmt: skip
    clerk = log_in(app, db, role="store_clerk", language="en")
    counter = clerk.client.get("/console/counter", params={"customer": customer, "store": centro})
    assert 'data-testid="counter-points">700<' in counter.text
    assert f"/console/customers/{customer}/loyalty?back=counter" in counter.text
    panel = clerk.client.get(f"/console/customers/{customer}/loyalty", params={"back": "counter", "store": centro})
    request_id = re.search(r'name="request_id" value="([^"]+)"', panel.text)
    assert request_id is not None and 'name="back"' in panel.text
    back = f"/console/counter?customer={customer}&store={centro}"
    form = {"reward_id": reward["id"], "request_id": request_id.group(1), "back": back}
    done = clerk.post(f"/console/customers/{customer}/loyalty/redeem", form, follow_redirects=False)
    assert done.headers["location"].startswith("/console/counter?customer=")
    page = clerk.client.get(done.headers["location"])
    code = re.search(r"Code for the customer: (LV-[A-Z0-9]+)", page.text)
    assert code is not None and 'data-testid="counter-points">200<' in page.text
    # the code works in the counter sale right away
    sale = clerk.post("/console/counter/orders", {"customer_id": customer, "store_id": centro, "lines": "TEE-M 1",
                                                  "coupon": code.group(1), "method": "cash", "hand_over_now": "1"},
                      follow_redirects=False)  # fmt: skip
    assert sale.status_code == 303 and "/console/shop/orders/" in sale.headers["location"]
    sold = ok(client.get(f"{API}/orders", params={"customer_id": customer}))["items"][0]
    assert sold["discount"] == 500 and sold["status"] == "collected"


def test_clawback_cancels_the_unused_voucher_coupon(client: TestClient, db: Database, settings: Settings) -> None:
    settings.loyalty_return_policy = "clawback"
    data = shop(client)
    customer = data["customer"]["id"]
    spend_rule(client)
    reward = ok(client.post(f"{API}/rewards", json={"name": "2 EUR off", "kind": "voucher", "cost_points": 50,
                                                     "value": {"amount": 200, "currency": "EUR"}}), 201)  # fmt: skip
    order = paid_order(client, customer, [("RUN-42", 1)])
    make_available(db, customer)
    code = ok(client.post(f"{API}/customers/{customer}/redemptions",
                          json={"reward_id": reward["id"], "request_id": "r-1"}), 201)["code"]  # fmt: skip
    ok(client.post(f"{API}/orders/{order['id']}/fulfillments", json={}), 201)
    body = {"order_id": order["id"], "channel": "mail", "lines": [{"sku": "RUN-42", "quantity": 1}]}
    ok(client.post(f"{API}/returns", json=body), 201)
    assert wallet(client, customer)["balance"] == 0
    refused = client.post(f"{API}/carts/quote", json=cart(customer, [("TEE-M", 1)], coupons=[code]))
    assert refused.status_code == 422  # the coupon is gone with the points it cost


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_concurrent_first_redemptions_of_a_voucher_share_one_promotion(client: TestClient, db: Database) -> None:
    shop(client)
    reward = ok(client.post(f"{API}/rewards", json={"name": "3 EUR off", "kind": "voucher", "cost_points": 10,
                                                     "value": {"amount": 300, "currency": "EUR"}}), 201)  # fmt: skip
    customers = [new_customer(client) for _ in range(12)]
    for n, customer in enumerate(customers):
        ok(client.post(f"{API}/customers/{customer}/loyalty/adjustments",
                       json={"points": 10, "reason": "gift", "request_id": f"gift-{n}"}), 201)  # fmt: skip
    barrier = threading.Barrier(len(customers))

    def redeem(n: int) -> int:
        barrier.wait()
        body = {"reward_id": reward["id"], "request_id": f"r-{n}"}
        return client.post(f"{API}/customers/{customers[n]}/redemptions", json=body).status_code

    with ThreadPoolExecutor(max_workers=len(customers)) as pool:
        assert set(pool.map(redeem, range(len(customers)))) == {201}
    with db.read() as session:
        promotion_ids = set(session.scalars(select(Coupon.promotion_id)))
    assert len(promotion_ids) == 1
