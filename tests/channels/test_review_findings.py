"""Bugs found reviewing the channels: each test shows what a user would notice."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from omnicanal.db import Database
from omnicanal.pagination import encode_cursor
from omnicanal.settings import Settings
from tests.channels.doubles import HttpDouble
from tests.channels.test_sms import ACCOUNT, incoming, post_signed, sms_channel, twilio, worker  # noqa: F401
from tests.channels.test_telegram import SECRET, bot_api, post  # noqa: F401
from tests.conversations.helpers import API, messages

BOT_TOKEN_B = "654321:XYZ-other-bot-token"


def _sent_sms_reply(client: TestClient, twilio_url: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A customer's SMS, an agent's reply sent through the provider double: the channel, the conversation and
    the reply's provider SID."""
    channel = sms_channel(client, twilio_url)
    incoming(client, channel["id"], "Hola")
    conversation = client.get(f"{API}/conversations").json()["items"][0]
    reply = client.post(f"{API}/conversations/{conversation['id']}/messages", json={"text": "Buenos días"})
    assert reply.status_code == 201, reply.text
    worker(client).drain()
    return channel, conversation, messages(client, conversation["id"])[-1]["provider_message_id"]


def test_a_late_sent_callback_does_not_undo_a_failure(client: TestClient, twilio: HttpDouble) -> None:  # noqa: F811
    """Provider callbacks may arrive out of order: "sent" after "undelivered" must leave the message failed."""
    channel, conversation, sid = _sent_sms_reply(client, twilio.url)
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


def test_a_repeated_failure_callback_is_announced_once(client: TestClient, twilio: HttpDouble) -> None:  # noqa: F811
    """A provider retrying a status callback must not send integrators a second ``message.failed``."""
    channel, _, sid = _sent_sms_reply(client, twilio.url)
    hook = client.post(
        f"{API}/webhook-subscriptions", json={"url": "https://hooks.example.com/in", "event_types": ["message.failed"]}
    )
    assert hook.status_code == 201, hook.text
    failed = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30003", "AccountSid": ACCOUNT}
    for _ in range(2):
        assert post_signed(client, f"/webhooks/sms/{channel['id']}/status", failed).status_code == 204
    deliveries = client.get(f"{API}/outbox", params={"state": "pending"}).json()["items"]
    assert [item["kind"] for item in deliveries] == ["webhook"]


def test_a_cursor_without_a_timezone_is_a_problem_not_a_crash(client: TestClient) -> None:
    cursor = encode_cursor(["2026-01-01T00:00:00", str(uuid.uuid4())])
    for path in (f"{API}/conversations", f"{API}/conversations/{_a_conversation(client)}/messages"):
        response = client.get(path, params={"cursor": cursor})
        assert response.status_code == 422, (path, response.status_code, response.text[:200])
        assert response.headers["content-type"].startswith("application/problem+json")


def _a_conversation(client: TestClient) -> str:
    from tests.conversations.helpers import inbound

    return str(inbound(client)["conversation_id"])


def test_the_app_api_keeps_no_file_of_a_message_it_did_not_store(client: TestClient, settings: Settings) -> None:
    """A retried app message (a duplicate) with an inline file must not leave a second copy of the file behind."""
    from tests.channels.test_apps_and_push import api_channel
    from tests.channels.test_apps_and_push import post as post_app

    channel = api_channel(client)
    message = {
        "channel": "app", "identities": [{"type": "device_id", "value": "device-review-1"}], "text": "foto",
        "external_id": "app-msg-1", "attachments": [
            {"name": "ticket.png", "content_type": "image/png", "data": base64.b64encode(b"PNGDATA").decode()}
        ],
    }  # fmt: skip
    for _ in range(3):
        answer = post_app(client, channel["id"], {"messages": [message]})
        assert answer.status_code == 200, answer.text
    stored = [path for path in Path(settings.attachments_dir).rglob("*") if path.is_file()]
    assert len(stored) == 1, stored


def test_an_agent_freed_by_a_reassignment_takes_the_queued_conversation(client: TestClient, db: Database) -> None:
    """Moving a conversation away from a full agent gives them room: the team's queue must move to them."""
    from tests.conversations.helpers import conversation, inbound, make_rule, make_staff, make_team, set_agent

    busy = make_staff(db, "busy@shop.example", name="Busy")
    other = make_staff(db, "other@shop.example", name="Other")
    team = make_team(client, "Soporte", [busy])
    make_rule(client, team["id"])
    set_agent(client, busy, capacity=1, online=True)
    set_agent(client, other, capacity=5, online=True)
    first = inbound(client, channel="email", identities=[{"type": "email", "value": "uno@example.com"}])
    queued = inbound(client, channel="email", identities=[{"type": "email", "value": "dos@example.com"}])
    assert conversation(client, first["conversation_id"])["assignee_id"] == str(busy)
    assert conversation(client, queued["conversation_id"])["assignee_id"] is None
    moved = client.post(f"{API}/conversations/{first['conversation_id']}/assign", json={"agent_id": str(other)})
    assert moved.status_code == 200, moved.text
    assert conversation(client, queued["conversation_id"])["assignee_id"] == str(busy)


def test_a_reply_after_a_phone_call_goes_on_the_channel_the_customer_last_wrote_on(client: TestClient) -> None:
    """A call (or a store visit) is not writing: a reply without a channel goes where the customer last wrote."""
    from tests.conversations.helpers import inbound

    phone = [{"type": "phone", "value": "+34611998877"}]
    first = inbound(client, channel="sms", identities=phone, text="¿Tenéis la talla M?")
    inbound(client, channel="phone", identities=phone, text="📞 Llamada perdida")
    reply = client.post(f"{API}/conversations/{first['conversation_id']}/messages", json={"text": "Sí, la tenemos"})
    assert reply.status_code == 201, reply.text
    assert (reply.json()["channel"], reply.json()["status"]) == ("sms", "queued")


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_two_servers_taking_status_callbacks_at_once_never_move_a_status_backwards(
    client: TestClient,
    db: Database,
    twilio: HttpDouble,  # noqa: F811
) -> None:
    """One server process takes "read" while another takes the late "delivered": the message stays read."""
    from sqlalchemy import text

    from omnicanal.channels.inbound import StatusUpdate, apply_statuses

    channel, conversation, sid = _sent_sms_reply(client, twilio.url)
    delivered = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": ACCOUNT}
    answers: list[Any] = []
    with db.write() as other:  # the other server process, its "read" not yet committed
        apply_statuses(other, [StatusUpdate(sid, "read")])
        thread = threading.Thread(
            target=lambda: answers.append(post_signed(client, f"/webhooks/sms/{channel['id']}/status", delivered))
        )
        thread.start()
        waiting = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        for _ in range(250):
            with db.write_engine.connect() as probe:
                if probe.execute(waiting).scalar():
                    break
            threading.Event().wait(0.02)
    thread.join(timeout=30)
    assert answers and answers[0].status_code == 204
    assert messages(client, conversation["id"])[-1]["status"] == "read"


def test_a_file_of_a_type_not_accepted_is_not_fetched_from_the_provider(client: TestClient) -> None:
    """OMNICANAL_ATTACHMENT_TYPES limits what is stored; a customer's WhatsApp file is no exception."""
    from tests.channels.doubles import Call
    from tests.channels.meta_helpers import post_signed as post_meta
    from tests.channels.meta_helpers import wa_message, wa_payload
    from tests.channels.test_whatsapp import NUMBER_ID, SECRET, wa_channel
    from tests.channels.test_whatsapp import worker as wa_worker

    graph = HttpDouble()

    def media_info(call: Call, match: Any) -> tuple[int, Any]:
        return 200, {"messaging_product": "whatsapp", "url": f"{graph.url}/files/{match.group(1)}", "file_size": 7,
                     "mime_type": "application/x-msdownload", "sha256": "x", "id": match.group(1)}  # fmt: skip

    graph.route("GET", r"/v21\.0/([\w-]+)", media_info)
    graph.route("GET", r"/files/([\w-]+)", lambda call, match: (200, b"MZ\x90\x00exe"))
    graph.start()
    try:
        channel = wa_channel(client, graph.url)
        document = wa_message("34612345678", "document", id="exe-1", mime_type="application/x-msdownload",
                              filename="factura.exe")  # fmt: skip
        answer = post_meta(client, f"/webhooks/whatsapp/{channel['id']}", wa_payload(NUMBER_ID, messages=[document]),
                           SECRET)  # fmt: skip
        assert answer.status_code == 200, answer.text
        wa_worker(client).drain()
    finally:
        graph.stop()
    (conversation,) = client.get(f"{API}/conversations").json()["items"]
    (message,) = messages(client, conversation["id"])
    assert "key" not in message["attachments"][0]
    stored = [path for path in Path(client.app.state.settings.attachments_dir).rglob("*") if path.is_file()]  # type: ignore[attr-defined]
    assert stored == []


def test_a_photo_whose_fetch_could_not_be_queued_is_fetched_after_the_providers_retry(
    client: TestClient,
    bot_api: HttpDouble,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlalchemy.exc import OperationalError

    from omnicanal.channels.telegram import adapter as telegram

    channel = _tg_channel(client, bot_api.url, "Bot", "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11")
    body = _tg_update(515151, 7, "")
    body["message"].pop("text")
    body["message"]["photo"] = [{"file_id": "ph1", "file_unique_id": "u1", "width": 90, "height": 90}]
    real = telegram.queue_fetches
    failures = iter([OperationalError("INSERT", {}, Exception("database is locked"))])

    def flaky(session: Any, items: Any) -> Any:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real(session, items)

    monkeypatch.setattr(telegram, "queue_fetches", flaky)
    quiet = TestClient(client.app, raise_server_exceptions=False)
    assert post(quiet, channel["id"], body).status_code == 500  # the provider will retry
    assert post(quiet, channel["id"], body).status_code == 200
    worker(client).drain()
    (conversation,) = client.get(f"{API}/conversations").json()["items"]
    (message,) = messages(client, conversation["id"])
    assert message["attachments"][0].get("key")


def test_a_photo_delivered_twice_is_fetched_once(client: TestClient, bot_api: HttpDouble) -> None:  # noqa: F811
    channel = _tg_channel(client, bot_api.url, "Bot", "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11")
    body = _tg_update(525252, 8, "")
    body["message"].pop("text")
    body["message"]["photo"] = [{"file_id": "ph2", "file_unique_id": "u2", "width": 90, "height": 90}]
    assert post(client, channel["id"], body).status_code == 200
    assert post(client, channel["id"], body).status_code == 200  # the provider retrying a delivery we answered
    worker(client).drain()
    assert post(client, channel["id"], body).status_code == 200  # and again once the file is stored
    worker(client).drain()
    assert len([call for call in bot_api.calls if call.path.endswith("/getFile")]) == 1


def test_a_retried_keyword_message_is_not_acted_on_again(client: TestClient, twilio: HttpDouble) -> None:  # noqa: F811
    """A provider retry of HELP must not send the help text twice, nor a late retry of STOP undo a later START."""
    channel = sms_channel(client, twilio.url)
    incoming(client, channel["id"], "Hola")
    customer_id = client.get(f"{API}/conversations").json()["items"][0]["customer_id"]
    incoming(client, channel["id"], "HELP", sid="SMhelp")
    incoming(client, channel["id"], "HELP", sid="SMhelp")
    worker(client).drain()
    assert [c.form()["Body"] for c in twilio.calls] == ["Reply STOP to stop."]
    incoming(client, channel["id"], "STOP", sid="SMstop")
    incoming(client, channel["id"], "START", sid="SMstart")
    incoming(client, channel["id"], "STOP", sid="SMstop")  # the provider retrying the first one, late
    consents = client.get(f"{API}/customers/{customer_id}/consents").json()["items"]
    assert [c["status"] for c in consents if c["channel"] == "sms" and c["purpose"] == "marketing"] == ["granted"]


def test_a_dead_reply_retried_through_the_api_is_queued_again(client: TestClient) -> None:
    """The API's retry button does what the console's does: the message is on its way again, no longer failed."""
    from tests.channels.doubles import Call

    refusing = HttpDouble()

    def refuse(call: Call, match: Any) -> tuple[int, Any]:
        return 400, {"code": 21211, "message": "The 'To' number is not a valid phone number."}

    refusing.route("POST", r"/2010-04-01/Accounts/(AC\w+)/Messages\.json", refuse)
    refusing.start()
    try:
        channel = sms_channel(client, refusing.url)
        incoming(client, channel["id"], "Hola")
        conversation = client.get(f"{API}/conversations").json()["items"][0]
        client.post(f"{API}/conversations/{conversation['id']}/messages", json={"text": "Buenos días"})
        worker(client).drain()
    finally:
        refusing.stop()
    assert messages(client, conversation["id"])[-1]["status"] == "failed"
    (dead,) = client.get(f"{API}/outbox", params={"state": "dead"}).json()["items"]
    retried = client.post(f"{API}/outbox/{dead['id']}/retry")
    assert retried.status_code == 200, retried.text
    assert messages(client, conversation["id"])[-1]["status"] == "queued"
