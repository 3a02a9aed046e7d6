"""WhatsApp replies with files, reply buttons and lists, as the Cloud API documents them."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.channels.meta_helpers import post_signed, wa_message, wa_payload
from tests.channels.test_whatsapp import NUMBER_ID, SECRET, only_conversation, send_in, wa_channel, worker
from tests.channels.whatsapp_double import CloudApi
from tests.conversations.helpers import API, messages

PDF = b"%PDF-1.4 ticket A-1042"


@pytest.fixture
def cloud() -> Iterator[CloudApi]:
    double = CloudApi()
    yield double.start()  # type: ignore[misc]
    double.stop()


def conversation_with(client: TestClient, cloud: CloudApi) -> tuple[dict[str, Any], dict[str, Any]]:
    channel = wa_channel(client, cloud.url)
    send_in(client, channel["id"], wa_message("34612345678", body="¿Me mandas el ticket?"))
    return channel, only_conversation(client)


def reply(client: TestClient, conversation_id: str, expect: int = 201, **body: Any) -> dict[str, Any]:
    response = client.post(f"{API}/conversations/{conversation_id}/messages", json=body)
    assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


def status(client: TestClient, channel_id: str, provider_id: str, state: str) -> None:
    update = {"id": provider_id, "status": state, "timestamp": str(int(time.time())), "recipient_id": "34612345678"}
    response = post_signed(client, f"/webhooks/whatsapp/{channel_id}", wa_payload(NUMBER_ID, statuses=[update]), SECRET)
    assert response.status_code == 200


def test_a_file_sent_with_the_reply_is_uploaded_then_sent_by_id_with_the_text_as_caption(
    client: TestClient, cloud: CloudApi
) -> None:
    _, conversation = conversation_with(client, cloud)
    sent = reply(
        client, conversation["id"], text="Aquí tienes tu ticket",
        attachments=[{"name": "ticket.pdf", "content_type": "application/pdf", "data": base64.b64encode(PDF).decode()}],
    )  # fmt: skip
    assert sent["attachments"][0]["name"] == "ticket.pdf" and sent["attachments"][0]["size"] == len(PDF)
    worker(client).drain()
    (upload,) = cloud.uploads.values()
    assert upload == ("ticket.pdf", "application/pdf", PDF)
    (body,) = cloud.sent()
    assert body == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "34612345678",
                    "type": "document", "document": {"id": "media-1", "caption": "Aquí tienes tu ticket",
                                                     "filename": "ticket.pdf"}}  # fmt: skip
    last = messages(client, conversation["id"])[-1]
    assert last["status"] == "sent" and last["provider_message_id"] == "wamid.OUT000001"


def test_several_files_by_link_and_media_id_go_as_one_message_each_and_every_part_reports_status(
    client: TestClient, cloud: CloudApi
) -> None:
    channel, conversation = conversation_with(client, cloud)
    reply(
        client, conversation["id"], text="La talla M, en dos colores",
        attachments=[
            {"name": "nota.ogg", "content_type": "audio/ogg", "media_id": "1013859600285441"},
            {"name": "azul.jpg", "content_type": "image/jpeg", "url": "https://cdn.shop.example/azul.jpg"},
            {"name": "rojo.mp4", "content_type": "video/mp4", "url": "https://cdn.shop.example/rojo.mp4"},
        ],
    )  # fmt: skip
    worker(client).drain()
    bodies = cloud.sent()
    assert [(b["type"], b[b["type"]]) for b in bodies] == [
        ("audio", {"id": "1013859600285441"}),  # audio takes no caption: the text rides on the first image
        ("image", {"link": "https://cdn.shop.example/azul.jpg", "caption": "La talla M, en dos colores"}),
        ("video", {"link": "https://cdn.shop.example/rojo.mp4"}),
    ]
    last = messages(client, conversation["id"])[-1]
    assert last["status"] == "sent" and last["provider_message_id"] == "wamid.OUT000001"
    status(client, channel["id"], "wamid.OUT000003", "delivered")  # the last part's status finds the reply
    assert messages(client, conversation["id"])[-1]["status"] == "delivered"
    status(client, channel["id"], "wamid.OUT000002", "read")
    assert messages(client, conversation["id"])[-1]["status"] == "read"


def test_a_retry_sends_only_the_parts_the_provider_did_not_take(
    client: TestClient, cloud: CloudApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("omnicanal.outbox.service.backoff", lambda attempt, **_: timedelta(0))
    _, conversation = conversation_with(client, cloud)
    reply(
        client, conversation["id"], text="Dos fotos",
        attachments=[{"name": "a.jpg", "content_type": "image/jpeg", "url": "https://cdn.shop.example/a.jpg"},
                     {"name": "b.jpg", "content_type": "image/jpeg", "url": "https://cdn.shop.example/b.jpg"}],
    )  # fmt: skip
    cloud.fail_sends = {2}  # the first photo goes through, the second fails once
    worker(client).drain()
    links = [b["image"]["link"].rsplit("/", 1)[1] for b in cloud.sent()]
    assert links == ["a.jpg", "b.jpg", "b.jpg"]  # b.jpg refused, then again; a.jpg only once
    last = messages(client, conversation["id"])[-1]
    assert last["status"] == "sent" and last["provider_message_id"] == "wamid.OUT000001"


def test_reply_buttons_and_lists(client: TestClient, cloud: CloudApi) -> None:
    channel, conversation = conversation_with(client, cloud)
    buttons = {"type": "button", "footer": "Tienda Sol", "buttons": [{"id": "pickup-yes", "title": "Sí, recoger"},
                                                                     {"id": "pickup-no", "title": "No"}]}  # fmt: skip
    sent = reply(client, conversation["id"], text="¿Lo recoges hoy?", interactive=buttons)
    assert sent["attachments"][0]["kind"] == "interactive" and sent["attachments"][0]["name"] == "Sí, recoger · No"
    choose = {
        "type": "list", "header": "Tiendas", "button": "Elegir tienda",
        "sections": [
            {"title": "Madrid", "rows": [{"id": "sol", "title": "Tienda Sol", "description": "Puerta del Sol 1"},
                                         {"id": "gran-via", "title": "Gran Vía"}]},
            {"title": "Barcelona", "rows": [{"id": "diagonal", "title": "Diagonal"}]},
        ],
    }  # fmt: skip
    reply(client, conversation["id"], text="¿Dónde lo recoges?", interactive=choose)
    worker(client).drain()
    first, second = sorted(cloud.sent(), key=lambda body: body["interactive"]["type"])  # sent in parallel
    assert first["type"] == "interactive" and first["interactive"] == {
        "type": "button", "body": {"text": "¿Lo recoges hoy?"}, "footer": {"text": "Tienda Sol"},
        "action": {"buttons": [{"type": "reply", "reply": {"id": "pickup-yes", "title": "Sí, recoger"}},
                               {"type": "reply", "reply": {"id": "pickup-no", "title": "No"}}]},
    }  # fmt: skip
    assert second["interactive"] == {
        "type": "list", "body": {"text": "¿Dónde lo recoges?"}, "header": {"type": "text", "text": "Tiendas"},
        "action": {"button": "Elegir tienda", "sections": [
            {"title": "Madrid", "rows": [{"id": "sol", "title": "Tienda Sol", "description": "Puerta del Sol 1"},
                                         {"id": "gran-via", "title": "Gran Vía"}]},
            {"title": "Barcelona", "rows": [{"id": "diagonal", "title": "Diagonal"}]}]},
    }  # fmt: skip
    assert all(m["status"] == "sent" for m in messages(client, conversation["id"])[-2:])
    # the customer taps a button: the choice comes back as their message
    tap = wa_message("34612345678", "interactive", type="button_reply",
                     button_reply={"id": "pickup-yes", "title": "Sí, recoger"})  # fmt: skip
    send_in(client, channel["id"], tap)
    last = messages(client, conversation["id"])[-1]
    assert last["text"] == "Sí, recoger" and last["attachments"][0]["id"] == "pickup-yes"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "¿Sí?", "interactive": {"type": "button", "buttons": [{"id": str(n), "title": str(n)}
                                                                       for n in range(4)]}}, "interactive"),
        ({"text": "¿Sí?", "interactive": {"type": "button", "buttons": [{"id": "a", "title": "x" * 21}]}},
         "interactive"),
        ({"text": "¿Sí?", "interactive": {"type": "button", "buttons": [{"id": "a", "title": "Sí"},
                                                                      {"id": "a", "title": "No"}]}}, "interactive"),
        ({"text": "", "interactive": {"type": "button", "buttons": [{"id": "a", "title": "Sí"}]}}, "text"),
        ({"text": "Elige", "interactive": {"type": "list", "button": "Ver", "sections": [
            {"title": "A", "rows": [{"id": str(n), "title": str(n)} for n in range(6)]},
            {"title": "B", "rows": [{"id": f"b{n}", "title": str(n)} for n in range(5)]}]}}, "interactive"),
        ({"text": "Mira", "attachments": [{"name": "x.exe", "content_type": "application/x-msdownload",
                                          "url": "https://x.example/x.exe"}]}, "attachments[0].content_type"),
        ({"text": "Mira", "attachments": [{"name": "a.jpg", "content_type": "image/jpeg", "url": "https://a",
                                          "media_id": "1"}]}, "attachments"),
    ],
)  # fmt: skip
def test_what_whatsapp_would_refuse_is_refused_before_anything_is_queued(
    client: TestClient, cloud: CloudApi, body: dict[str, Any], field: str
) -> None:
    _, conversation = conversation_with(client, cloud)
    response = client.post(f"{API}/conversations/{conversation['id']}/messages", json=body)
    assert response.status_code == 422, response.text
    fields = [e.get("field") or ".".join(str(p) for p in e.get("loc", [])) for e in response.json().get("errors", [])]
    assert any(field in f for f in fields), response.json()
    assert len(messages(client, conversation["id"])) == 1
    worker(client).drain()
    assert cloud.sent() == []


def test_buttons_and_provider_media_ids_are_refused_on_other_channels(client: TestClient) -> None:
    from tests.conversations.helpers import inbound

    created = inbound(client, channel="sms", identities=[{"type": "phone", "value": "+34612345678"}])
    path = f"{API}/conversations/{created['conversation_id']}/messages"
    buttons = {"type": "button", "buttons": [{"id": "a", "title": "Sí"}]}
    refused = client.post(path, json={"text": "¿Sí?", "channel": "sms", "interactive": buttons})
    assert refused.status_code == 422 and "whatsapp" in refused.text
    files = [{"name": "a.jpg", "content_type": "image/jpeg", "url": "https://cdn.shop.example/a.jpg"}]
    no_files = client.post(path, json={"text": "Mira", "channel": "sms", "attachments": files})
    assert no_files.status_code == 422 and "sms" in no_files.text


def test_a_file_chosen_in_the_console_reply_box_goes_out_as_whatsapp_media(
    app: Any, db: Any, client: TestClient, cloud: CloudApi
) -> None:
    from tests.console.helpers import log_in

    _, conversation = conversation_with(client, cloud)
    staff = log_in(app, db, role="agent", language="en")
    staff.client.get(f"/console/conversations/{conversation['id']}")
    sent = staff.post(
        f"/console/conversations/{conversation['id']}/reply", {"text": "Tu ticket", "channel": "whatsapp"},
        files={"files": ("ticket.pdf", PDF, "application/pdf")}, follow_redirects=True,
    )  # fmt: skip
    assert sent.status_code == 200 and "Reply queued" in sent.text and "ticket.pdf" in sent.text
    worker(client).drain()
    (body,) = cloud.sent()
    assert body["document"] == {"id": "media-1", "caption": "Tu ticket", "filename": "ticket.pdf"}
    assert list(cloud.uploads.values()) == [("ticket.pdf", "application/pdf", PDF)]
    refused = staff.post(
        f"/console/conversations/{conversation['id']}/reply", {"text": "", "channel": "whatsapp"},
        files={"files": ("virus.exe", b"MZ", "application/x-msdownload")}, follow_redirects=True,
    )  # fmt: skip
    assert refused.status_code == 422 and "not accepted" in refused.text


def test_a_place_goes_out_as_a_location_pin_after_the_text(client: TestClient, cloud: CloudApi) -> None:
    _, conversation = conversation_with(client, cloud)
    store = {"latitude": 40.4169, "longitude": -3.7035, "name": "Tienda Sol", "address": "Puerta del Sol 1, Madrid"}
    sent = reply(client, conversation["id"], text="Te esperamos aquí:", location=store)
    assert sent["attachments"][0]["kind"] == "location" and sent["attachments"][0]["name"] == "Tienda Sol"
    only_pin = reply(client, conversation["id"], location={"latitude": 41.39, "longitude": 2.16})
    assert only_pin["attachments"][0]["name"] == "41.39, 2.16"
    worker(client).drain()
    bodies = cloud.sent()
    pins = [body["location"] for body in bodies if body["type"] == "location"]
    assert {"latitude": 40.4169, "longitude": -3.7035, "name": "Tienda Sol",
            "address": "Puerta del Sol 1, Madrid"} in pins  # fmt: skip
    assert {"latitude": 41.39, "longitude": 2.16} in pins
    assert [body["text"]["body"] for body in bodies if body["type"] == "text"] == ["Te esperamos aquí:"]
    assert all(message["status"] != "failed" for message in messages(client, conversation["id"]))


def test_a_place_that_cannot_be_sent_is_refused_with_the_reason(client: TestClient, cloud: CloudApi) -> None:
    from tests.conversations.helpers import inbound

    _, conversation = conversation_with(client, cloud)
    path = f"{API}/conversations/{conversation['id']}/messages"
    far_north = client.post(path, json={"location": {"latitude": 91, "longitude": 0}})
    assert far_north.status_code == 422 and "latitude" in far_north.text
    both = {"text": "¿Sí?", "location": {"latitude": 1, "longitude": 1},
            "interactive": {"type": "button", "buttons": [{"id": "a", "title": "Sí"}]}}  # fmt: skip
    refused = client.post(path, json=both)
    assert refused.status_code == 422 and "location" in refused.text
    created = inbound(client, channel="sms", identities=[{"type": "phone", "value": "+34699999999"}])
    by_sms = client.post(
        f"{API}/conversations/{created['conversation_id']}/messages",
        json={"channel": "sms", "location": {"latitude": 40.4, "longitude": -3.7}},
    )
    assert by_sms.status_code == 422 and "whatsapp" in by_sms.text
