"""Store credit at the store counter: the clerk sees the balance and pays part or all of an order with it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, expect

from omnicanal.db import Database
from tests.commerce.helpers import API, ok, shop
from tests.commerce.test_payments_fulfillment import place
from tests.commerce.test_store_credit import balance, credit_from_a_return
from tests.console.conftest import browser, server  # noqa: F401 - the browser fixtures
from tests.console.helpers import PASSWORD, log_in, make_user
from tests.support.live_server import LiveServer


def euros(cents: int) -> str:
    return f"€{cents // 100:,}.{cents % 100:02d}"


def orders_of(client: TestClient, customer: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = ok(client.get(f"{API}/orders", params={"customer_id": customer}))["items"]
    return items


def test_a_counter_sale_paid_partly_with_store_credit(client: TestClient, app: Any, db: Database) -> None:
    data = shop(client)
    customer, norte = data["customer"]["id"], data["norte"]["id"]
    earned = credit_from_a_return(client, data)
    clerk = log_in(app, db, role="store_clerk", language="en")
    counter = clerk.client.get("/console/counter", params={"customer": customer, "store": norte})
    assert f"Available: {euros(earned)}" in counter.text and 'data-testid="counter-credit"' in counter.text
    before = len(orders_of(client, customer))
    sale = {"customer_id": customer, "store_id": norte, "lines": "RUN-42 2", "method": "card",
            "hand_over_now": "1"}  # fmt: skip
    # more than the customer has: a clear error, and nothing ordered, charged or spent
    refused = clerk.post("/console/counter/orders", {**sale, "credit": f"{earned / 100 + 5:.2f}"})
    assert refused.status_code == 200 and refused.url.path == "/console/counter"
    assert f"Not enough store credit: the customer has {euros(earned)} and {euros(earned + 500)} was typed." in (
        refused.text
    )
    assert "RUN-42 2</textarea>" in refused.text  # what was typed is still there
    assert len(orders_of(client, customer)) == before and balance(client, customer) == earned
    # part of it with credit, the rest by card
    part = earned - 1000
    paid = clerk.post("/console/counter/orders", {**sale, "credit": f"{part / 100:.2f}"})
    assert f"{euros(part)} paid with store credit." in paid.text
    order = orders_of(client, customer)[0]
    assert (order["status"], order["payment_status"]) == ("collected", "paid")
    detail = ok(client.get(f"{API}/orders/{order['id']}"))
    assert sorted((p["method"], p["amount"]) for p in detail["payments"]) == sorted(
        [("store_credit", part), ("card", order["total"] - part)]
    )
    assert balance(client, customer) == 1000


def test_store_credit_that_covers_the_whole_order_pays_only_the_total(
    client: TestClient, app: Any, db: Database
) -> None:
    data = shop(client)
    customer, centro = data["customer"]["id"], data["centro"]["id"]
    earned = credit_from_a_return(client, data)
    clerk = log_in(app, db, role="store_clerk", language="en")
    sale = {"customer_id": customer, "store_id": centro, "lines": "TEE-M 1", "method": "cash", "hand_over_now": "1",
            "credit": f"{earned / 100:.2f}"}  # fmt: skip
    clerk.post("/console/counter/orders", sale)
    order = orders_of(client, customer)[0]
    assert order["status"] == "collected" and order["total"] < earned
    payments = ok(client.get(f"{API}/orders/{order['id']}"))["payments"]
    assert [(p["method"], p["amount"]) for p in payments] == [("store_credit", order["total"])]
    assert balance(client, customer) == earned - order["total"]


def test_an_order_is_paid_with_store_credit_from_its_page(client: TestClient, app: Any, db: Database) -> None:
    data = shop(client)
    customer = data["customer"]["id"]
    earned = credit_from_a_return(client, data)
    order = place(client, data, [("RUN-42", 1), ("TEE-M", 1)], channel="web")
    clerk = log_in(app, db, role="store_clerk", language="es")
    page = clerk.client.get(f"/console/shop/orders/{order['id']}")
    assert 'value="store_credit"' in page.text and 'data-testid="credit-available"' in page.text
    too_much = clerk.post(f"/console/shop/orders/{order['id']}/payments",
                          {"method": "store_credit", "amount": f"{(earned + 1) / 100:.2f}"})  # fmt: skip
    assert "Saldo en tienda insuficiente" in too_much.text
    assert ok(client.get(f"{API}/orders/{order['id']}"))["paid_amount"] == 0
    clerk.post(f"/console/shop/orders/{order['id']}/payments", {"method": "store_credit", "amount": ""})
    after = ok(client.get(f"{API}/orders/{order['id']}"))
    assert after["paid_amount"] == earned and after["payment_status"] == "partially_paid"  # all the credit there was
    assert balance(client, customer) == 0
    again = clerk.client.get(f"/console/shop/orders/{order['id']}")
    assert 'value="store_credit"' not in again.text  # no credit left to pay with


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
def test_store_credit_at_the_counter_in_the_browser(
    page: Page,
    server: LiveServer,  # noqa: F811
    client: TestClient,
    db: Database,
) -> None:
    data = shop(client)
    customer = data["customer"]["id"]
    earned = credit_from_a_return(client, data)
    email = make_user(db, role="store_clerk", language="en")
    page.goto(server.url("/console/counter"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Contraseña").fill(PASSWORD)
    page.get_by_role("button", name="Entrar").click()
    page.locator("#q").fill("ana@example.com")
    page.locator("#q").press("Enter")
    expect(page.get_by_test_id("counter-credit-available")).to_have_text(f"Available: {euros(earned)}")
    page.locator("select[name=store_id]").select_option(label="Madrid Norte")
    page.get_by_test_id("counter-lines").fill("RUN-42 2")
    page.get_by_test_id("counter-credit").fill(f"{(earned + 100) / 100:.2f}")
    page.get_by_test_id("place-order").click()
    expect(page.get_by_role("alert")).to_contain_text(f"the customer has {euros(earned)}")
    expect(page.get_by_test_id("counter-lines")).to_have_value("RUN-42 2")
    expect(page.locator("select[name=store_id]")).to_have_value(data["norte"]["id"])
    page.get_by_test_id("counter-credit").fill(f"{earned / 100:.2f}")
    page.get_by_test_id("place-order").click()
    expect(page).to_have_url(re.compile(r"/console/shop/orders/"))
    expect(page.get_by_text(f"{euros(earned)} paid with store credit.")).to_be_visible()
    expect(page.get_by_test_id("order-status")).to_have_text("Collected")
    expect(page.get_by_test_id("balance-due")).to_contain_text("0.00")
    assert balance(client, customer) == 0
