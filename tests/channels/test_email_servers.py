"""Email against real servers: the built-in SMTP/LMTP receiver, an SMTP submission server, dovecot IMAP."""

from __future__ import annotations

import base64
import os
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omnicanal.channels.email.imap import poll_once
from omnicanal.channels.email.models import EmailHeader
from omnicanal.channels.email.receiver import Mailboxes, ReceiverController, ReceiverHandler
from omnicanal.channels.email.reply_address import conversation_of
from omnicanal.db import Database
from omnicanal.settings import Settings
from omnicanal.timeline.writer import IngestWriter
from tests.channels.email_samples import customer_email, delivery_failure
from tests.channels.mail_servers import DOVECOT, DovecotServer, SmtpServer, self_signed_certificate
from tests.support.live_server import free_port

SUPPORT = "support@shop.example.com"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def trust(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Our test servers' certificate is the one the SMTP and IMAP clients trust."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"outbox_in_process": True})  # replies leave as they would in production


@pytest.fixture
def smtp(certificate: tuple[Path, Path], trust: None) -> Iterator[SmtpServer]:
    with SmtpServer(*certificate) as server:
        yield server


@pytest.fixture
def email_channel(client: TestClient, smtp: SmtpServer) -> dict[str, Any]:
    config = {
        "smtp_host": "localhost", "smtp_port": smtp.port, "smtp_security": "starttls",
        "username": smtp.username, "password": smtp.password, "from_address": SUPPORT, "from_name": "Shop",
    }  # fmt: skip
    response = client.post("/api/v1/channels", json={"type": "email", "name": "Support", "config": config})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


class Receiver:
    def __init__(self, db: Database, settings: Settings, *, lmtp: bool = False) -> None:
        self.writer = IngestWriter(db)
        self.port = free_port()
        mailboxes = Mailboxes(db)  # the configured email channels' domains
        handler = ReceiverHandler(self.writer, settings, accepts=mailboxes.accepts_async,
                                  instance_for=mailboxes.instance_for, lmtp=lmtp)  # fmt: skip
        self.controller = ReceiverController(handler, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> Receiver:
        self.writer.start()
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
        self.writer.stop()

    def send(self, raw: bytes, *, to: str = SUPPORT, sender: str = "ana@example.com") -> dict[str, Any]:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
            return client.sendmail(sender, [to], raw)


@pytest.fixture
def receiver(email_channel: dict[str, Any], db: Database, settings: Settings) -> Iterator[Receiver]:
    with Receiver(db, settings) as running:
        yield running


def _conversation_of(client: TestClient, email: str) -> tuple[str, dict[str, Any]]:
    customers = client.get("/api/v1/customers", params={"identity": f"email:{email}"}).json()["items"]
    assert len(customers) == 1, customers
    conversations = client.get("/api/v1/conversations", params={"customer_id": customers[0]["id"]}).json()["items"]
    assert len(conversations) == 1
    return conversations[0]["id"], conversations[0]


def _messages(client: TestClient, conversation_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get(f"/api/v1/conversations/{conversation_id}/messages").json()["items"]
    return items


def test_an_email_to_the_receiver_becomes_a_conversation_with_its_files(receiver: Receiver, client: TestClient) -> None:
    body = "Hello, my order 1234 has not arrived yet.\n\n-- \nAna García\nCalle Mayor 1"
    raw = customer_email(text=body, attachments=[("receipt.pdf", "application/pdf", b"%PDF-1.4 receipt")])
    assert receiver.send(raw) == {}
    conversation_id, conversation = _conversation_of(client, "ana@example.com")
    assert conversation["last_channel"] == "email"
    (message,) = _messages(client, conversation_id)
    assert message["text"] == "Hello, my order 1234 has not arrived yet."
    assert message["external_id"] == "m1@mail.example.com"
    assert [(a["name"], a["content_type"], a["size"]) for a in message["attachments"]] == [
        ("receipt.pdf", "application/pdf", 16)
    ]
    # the sending server retried (a lost 250): still one message
    receiver.send(raw)
    assert len(_messages(client, conversation_id)) == 1


def test_a_file_of_a_type_not_accepted_is_named_in_the_message_instead(receiver: Receiver, client: TestClient) -> None:
    receiver.send(customer_email(attachments=[("setup.exe", "application/x-msdownload", b"MZ")]))
    conversation_id, _ = _conversation_of(client, "ana@example.com")
    (message,) = _messages(client, conversation_id)
    assert message["attachments"] == []
    assert "setup.exe" in message["text"] and "not accepted" in message["text"]


def test_mail_for_other_domains_is_refused(receiver: Receiver) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        receiver.send(customer_email(), to="someone@elsewhere.example.org")


def test_the_receiver_speaks_lmtp(
    client: TestClient, email_channel: dict[str, Any], db: Database, settings: Settings
) -> None:
    with Receiver(db, settings, lmtp=True) as running, smtplib.LMTP("127.0.0.1", running.port) as lmtp:
        assert lmtp.sendmail("ana@example.com", [SUPPORT], customer_email()) == {}
    conversation_id, _ = _conversation_of(client, "ana@example.com")
    assert len(_messages(client, conversation_id)) == 1


def _wait_status(client: TestClient, conversation_id: str, message_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        found = next(m for m in _messages(client, conversation_id) if m["id"] == message_id)
        if found["status"] == status or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_reply_goes_out_threaded_and_the_answer_to_it_comes_back_to_the_conversation(
    receiver: Receiver, client: TestClient, smtp: SmtpServer, settings: Settings
) -> None:
    receiver.send(customer_email(subject="My order has not arrived", message_id="<first@mail.example.com>"))
    conversation_id, _ = _conversation_of(client, "ana@example.com")
    reply = client.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": "It ships today."})
    assert reply.status_code == 201, reply.text
    (sent,) = smtp.wait_for(1)
    assert sent.rcpt_tos == ["ana@example.com"]
    mail = sent.message
    assert mail["Subject"] == "Re: My order has not arrived"
    assert mail["In-Reply-To"] == "<first@mail.example.com>"
    assert mail["References"] == "<first@mail.example.com>"
    assert mail["From"] == f"Shop <{SUPPORT}>"
    assert mail.get_body(("plain",)).get_content().strip() == "It ships today."  # type: ignore[union-attr]
    reply_to = str(mail["Reply-To"])
    assert str(conversation_of(settings.secret_key, reply_to)) == conversation_id
    delivered = _wait_status(client, conversation_id, reply.json()["id"], "sent")
    assert delivered["status"] == "sent"
    assert delivered["provider_message_id"] == str(mail["Message-ID"]).strip("<>")

    # Ana answers from her work address (unknown to us) to the reply address: same conversation
    receiver.send(
        customer_email(
            sender="Ana <ana.garcia@work.example.com>",
            to=reply_to,
            subject="Re: My order",
            message_id="<second@work.example.com>",
            text="Great, thanks!\n\nOn Mon, Shop wrote:\n> It ships today.",
        ),
        to=reply_to,
        sender="ana.garcia@work.example.com",
    )
    texts = [m["text"] for m in _messages(client, conversation_id)]
    assert texts == ["Hello, my order 1234 has not arrived yet.", "It ships today.", "Great, thanks!"]
    # ... and her work address was not added to her profile on the strength of a header
    assert (
        client.get("/api/v1/customers", params={"identity": "email:ana.garcia@work.example.com"}).json()["items"] == []
    )

    # a second reply continues the thread
    client.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": "You're welcome."})
    second = smtp.wait_for(2)[1].message
    assert second["In-Reply-To"] == "<second@work.example.com>"
    assert str(second["References"]).split() == [
        "<first@mail.example.com>", str(mail["Message-ID"]), "<second@work.example.com>"
    ]  # fmt: skip


def test_headers_alone_thread_a_reply_from_an_unknown_address(receiver: Receiver, client: TestClient) -> None:
    receiver.send(customer_email(message_id="<start@mail.example.com>"))
    conversation_id, _ = _conversation_of(client, "ana@example.com")
    receiver.send(
        customer_email(
            sender="assistant@ana.example.com",
            message_id="<fwd@ana.example.com>",
            in_reply_to="<start@mail.example.com>",
            text="Ana asked me to follow up.",
        ),
        sender="assistant@ana.example.com",
    )
    assert [m["text"] for m in _messages(client, conversation_id)][-1] == "Ana asked me to follow up."


def test_a_forged_reply_address_is_not_trusted(receiver: Receiver, client: TestClient) -> None:
    receiver.send(customer_email())
    conversation_id, _ = _conversation_of(client, "ana@example.com")
    forged = "reply+" + "a" * 26 + "." + "b" * 12 + "@shop.example.com"
    receiver.send(
        customer_email(
            sender="mallory@evil.example.com",
            to=forged,
            message_id="<x@evil.example.com>",
            text="Change my delivery address",
        ),
        to=forged,
        sender="mallory@evil.example.com",
    )
    assert len(_messages(client, conversation_id)) == 1
    _conversation_of(client, "mallory@evil.example.com")  # a conversation of her own


def test_a_bounce_marks_the_reply_failed(
    receiver: Receiver, client: TestClient, smtp: SmtpServer, settings: Settings
) -> None:
    receiver.send(customer_email())
    conversation_id, _ = _conversation_of(client, "ana@example.com")
    reply = client.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": "Here you are."})
    (sent,) = smtp.wait_for(1)
    assert _wait_status(client, conversation_id, reply.json()["id"], "sent")["status"] == "sent"
    receiver.send(delivery_failure(original_message_id=str(sent.message["Message-ID"]).strip("<>"),
                                   recipient="ana@example.com"), sender="")  # fmt: skip
    failed = _wait_status(client, conversation_id, reply.json()["id"], "failed")
    assert failed["status"] == "failed"
    assert "5.1.1" in failed["failure_reason"] and "User unknown" in failed["failure_reason"]
    assert len(_messages(client, conversation_id)) == 2  # the bounce itself is not a customer message


def test_an_out_of_office_reply_never_reopens_a_conversation(receiver: Receiver, client: TestClient) -> None:
    receiver.send(customer_email(message_id="<q@mail.example.com>"))
    conversation_id, _ = _conversation_of(client, "ana@example.com")
    resolved = client.post(f"/api/v1/conversations/{conversation_id}/status", json={"status": "resolved"})
    assert resolved.status_code == 200, resolved.text
    receiver.send(
        customer_email(
            subject="Out of office: Re: My order",
            message_id="<ooo@mail.example.com>",
            headers={"Auto-Submitted": "auto-replied"},
            text="I am away until Monday.",
        ),
    )
    conversation = client.get(f"/api/v1/conversations/{conversation_id}").json()
    assert conversation["status"] == "resolved"
    assert [m["text"] for m in _messages(client, conversation_id)][-1] == "I am away until Monday."
    # a real answer does reopen it
    receiver.send(customer_email(message_id="<r@mail.example.com>", text="One more question"))
    assert client.get(f"/api/v1/conversations/{conversation_id}").json()["status"] == "open"


def test_an_auto_reply_from_a_stranger_creates_nobody(receiver: Receiver, client: TestClient) -> None:
    receiver.send(customer_email(sender="bot@lists.example.com", headers={"Auto-Submitted": "auto-generated"}),
                  sender="bot@lists.example.com")  # fmt: skip
    assert client.get("/api/v1/customers", params={"identity": "email:bot@lists.example.com"}).json()["items"] == []


@pytest.mark.skipif(not os.path.exists(DOVECOT), reason="dovecot-imapd is not installed (scripts/install-system-deps)")
def test_imap_polling_takes_in_unseen_mail_once(
    client: TestClient, db: Database, settings: Settings, certificate: tuple[Path, Path], trust: None
) -> None:
    with DovecotServer(*certificate) as dovecot:
        config = {
            "imap_host": "localhost", "imap_port": dovecot.port, "imap_security": "starttls",
            "username": dovecot.username, "password": dovecot.password,
        }  # fmt: skip
        dovecot.deliver(customer_email(message_id="<i1@mail.example.com>"))
        dovecot.deliver(customer_email(message_id="<i2@mail.example.com>", text="And a second thing."))
        report = poll_once(config, db, settings)
        assert report.outcomes == {"stored": 2}
        conversation_id, _ = _conversation_of(client, "ana@example.com")
        # one poll, one transaction: both carry the same time, so their order is not asserted
        assert sorted(m["text"] for m in _messages(client, conversation_id)) == [
            "And a second thing.",
            "Hello, my order 1234 has not arrived yet.",
        ]
        assert poll_once(config, db, settings).seen == 0  # flagged as seen
        dovecot.deliver(customer_email(message_id="<i1@mail.example.com>"))  # the same message delivered again
        assert poll_once(config, db, settings).outcomes == {"duplicate": 1}


def test_an_email_channel_is_configured_over_the_api_without_showing_its_secrets(
    client: TestClient, email_channel: dict[str, Any]
) -> None:
    assert email_channel["type"] == "email"
    assert "password" not in email_channel["config"] and "password" in email_channel["secrets_set"]
    assert email_channel["config"]["from_address"] == SUPPORT
    listed = client.get("/api/v1/channels").json()
    assert "s3cret" not in str(listed)
    wrong = {"smtp_host": "mail", "from_address": "nobody"}
    bad = client.post("/api/v1/channels", json={"type": "email", "name": "x", "config": wrong})
    assert bad.status_code == 422
    assert "config.from_address" in bad.text


def test_subjects_are_exported_and_erased_with_the_customer(
    receiver: Receiver, client: TestClient, db: Database
) -> None:
    receiver.send(customer_email(subject="Refund for order 1234"))
    (customer,) = client.get("/api/v1/customers", params={"identity": "email:ana@example.com"}).json()["items"]
    export = client.get(f"/api/v1/customers/{customer['id']}/export").json()
    assert [e["subject"] for e in export["email"]] == ["Refund for order 1234"]
    assert client.delete(f"/api/v1/customers/{customer['id']}").status_code in (200, 204)
    with db.read() as session:
        assert list(session.scalars(select(EmailHeader.subject))) == [""]


# -- replies with files ---------------------------------------------------------------------------

REPLY_PDF = b"%PDF-1.4 factura F-2026-118"
REPLY_PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def test_a_reply_with_files_is_a_multipart_mixed_email_with_each_file_attached(
    receiver: Receiver, client: TestClient, smtp: SmtpServer
) -> None:
    receiver.send(customer_email(subject="Factura", message_id="<ask@mail.example.com>"))
    conversation_id, _ = _conversation_of(client, "ana@example.com")
    files: list[dict[str, Any]] = [
        {"name": "factura.pdf", "content_type": "application/pdf", "data": base64.b64encode(REPLY_PDF).decode()},
        {"name": "etiqueta.png", "content_type": "image/png", "data": base64.b64encode(REPLY_PNG).decode()},
        {"name": "catálogo", "content_type": "application/pdf", "url": "https://shop.example.com/catalogo.pdf"},
    ]
    reply = client.post(f"/api/v1/conversations/{conversation_id}/messages",
                        json={"text": "Te adjunto la factura.", "attachments": files})  # fmt: skip
    assert reply.status_code == 201, reply.text
    assert [a["name"] for a in reply.json()["attachments"]] == ["factura.pdf", "etiqueta.png", "catálogo"]
    (sent,) = smtp.wait_for(1)
    mail = sent.message
    assert mail.get_content_type() == "multipart/mixed"
    assert mail["In-Reply-To"] == "<ask@mail.example.com>"  # still a threaded reply
    body = mail.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert text.startswith("Te adjunto la factura.")
    assert "catálogo: https://shop.example.com/catalogo.pdf" in text  # a file given by address is linked
    assert mail.get_body(("html",)) is not None
    attached = [(part.get_filename(), part.get_content_type(), part.get_content()) for part in mail.iter_attachments()]
    assert attached == [("factura.pdf", "application/pdf", REPLY_PDF), ("etiqueta.png", "image/png", REPLY_PNG)]
    assert _wait_status(client, conversation_id, reply.json()["id"], "sent")["status"] == "sent"


def test_a_reply_without_files_stays_a_plain_alternative_email(
    receiver: Receiver, client: TestClient, smtp: SmtpServer
) -> None:
    receiver.send(customer_email(subject="Hola"))
    conversation_id, _ = _conversation_of(client, "ana@example.com")
    client.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": "Hola, Ana"})
    (sent,) = smtp.wait_for(1)
    assert sent.message.get_content_type() == "multipart/alternative"
    assert list(sent.message.iter_attachments()) == []
