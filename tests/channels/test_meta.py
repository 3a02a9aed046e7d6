"""Messenger and Instagram direct messages in Meta's webhook format."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from omnicanal.outbox.worker import OutboxWorker
from tests.channels.doubles import Call, HttpDouble
from tests.channels.meta_helpers import post_signed
from tests.conversations.helpers import API, messages

SECRET = "meta-app-secret"
PAGE, IG = "101010101010", "17841400000000000"
_mids = itertools.count(1)


@pytest.fixture
def graph() -> Iterator[HttpDouble]:
    double = HttpDouble()
    ids = itertools.count(1)

    def send(call: Call, match: Any) -> tuple[int, Any]:
        if call.headers.get("authorization") != "Bearer page-token":
            return 401, {"error": {"message": "Invalid OAuth access token", "code": 190}}
        return 200, {"recipient_id": call.json()["recipient"]["id"], "message_id": f"m_out{next(ids)}"}

    double.route("POST", r"/v21\.0/(\d+)/messages", send)
    yield double.start()
    double.stop()


def meta_channel(client: TestClient, base: str) -> dict[str, Any]:
    config = {"page_id": PAGE, "instagram_account_id": IG, "app_secret": SECRET, "verify_token": "vt",
              "page_access_token": "page-token", "api_base_url": base}  # fmt: skip
    response = client.post(f"{API}/channels", json={"type": "meta", "name": "Página", "config": config})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def event(obj: str, account: str, sender: str, **body: Any) -> dict[str, Any]:
    messaging = {"sender": {"id": sender}, "recipient": {"id": account}, "timestamp": int(time.time() * 1000)} | body
    return {"object": obj, "entry": [{"id": account, "time": int(time.time() * 1000), "messaging": [messaging]}]}


def worker(client: TestClient) -> OutboxWorker:
    found: OutboxWorker = client.app.state.outbox_worker  # type: ignore[attr-defined]
    return found


@pytest.mark.parametrize(
    ("obj", "account", "channel_name"), [("page", PAGE, "facebook"), ("instagram", IG, "instagram")]
)
def test_round_trip(client: TestClient, graph: HttpDouble, obj: str, account: str, channel_name: str) -> None:
    channel = meta_channel(client, graph.url)
    path = f"/webhooks/meta/{channel['id']}"
    incoming = event(obj, account, "2400000000001", message={"mid": f"m_in{next(_mids)}", "text": "Hola"})
    assert post_signed(client, path, incoming, SECRET).status_code == 200
    (conversation,) = client.get(f"{API}/conversations").json()["items"]
    assert conversation["last_channel"] == channel_name
    reply = client.post(f"{API}/conversations/{conversation['id']}/messages", json={"text": "¡Hola! ¿En qué te ayudo?"})
    assert reply.status_code == 201, reply.text
    worker(client).drain()
    (call,) = graph.calls
    assert call.path == f"/v21.0/{account}/messages"
    assert call.json() == {"recipient": {"id": "2400000000001"}, "messaging_type": "RESPONSE",
                           "message": {"text": "¡Hola! ¿En qué te ayudo?"}}  # fmt: skip
    assert messages(client, conversation["id"])[-1]["provider_message_id"] == "m_out1"
    receipt = {"delivery": {"mids": ["m_out1"], "watermark": int(time.time() * 1000)}}
    if obj == "instagram":
        receipt = {"read": {"mid": "m_out1"}}
    post_signed(client, path, event(obj, account, "2400000000001", **receipt), SECRET)
    assert messages(client, conversation["id"])[-1]["status"] == ("read" if obj == "instagram" else "delivered")


def test_handshake_signatures_echoes_and_retries(client: TestClient, graph: HttpDouble) -> None:
    channel = meta_channel(client, graph.url)
    path = f"/webhooks/meta/{channel['id']}"
    challenge = client.get(path, params={"hub.mode": "subscribe", "hub.verify_token": "vt", "hub.challenge": "42"})
    assert challenge.text == "42"
    incoming = event("page", PAGE, "2400000000002", message={"mid": "m_same", "text": "Hola"})
    assert post_signed(client, path, incoming, "forged").status_code == 403
    assert client.post(path, json=incoming).status_code == 401
    echo = event("page", PAGE, PAGE, message={"mid": "m_echo", "text": "our own", "is_echo": True})
    other_page = event("page", "999", "2400000000002", message={"mid": "m_other", "text": "x"})
    for body in (incoming, incoming, echo, other_page):
        assert post_signed(client, path, body, SECRET).status_code == 200
    (conversation,) = client.get(f"{API}/conversations").json()["items"]
    assert [m["external_id"] for m in messages(client, conversation["id"])] == ["m_same"]


def test_files_sent_on_messenger_are_copied_into_the_store(client: TestClient, graph: HttpDouble) -> None:
    cdn = HttpDouble()
    cdn.route("GET", r"/v/t1/(\w+)\.jpg", lambda call, match: (200, b"\xff\xd8 photo", {"content-type": "image/jpeg"}))
    cdn.start()
    try:
        channel = meta_channel(client, graph.url)
        photo = f"{cdn.url}/v/t1/123_456_n.jpg?_nc_cat=1&oh=signed"
        sticker = f"{cdn.url}/v/t1/sticker.png?oh=signed"
        attachments = [{"type": "image", "payload": {"url": photo}},
                       {"type": "image", "payload": {"url": sticker, "sticker_id": 369239263222822}},
                       {"type": "location", "payload": {"coordinates": {"lat": 40.42, "long": -3.70}}}]  # fmt: skip
        incoming = event("page", PAGE, "2400000000003", message={"mid": "m_photo", "attachments": attachments})
        assert post_signed(client, f"/webhooks/meta/{channel['id']}", incoming, SECRET).status_code == 200
        worker(client).drain()
    finally:
        cdn.stop()
    (conversation,) = client.get(f"{API}/conversations").json()["items"]
    (message,) = messages(client, conversation["id"])
    stored = message["attachments"][0]
    assert stored["key"].endswith("/123_456_n.jpg") and stored["content_type"] == "image/jpeg"
    assert all("authorization" not in call.headers for call in cdn.calls)  # the page's token stays with Meta
    assert len(cdn.calls) == 2 and "key" not in message["attachments"][2]
