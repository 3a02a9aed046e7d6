"""Bugs found reviewing the channels: each test shows what a user would notice."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from omnicanal.channels.telegram.adapter import TelegramTransport  # noqa: F401 - registers the type
from tests.channels.doubles import HttpDouble
from tests.channels.test_sms import ACCOUNT, incoming, post_signed, sms_channel, twilio, worker  # noqa: F401
from tests.channels.test_telegram import SECRET, bot_api, post  # noqa: F401
from tests.conversations.helpers import API, messages

BOT_TOKEN_B = "654321:XYZ-other-bot-token"


def test_a_late_sent_callback_does_not_undo_a_failure(client: TestClient, twilio: HttpDouble) -> None:  # noqa: F811
    """Provider callbacks may arrive out of order: "sent" after "undelivered" must leave the message failed."""
    channel = sms_channel(client, twilio.url)
    incoming(client, channel["id"], "Hola")
    conversation = client.get(f"{API}/conversations").json()["items"][0]
    reply = client.post(f"{API}/conversations/{conversation['id']}/messages", json={"text": "Buenos días"})
    assert reply.status_code == 201, reply.text
    worker(client).drain()
    sid = messages(client, conversation["id"])[-1]["provider_message_id"]
    path = f"/webhooks/sms/{channel['id']}/status"
    failed = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30003", "AccountSid": ACCOUNT}
    assert post_signed(client, path, failed).status_code == 204
    late = {"MessageSid": sid, "MessageStatus": "sent", "AccountSid": ACCOUNT}
    assert post_signed(client, path, late).status_code == 204
    last = messages(client, conversation["id"])[-1]
    assert (last["status"], last["failure_reason"]) == ("failed", "error 30003")


def _tg_channel(client: TestClient, base: str, name: str, bot_token: str) -> dict[str, Any]:
    config = {"bot_token": bot_token, "secret_token": SECRET, "api_base_url": base}
    response = client.post(f"{API}/channels", json={"type": "telegram", "name": name, "config": config})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def _tg_update(user_id: int, message_id: int, text: str) -> dict[str, Any]:
    return {
        "update_id": message_id + 90_000,
        "message": {
            "message_id": message_id, "date": int(time.time()), "text": text,
            "from": {"id": user_id, "is_bot": False, "first_name": "Ana"},
            "chat": {"id": user_id, "first_name": "Ana", "type": "private"},
        },
    }  # fmt: skip


def test_two_bots_messages_with_the_same_message_id_are_both_kept(
    client: TestClient,
    bot_api: HttpDouble,  # noqa: F811
) -> None:
    """Telegram numbers messages per chat, and each bot has its own chat with the user: bot B's first message
    from a user has the same chat id and message id as bot A's first one, and is a different message."""
    first = _tg_channel(client, bot_api.url, "Tienda Madrid", "111:first-bot-token")
    second = _tg_channel(client, bot_api.url, "Tienda Sevilla", BOT_TOKEN_B)
    assert post(client, first["id"], _tg_update(424242, 1, "Hola Madrid")).status_code == 200
    assert post(client, second["id"], _tg_update(424242, 1, "Hola Sevilla")).status_code == 200
    (conversation,) = client.get(f"{API}/conversations").json()["items"]
    assert [m["text"] for m in messages(client, conversation["id"])] == ["Hola Madrid", "Hola Sevilla"]
