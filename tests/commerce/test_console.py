"""The commerce console: stock lookup, orders, and the store counter (pages and a real browser)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, expect

from omnicanal.db import Database
from tests.commerce.helpers import API, cart, ok, shop, stock
from tests.commerce.test_payments_fulfillment import pay, place
from tests.console.conftest import browser, server  # noqa: F401 - the browser fixtures
from tests.console.helpers import PASSWORD, log_in, make_user
from tests.support.live_server import LiveServer


def test_stock_lookup_orders_and_counter_pages(client: TestClient, app: Any, db: Database) -> None:
    data = shop(client)
    order = place(client, data, [("TEE-M", 1)], fulfillment={"type": "pickup", "store_id": data["centro"]["id"]})
    clerk = log_in(app, db, role="store_clerk", language="en")
    page = clerk.client.get("/console/shop", params={"q": "RUN"})
    assert page.status_code == 200
    assert 'data-sku="RUN-42"' in page.text and "Madrid Norte" in page.text
    orders_page = clerk.client.get("/console/shop/orders")
    assert order["number"] in orders_page.text
    detail = clerk.client.get(f"/console/shop/orders/{order['id']}")
    assert "Pickup at Madrid Centro" in detail.text
    counter = clerk.client.get("/console/counter", params={"q": "ana@example.com"})
    assert counter.status_code == 200 and 'data-testid="counter-customer"' in counter.text
    assert order["number"] in counter.text


def test_an_analyst_cannot_use_the_counter(app: Any, db: Database) -> None:
    analyst = log_in(app, db, role="analyst", language="en")
    assert analyst.client.get("/console/counter").status_code == 403
    assert analyst.client.get("/console/shop").status_code == 200


def test_counter_sale_and_handover_by_code(client: TestClient, app: Any, db: Database) -> None:
    data = shop(client)
    centro = data["centro"]["id"]
    clerk = log_in(app, db, role="store_clerk", language="en")
    customer = data["customer"]["id"]
    response = clerk.post("/console/counter/orders", {"customer_id": customer, "store_id": centro,
                                                      "lines": "TEE-M 2", "method": "cash", "hand_over_now": "1"},
                          follow_redirects=False)  # fmt: skip
    assert response.status_code == 303 and "/console/shop/orders/" in response.headers["location"]
    sold = ok(client.get(f"{API}/orders", params={"customer_id": customer}))["items"][0]
    assert (sold["status"], sold["channel"], sold["payment_status"]) == ("collected", "store", "paid")
    assert stock(client, centro, "TEE-M") == {"sku": "TEE-M", "on_hand": 1, "reserved": 0, "available": 1}
    # a pickup ordered on the web, collected with its code
    web = place(client, data, [("RUN-42", 1)], fulfillment={"type": "pickup", "store_id": centro})
    pay(client, web, web["total"])
    ok(client.post(f"{API}/orders/{web['id']}/fulfillments", json={}), 201)
    wrong = clerk.post(f"/console/shop/orders/{web['id']}/pickup", {"code": "NOPE"}, follow_redirects=True)
    assert "not the pickup code" in wrong.text
    from tests.commerce.test_payments_fulfillment import _pickup_code

    code = _pickup_code(client, web["id"])
    scanned = clerk.client.get("/console/counter", params={"q": f"OCPICKUP:{web['number']}:{code}"},
                               follow_redirects=False)  # fmt: skip
    assert scanned.status_code == 303 and scanned.headers["location"].endswith(f"?code={code}")
    clerk.post(f"/console/shop/orders/{web['id']}/pickup", {"code": code})
    assert ok(client.get(f"{API}/orders/{web['id']}"))["status"] == "collected"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    yield page
    context.close()
    assert problems == []


@pytest.mark.browser
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_counter_in_the_browser(page: Page, server: LiveServer, client: TestClient, db: Database) -> None:  # noqa: F811
    data = shop(client)
    # the customer left a cart on the web
    ok(client.post(f"{API}/carts/quote", json=cart(data["customer"]["id"], [("TEE-M", 1), ("RUN-42", 1)])))
    email = make_user(db, role="store_clerk", language="es")
    page.goto(server.url("/console/counter"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Contraseña").fill(PASSWORD)
    page.get_by_role("button", name="Entrar").click()
    expect(page).to_have_url(re.compile(r"/console/counter$"))
    page.locator("#q").fill("ana@example.com")
    page.locator("#q").press("Enter")
    expect(page.get_by_test_id("counter-customer")).to_be_visible()
    expect(page.get_by_test_id("web-cart")).to_contain_text("TEE-M × 1")
    expect(page.get_by_test_id("counter-lines")).to_have_value("TEE-M 1\nRUN-42 1")
    page.get_by_test_id("counter-lines").fill("TEE-M 1")
    page.get_by_test_id("place-order").click()
    expect(page).to_have_url(re.compile(r"/console/shop/orders/"))
    expect(page.get_by_test_id("order-status")).to_have_text("Recogido")
    expect(page.get_by_test_id("balance-due")).to_contain_text("0,00")
