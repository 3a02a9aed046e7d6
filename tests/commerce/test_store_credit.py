"""Store credit from a return pays for a later order on any channel; the balance never goes below zero."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.commerce.helpers import API, ok, shop
from tests.commerce.test_payments_fulfillment import _pickup_code, pay, place
from tests.commerce.test_races import second_client  # noqa: F401 - another app instance, as another process


def credit_from_a_return(client: TestClient, data: dict[str, Any]) -> int:
    """Ana buys running shoes in a store and sends them back by mail for store credit."""
    centro = data["centro"]["id"]
    order = place(client, data, [("RUN-42", 1)], channel="store", fulfillment={"type": "pickup", "store_id": centro})
    pay(client, order, order["total"], "cash")
    ok(client.post(f"{API}/orders/{order['id']}/fulfillments", json={}), 201)
    ok(client.post(f"{API}/orders/{order['id']}/pickup", json={"code": _pickup_code(client, order["id"])}))
    body = {"order_id": order["id"], "channel": "mail", "refund_method": "store_credit",
            "lines": [{"sku": "RUN-42", "quantity": 1, "reason": "changed my mind"}]}  # fmt: skip
    returned = ok(client.post(f"{API}/returns", json=body), 201)
    amount: int = returned["refund_amount"]
    return amount


def credit(client: TestClient, customer_id: str) -> dict[str, Any]:
    return ok(client.get(f"{API}/customers/{customer_id}/store-credit"))


def balance(client: TestClient, customer_id: str) -> int:
    balances = credit(client, customer_id)["balances"]
    return int(balances[0]["balance"]) if balances else 0


def test_credit_from_a_return_pays_for_a_later_order_on_another_channel(client: TestClient) -> None:
    data = shop(client)
    customer = data["customer"]["id"]
    earned = credit_from_a_return(client, data)
    assert earned > 0 and balance(client, customer) == earned
    # later, on the web: the credit pays part of the order, the card the rest
    order = place(client, data, [("RUN-42", 1), ("TEE-M", 1)])
    assert order["total"] > earned
    too_much = client.post(
        f"{API}/orders/{order['id']}/payments", json={"method": "store_credit", "amount": earned + 1}
    )
    assert too_much.status_code == 409, too_much.text
    assert too_much.json()["type"].endswith("not-enough-store-credit") and too_much.json()["available"] == earned
    assert balance(client, customer) == earned and ok(client.get(f"{API}/orders/{order['id']}"))["paid_amount"] == 0
    paid = pay(client, order, earned, "store_credit")
    assert paid["method"] == "store_credit" and paid["payment_status"] == "partially_paid"
    assert balance(client, customer) == 0
    settled = pay(client, order, order["total"] - earned, "card")
    assert settled["order_status"] == "paid"
    movements = credit(client, customer)["entries"]
    assert [m["amount"] for m in movements] == [-earned, earned]
    # nothing left to spend on the next order
    next_order = place(client, data, [("TEE-M", 1)], channel="app")
    empty = client.post(f"{API}/orders/{next_order['id']}/payments", json={"method": "store_credit", "amount": 1})
    assert empty.status_code == 409
    # cancelling the paid order gives the credit back to the credit, the card's part to the card
    ok(client.post(f"{API}/orders/{order['id']}/cancel"))
    assert balance(client, customer) == earned
    refunds = [p for p in ok(client.get(f"{API}/orders/{order['id']}"))["payments"] if p["kind"] == "refund"]
    assert sorted((p["method"], p["amount"]) for p in refunds) == sorted(
        [("store_credit", earned), ("card", order["total"] - earned)]
    )


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_concurrent_payments_never_spend_more_credit_than_there_is(
    client: TestClient,
    second_client: TestClient,  # noqa: F811
) -> None:
    data = shop(client)
    customer = data["customer"]["id"]
    earned = credit_from_a_return(client, data)
    share = earned // 3 + 1  # room for two payments of this size, not three
    orders = [place(client, data, [("RUN-42", 1)], channel=channel) for channel in ("web", "app", "store", "web") * 3]
    clients = [client, second_client]

    def spend(index: int) -> Any:
        order = orders[index % len(orders)]
        return clients[index % 2].post(
            f"{API}/orders/{order['id']}/payments", json={"method": "store_credit", "amount": share}
        )

    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(spend, range(24)))
    codes = Counter(r.status_code for r in responses)
    assert codes[201] == 2 and set(codes) <= {201, 409}, codes
    assert balance(client, customer) == earned - 2 * share >= 0
    paid = sum(ok(client.get(f"{API}/orders/{o['id']}"))["paid_amount"] for o in orders)
    assert paid == 2 * share
