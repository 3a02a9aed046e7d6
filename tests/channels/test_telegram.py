"""Telegram (Bot API): secret-token webhook, /start deep links to known customers, photos, sendMessage."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from omnicanal.channels.telegram.links import make_token, read_token
from omnicanal.db import Database
from omnicanal.outbox.worker import OutboxWorker
from tests.channels.doubles import Call, HttpDouble
from tests.console.helpers import log_in
from tests.conversations.helpers import API, messages

BOT_TOKEN = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"
SECRET = "telegram-secret-token"
_updates = itertools.count(1000)


@pytest.fixture
def bot_api() -> Iterator[HttpDouble]:
    double = HttpDouble()
    ids = itertools.count(500)

    def send_message(call: Call, match: Any) -> tuple[int, Any]:
        if match.group(1) != BOT_TOKEN:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        body = call.json()
        chat = {"id": int(body["chat_id"]), "type": "private"}
        return 200, {"ok": True, "result": {"message_id": next(ids), "chat": chat, "date": int(time.time()),
                                            "text": body["text"]}}  # fmt: skip

    def get_file(call: Call, match: Any) -> tuple[int, Any]:
        file_id = call.json()["file_id"]
        return 200, {"ok": True, "result": {"file_id": file_id, "file_unique_id": "u", "file_size": 5,
                                            "file_path": f"photos/{file_id}.jpg"}}  # fmt: skip

    def download(call: Call, match: Any) -> tuple[int, Any]:
        return 200, b"PHOTO"

    double.route("POST", r"/bot([^/]+)/sendMessage", send_message)
    double.route("POST", r"/bot([^/]+)/getFile", get_file)
    double.route("GET", r"/file/bot([^/]+)/photos/(\w+)\.jpg", download)
    yield double.start()
    double.stop()


def tg_channel(client: TestClient, base: str) -> dict[str, Any]:
    config = {"bot_token": BOT_TOKEN, "secret_token": SECRET, "bot_username": "TiendaBot", "api_base_url": base}
    response = client.post(f"{API}/channels", json={"type": "telegram", "name": "Bot", "config": config})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def update(user_id: int, *, text: str | None = None, **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "message_id": next(_updates), "date": int(time.time()),
        "from": {"id": user_id, "is_bot": False, "first_name": "Ana", "language_code": "es"},
        "chat": {"id": user_id, "first_name": "Ana", "type": "private"},
    }  # fmt: skip
    if text is not None:
        message["text"] = text
    return {"update_id": next(_updates), "message": message | extra}


def post(client: TestClient, channel_id: str, body: dict[str, Any], secret: str | None = SECRET) -> Any:
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
    return client.post(f"/webhooks/telegram/{channel_id}", json=body, headers=headers)


def worker(client: TestClient) -> OutboxWorker:
    found: OutboxWorker = client.app.state.outbox_worker  # type: ignore[attr-defined]
    return found


def test_round_trip(client: TestClient, bot_api: HttpDouble) -> None:
    channel = tg_channel(client, bot_api.url)
    assert post(client, channel["id"], update(777001, text="Hola, ¿envíos a Canarias?")).status_code == 200
    (conversation,) = client.get(f"{API}/conversations").json()["items"]
    assert conversation["last_channel"] == "telegram"
    reply = client.post(f"{API}/conversations/{conversation['id']}/messages", json={"text": "Sí, en 72 h"})
    assert reply.status_code == 201, reply.text
    worker(client).drain()
    (call,) = bot_api.calls
    assert call.path == f"/bot{BOT_TOKEN}/sendMessage"
    assert call.json() == {"chat_id": "777001", "text": "Sí, en 72 h"}
    sent = messages(client, conversation["id"])[-1]
    assert sent["status"] == "sent" and sent["provider_message_id"] == "777001:500"


def test_the_secret_token_is_required(
    client: TestClient, bot_api: HttpDouble, caplog: pytest.LogCaptureFixture
) -> None:
    channel = tg_channel(client, bot_api.url)
    assert post(client, channel["id"], update(777001, text="hola"), secret=None).status_code == 401
    assert post(client, channel["id"], update(777001, text="hola"), secret="guess").status_code == 403
    assert client.get(f"{API}/conversations").json()["items"] == []
    assert "777001" not in caplog.text


def test_a_start_link_joins_the_telegram_user_to_the_customer(client: TestClient, bot_api: HttpDouble) -> None:
    channel = tg_channel(client, bot_api.url)
    created = client.post(f"{API}/customers", json={"identities": [{"type": "email", "value": "ana@example.com"}]})
    customer_id = created.json()["id"]
    link = client.get(f"{API}/channels/{channel['id']}/telegram-link", params={"customer_id": customer_id})
    assert link.status_code == 200, link.text
    token = link.json()["token"]
    assert link.json()["url"] == f"https://t.me/TiendaBot?start={token}"
    assert len(token) <= 64 and token.replace("-", "").replace("_", "").isalnum()
    post(client, channel["id"], update(777002, text=f"/start {token}"))
    (conversation,) = client.get(f"{API}/conversations").json()["items"]
    assert conversation["customer_id"] == customer_id
    identities = {(i["type"], i["value"]) for i in client.get(f"{API}/customers/{customer_id}").json()["identities"]}
    assert ("telegram", "777002") in identities
    assert messages(client, conversation["id"])[0]["text"] == "/start"  # the token is not kept


def test_a_forged_start_link_links_nobody(client: TestClient, bot_api: HttpDouble) -> None:
    channel = tg_channel(client, bot_api.url)
    created = client.post(f"{API}/customers", json={"identities": [{"type": "email", "value": "ana@example.com"}]})
    other_bot = make_token("another secret", uuid.UUID(channel["id"]), uuid.UUID(created.json()["id"]))
    post(client, channel["id"], update(777003, text=f"/start {other_bot}"))
    (conversation,) = client.get(f"{API}/conversations").json()["items"]
    assert conversation["customer_id"] != created.json()["id"]


def test_photos_and_retries(client: TestClient, bot_api: HttpDouble) -> None:
    channel = tg_channel(client, bot_api.url)
    photo = [{"file_id": "small", "file_unique_id": "s", "width": 90, "height": 67},
             {"file_id": "large", "file_unique_id": "l", "width": 1280, "height": 960}]  # fmt: skip
    body = update(777004, photo=photo, caption="¿Tenéis este?")
    for _ in range(2):
        assert post(client, channel["id"], body).status_code == 200
    (conversation,) = client.get(f"{API}/conversations").json()["items"]
    (message,) = messages(client, conversation["id"])
    assert message["text"] == "¿Tenéis este?"
    assert message["attachments"][0]["file_id"] == "large"
    worker(client).drain()  # the photo is downloaded after the webhook was answered
    (message,) = messages(client, conversation["id"])
    assert message["attachments"][0]["size"] == 5 and message["attachments"][0]["key"]


def test_link_tokens_expire_and_belong_to_their_channel() -> None:
    channel, customer = uuid.uuid4(), uuid.uuid4()
    token = make_token("k", channel, customer, ttl=60, now=1000)
    assert read_token("k", channel, token, now=1030) == customer
    assert read_token("k", channel, token, now=1100) is None
    assert read_token("k", uuid.uuid4(), token, now=1030) is None
    tampered = token[:-2] + ("BB" if token.endswith("AA") else "AA")  # random ids: it may end in "AA" already
    assert read_token("k", channel, tampered, now=1030) is None
    assert read_token("k", channel, "not a token", now=1030) is None


def _edited(original: dict[str, Any], text: str) -> dict[str, Any]:
    """Telegram's update for a message the user edited: ``edited_message``, same ``message_id``, new text."""
    message = dict(original["message"]) | {"text": text, "edit_date": int(time.time())}
    return {"update_id": next(_updates), "edited_message": message}


def test_a_message_the_customer_edits_shows_its_new_text(client: TestClient, db: Database, bot_api: HttpDouble) -> None:
    channel = tg_channel(client, bot_api.url)
    first = update(4242, text="Quiero la talla 40")
    assert post(client, channel["id"], first).status_code == 200
    conversation = client.get(f"{API}/conversations").json()["items"][0]
    (before,) = messages(client, conversation["id"])
    assert before["edited_at"] is None

    assert post(client, channel["id"], _edited(first, "Quiero la talla 41")).status_code == 200
    (after,) = messages(client, conversation["id"])  # the same message, not a second one
    assert after["id"] == before["id"] and after["text"] == "Quiero la talla 41" and after["edited_at"]
    thread = log_in(client.app, db, role="agent").client.get(f"/console/conversations/{conversation['id']}/messages")
    assert "Quiero la talla 41" in thread.text and "editado" in thread.text and "talla 40" not in thread.text

    # an edit of a message that never reached us is taken in as the message
    unseen = update(4242, text="Hola")
    assert post(client, channel["id"], _edited(unseen, "Hola, ¿abrís el domingo?")).status_code == 200
    texts = [m["text"] for m in messages(client, conversation["id"])]
    assert texts == ["Quiero la talla 41", "Hola, ¿abrís el domingo?"]
