"""Connecting a channel from the console: add, see the webhook address, change a secret, disable, remove."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from omnicanal.db import Database
from tests.console.helpers import log_in
from tests.conversations.helpers import API


def test_an_admin_connects_changes_and_removes_a_channel(app: Any, db: Database, client: TestClient) -> None:
    staff = log_in(app, db, role="admin", language="en")
    page = staff.client.get("/console/channels")
    assert page.status_code == 200 and 'data-testid="add-telegram"' in page.text
    added = staff.post("/console/channels", {"type": "telegram", "name": "Shop bot", "cfg_bot_token": "1:SECRET",
                                             "cfg_secret_token": "hook-secret"}, follow_redirects=True)  # fmt: skip
    assert added.status_code == 200 and "Channel connected." in added.text
    (channel,) = client.get(f"{API}/channels").json()
    assert f"/webhooks/telegram/{channel['id']}" in added.text
    assert "1:SECRET" not in added.text and "hook-secret" not in added.text
    assert channel["secrets_set"] == ["bot_token", "secret_token"]
    assert channel["config"]["api_base_url"] == "https://api.telegram.org"
    # an empty secret field keeps the stored secret; unchecking "enabled" disables the channel
    saved = staff.post(f"/console/channels/{channel['id']}", {"name": "Shop bot", "cfg_bot_username": "ShopBot",
                                                              "action": "save"}, follow_redirects=True)  # fmt: skip
    assert "Channel saved." in saved.text
    changed = client.get(f"{API}/channels/{channel['id']}").json()
    assert changed["enabled"] is False and changed["config"]["bot_username"] == "ShopBot"
    assert changed["secrets_set"] == ["bot_token", "secret_token"]
    bad = staff.post("/console/channels", {"type": "sms", "name": "SMS"}, follow_redirects=True)
    assert "account_sid" in bad.text  # the problem names the missing settings
    staff.post(f"/console/channels/{channel['id']}", {"action": "delete"}, follow_redirects=True)
    assert client.get(f"{API}/channels").json() == []


def test_agents_do_not_see_channel_settings(app: Any, db: Database) -> None:
    staff = log_in(app, db, role="agent")
    assert staff.client.get("/console/channels").status_code == 403
    assert 'href="/console/channels"' not in staff.client.get("/console/customers").text
