"""The console in a real Chromium: log in, search, the 360 page, undo a merge, languages, review queue."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from omnicanal.db import Database, utcnow
from omnicanal.settings import Settings
from tests.console.helpers import PASSWORD, grant, make_customer, make_user, send_event
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems: list[str] = []

    def on_console(message: Any) -> None:
        # the failed login answers 401 on purpose; anything else is a real problem (CSP, 404, script error)
        if message.type == "error" and "status of 401" not in message.text:
            problems.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    yield page
    context.close()
    assert problems == [], f"the browser reported errors: {problems}"


def _log_in(page: Page, server: LiveServer, email: str, password: str = PASSWORD) -> None:
    page.goto(server.url("/console/customers"))
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Contraseña").fill(password)
    page.get_by_role("button", name="Entrar").click()
    expect(page).to_have_url(re.compile(r"/console/customers$"))


def test_log_in_search_by_phone_and_see_the_timeline(
    page: Page, server: LiveServer, db: Database, settings: Settings
) -> None:
    ana = make_customer(db, settings, first="Ana", last="García", identities=[("phone", "+34612345678")])
    make_customer(db, settings, first="Pablo", last="Díaz", identities=[("phone", "+34698765432")])
    send_event(db, settings, event_id="w1", type="message.received", channel="whatsapp", customer_id=ana,
               properties={"text": "¿Tenéis la talla 42?"})  # fmt: skip
    send_event(db, settings, event_id="p1", type="purchase.completed", channel="pos", customer_id=ana)
    grant(db, customer_id=ana, channel="sms")
    for index in range(25):  # older web visits: the page shows 25 events, "load more" the rest
        send_event(db, settings, event_id=f"v{index}", type="page.viewed", channel="web", customer_id=ana,
                   occurred_at=utcnow() - timedelta(days=30, minutes=index))  # fmt: skip
    email = make_user(db, role="agent")

    page.goto(server.url("/console/login"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Contraseña").fill("wrong-password!")
    page.get_by_role("button", name="Entrar").click()
    expect(page.get_by_test_id("login-error")).to_have_text("Email o contraseña incorrectos.")
    _log_in(page, server, email)

    search = page.get_by_role("searchbox")
    search.press_sequentially("612 345 678", delay=20)
    results = page.get_by_test_id("results")
    expect(results.get_by_role("link")).to_have_count(1)
    expect(results).to_contain_text("Ana García")
    expect(page).to_have_url(re.compile(r"q=612"))
    results.get_by_role("link").click()

    expect(page).to_have_url(server.url(f"/console/customers/{ana}"))
    expect(page.get_by_test_id("customer-name")).to_have_text("Ana García")
    timeline = page.get_by_test_id("timeline")
    events = timeline.locator(".event")
    expect(events).to_have_count(25)
    expect(events.nth(0)).to_contain_text("consent.granted")
    timeline.get_by_test_id("load-more").click()
    expect(events).to_have_count(28)
    expect(timeline.get_by_test_id("load-more")).to_have_count(0)
    expect(events.nth(27)).to_contain_text("page.viewed")
    whatsapp = timeline.locator('.event:has-text("message.received") .ch-whatsapp svg')
    expect(whatsapp).to_be_visible()
    box = whatsapp.bounding_box()
    assert box is not None and box["width"] >= 12, "the channel icon is drawn"
    expect(timeline.locator(".ch-pos")).to_have_attribute("title", "Punto de venta")
    expect(page.get_by_test_id("consents")).to_contain_text("Concedido")


def test_undo_a_merge_and_see_both_customers(page: Page, server: LiveServer, db: Database, settings: Settings) -> None:
    ana = make_customer(db, settings, first="Ana", last="García", identities=[("email", "ana@example.com")])
    other = send_event(db, settings, event_id="wa", type="message.received", channel="whatsapp",
                       identities=[("phone", "612345678")])  # fmt: skip
    send_event(db, settings, event_id="web", type="newsletter.signed_up", channel="web",
               identities=[("email", "ana@example.com"), ("phone", "+34612345678")])  # fmt: skip
    _log_in(page, server, make_user(db, role="supervisor"))

    page.goto(server.url(f"/console/customers/{other}"))
    expect(page).to_have_url(server.url(f"/console/customers/{ana}"))
    expect(page.get_by_test_id("identities")).to_contain_text("+34612345678")
    page.get_by_test_id("undo-merge").click()

    expect(page.get_by_role("status").first).to_contain_text("Fusión deshecha")
    expect(page.get_by_test_id("identities")).not_to_contain_text("+34612345678")
    expect(page.get_by_test_id("merges")).to_contain_text("Deshecha")
    page.get_by_test_id("merges").get_by_role("link").first.click()
    expect(page).to_have_url(server.url(f"/console/customers/{other}"))
    expect(page.get_by_test_id("identities")).to_contain_text("+34612345678")
    expect(page.get_by_test_id("timeline")).to_contain_text("message.received")


def test_switch_language(page: Page, server: LiveServer, db: Database) -> None:
    _log_in(page, server, make_user(db, role="agent", language="es"))
    nav = page.get_by_role("navigation")
    expect(nav).to_contain_text("Clientes")
    page.get_by_role("button", name="EN").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(nav).to_contain_text("Customers")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    page.reload()
    expect(nav).to_contain_text("Customers")
    page.get_by_role("button", name="ES").click()
    expect(nav).to_contain_text("Clientes")


def test_review_queue_dismiss(page: Page, server: LiveServer, db: Database, settings: Settings) -> None:
    make_customer(db, settings, first="Luis", last="Pérez", identities=[("loyalty_card", "OC-1")])
    make_customer(db, settings, first="Eva", last="Ruiz", identities=[("loyalty_card", "OC-2")])
    send_event(db, settings, event_id=f"pos-{uuid.uuid4().hex}", type="purchase.completed", channel="pos",
               identities=[("loyalty_card", "OC-1"), ("loyalty_card", "OC-2")])  # fmt: skip
    _log_in(page, server, make_user(db, role="supervisor"))

    expect(page.get_by_test_id("open-count")).to_have_text("1")
    page.get_by_role("link", name=re.compile("Cola de revisión")).click()
    conflict = page.get_by_test_id("conflict")
    expect(conflict).to_have_count(1)
    expect(conflict).to_contain_text("Luis Pérez")
    expect(conflict).to_contain_text("Eva Ruiz")
    conflict.get_by_role("button", name="Descartar").click()
    expect(page.get_by_test_id("review-empty")).to_be_visible()
    expect(page.get_by_test_id("open-count")).to_have_text("0")
