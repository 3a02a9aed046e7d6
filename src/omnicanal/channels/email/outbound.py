"""Sending replies over SMTP, threaded into the customer's mail program and answerable by a signed address."""

from __future__ import annotations

import html
import logging
import smtplib
import ssl
import uuid
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from typing import Any, Protocol

from sqlalchemy import select

from omnicanal.channels.email.models import EmailHeader
from omnicanal.channels.email.reply_address import reply_address
from omnicanal.conversations.models import Message
from omnicanal.db import Database
from omnicanal.outbox.transports import DeliveryError, Envelope, Sent
from omnicanal.storage import blob_store

log = logging.getLogger(__name__)
_MAX_REFERENCES = 20


class ChannelConfig(Protocol):
    """A configured channel's values (``ConfiguredChannel``, or a plain dict)."""

    def __getitem__(self, key: str, /) -> Any: ...

    def get(self, key: str, default: Any = None, /) -> Any: ...


def domain_of(address: str) -> str:
    return address.rsplit("@", 1)[-1].strip().lower()


def thread_of(database: Database, conversation_id: uuid.UUID) -> tuple[str | None, list[str]]:
    """The subject the customer last wrote with, and the Message-IDs of the conversation's emails, oldest first."""
    with database.read() as session:
        inbound: list[tuple[Any, str, str]] = [
            (when, header, subject)
            for when, header, subject in session.execute(
                select(EmailHeader.created_at, EmailHeader.header_id, EmailHeader.subject)
                .where(EmailHeader.conversation_id == conversation_id)
                .order_by(EmailHeader.created_at)
            )
        ]
        outbound: list[tuple[Any, str]] = [
            (when, str(header))
            for when, header in session.execute(
                select(Message.created_at, Message.provider_message_id).where(
                    Message.conversation_id == conversation_id,
                    Message.channel == "email",
                    Message.direction == "outbound",
                    Message.provider_message_id.is_not(None),
                )
            )
        ]
    subject = next((s for _, _, s in reversed(inbound) if s), None)
    ordered = sorted([(when, header) for when, header, _ in inbound] + outbound)
    return subject, [header for _, header in ordered]


def reply_subject(subject: str | None, fallback: str) -> str:
    if not subject:
        return fallback
    return subject if subject.lower().startswith(("re:", "re :", "aw:", "rv:")) else f"Re: {subject}"


def build_message(
    *, config: ChannelConfig, secret: str, message_id: str, to: str, text: str,
    conversation_id: uuid.UUID | None, subject: str | None, references: list[str],
    attachments: Sequence[tuple[str, str, bytes]] = (),
) -> EmailMessage:  # fmt: skip
    """The reply; with ``attachments`` (name, content type, data) it is multipart/mixed around the text."""
    from_address = str(config["from_address"])
    domain = str(config.get("reply_domain") or domain_of(from_address))
    message = EmailMessage()
    message["From"] = formataddr((str(config.get("from_name") or ""), from_address))
    message["To"] = to
    message["Subject"] = reply_subject(subject, str(config.get("subject") or f"Your conversation with {domain}"))
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = f"<{message_id}>"
    if references:
        message["In-Reply-To"] = f"<{references[-1]}>"
        message["References"] = " ".join(f"<{r}>" for r in references[-_MAX_REFERENCES:])
    if conversation_id is not None:
        message["Reply-To"] = reply_address(secret, conversation_id, domain)
    message.set_content(text)
    paragraphs = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in text.split("\n\n"))
    message.add_alternative(f"<!doctype html><html><body>{paragraphs}</body></html>", subtype="html")
    for name, content_type, data in attachments:
        maintype, _, subtype = content_type.partition("/")
        message.add_attachment(data, maintype=maintype or "application", subtype=subtype or "octet-stream",
                               filename=name)  # fmt: skip
    return message


def reply_files(database: Database, payload: dict[str, Any]) -> tuple[str, list[tuple[str, str, bytes]]]:
    """A reply's files to attach, and its text with the files given by address listed under it."""
    text = str(payload.get("text") or "")
    files: list[tuple[str, str, bytes]] = []
    links: list[str] = []
    for attachment in payload.get("attachments") or ():
        name = str(attachment.get("name") or "file")
        if attachment.get("key"):
            try:
                data = blob_store(database.settings).get(str(attachment["key"]))
            except (OSError, KeyError) as exc:
                raise DeliveryError(f"the file {name!r} is no longer stored: {exc}", permanent=True) from None
            files.append((name, str(attachment.get("content_type") or "application/octet-stream"), data))
        elif attachment.get("url"):
            links.append(f"{name}: {attachment['url']}")
    if links:
        text = "\n\n".join(part for part in (text, "\n".join(links)) if part)
    return text, files


class SmtpTransport:
    """One SMTP session per message: ``smtp_security`` starttls (default, port 587), tls (465) or none."""

    def __init__(self, config: ChannelConfig, database: Database, *, secret: str, timeout: float = 30.0) -> None:
        self.config = config
        self.database = database
        self.secret = secret
        self.timeout = timeout

    def _connect(self) -> smtplib.SMTP:
        host = str(self.config["smtp_host"])
        security = str(self.config.get("smtp_security") or "starttls")
        port = int(self.config.get("smtp_port") or (465 if security == "tls" else 587))
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if security == "tls":
            client = smtplib.SMTP_SSL(host, port, timeout=self.timeout, context=context)
        else:
            client = smtplib.SMTP(host, port, timeout=self.timeout)
            if security == "starttls":
                client.starttls(context=context)
        username, password = self.config.get("username"), self.config.get("password")
        if username:
            client.login(str(username), str(password or ""))
        return client

    def send(self, envelope: Envelope) -> Sent:
        payload = envelope.payload
        raw_conversation = payload.get("conversation_id")
        conversation_id = uuid.UUID(str(raw_conversation)) if raw_conversation else None
        subject, references = thread_of(self.database, conversation_id) if conversation_id else (None, [])
        from_address = str(self.config["from_address"])
        message_id = f"{envelope.id}@{domain_of(from_address)}"
        text, files = reply_files(self.database, payload)
        message = build_message(
            config=self.config, secret=self.secret, message_id=message_id, to=str(payload["to"]),
            text=text, conversation_id=conversation_id, subject=subject, references=references, attachments=files,
        )  # fmt: skip
        try:
            client = self._connect()
            try:
                client.send_message(message, from_addr=from_address, to_addrs=[str(payload["to"])])
            finally:
                try:
                    client.quit()
                except smtplib.SMTPException:
                    client.close()
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(f"recipient refused: {codes}", permanent=all(c >= 500 for c in codes)) from None
        except smtplib.SMTPResponseException as exc:
            error = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            detail = f"SMTP {exc.smtp_code}: {error[:300]}"
            permanent = exc.smtp_code >= 500 and not isinstance(exc, smtplib.SMTPAuthenticationError)
            raise DeliveryError(detail, permanent=permanent, status_code=exc.smtp_code) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        log.info("email %s sent (%d bytes)", envelope.id, len(message.as_bytes()))
        return Sent(provider_id=message_id, detail="accepted by the SMTP server")
