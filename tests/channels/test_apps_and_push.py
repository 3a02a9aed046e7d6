"""The signed API channel (apps, POS) and push notifications as an outbound channel."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from omnicanal.outbox.worker import OutboxWorker
from tests.channels.doubles import Call, HttpDouble
from tests.conversations.helpers import API, messages, now_iso

KEY, SIGNING = "pos-integration-key", "pos-signing-secret"


@pytest.fixture
def fcm() -> Iterator[HttpDouble]:
    double = HttpDouble()
    ids = itertools.count(1)

    def send(call: Call, match: Any) -> tuple[int, Any]:
        if call.headers.get("authorization") != "Bearer fcm-token":
            return 401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}
        if call.json()["message"]["token"] == "stale-token":
            return 404, {"error": {"code": 404, "status": "NOT_FOUND", "details": [{"errorCode": "UNREGISTERED"}]}}
        return 200, {"name": f"projects/{match.group(1)}/messages/0:{next(ids)}"}

    double.route("POST", r"/v1/projects/([\w-]+)/messages:send", send)
    yield double.start()
    double.stop()


def api_channel(client: TestClient, **config: Any) -> dict[str, Any]:
    body = {"type": "api", "name": "POS", "config": {"api_key": KEY, "message_channels": ["app", "store"]} | config}
    response = client.post(f"{API}/channels", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def push_channel(client: TestClient, base: str) -> dict[str, Any]:
    config = {"project_id": "shop-app", "access_token": "fcm-token", "title": "Tienda", "api_base_url": base}
    response = client.post(f"{API}/channels", json={"type": "push", "name": "Push", "config": config})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def post(client: TestClient, channel_id: str, body: dict[str, Any], *, key: str | None = KEY,
         secret: str | None = None, stamp: int | None = None, auth: bool = True) -> Any:  # fmt: skip
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}" if auth else ""}
    if secret is not None:
        ts = str(stamp if stamp is not None else int(time.time()))
        signature = "sha256=" + hmac.new(secret.encode(), ts.encode() + b"." + raw, hashlib.sha256).hexdigest()
        headers |= {"X-Omnicanal-Timestamp": ts, "X-Omnicanal-Signature": signature}
    return client.post(f"/webhooks/api/{channel_id}", content=raw, headers=headers)


def app_message(device: str, text: str, external_id: str | None = None) -> dict[str, Any]:
    return {"identities": [{"type": "device_id", "value": device}], "text": text,
            "external_id": external_id or uuid.uuid4().hex}  # fmt: skip


def worker(client: TestClient) -> OutboxWorker:
    found: OutboxWorker = client.app.state.outbox_worker  # type: ignore[attr-defined]
    return found


def test_app_message_reply_by_push_round_trip(client: TestClient, fcm: HttpDouble) -> None:
    channel = api_channel(client)
    push_channel(client, fcm.url)
    body = {"push_tokens": [{"device_id": "dev-1", "token": "fcm-device-token", "platform": "android"}],
            "messages": [app_message("dev-1", "¿Dónde está mi pedido?", "app-msg-1")]}  # fmt: skip
    response = post(client, channel["id"], body)
    assert response.status_code == 200, response.text
    assert response.json()["push_tokens"] == 1
    (result,) = response.json()["messages"]
    assert result["duplicate"] is False
    reply = client.post(f"{API}/conversations/{result['conversation_id']}/messages", json={"text": "Sale hoy"})
    assert reply.status_code == 201, reply.text
    worker(client).drain()
    (call,) = fcm.calls
    assert call.path == "/v1/projects/shop-app/messages:send"
    message = call.json()["message"]
    assert message["token"] == "fcm-device-token"
    assert message["notification"] == {"title": "Tienda", "body": "Sale hoy"}
    assert message["data"]["conversation_id"] == result["conversation_id"]
    sent = messages(client, result["conversation_id"])[-1]
    assert sent["status"] == "sent" and sent["provider_message_id"] == "projects/shop-app/messages/0:1"
    again = post(client, channel["id"], {"messages": [app_message("dev-1", "¿Dónde está mi pedido?", "app-msg-1")]})
    assert again.json()["messages"][0]["duplicate"] is True


def test_events_and_bad_items_are_answered_one_by_one(client: TestClient) -> None:
    channel = api_channel(client)
    body = {
        "events": [{"id": "pos-sale-1", "type": "order.completed", "channel": "pos", "occurred_at": now_iso(),
                    "identities": [{"type": "phone", "value": "+34611000111"}], "properties": {"total": 1999}},
                   {"type": "no id"}],
        "messages": [app_message("dev-2", "hola") | {"channel": "store"}, app_message("dev-2", "x") | {"channel": "x"}],
    }  # fmt: skip
    response = post(client, channel["id"], body)
    assert response.status_code == 200, response.text
    events, msgs = response.json()["events"], response.json()["messages"]
    assert events[0]["event_id"] == "pos-sale-1" and "error" in events[1]
    assert "message_id" in msgs[0] and msgs[1]["error"]["errors"][0]["field"] == "messages[1].channel"


def test_the_key_and_the_signature_are_checked(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    channel = api_channel(client, signing_secret=SIGNING)
    body = {"messages": [app_message("dev-3", "hola")]}
    assert post(client, channel["id"], body, auth=False).status_code == 401
    assert post(client, channel["id"], body, key="wrong", secret=SIGNING).status_code == 401
    assert post(client, channel["id"], body).status_code == 401  # signature required once a secret is set
    assert post(client, channel["id"], body, secret="forged").status_code == 403
    old = post(client, channel["id"], body, secret=SIGNING, stamp=int(time.time()) - 3600)
    assert old.status_code == 403  # a replay an hour later
    assert client.get(f"{API}/conversations").json()["items"] == []
    assert "dev-3" not in caplog.text
    assert post(client, channel["id"], body, secret=SIGNING).status_code == 200


def test_a_stale_push_token_is_forgotten_and_the_message_fails(client: TestClient, fcm: HttpDouble) -> None:
    channel = api_channel(client)
    push_channel(client, fcm.url)
    body = {"push_tokens": [{"device_id": "dev-4", "token": "stale-token"}], "messages": [app_message("dev-4", "hola")]}
    conversation_id = post(client, channel["id"], body).json()["messages"][0]["conversation_id"]
    client.post(f"{API}/conversations/{conversation_id}/messages", json={"text": "respuesta"})
    worker(client).drain()
    last = messages(client, conversation_id)[-1]
    assert last["status"] == "failed" and "no longer registered" in last["failure_reason"]
    client.post(f"{API}/conversations/{conversation_id}/messages", json={"text": "otra"})
    worker(client).drain()
    assert "no push token" in messages(client, conversation_id)[-1]["failure_reason"]


def test_erasure_forgets_push_tokens(client: TestClient, db: Any) -> None:
    from sqlalchemy import text

    channel = api_channel(client)
    body = {"push_tokens": [{"device_id": "dev-5", "token": "t5"}], "messages": [app_message("dev-5", "hola")]}
    customer_id = post(client, channel["id"], body).json()["messages"][0]["customer_id"]
    assert client.delete(f"{API}/customers/{customer_id}").status_code == 200
    with db.read() as session:
        assert session.execute(text("SELECT count(*) FROM push_devices")).scalar() == 0
