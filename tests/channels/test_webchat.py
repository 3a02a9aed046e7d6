"""The web chat over its real WebSocket: visitors, history, identity verification, files, live replies."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from omnicanal.channels.webchat.visitors import identity_hash
from omnicanal.db import Database
from tests.console.helpers import log_in

SECRET = "site-identity-secret"


def make_webchat(client: TestClient, **config: Any) -> dict[str, Any]:
    body = {"type": "webchat", "name": "Shop web", "config": {"title": "Shop", "identity_secret": SECRET} | config}
    response = client.post("/api/v1/channels", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@pytest.fixture
def webchat(client: TestClient) -> dict[str, Any]:
    return make_webchat(client)


def connect(client: TestClient, channel: dict[str, Any], **headers: str) -> WebSocketTestSession:
    session: WebSocketTestSession = client.websocket_connect(f"/ws/widget?channel={channel['id']}", headers=headers)
    return session


def hello(ws: WebSocketTestSession, device: str, identity: dict[str, str] | None = None) -> dict[str, Any]:
    ws.send_json({"type": "hello", "device_id": device, "identity": identity})
    frame: dict[str, Any] = ws.receive_json()
    assert frame["type"] == "ready", frame
    return frame


def say(ws: WebSocketTestSession, text: str, client_id: str | None = None, **extra: Any) -> dict[str, Any]:
    ws.send_json({"type": "message", "client_id": client_id or f"c-{uuid.uuid4().hex[:8]}", "text": text, **extra})
    frame: dict[str, Any] = ws.receive_json()
    return frame


def customer_by(client: TestClient, identity: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get("/api/v1/customers", params={"identity": identity}).json()["items"]
    return items


def test_the_widget_script_is_served_for_any_site(client: TestClient) -> None:
    response = client.get("/widget.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert "/ws/widget?channel=" in response.text


def test_an_anonymous_visitor_writes_and_the_conversation_is_the_device_s(
    client: TestClient, webchat: dict[str, Any]
) -> None:
    device = "device-" + uuid.uuid4().hex
    with connect(client, webchat) as ws:
        ready = hello(ws, device)
        assert ready["messages"] == [] and ready["title"] == "Shop" and ready["verified"] is False
        ack = say(ws, "Do you ship to Canarias?", client_id="c-1")
        assert ack["type"] == "message" and ack["client_id"] == "c-1"
        assert ack["message"]["direction"] == "inbound" and ack["message"]["text"] == "Do you ship to Canarias?"
        # the widget resends after a reconnection: the same client id is the same message
        again = say(ws, "Do you ship to Canarias?", client_id="c-1")
        assert again["message"]["id"] == ack["message"]["id"]
    (customer,) = customer_by(client, f"device_id:{device}")
    conversations = client.get("/api/v1/conversations", params={"customer_id": customer["id"]}).json()["items"]
    assert [c["last_channel"] for c in conversations] == ["web"]
    messages = client.get(f"/api/v1/conversations/{conversations[0]['id']}/messages").json()["items"]
    assert [m["text"] for m in messages] == ["Do you ship to Canarias?"]
    assert messages[0]["channel_instance_id"] == webchat["id"]


def test_an_agent_reply_reaches_the_open_widget_live_and_stays_in_the_history(
    client: TestClient, webchat: dict[str, Any], app: Any
) -> None:
    device = "device-" + uuid.uuid4().hex
    with connect(client, webchat) as ws:
        hello(ws, device)
        conversation = say(ws, "Hello?")["message"]["conversation_id"]
        reply = client.post(f"/api/v1/conversations/{conversation}/messages", json={"text": "Hi! How can I help?"})
        assert reply.status_code == 201, reply.text
        assert reply.json()["channel"] == "web"
        app.state.outbox_worker.run_once()
        frame = ws.receive_json()
        while frame["type"] != "message" or frame["message"]["direction"] != "outbound":
            frame = ws.receive_json()
        assert frame["message"]["text"] == "Hi! How can I help?"
        assert frame["message"]["sender_type"] == "agent"
    sent = client.get(f"/api/v1/conversations/{conversation}/messages").json()["items"][-1]
    assert sent["status"] == "sent"
    with connect(client, webchat) as ws:  # the page was reloaded
        history = hello(ws, device)["messages"]
        assert [(m["direction"], m["text"]) for m in history] == [
            ("inbound", "Hello?"),
            ("outbound", "Hi! How can I help?"),
        ]


def test_a_verified_identity_joins_the_device_to_the_existing_customer(
    client: TestClient, webchat: dict[str, Any]
) -> None:
    known = client.post("/api/v1/customers", json={"identities": [{"type": "email", "value": "ana@example.com"}]})
    assert known.status_code == 201, known.text
    device = "device-" + uuid.uuid4().hex
    with connect(client, webchat) as ws:
        hello(ws, device)
        say(ws, "I have a question before logging in")
    with connect(client, webchat) as ws:  # she logs in on the site, which signs her address
        claim = {"type": "email", "value": "ana@example.com", "hash": identity_hash(SECRET, "ana@example.com")}
        ready = hello(ws, device, claim)
        assert ready["verified"] is True
        assert [m["text"] for m in ready["messages"]] == ["I have a question before logging in"]
        say(ws, "Now I am logged in")
    (customer,) = customer_by(client, "email:ana@example.com")
    assert customer["id"] == known.json()["id"]
    assert customer_by(client, f"device_id:{device}")[0]["id"] == customer["id"]


def test_an_unverified_claim_is_never_merged_into_an_existing_customer(
    client: TestClient, webchat: dict[str, Any]
) -> None:
    known = client.post("/api/v1/customers", json={"identities": [{"type": "email", "value": "ana@example.com"}]})
    ana = known.json()["id"]
    client.post("/api/v1/messages/inbound", json={"channel": "web", "customer_id": ana, "text": "Ana's secret order",
                                                  "external_id": "ana-1"})  # fmt: skip
    device = "device-" + uuid.uuid4().hex
    with connect(client, webchat) as ws:
        for forged in ("0" * 64, identity_hash("another secret", "ana@example.com"), ""):
            ready = hello(ws, device, {"type": "email", "value": "ana@example.com", "hash": forged})
            assert ready["verified"] is False and ready["identity_rejected"] is True
            assert ready["messages"] == []  # nothing of Ana's
        say(ws, "Show me Ana's orders")
    assert customer_by(client, f"device_id:{device}")[0]["id"] != ana
    assert customer_by(client, "email:ana@example.com")[0]["id"] == ana


def test_without_an_identity_secret_no_claim_is_trusted(client: TestClient) -> None:
    channel = make_webchat(client, identity_secret=None)
    client.post("/api/v1/customers", json={"identities": [{"type": "email", "value": "ana@example.com"}]})
    with connect(client, channel) as ws:
        ready = hello(ws, "device-" + uuid.uuid4().hex, {"type": "email", "value": "ana@example.com",
                                                           "hash": identity_hash("", "ana@example.com")})  # fmt: skip
        assert ready["verified"] is False


def test_files_within_the_limits_are_kept_and_others_refused(
    client: TestClient, webchat: dict[str, Any], app: Any
) -> None:
    pdf = base64.b64encode(b"%PDF-1.4 invoice").decode()
    with connect(client, webchat) as ws:
        hello(ws, "device-" + uuid.uuid4().hex)
        ack = say(ws, "", attachments=[{"name": "invoice.pdf", "content_type": "application/pdf", "data": pdf}])
        assert ack["type"] == "message"
        (kept,) = ack["message"]["attachments"]
        assert kept.pop("url").startswith("/widget/files/")  # the visitor can open it again
        assert kept == {"name": "invoice.pdf", "content_type": "application/pdf", "size": 16}
        refused = say(ws, "", attachments=[{"name": "x.exe", "content_type": "application/x-msdownload",
                                            "data": pdf}])  # fmt: skip
        assert refused["type"] == "error" and refused["code"] == "file_refused"
        big = base64.b64encode(b"x" * (app.state.settings.attachment_max_bytes + 1)).decode()
        too_big = say(ws, "", attachments=[{"name": "big.txt", "content_type": "text/plain", "data": big}])
        assert too_big["type"] == "error" and too_big["code"] == "file_refused"


def test_bad_frames_get_clear_errors(client: TestClient, webchat: dict[str, Any]) -> None:
    with connect(client, webchat) as ws:
        ws.send_json({"type": "message", "client_id": "c", "text": "hi"})
        assert ws.receive_json()["code"] == "hello_first"
        ws.send_json({"type": "hello", "device_id": "short"})
        assert ws.receive_json()["code"] == "bad_device"
        hello(ws, "device-" + uuid.uuid4().hex)
        ws.send_text("not json")
        assert ws.receive_json()["code"] == "bad_frame"
        assert say(ws, "   ")["code"] == "bad_message"
        assert say(ws, "x" * 5001)["code"] == "too_long"
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}  # the widget's heartbeat
        ws.send_json({"type": "dance"})
        assert ws.receive_json()["code"] == "unknown_type"


def test_unknown_channels_and_sites_not_allowed_are_refused(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as unknown, connect(client, {"id": str(uuid.uuid4())}) as ws:
        ws.receive_json()
    assert unknown.value.code == 4404
    channel = make_webchat(client, allowed_origins=["https://shop.example.com"])
    with pytest.raises(WebSocketDisconnect) as other, connect(client, channel, origin="https://evil.example") as ws:
        ws.receive_json()
    assert other.value.code == 4403
    with connect(client, channel, origin="https://shop.example.com") as ws:
        hello(ws, "device-" + uuid.uuid4().hex)


def test_an_agent_typing_in_the_console_shows_in_the_widget(
    client: TestClient, webchat: dict[str, Any], app: Any, db: Database
) -> None:
    agent = log_in(app, db, role="agent")
    with connect(client, webchat) as ws:
        hello(ws, "device-" + uuid.uuid4().hex)
        conversation = say(ws, "Hello")["message"]["conversation_id"]
        response = agent.post(f"/console/conversations/{conversation}/typing", data={"typing": "1"})
        assert response.status_code == 204
        assert ws.receive_json() == {"type": "typing", "typing": True}
    forged = agent.client.post(f"/console/conversations/{conversation}/typing", data={"csrf_token": "nope"})
    assert forged.status_code == 403


def test_a_visitor_asks_to_be_called_back_and_the_call_center_queue_has_it(
    client: TestClient, webchat: dict[str, Any]
) -> None:
    device = "device-" + uuid.uuid4().hex
    with connect(client, webchat) as ws:
        hello(ws, device)
        conversation = say(ws, "I'd rather talk")["message"]["conversation_id"]
        ws.send_json({"type": "callback", "client_id": "cb-1", "phone": "612 345 678", "notes": "after 18:00"})
        assert ws.receive_json() == {"type": "callback", "client_id": "cb-1", "status": "requested"}
        ws.send_json({"type": "callback", "client_id": "cb-1", "phone": "612 345 678"})  # resent: one request
        assert ws.receive_json()["status"] == "requested"
        ws.send_json({"type": "callback", "client_id": "cb-2", "phone": "not a number"})
        assert ws.receive_json()["code"] == "bad_phone"
    (task,) = client.get("/api/v1/callbacks").json()
    assert (task["reason"], task["phone"], task["notes"]) == ("web_request", "+34612345678", "after 18:00")
    assert task["conversation_id"] == conversation
    # the number is where to call, not a proof of who the visitor is
    assert customer_by(client, "phone:+34612345678") == []
