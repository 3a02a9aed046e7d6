"""WhatsApp (Meta Cloud API): handshake, signed webhooks, message types, statuses, the 24-hour window."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from omnicanal.outbox.worker import OutboxWorker
from tests.channels.doubles import Call, HttpDouble
from tests.channels.meta_helpers import post_signed, wa_message, wa_payload
from tests.channels.whatsapp_double import invalid, payload_problem
from tests.conversations.helpers import API, messages

SECRET = "meta-app-secret"
NUMBER_ID = "106540352242922"


@pytest.fixture
def graph() -> Iterator[HttpDouble]:
    double = HttpDouble()
    ids = itertools.count(1)

    def send(call: Call, match: Any) -> tuple[int, Any]:
        body = call.json()
        if call.headers.get("authorization") != "Bearer wa-access-token":
            return 401, {"error": {"message": "Invalid OAuth access token", "code": 190}}
        if payload_problem(body):
            return invalid(str(payload_problem(body)))
        return 200, {"messaging_product": "whatsapp", "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                     "messages": [{"id": f"wamid.OUT{next(ids):06d}"}]}  # fmt: skip

    def media_info(call: Call, match: Any) -> tuple[int, Any]:
        if call.headers.get("authorization") != "Bearer wa-access-token":
            return 401, {"error": {"message": "Invalid OAuth access token", "code": 190}}
        return 200, {"messaging_product": "whatsapp", "url": f"{double.url}/files/{match.group(1)}",
                     "mime_type": "image/jpeg", "sha256": "x", "file_size": 9, "id": match.group(1)}  # fmt: skip

    def media_file(call: Call, match: Any) -> tuple[int, Any]:
        return 200, b"JPEG-DATA"

    double.route("POST", r"/v21\.0/(\d+)/messages", send)
    double.route("GET", r"/v21\.0/([\w-]+)", media_info)
    double.route("GET", r"/files/([\w-]+)", media_file)
    yield double.start()
    double.stop()


def wa_channel(client: TestClient, base: str) -> dict[str, Any]:
    config = {"phone_number_id": NUMBER_ID, "app_secret": SECRET, "verify_token": "verify-me",
              "access_token": "wa-access-token", "api_base_url": base, "templates": ["order_ready"]}  # fmt: skip
    response = client.post(f"{API}/channels", json={"type": "whatsapp", "name": "WhatsApp ES", "config": config})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def send_in(client: TestClient, channel_id: str, *messages_: dict[str, Any], expect: int = 200) -> None:
    response = post_signed(client, f"/webhooks/whatsapp/{channel_id}", wa_payload(NUMBER_ID, messages=list(messages_)),
                           SECRET)  # fmt: skip
    assert response.status_code == expect, response.text


def worker(client: TestClient) -> OutboxWorker:
    found: OutboxWorker = client.app.state.outbox_worker  # type: ignore[attr-defined]
    return found


def only_conversation(client: TestClient) -> dict[str, Any]:
    (conversation,) = client.get(f"{API}/conversations").json()["items"]
    result: dict[str, Any] = conversation
    return result


def test_handshake_answers_the_challenge_only_with_the_verify_token(client: TestClient, graph: HttpDouble) -> None:
    channel = wa_channel(client, graph.url)
    path = f"/webhooks/whatsapp/{channel['id']}"
    ok = client.get(
        path, params={"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"}
    )
    assert ok.status_code == 200 and ok.text == "1158201444"
    bad = client.get(path, params={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"})
    assert bad.status_code == 403


def test_round_trip_with_statuses(client: TestClient, graph: HttpDouble) -> None:
    channel = wa_channel(client, graph.url)
    send_in(client, channel["id"], wa_message("34612345678", body="¿Tenéis la talla M?"))
    conversation = only_conversation(client)
    reply = client.post(f"{API}/conversations/{conversation['id']}/messages", json={"text": "Sí, *en tienda*"})
    assert reply.status_code == 201, reply.text
    worker(client).drain()
    (call,) = graph.calls
    assert call.path == f"/v21.0/{NUMBER_ID}/messages"
    assert call.json() == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "34612345678",
                           "type": "text", "text": {"preview_url": False, "body": "Sí, *en tienda*"}}  # fmt: skip
    sent = messages(client, conversation["id"])[-1]
    assert sent["status"] == "sent" and sent["provider_message_id"] == "wamid.OUT000001"
    for status in ("delivered", "read", "delivered"):  # a late "delivered" never undoes "read"
        update = {"id": "wamid.OUT000001", "status": status, "timestamp": str(int(time.time()))}
        payload = wa_payload(NUMBER_ID, statuses=[update | {"recipient_id": "34612345678"}])
        assert post_signed(client, f"/webhooks/whatsapp/{channel['id']}", payload, SECRET).status_code == 200
    assert messages(client, conversation["id"])[-1]["status"] == "read"


def test_forged_unsigned_and_replayed_requests(client: TestClient, graph: HttpDouble,
                                               caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    channel = wa_channel(client, graph.url)
    path = f"/webhooks/whatsapp/{channel['id']}"
    payload = wa_payload(NUMBER_ID, messages=[wa_message("34612345678", message_id="wamid.SAME")])
    assert post_signed(client, path, payload, "not-the-secret").status_code == 403
    assert client.post(path, json=payload).status_code == 401
    assert client.get(f"{API}/conversations").json()["items"] == []
    assert "34612345678" not in caplog.text
    for _ in range(3):  # Meta retries until it gets a 200: the message is stored once
        assert post_signed(client, path, payload, SECRET).status_code == 200
    assert len(messages(client, only_conversation(client)["id"])) == 1


def test_media_location_and_interactive_messages(client: TestClient, graph: HttpDouble) -> None:
    channel = wa_channel(client, graph.url)
    send_in(
        client, channel["id"],
        wa_message("34612345678", "image", id="1479537139650973", mime_type="image/jpeg", sha256="abc",
                   caption="Este pantalón"),
        wa_message("34612345678", "location", latitude=40.4168, longitude=-3.7038, name="Tienda Sol",
                   address="Puerta del Sol 1"),
        wa_message("34612345678", "interactive", type="button_reply", button_reply={"id": "yes-1", "title": "Sí"}),
        wa_message("34612345678", "document", id="doc-9", mime_type="application/pdf", filename="ticket.pdf"),
    )  # fmt: skip
    # one webhook, one batch: same arrival time, so put them back in the provider's order
    stored = sorted(messages(client, only_conversation(client)["id"]), key=lambda m: m["external_id"])
    assert [m["text"] for m in stored] == [
        "Este pantalón",
        "📍 40.4168,-3.7038 Tienda Sol — Puerta del Sol 1",
        "Sí",
        "",
    ]
    assert stored[0]["attachments"][0]["media_id"] == "1479537139650973"
    assert stored[2]["attachments"][0]["id"] == "yes-1"
    # the files are fetched after the webhook was answered, by the outbox worker
    assert "key" not in stored[0]["attachments"][0]
    worker(client).drain()
    fetched = sorted(messages(client, only_conversation(client)["id"]), key=lambda m: m["external_id"])
    image = fetched[0]["attachments"][0]
    assert image["size"] == 9 and image["content_type"] == "image/jpeg"
    assert (Path(client.app.state.settings.attachments_dir) / image["key"]).read_bytes() == b"JPEG-DATA"  # type: ignore[attr-defined]
    fetched_paths = {c.path for c in graph.calls if c.method == "GET"}
    assert {"/v21.0/1479537139650973", "/files/1479537139650973", "/v21.0/doc-9"} <= fetched_paths
    assert fetched[3]["attachments"][0]["key"]  # the document too
    assert stored[3]["attachments"][0]["filename"] == "ticket.pdf"


def test_outside_the_window_only_approved_templates(client: TestClient, graph: HttpDouble) -> None:
    channel = wa_channel(client, graph.url)
    send_in(client, channel["id"], wa_message("34612345678", ts=time.time() - 25 * 3600))
    conversation = only_conversation(client)
    refused = client.post(f"{API}/conversations/{conversation['id']}/messages", json={"text": "¿Sigues ahí?"})
    assert refused.status_code == 409 and refused.json()["template_only"] is True
    path = f"{API}/conversations/{conversation['id']}/templates"
    unknown = client.post(path, json={"name": "spam_blast", "parameters": []})
    assert unknown.status_code == 422
    sent = client.post(path, json={"name": "order_ready", "language": "es", "parameters": ["Ana", "A-1042"]})
    assert sent.status_code == 201, sent.text
    worker(client).drain()
    (call,) = graph.calls
    assert call.json()["type"] == "template"
    assert call.json()["template"] == {
        "name": "order_ready", "language": {"code": "es"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"},
                                                       {"type": "text", "text": "A-1042"}]}],
    }  # fmt: skip
    errors = [{"code": 131026, "title": "Message undeliverable"}]
    failed = wa_payload(NUMBER_ID, statuses=[{"id": "wamid.OUT000001", "status": "failed", "errors": errors}])
    post_signed(client, f"/webhooks/whatsapp/{channel['id']}", failed, SECRET)
    last = messages(client, conversation["id"])[-1]
    assert last["status"] == "failed" and last["failure_reason"] == "131026 Message undeliverable"


@pytest.mark.parametrize(
    ("stored_phone", "region", "wa_id"),
    [("612 34 56 78", "ES", "34612345678"), ("+52 55 1234 5678", "MX", "5215512345678")],
)
def test_a_whatsapp_id_and_a_stored_phone_written_differently_are_one_customer(
    client: TestClient, graph: HttpDouble, stored_phone: str, region: str, wa_id: str
) -> None:
    client.app.state.settings.default_region = region  # type: ignore[attr-defined]
    created = client.post(f"{API}/customers", json={"identities": [{"type": "phone", "value": stored_phone}]})
    assert created.status_code == 201, created.text
    channel = wa_channel(client, graph.url)
    send_in(client, channel["id"], wa_message(wa_id))
    assert only_conversation(client)["customer_id"] == created.json()["id"]
    assert client.get(f"{API}/customers").json()["items"].__len__() == 1


def test_another_number_of_the_same_app_is_not_taken(client: TestClient, graph: HttpDouble) -> None:
    channel = wa_channel(client, graph.url)
    payload = wa_payload("999999999", messages=[wa_message("34612345678")])
    assert post_signed(client, f"/webhooks/whatsapp/{channel['id']}", payload, SECRET).status_code == 200
    assert client.get(f"{API}/conversations").json()["items"] == []
    assert post_signed(client, f"/webhooks/whatsapp/{uuid.uuid4()}", payload, SECRET).status_code == 404
