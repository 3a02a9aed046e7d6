"""The agent inbox in a real Chromium: live messages, a reply on another channel, the ``/`` shortcut."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from omnicanal.db import Database
from omnicanal.routing.admin import update_agent
from omnicanal.routing.schemas import AgentIn
from omnicanal.settings import Settings
from tests.console.helpers import (
    PASSWORD,
    make_answer,
    make_customer,
    make_team,
    make_user,
    receive_message,
    user_id,
)
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

LIVE = 5_000  # ms: a change must reach an open page well within this


@pytest.fixture
def page(server: LiveServer, browser: Browser) -> Iterator[Page]:
    # depends on ``server`` so that the page (and its event stream) closes before the server stops
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    yield page
    context.close()
    assert problems == [], f"the browser reported errors: {problems}"


def _log_in(page: Page, server: LiveServer, email: str, path: str) -> None:
    page.goto(server.url(path))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Contraseña").fill(PASSWORD)
    page.get_by_role("button", name="Entrar").click()
    expect(page).to_have_url(server.url(path))


def _live(page: Page) -> None:
    """The page's event stream is connected, and a marker shows later that the page was never reloaded."""
    expect(page.locator("body")).to_have_attribute("data-live-connected", "true")
    page.evaluate("window.notReloaded = true")


def _not_reloaded(page: Page) -> None:
    assert page.evaluate("window.notReloaded === true"), "the page was reloaded"


def _inbound(server: LiveServer, key: str, channel: str, identities: list[dict[str, str]], text: str) -> str:
    with httpx.Client(trust_env=False, timeout=10) as client:
        response = client.post(
            server.url("/api/v1/messages/inbound"),
            headers={"Authorization": f"Bearer {key}"},
            json={"channel": channel, "identities": identities, "text": text, "external_id": f"{channel}-{text}"},
        )
    assert response.status_code == 201, response.text
    conversation: str = response.json()["conversation_id"]
    return conversation


def test_a_message_arrives_live_the_agent_replies_by_email_and_sms_joins_the_conversation(
    server: LiveServer, page: Page, db: Database, settings: Settings, make_key: Callable[[str], str]
) -> None:
    make_customer(db, settings, first="Ana", last="García",
                  identities=[("email", "ana@example.com"), ("phone", "+34612345678")])  # fmt: skip
    email = make_user(db, role="agent")
    agent = user_id(db, email)
    make_team(db, name="Atención", members=[agent])
    with db.write() as session:
        update_agent(session, agent, AgentIn(online=True))
    key = make_key("admin")

    _log_in(page, server, email, "/console/inbox")
    inbox = page.get_by_test_id("inbox")
    expect(inbox).to_contain_text("No hay conversaciones aquí.")
    _live(page)

    # (a) a WhatsApp message reaches the open inbox without a reload
    conversation = _inbound(server, key, "whatsapp", [{"type": "phone", "value": "612 345 678"}],
                            "Hola, ¿tenéis la talla 42?")  # fmt: skip
    row = inbox.locator(f'[data-conversation-id="{conversation}"]')
    expect(row).to_contain_text("Ana García", timeout=LIVE)
    expect(row.locator(".ch-whatsapp")).to_be_visible()
    _not_reloaded(page)

    # (b) the agent opens it and answers by email: WhatsApp and email are both possible
    row.get_by_role("link").click()
    expect(page).to_have_url(server.url(f"/console/conversations/{conversation}"))
    messages = page.get_by_test_id("messages").locator('[data-testid="message"]')
    expect(messages).to_have_count(1)
    picker = page.get_by_test_id("channel-picker")
    expect(picker).to_have_value("whatsapp")
    expect(picker.locator('option[value="telegram"]')).to_be_disabled()
    picker.select_option("email")
    page.get_by_test_id("reply-text").fill("Sí, te la reservamos en la tienda de Sol.")
    page.get_by_test_id("send").click()
    expect(page.get_by_role("status").first).to_contain_text("Respuesta en cola por Email")
    expect(messages).to_have_count(2)
    reply = messages.nth(1)
    expect(reply).to_have_attribute("data-channel", "email")
    expect(reply.get_by_test_id("delivery-status")).to_have_text(re.compile("En cola|Enviado"))
    expect(reply.get_by_test_id("delivery-status")).to_have_text("Enviado", timeout=LIVE)  # the outbox delivered it

    # (c) the customer writes again, by SMS from the same number: same conversation, shown live
    _live(page)
    again = _inbound(server, key, "sms", [{"type": "phone", "value": "+34 612 345 678"}], "Gracias, paso mañana")
    assert again == conversation
    expect(messages).to_have_count(3, timeout=LIVE)
    expect(messages.nth(2)).to_have_attribute("data-channel", "sms")
    expect(messages.nth(2)).to_contain_text("Gracias, paso mañana")
    _not_reloaded(page)


def test_a_refresh_already_on_its_way_does_not_undo_the_agents_channel_pick(
    server: LiveServer, page: Page, db: Database, settings: Settings
) -> None:
    make_customer(db, settings, first="Ana", last="García",
                  identities=[("email", "ana@example.com"), ("phone", "+34612345678")])  # fmt: skip
    conversation, _ = receive_message(db, settings, channel="whatsapp", identities=[("phone", "+34612345678")],
                                      text="¿Tenéis la talla 42?")  # fmt: skip
    email = make_user(db, role="agent")
    _log_in(page, server, email, f"/console/conversations/{conversation}")
    picker = page.get_by_test_id("channel-picker")
    expect(picker).to_have_value("whatsapp")

    held: list[Route] = []
    page.route(re.compile(r".*/channels\?.*"), lambda route: held.append(route))
    page.evaluate("htmx.trigger(document.getElementById('channel-picker'), 'live-refresh')")
    while not held:  # the refresh left while WhatsApp was still the choice
        page.wait_for_timeout(20)
    picker.select_option("email")
    page.evaluate("document.getElementById('reply-channel').dataset.stale = 'yes'")
    held[0].continue_()
    # the refreshed picker is a new element, without the mark (expect polls without eval: the console's CSP)
    expect(page.locator("#reply-channel")).not_to_have_attribute("data-stale", "yes")
    expect(picker).to_have_value("email")


def test_the_slash_shortcut_inserts_an_answer(server: LiveServer, page: Page, db: Database, settings: Settings) -> None:
    make_customer(db, settings, first="Ana", last="García", identities=[("phone", "+34612345678")])
    conversation, _ = receive_message(db, settings, channel="whatsapp", identities=[("phone", "+34612345678")],
                                      text="¿Qué horario tiene la tienda?")  # fmt: skip
    make_answer(db, title="Horario de apertura", shortcut="horario",
                body="¡Hola {{customer.first_name}}! Abrimos de **10:00 a 21:00**.")  # fmt: skip
    make_answer(db, title="Devoluciones", shortcut="devolucion", body="Tienes 30 días para devolverlo.")
    email = make_user(db, role="agent")
    _log_in(page, server, email, f"/console/conversations/{conversation}")

    expect(page.get_by_test_id("suggestions")).to_contain_text("Horario de apertura")
    box = page.get_by_test_id("reply-text")
    box.press_sequentially("/hor", delay=30)
    results = page.get_by_test_id("slash-results")
    expect(results).to_be_visible()
    expect(results.locator(".answer-pick")).to_have_count(1)
    expect(results).to_contain_text("Horario de apertura")
    box.press("Enter")
    expect(box).to_have_value("¡Hola Ana! Abrimos de *10:00 a 21:00*.")
    expect(results).to_be_hidden()

    # a suggestion inserts the same way, with the formatting of the chosen channel
    box.fill("")
    page.get_by_test_id("suggestions").get_by_role("button", name="Horario de apertura").click()
    expect(box).to_have_value("¡Hola Ana! Abrimos de *10:00 a 21:00*.")
