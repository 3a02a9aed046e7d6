"""Two app instances take orders at once on PostgreSQL: no overselling, usage limits hold."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from omnicanal.app import create_app
from omnicanal.db import create_database
from omnicanal.settings import Settings
from tests.commerce.helpers import (
    API,
    cart,
    make_customer,
    make_product,
    make_promotion,
    make_store,
    ok,
    set_stock,
    stock,
)


@pytest.fixture
def second_client(settings: Settings, make_key: Callable[[str], str]) -> Iterator[TestClient]:
    """Another app instance (own engine and pool), as a second server process would be."""
    database = create_database(settings)
    try:
        with TestClient(create_app(settings, database=database)) as other:
            other.headers["Authorization"] = f"Bearer {make_key('admin')}"
            yield other
    finally:
        database.dispose()


def race(clients: list[TestClient], bodies: list[dict[str, Any]]) -> list[Any]:
    def send(index: int) -> Any:
        return clients[index % len(clients)].post(f"{API}/orders", json=bodies[index])

    with ThreadPoolExecutor(max_workers=12) as pool:
        return list(pool.map(send, range(len(bodies))))


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_no_overselling_under_concurrent_orders(client: TestClient, second_client: TestClient) -> None:
    make_product(client, "Limited sneaker", [("LTD-1", 15000)])
    make_product(client, "Socks", [("SOCK-1", 500)])
    a = make_store(client, "A", kind="warehouse")
    b = make_store(client, "B")
    set_stock(client, a["id"], "LTD-1", 4)
    set_stock(client, b["id"], "LTD-1", 3)
    set_stock(client, a["id"], "SOCK-1", 1000)
    customers = [make_customer(client, f"fan{n}@example.com")["id"] for n in range(6)]
    bodies = [cart(customers[n % 6], [("SOCK-1", 1), ("LTD-1", 1 + n % 2)]) for n in range(24)]
    responses = race([client, second_client], bodies)
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 409, 422}, [r.text for r in responses if r.status_code not in (201, 409, 422)]
    placed = [r.json() for r in responses if r.status_code == 201]
    sold = sum(line["quantity"] for order in placed for line in order["lines"] if line["sku"] == "LTD-1")
    assert sold <= 7
    assert sold >= 5  # the losers were refused only when there was really too little left
    a_level, b_level = stock(client, a["id"], "LTD-1"), stock(client, b["id"], "LTD-1")
    assert a_level["reserved"] + b_level["reserved"] == sold
    assert a_level["reserved"] <= 4 and b_level["reserved"] <= 3
    assert stock(client, a["id"], "SOCK-1")["reserved"] == len(placed)
    for response in responses:
        if response.status_code != 201:
            assert "LTD-1" in response.text  # the line that could not be served is named


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_usage_limits_hold_under_concurrent_orders(client: TestClient, second_client: TestClient) -> None:
    make_product(client, "Cap", [("CAP-1", 2000)])
    warehouse = make_store(client, "W", kind="warehouse")
    set_stock(client, warehouse["id"], "CAP-1", 1000)
    total = make_promotion(client, name="First five", kind="percentage", percent=50, usage_limit=5, priority=10)
    per_customer = make_promotion(
        client, name="Once each", kind="fixed", amount=100, currency="EUR", usage_limit_per_customer=1, priority=5
    )
    coupon = make_promotion(client, name="Coupon", kind="fixed", amount=200, currency="EUR")
    codes = ok(client.post(f"{API}/promotions/{coupon['id']}/coupons", json={"count": 3, "prefix": "X-"}), 201)["codes"]
    customers = [make_customer(client, f"c{n}@example.com")["id"] for n in range(4)]
    bodies = [cart(customers[n % 4], [("CAP-1", 1)]) for n in range(20)]
    # every order tries the same single-use code: only one may win it
    for body in bodies:
        body["coupon_codes"] = [codes[0]]
    responses = race([client, second_client], bodies)
    placed = [r.json() for r in responses if r.status_code == 201]
    assert {r.status_code for r in responses} <= {201, 409, 422}
    uses = Counter(entry["promotion_id"] for order in placed for entry in order["promotions"])
    assert uses[coupon["id"]] == 1 == len(placed)  # the coupon is required by this cart, so one order at most
    # without the coupon: the total and per-customer limits
    bodies = [cart(customers[n % 4], [("CAP-1", 1)]) for n in range(20)]
    responses = race([client, second_client], bodies)
    placed += [r.json() for r in responses if r.status_code == 201]
    assert {r.status_code for r in responses} <= {201, 409}
    uses = Counter(entry["promotion_id"] for order in placed for entry in order["promotions"])
    assert uses[total["id"]] == 5 == ok(client.get(f"{API}/promotions/{total['id']}"))["used_count"]
    per = Counter(
        order["customer_id"]
        for order in placed
        if any(e["promotion_id"] == per_customer["id"] for e in order["promotions"])
    )
    assert sorted(per.values()) == [1, 1, 1, 1]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_concurrent_payments_never_exceed_the_total(client: TestClient, second_client: TestClient) -> None:
    make_product(client, "Lamp", [("LAMP-1", 4000)])
    warehouse = make_store(client, "W", kind="warehouse")
    set_stock(client, warehouse["id"], "LAMP-1", 10)
    order = ok(
        client.post(f"{API}/orders", json=cart(make_customer(client, "p@example.com")["id"], [("LAMP-1", 1)])), 201
    )
    half = order["total"] // 2
    clients = [client, second_client]

    def send(index: int) -> Any:
        return clients[index % 2].post(f"{API}/orders/{order['id']}/payments", json={"method": "card", "amount": half})

    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(send, range(10)))
    assert Counter(r.status_code for r in responses)[201] == 2
    assert {r.status_code for r in responses} <= {201, 409, 422}
    final = ok(client.get(f"{API}/orders/{order['id']}"))
    assert final["paid_amount"] == 2 * half and len(final["payments"]) == 2
