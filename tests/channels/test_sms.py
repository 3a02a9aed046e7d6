"""SMS (Twilio-compatible): signed webhooks in, Messages API out, status callbacks, keywords, segments."""

from __future__ import annotations

import base64
import itertools
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from omnicanal.channels.sms.segments import encoding, segments
from omnicanal.channels.twilio import signature
from omnicanal.db import Database
from omnicanal.outbox.worker import OutboxWorker
from tests.channels.doubles import Answer, Call, HttpDouble
from tests.console.helpers import log_in
from tests.conversations.helpers import API, messages

ACCOUNT = "AC" + "0" * 32
TOKEN = "twilio-auth-token"
PUBLIC = "https://omnicanal.example.com"
_sids = itertools.count(1)


@pytest.fixture
def twilio() -> Iterator[HttpDouble]:
    double = HttpDouble()
    sent = itertools.count(1)

    def create_message(call: Call, match: Any) -> tuple[int, Any]:
        form = call.form()
        return 201, {"sid": f"SM{next(sent):032d}", "status": "queued", "to": form["To"], "body": form["Body"],
                     "account_sid": match.group(1)}  # fmt: skip

    double.route("POST", r"/2010-04-01/Accounts/(AC\w+)/Messages\.json", create_message)
    yield double.start()
    double.stop()


def sms_channel(client: TestClient, api_base_url: str, **extra: Any) -> dict[str, Any]:
    config = {"account_sid": ACCOUNT, "auth_token": TOKEN, "from_number": "+34 600 000 000", "public_url": PUBLIC,
              "api_base_url": api_base_url, "help_text": "Reply STOP to stop."} | extra  # fmt: skip
    response = client.post(f"{API}/channels", json={"type": "sms", "name": "SMS ES", "config": config})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def post_signed(client: TestClient, path: str, params: dict[str, str], *, token: str = TOKEN,
                signed_url: str | None = None) -> Any:  # fmt: skip
    url = signed_url or PUBLIC + path
    headers = {"X-Twilio-Signature": signature(token, url, params.items()),
               "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
    return client.post(path, content=urlencode(params), headers=headers)


def incoming(client: TestClient, channel_id: str, body: str, *, sender: str = "+34611223344",
             sid: str | None = None, **extra: str) -> Any:  # fmt: skip
    params = {"MessageSid": sid or f"SM{uuid.uuid4().hex}", "AccountSid": ACCOUNT, "From": sender,
              "To": "+34600000000", "Body": body, "NumMedia": "0", "NumSegments": "1"} | extra  # fmt: skip
    return post_signed(client, f"/webhooks/sms/{channel_id}", params)


def worker(client: TestClient) -> OutboxWorker:
    found: OutboxWorker = client.app.state.outbox_worker  # type: ignore[attr-defined]
    return found


def test_round_trip_inbound_reply_status(client: TestClient, twilio: HttpDouble) -> None:
    channel = sms_channel(client, twilio.url)
    response = incoming(client, channel["id"], "¿Está abierta la tienda?")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    conversation = client.get(f"{API}/conversations").json()["items"][0]
    assert conversation["last_channel"] == "sms"
    long_text = "Sí, abrimos de 9 a 21 h. " * 8  # 200 characters; "í" is not GSM-7: UCS-2, 3 segments
    reply = client.post(f"{API}/conversations/{conversation['id']}/messages", json={"text": long_text})
    assert reply.status_code == 201, reply.text
    worker(client).drain()
    (call,) = twilio.calls
    assert call.path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert call.headers["authorization"].startswith("Basic ")
    form = call.form()
    assert form["To"] == "+34611223344" and form["From"] == "+34600000000" and form["Body"] == long_text
    assert form["StatusCallback"] == f"{PUBLIC}/webhooks/sms/{channel['id']}/status"
    sent = messages(client, conversation["id"])[-1]
    assert sent["status"] == "sent" and sent["provider_message_id"].startswith("SM")
    (item,) = client.get(f"{API}/outbox", params={"state": "sent"}).json()["items"]
    attempts = client.get(f"{API}/outbox/{item['id']}").json()["attempt_log"]
    assert attempts[-1]["detail"] == "3 segment(s)"
    status = {"MessageSid": sent["provider_message_id"], "MessageStatus": "delivered", "AccountSid": ACCOUNT}
    assert post_signed(client, f"/webhooks/sms/{channel['id']}/status", status).status_code == 204
    assert messages(client, conversation["id"])[-1]["status"] == "delivered"
    failed = status | {"MessageStatus": "undelivered", "ErrorCode": "30003"}
    # a late failure after delivery still says what happened
    post_signed(client, f"/webhooks/sms/{channel['id']}/status", failed)
    assert messages(client, conversation["id"])[-1]["failure_reason"] == "error 30003"


def test_forged_or_unsigned_requests_are_refused_and_change_nothing(
    client: TestClient, twilio: HttpDouble, caplog: pytest.LogCaptureFixture
) -> None:
    channel = sms_channel(client, twilio.url)
    params = {"MessageSid": "SMforged", "AccountSid": ACCOUNT, "From": "+34611223344", "Body": "hola"}
    assert post_signed(client, f"/webhooks/sms/{channel['id']}", params, token="wrong").status_code == 403
    assert client.post(f"/webhooks/sms/{channel['id']}", data=params).status_code == 401
    # signed for another URL (a replay against another endpoint)
    other = post_signed(client, f"/webhooks/sms/{channel['id']}", params, signed_url=PUBLIC + "/elsewhere")
    assert other.status_code == 403
    assert post_signed(client, f"/webhooks/sms/{uuid.uuid4()}", params).status_code == 404
    assert client.get(f"{API}/conversations").json()["items"] == []
    assert "+34611223344" not in caplog.text and "hola" not in caplog.text
    assert "bad X-Twilio-Signature" in caplog.text


def test_the_signature_is_checked_against_the_public_url_behind_a_proxy(client: TestClient, twilio: HttpDouble) -> None:
    channel = sms_channel(client, twilio.url, public_url="https://proxy.example.org/omnicanal")
    params = {"MessageSid": "SMproxy", "AccountSid": ACCOUNT, "From": "+34611223344", "Body": "hola"}
    path = f"/webhooks/sms/{channel['id']}"
    signed = post_signed(client, path, params, signed_url=f"https://proxy.example.org/omnicanal{path}")
    assert signed.status_code == 200
    assert post_signed(client, path, params).status_code == 403  # the URL this server sees is not the one signed


def test_a_retried_message_is_stored_once(client: TestClient, twilio: HttpDouble) -> None:
    channel = sms_channel(client, twilio.url)
    for _ in range(3):
        assert incoming(client, channel["id"], "hola", sid="SMsame").status_code == 200
    conversation = client.get(f"{API}/conversations").json()["items"][0]
    assert [m["external_id"] for m in messages(client, conversation["id"])] == ["SMsame"]


def test_stop_start_and_help(client: TestClient, twilio: HttpDouble) -> None:
    channel = sms_channel(client, twilio.url)
    incoming(client, channel["id"], "Hola")
    customer_id = client.get(f"{API}/conversations").json()["items"][0]["customer_id"]

    def sms_marketing() -> str | None:
        consents = client.get(f"{API}/customers/{customer_id}/consents").json()["items"]
        found = [c["status"] for c in consents if c["channel"] == "sms" and c["purpose"] == "marketing"]
        return found[0] if found else None

    incoming(client, channel["id"], "STOP", sid="SMstop")
    assert sms_marketing() == "withdrawn"
    incoming(client, channel["id"], "STOP", sid="SMstop")  # a provider retry changes nothing more
    incoming(client, channel["id"], "start")
    assert sms_marketing() == "granted"
    incoming(client, channel["id"], "HELP")
    worker(client).drain()
    assert [c.form()["Body"] for c in twilio.calls] == ["Reply STOP to stop."]
    history = client.get(f"{API}/customers/{customer_id}/timeline").json()["items"]
    assert [e["type"] for e in history].count("consent.withdrawn") == 1


def test_media_arrive_as_files_in_the_store(client: TestClient, db: Database, twilio: HttpDouble) -> None:
    photo = b"\xff\xd8\xff\xe0 a photo"

    def media(call: Call, match: Any) -> Answer:
        expected = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
        if call.headers.get("authorization") != expected:
            return 401, {"code": 20003, "message": "Authenticate"}
        return 200, photo, {"content-type": "image/jpeg"}

    twilio.route("GET", r"/2010-04-01/Accounts/(AC\w+)/Messages/(\w+)/Media/(\w+)", media)
    channel = sms_channel(client, twilio.url)
    photo_url = f"{twilio.url}/2010-04-01/Accounts/{ACCOUNT}/Messages/MM1/Media/ME1"
    program = f"{twilio.url}/2010-04-01/Accounts/{ACCOUNT}/Messages/MM1/Media/ME2"
    incoming(client, channel["id"], "", NumMedia="2", MediaUrl0=photo_url, MediaContentType0="image/jpeg",
             MediaUrl1=program, MediaContentType1="application/x-msdownload")  # fmt: skip
    worker(client).drain()
    conversation = client.get(f"{API}/conversations").json()["items"][0]
    (message,) = messages(client, conversation["id"])
    stored, refused = message["attachments"]
    assert stored["url"] == photo_url and stored["content_type"] == "image/jpeg"
    assert stored["key"] and stored["size"] == len(photo)
    assert refused["url"] == program and "key" not in refused  # a type not accepted is not fetched
    assert [call.path.rsplit("/", 1)[-1] for call in twilio.calls if call.method == "GET"] == ["ME1"]

    agent = log_in(client.app, db, role="agent")  # the agent opens the photo from the conversation
    page = agent.client.get(f"/console/conversations/{conversation['id']}/messages").text
    (link,) = re.findall(r'href="(/console/conversations/[^"]+/files/\d+)"', page)
    opened = agent.client.get(link)
    assert opened.status_code == 200 and opened.content == photo
    assert opened.headers["content-type"] == "image/jpeg" and "sandbox" in opened.headers["content-security-policy"]
    assert agent.client.get(link.replace("/files/0", "/files/1")).status_code == 404  # the one not fetched


def test_media_behind_the_providers_redirect_are_fetched_without_the_credentials(
    client: TestClient, twilio: HttpDouble
) -> None:
    cdn = HttpDouble()
    cdn.route("GET", r"/media/(\w+)", lambda call, match: (200, b"GIF89a", {"content-type": "image/gif"}))
    cdn.start()
    try:
        # Twilio answers a media URL with a redirect to a short-lived copy on another host
        twilio.route("GET", r"/2010-04-01/Accounts/(AC\w+)/Messages/(\w+)/Media/(\w+)",
                     lambda call, match: (307, b"", {"location": f"{cdn.url}/media/{match.group(3)}"}))  # fmt: skip
        channel = sms_channel(client, twilio.url)
        url = f"{twilio.url}/2010-04-01/Accounts/{ACCOUNT}/Messages/MM2/Media/ME9"
        incoming(client, channel["id"], "mira", NumMedia="1", MediaUrl0=url, MediaContentType0="image/gif")
        worker(client).drain()
    finally:
        cdn.stop()
    conversation = client.get(f"{API}/conversations").json()["items"][0]
    (message,) = messages(client, conversation["id"])
    assert message["attachments"][0]["key"] and message["attachments"][0]["content_type"] == "image/gif"
    (fetched,) = cdn.calls
    assert "authorization" not in fetched.headers


def test_config_is_validated(client: TestClient) -> None:
    response = client.post(f"{API}/channels", json={"type": "sms", "name": "x", "config": {"account_sid": ACCOUNT}})
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"config.auth_token"}
    config = {"account_sid": ACCOUNT, "auth_token": "t"}
    response = client.post(f"{API}/channels", json={"type": "sms", "name": "x", "config": config})
    assert {e["field"] for e in response.json()["errors"]} == {"config.from_number"}
    ok = sms_channel(client, "https://api.twilio.com")
    assert ok["config"]["api_base_url"] == "https://api.twilio.com"


def test_segments() -> None:
    assert segments("a" * 160) == 1 and segments("a" * 161) == 2 and segments("a" * 306) == 2
    assert segments("a" * 307) == 3
    assert segments("€" * 80) == 1 and segments("€" * 81) == 2  # extension characters take two
    assert encoding("Qué tal") == "GSM-7" and encoding("Sí") == "UCS-2"
    assert encoding("ç") == "UCS-2"
    assert segments("ç" * 70) == 1 and segments("ç" * 71) == 2 and segments("ç" * 134) == 2
    assert segments("😀" * 35) == 1 and segments("😀" * 36) == 2


@given(st.text(max_size=600))
def test_segments_hold_the_text(text: str) -> None:
    count = segments(text)
    per = (160 if count == 1 else 153) if encoding(text) == "GSM-7" else (70 if count == 1 else 67)
    assert count >= 1
    assert len(text) <= count * per
