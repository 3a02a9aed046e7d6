"""The web chat in a real Chromium: a shop page on another origin embeds the widget with one script tag."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from omnicanal.db import Database
from omnicanal.settings import Settings
from tests.console.helpers import PASSWORD, make_user
from tests.support.browser import launch_chromium
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

LIVE = 5_000  # ms: a change must reach an open page well within this
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"outbox_in_process": True})


@pytest.fixture
def server(app: Any) -> Iterator[LiveServer]:
    with LiveServer(app) as live:
        yield live


@pytest.fixture
def channel(server: LiveServer, make_key: Callable[[str], str]) -> dict[str, Any]:
    with httpx.Client(trust_env=False, timeout=10) as client:
        response = client.post(
            server.url("/api/v1/channels"),
            headers={"Authorization": f"Bearer {make_key('admin')}"},
            json={"type": "webchat", "name": "Tienda web", "config": {"title": "Tienda Sol", "greeting": "¡Hola!"}},
        )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@pytest.fixture
def shop(server: LiveServer, channel: dict[str, Any]) -> Iterator[LiveServer]:
    """The company's own web site, on another origin, with the one tag the widget needs."""

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(
            "<!doctype html><html lang='es'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'><title>Tienda Sol</title>"
            "<link rel='icon' href='data:,'></head>"
            "<body><h1>Tienda Sol</h1><p>Camisetas, zapatillas y más.</p>"
            f"<script src='{server.url('/widget.js')}' data-channel='{channel['id']}' data-lang='es' async></script>"
            "</body></html>"
        )

    with LiveServer(Starlette(routes=[Route("/", page)])) as live:
        yield live


def _context(browser: Browser, **options: Any) -> BrowserContext:
    context = browser.new_context(**options)
    context.set_default_timeout(10_000)
    return context


def _watch(page: Page) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    return problems


def _conversation_of_last_web_message(server: LiveServer, key: str) -> str:
    with httpx.Client(trust_env=False, timeout=10) as client:
        found = client.get(server.url("/api/v1/conversations"), params={"channel": "web"},
                           headers={"Authorization": f"Bearer {key}"}).json()["items"]  # fmt: skip
    assert len(found) == 1, found
    conversation: str = found[0]["id"]
    return conversation


def test_a_visitor_writes_the_agent_answers_from_the_console_and_the_visitor_sees_it_live(
    server: LiveServer, shop: LiveServer, browser: Browser, db: Database, make_key: Callable[[str], str]
) -> None:
    visitor_context = _context(browser, viewport={"width": 1280, "height": 900})
    agent_context = _context(browser, viewport={"width": 1280, "height": 900})
    try:
        visitor = visitor_context.new_page()
        visitor_problems = _watch(visitor)
        visitor.goto(shop.url("/"))
        widget = visitor.locator("[data-omnicanal-widget]")
        expect(widget).to_have_attribute("data-connected", "true")
        widget.get_by_role("button", name="Chatea con nosotros").click()
        chat = widget.get_by_role("dialog", name="Tienda Sol")
        expect(chat).to_be_visible()
        expect(chat.locator(".greeting")).to_have_text("¡Hola!")
        box = chat.get_by_role("textbox", name="Escribe un mensaje…")
        box.fill("Hola, ¿tenéis la camiseta azul en talla M?")
        box.press("Enter")
        mine = chat.locator(".msg[data-direction=visitor]")
        expect(mine).to_have_count(1)
        expect(mine.first).to_have_text("Hola, ¿tenéis la camiseta azul en talla M?")
        expect(mine.first).not_to_have_class(re.compile("pending"))  # acknowledged: stored

        conversation = _conversation_of_last_web_message(server, make_key("admin"))
        agent = agent_context.new_page()
        agent_problems = _watch(agent)
        email = make_user(db, role="agent")
        agent.goto(server.url(f"/console/conversations/{conversation}"))
        agent.get_by_label("Email").fill(email)
        agent.get_by_label("Contraseña").fill(PASSWORD)
        agent.get_by_role("button", name="Entrar").click()
        expect(agent).to_have_url(server.url(f"/console/conversations/{conversation}"))
        expect(agent.locator("body")).to_have_attribute("data-live-connected", "true")
        expect(agent.get_by_test_id("messages")).to_contain_text("camiseta azul")

        # typing, both ways
        box.fill("Y también")
        expect(agent.get_by_test_id("customer-typing")).to_be_visible(timeout=LIVE)
        expect(agent.get_by_test_id("customer-typing")).to_have_text("El cliente está escribiendo…")
        expect(agent.get_by_test_id("channel-picker")).to_have_value("web")
        agent.get_by_test_id("reply-text").fill("¡Sí! Nos quedan tres en talla M.")
        expect(chat.locator(".typing")).to_have_text("Escribiendo…", timeout=LIVE)

        agent.get_by_test_id("send").click()
        theirs = chat.locator(".msg[data-direction=agent]")
        expect(theirs).to_have_count(1, timeout=LIVE)
        expect(theirs.first).to_have_text("¡Sí! Nos quedan tres en talla M.")
        expect(chat.locator(".typing")).to_have_text("")

        # a reload shows the whole conversation again, from the server
        visitor.reload()
        widget = visitor.locator("[data-omnicanal-widget]")
        expect(widget).to_have_attribute("data-connected", "true")
        widget.get_by_role("button", name="Chatea con nosotros").click()
        expect(widget.locator(".msg")).to_have_count(2)
        assert visitor_problems == [] and agent_problems == []
    finally:
        visitor_context.close()
        agent_context.close()


def test_the_visitor_opens_the_file_the_agent_attached_in_the_console(
    server: LiveServer, shop: LiveServer, browser: Browser, db: Database, make_key: Callable[[str], str],
    tmp_path: Path,
) -> None:  # fmt: skip
    visitor_context = _context(browser, viewport={"width": 1280, "height": 900}, accept_downloads=True)
    agent_context = _context(browser, viewport={"width": 1280, "height": 900})
    try:
        visitor = visitor_context.new_page()
        visitor_problems = _watch(visitor)
        visitor.goto(shop.url("/"))
        widget = visitor.locator("[data-omnicanal-widget]")
        expect(widget).to_have_attribute("data-connected", "true")
        widget.get_by_role("button", name="Chatea con nosotros").click()
        chat = widget.get_by_role("dialog", name="Tienda Sol")
        box = chat.get_by_role("textbox", name="Escribe un mensaje…")
        box.fill("¿Me pasáis la guía de tallas?")
        box.press("Enter")
        expect(chat.locator(".msg.in:not(.pending)")).to_have_count(1)

        conversation = _conversation_of_last_web_message(server, make_key("admin"))
        agent = agent_context.new_page()
        email = make_user(db, role="agent")
        agent.goto(server.url(f"/console/conversations/{conversation}"))
        agent.get_by_label("Email").fill(email)
        agent.get_by_label("Contraseña").fill(PASSWORD)
        agent.get_by_role("button", name="Entrar").click()
        expect(agent.get_by_test_id("messages")).to_contain_text("guía de tallas")
        guide = tmp_path / "guia-tallas.pdf"
        guide.write_bytes(b"%PDF-1.4 guia de tallas")
        agent.get_by_test_id("reply-text").fill("Aquí la tienes")
        agent.get_by_test_id("reply-files").set_input_files(str(guide))
        agent.get_by_test_id("send").click()

        theirs = chat.locator(".msg[data-direction=agent]")
        expect(theirs).to_have_count(1, timeout=LIVE)
        link = theirs.get_by_role("link", name="📎 guia-tallas.pdf")
        expect(link).to_be_visible()
        with visitor.expect_download() as download_info:
            link.click()
        download = download_info.value
        assert download.suggested_filename == "guia-tallas.pdf"
        assert Path(download.path()).read_bytes() == b"%PDF-1.4 guia de tallas"
        assert visitor_problems == []
    finally:
        visitor_context.close()
        agent_context.close()


def test_the_widget_fills_a_phone_screen_and_works_there(shop: LiveServer, browser: Browser) -> None:
    context = _context(browser, viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=3)
    try:
        page = context.new_page()
        problems = _watch(page)
        page.goto(shop.url("/"))
        widget = page.locator("[data-omnicanal-widget]")
        expect(widget).to_have_attribute("data-connected", "true")
        launcher = widget.get_by_role("button", name="Chatea con nosotros")
        box = launcher.bounding_box()
        assert box is not None and box["width"] >= 44 and box["height"] >= 44  # a thumb-sized target
        launcher.tap()
        chat = widget.get_by_role("dialog", name="Tienda Sol")
        expect(chat).to_be_visible()
        panel = chat.bounding_box()
        assert panel is not None
        assert (panel["x"], panel["y"], panel["width"], panel["height"]) == (0, 0, PHONE["width"], PHONE["height"])
        expect(launcher).to_be_hidden()  # nothing floats over the conversation
        textbox = chat.get_by_role("textbox", name="Escribe un mensaje…")
        font_size = textbox.evaluate("el => getComputedStyle(el).fontSize")
        assert font_size == "16px"  # smaller text makes phones zoom into the page
        send = chat.get_by_role("button", name="Enviar")
        send_box = send.bounding_box()
        assert send_box is not None and send_box["x"] + send_box["width"] <= PHONE["width"]
        textbox.fill("¿Abrís el domingo?")
        send.tap()
        expect(chat.locator(".msg[data-direction=visitor]")).to_have_text("¿Abrís el domingo?")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        chat.get_by_role("button", name="Cerrar el chat").tap()
        expect(chat).to_be_hidden()
        expect(launcher).to_be_visible()
        assert problems == []
    finally:
        context.close()


def test_the_widget_reconnects_and_sends_what_was_written_while_offline(
    server: LiveServer, shop: LiveServer, browser: Browser, make_key: Callable[[str], str]
) -> None:
    context = _context(browser, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(shop.url("/"))
        widget = page.locator("[data-omnicanal-widget]")
        expect(widget).to_have_attribute("data-connected", "true")
        widget.get_by_role("button", name="Chatea con nosotros").click()
        chat = widget.get_by_role("dialog", name="Tienda Sol")
        box = chat.get_by_role("textbox", name="Escribe un mensaje…")
        box.fill("Primero")
        box.press("Enter")
        expect(chat.locator(".msg.in:not(.pending)")).to_have_count(1)

        context.set_offline(True)
        expect(widget).to_have_attribute("data-connected", "false", timeout=LIVE)
        expect(chat.get_by_role("status")).to_have_text("Reconectando…")
        box.fill("Escrito sin conexión")
        box.press("Enter")
        expect(chat.locator(".msg.pending")).to_have_text("Escrito sin conexión")

        context.set_offline(False)
        expect(widget).to_have_attribute("data-connected", "true", timeout=15_000)
        expect(chat.locator(".msg.pending")).to_have_count(0, timeout=LIVE)
        expect(chat.locator(".msg.in")).to_have_count(2)
        conversation = _conversation_of_last_web_message(server, make_key("admin"))
        headers = {"Authorization": f"Bearer {make_key('admin')}"}
        with httpx.Client(trust_env=False, timeout=10, headers=headers) as client:
            found = client.get(server.url(f"/api/v1/conversations/{conversation}/messages")).json()["items"]
        texts = [m["text"] for m in found]
        assert texts == ["Primero", "Escrito sin conexión"]  # once each
    finally:
        context.close()


def test_a_visitor_asks_for_a_call_from_the_widget(
    server: LiveServer, shop: LiveServer, browser: Browser, make_key: Callable[[str], str]
) -> None:
    context = _context(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        problems = _watch(page)
        page.goto(shop.url("/"))
        widget = page.locator("[data-omnicanal-widget]")
        expect(widget).to_have_attribute("data-connected", "true")
        widget.get_by_role("button", name="Chatea con nosotros").tap()
        chat = widget.get_by_role("dialog", name="Tienda Sol")
        chat.get_by_role("button", name="Que me llamen").tap()
        chat.get_by_role("textbox", name="Tu número de teléfono").fill("612 345 678")
        chat.get_by_role("button", name="Llamadme").tap()
        expect(chat.get_by_role("status").filter(has_text="te llamaremos")).to_have_text(
            "Gracias: te llamaremos pronto."
        )
        with httpx.Client(trust_env=False, timeout=10) as client:
            queue = client.get(server.url("/api/v1/callbacks"),
                               headers={"Authorization": f"Bearer {make_key('admin')}"}).json()  # fmt: skip
        assert [(t["reason"], t["phone"]) for t in queue] == [("web_request", "+34612345678")]
        assert problems == []
    finally:
        context.close()
