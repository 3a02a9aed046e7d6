"""A call rings: the routed team's agent sees a screen-pop in the console and opens the caller's conversation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import urlencode

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from omnicanal.channels.twilio import signature
from omnicanal.db import Database
from omnicanal.routing.admin import update_agent
from omnicanal.routing.schemas import AgentIn
from omnicanal.settings import Settings
from tests.console.helpers import PASSWORD, make_customer, make_team, make_user, user_id
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]
TOKEN = "voice-token"


@pytest.fixture
def page(server: LiveServer, browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone-sized screen
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    yield page
    context.close()
    assert problems == [], f"the browser reported errors: {problems}"


def test_the_agent_of_the_routed_team_gets_a_screen_pop(
    server: LiveServer, page: Page, db: Database, settings: Settings, make_key: Callable[[str], str]
) -> None:
    make_customer(db, settings, first="Lola", last="Pérez", identities=[("phone", "+34611555666")])
    email = make_user(db, role="agent")
    agent = user_id(db, email)
    make_team(db, name="Teléfono", members=[agent])
    with db.write() as session:
        update_agent(session, agent, AgentIn(online=True))
    key = make_key("admin")
    with httpx.Client(trust_env=False, timeout=10, headers={"Authorization": f"Bearer {key}"}) as api:
        config = {"account_sid": "AC" + "2" * 32, "auth_token": TOKEN, "public_url": server.url("").rstrip("/")}
        channel = api.post(server.url("/api/v1/channels"), json={"type": "voice", "name": "Centralita",
                                                                 "config": config}).json()  # fmt: skip

    page.goto(server.url("/console/inbox"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Contraseña").fill(PASSWORD)
    page.get_by_role("button", name="Entrar").click()
    expect(page.locator("body")).to_have_attribute("data-live-connected", "true")
    pop = page.get_by_test_id("call-pop")
    expect(pop).to_be_hidden()

    path = f"/webhooks/voice/{channel['id']}"
    params = {"CallSid": "CA" + "c" * 32, "AccountSid": "AC" + "2" * 32, "From": "+34611555666",
              "To": "+34910000001", "CallStatus": "ringing"}  # fmt: skip
    headers = {"X-Twilio-Signature": signature(TOKEN, server.url(path), params.items()),
               "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
    with httpx.Client(trust_env=False, timeout=10) as provider:
        assert provider.post(server.url(path), content=urlencode(params), headers=headers).status_code == 200

    expect(pop).to_be_visible(timeout=5_000)
    expect(pop).to_contain_text("Llamada entrante")
    pop.get_by_test_id("call-pop-link").click()
    expect(page.locator("body")).to_contain_text("Lola Pérez")
    expect(page.locator("body")).to_contain_text("Llamada entrante")
