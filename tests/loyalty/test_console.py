"""The wallet in the console: the 360 panel, manual adjustment, redemption at the counter, the programme page."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from omnicanal.db import Database
from omnicanal.loyalty import rewards as reward_service
from omnicanal.loyalty import service
from omnicanal.loyalty.schemas import EventIn
from omnicanal.settings import Settings
from tests.console.conftest import browser, server  # noqa: F401  (fixtures)
from tests.console.helpers import PASSWORD, log_in, make_customer, make_user
from tests.support.live_server import LiveServer


def _seed(db: Database, settings: Settings) -> tuple[str, str]:
    ana = make_customer(db, settings, first="Ana", last="García", identities=[("email", "ana@example.com")])
    with db.write() as session:
        service.adjust(session, customer_id=ana, points=120, reason="welcome", request_id="seed", actor="test")
        reward = reward_service.create_reward(
            session, {"name": "Muestra de crema", "kind": "product", "cost_points": 50, "stock": 3}
        )
        reward_id = str(reward.id)
    return str(ana), reward_id


def test_wallet_panel_adjustment_and_counter_redemption(app: Any, db: Database, settings: Settings) -> None:
    ana, reward_id = _seed(db, settings)
    clerk = log_in(app, db, role="store_clerk", language="en")
    panel = clerk.client.get(f"/console/customers/{ana}/loyalty")
    assert panel.status_code == 200 and 'data-testid="loyalty-balance">120<' in panel.text
    assert "loyalty-adjust" not in panel.text  # clerks redeem; only supervisors adjust
    request_id = re.search(r'name="request_id" value="([^"]+)"', panel.text)
    assert request_id is not None
    form = {"reward_id": reward_id, "request_id": request_id.group(1)}
    done = clerk.post(f"/console/customers/{ana}/loyalty/redeem", form, follow_redirects=True)
    assert "Code for the customer: LR-" in done.text
    clerk.post(f"/console/customers/{ana}/loyalty/redeem", form, follow_redirects=True)  # a double click
    assert 'data-testid="loyalty-balance">70<' in clerk.client.get(f"/console/customers/{ana}/loyalty").text
    refused = clerk.post(f"/console/customers/{ana}/loyalty/adjust", {"points": "10", "reason": "x"})
    assert refused.status_code == 403

    boss = log_in(app, db, role="supervisor", language="en")
    no_reason = boss.post(
        f"/console/customers/{ana}/loyalty/adjust", {"points": "10", "reason": " "}, follow_redirects=True
    )
    assert "needs a reason" in no_reason.text
    boss.post(f"/console/customers/{ana}/loyalty/adjust", {"points": "-20", "reason": "duplicate ticket"})
    panel = boss.client.get(f"/console/customers/{ana}/loyalty").text
    assert 'data-testid="loyalty-balance">50<' in panel and "duplicate ticket" in panel


def test_programme_page_creates_rules_and_rewards(app: Any, db: Database) -> None:
    marketer = log_in(app, db, role="marketer", language="en")
    bad = marketer.post(
        "/console/loyalty/rules", {"name": "Visits", "kind": "event", "points": "5"}, follow_redirects=True
    )
    assert "could not be done" in bad.text
    marketer.post(
        "/console/loyalty/rules",
        {"name": "Visits", "kind": "event", "event_type": "visit", "points": "5", "day_cap": "5"},
    )
    marketer.post(
        "/console/loyalty/rewards",
        {"name": "5 EUR", "kind": "voucher", "cost_points": "300", "amount": "500", "currency": "eur"},
    )
    page = marketer.client.get("/console/loyalty").text
    assert "Visits" in page and "5 EUR" in page and "day: 5" in page


@pytest.mark.browser
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_store_counter_redemption_in_the_browser(
    browser: Browser,  # noqa: F811
    server: LiveServer,  # noqa: F811
    db: Database,
    settings: Settings,
) -> None:
    ana, _ = _seed(db, settings)
    email = make_user(db, role="store_clerk")
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(10_000)
    page: Page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        page.goto(server.url(f"/console/customers/{ana}"))
        page.get_by_label("Email").fill(email)
        page.get_by_label("Contraseña").fill(PASSWORD)
        page.get_by_role("button", name="Entrar").click()
        wallet = page.get_by_test_id("loyalty")
        expect(wallet.get_by_test_id("loyalty-balance")).to_have_text("120")
        expect(wallet.get_by_test_id("loyalty-ledger")).to_contain_text("welcome")
        wallet.get_by_label("Canjear en el mostrador").select_option(label="Muestra de crema — 50 puntos")
        wallet.get_by_role("button", name="Canjear").click()
        expect(page.get_by_text(re.compile(r"Código para el cliente: LR-"))).to_be_visible()
        expect(page.get_by_test_id("loyalty-balance")).to_have_text("70")
        expect(page.get_by_test_id("loyalty-ledger")).to_contain_text("redeem")
    finally:
        context.close()
    assert problems == []


def test_programme_page_deletes_rules_and_rewards_and_refuses_a_tier_in_use(
    app: Any, db: Database, settings: Settings
) -> None:
    ana, reward_id = _seed(db, settings)
    marketer = log_in(app, db, role="marketer", language="en")
    marketer.post("/console/loyalty/rules", {"name": "Visits", "kind": "event", "event_type": "visit", "points": "5"})
    page = marketer.client.get("/console/loyalty").text
    rule_id = re.search(r'action="/console/loyalty/rules/([^/"]+)/delete"', page)
    assert rule_id is not None
    done = marketer.post(f"/console/loyalty/rules/{rule_id.group(1)}/delete", {}, follow_redirects=True)
    assert "Rule deleted." in done.text and "Visits" not in done.text
    with db.write() as session:
        reward_service.redeem(session, customer_id=uuid.UUID(ana), reward_id=uuid.UUID(reward_id),
                              request_id="r1", channel="store", actor="test")  # fmt: skip
    done = marketer.post(f"/console/loyalty/rewards/{reward_id}/delete", {}, follow_redirects=True)
    assert "Reward deleted." in done.text and "Muestra de crema" not in done.text  # archived: kept for the ledger

    marketer.post("/console/loyalty/tiers", {"name": "Silver", "threshold": "100"})
    clash = marketer.post("/console/loyalty/tiers", {"name": "Gold", "threshold": "100"}, follow_redirects=True)
    assert "another tier has this threshold" in clash.text
    not_a_number = marketer.post("/console/loyalty/tiers", {"name": "Gold", "threshold": "lots"}, follow_redirects=True)
    assert "lots" in not_a_number.text and "Tier saved." not in not_a_number.text
    tier_id = re.search(
        r'action="/console/loyalty/tiers/([^/"]+)/delete"', marketer.client.get("/console/loyalty").text
    )
    assert tier_id is not None
    rule = {"name": "Survey", "kind": "event", "event_type": "survey", "points": "150"}
    marketer.post("/console/loyalty/rules", rule)
    with db.write() as session:
        service.post_event(session, EventIn(id="e2", customer_id=uuid.UUID(ana), type="survey"), settings=settings)
    held = marketer.post(f"/console/loyalty/tiers/{tier_id.group(1)}/delete", {}, follow_redirects=True)
    assert "1 customer(s) hold the tier" in held.text
    clerk = log_in(app, db, role="store_clerk", language="en")
    assert clerk.post(f"/console/loyalty/tiers/{tier_id.group(1)}/delete", {}).status_code == 403


@pytest.mark.browser
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_tier_editor_in_the_browser(
    browser: Browser,  # noqa: F811
    server: LiveServer,  # noqa: F811
    db: Database,
) -> None:
    email = make_user(db, role="marketer")
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(10_000)
    page: Page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        page.goto(server.url("/console/loyalty"))
        page.get_by_label("Email").fill(email)
        page.get_by_label("Contraseña").fill(PASSWORD)
        page.get_by_role("button", name="Entrar").click()
        expect(page.get_by_text("Todavía no hay niveles.")).to_be_visible()
        new = page.get_by_test_id("tier-new-form")
        new.get_by_label("Nombre", exact=True).fill("Plata")
        new.get_by_label("Umbral", exact=True).fill("500")
        new.get_by_label("Multiplicador").fill("1.25")
        new.get_by_role("button", name="Guardar nivel").click()
        expect(page.get_by_text("Nivel guardado.")).to_be_visible()
        row = page.get_by_test_id("tier-Plata")
        expect(row).to_contain_text("500 (puntos)")
        expect(row).to_contain_text("1.25")

        row.get_by_text("Editar").click()
        edit = row.get_by_test_id("tier-1-form")
        edit.get_by_label("Nombre", exact=True).fill("Oro")
        edit.get_by_label("Umbral", exact=True).fill("2000")
        edit.get_by_label("Se alcanza por").select_option(label="Importe gastado (céntimos)")
        edit.get_by_label("Se mantiene con (vacío: el umbral)").fill("1500")
        edit.get_by_role("button", name="Guardar el nivel Plata").click()
        expect(page.get_by_text("Nivel guardado.")).to_be_visible()
        row = page.get_by_test_id("tier-Oro")
        expect(row).to_contain_text("2000 (gasto)")
        expect(row).to_contain_text("1500")
        expect(page.get_by_test_id("tier-Plata")).to_have_count(0)

        row.get_by_role("button", name="Eliminar el nivel Oro").click()
        expect(page.get_by_text("Nivel eliminado.")).to_be_visible()
        expect(page.get_by_text("Todavía no hay niveles.")).to_be_visible()
    finally:
        context.close()
    assert problems == []
