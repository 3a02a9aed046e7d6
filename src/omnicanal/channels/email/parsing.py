"""Reading an RFC 5322 message: who wrote, what thread it answers, the new text, files, bounces, auto-replies."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from omnicanal.channels.email.text import html_to_text, strip_reply

_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")
_AUTO_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?(reply|response)|autoreply|auto:|"
    r"respuesta autom[aá]tica|fuera de la oficina|ausente|r[ée]ponse automatique|abwesenheitsnotiz|"
    r"risposta automatica|resposta autom[aá]tica)",
    re.IGNORECASE,
)
_DAEMON_SENDERS = ("mailer-daemon@", "postmaster@")


@dataclass(frozen=True)
class Bounce:
    """A delivery status notification (RFC 3464) about a message we sent."""

    original_message_id: str | None
    recipients: tuple[str, ...]
    action: str  # failed / delayed / delivered / relayed / expanded
    status: str  # e.g. 5.1.1
    diagnostic: str

    @property
    def failed(self) -> bool:
        return self.action == "failed"

    def reason(self) -> str:
        detail = self.diagnostic or "the receiving server refused the message"
        return f"bounced ({self.status or 'no status'}): {detail}"[:1000]


@dataclass
class ParsedEmail:
    message_id: str
    sender: str | None
    sender_name: str
    recipients: list[str]
    subject: str
    in_reply_to: list[str]
    references: list[str]
    text: str  # the new part only
    full_text: str
    attachments: list[dict[str, Any]] = field(default_factory=list)  # name, content_type, data (bytes)
    auto_reply: bool = False
    bounce: Bounce | None = None
    date: datetime | None = None

    @property
    def thread_ids(self) -> list[str]:
        """Message-IDs this message answers, most specific first."""
        return list(dict.fromkeys([*self.in_reply_to, *reversed(self.references)]))


def message_ids(value: str | None) -> list[str]:
    if not value:
        return []
    found = _MESSAGE_ID.findall(str(value))
    if not found and str(value).strip():
        found = [str(value).strip().strip("<>")]
    return [mid for mid in found if mid]


def _header(message: Message, name: str) -> str:
    value = message.get(name)
    return str(value) if value is not None else ""


def decoded(value: str) -> str:
    """A header value with its RFC 2047 encoded words (``=?utf-8?q?...?=``) decoded."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (HeaderParseError, LookupError, ValueError, UnicodeDecodeError):
        return value


def _addresses(message: Message, *names: str) -> list[tuple[str, str]]:
    values = [_header(message, name) for name in names]
    return [(decoded(display), address.strip().lower()) for display, address in getaddresses(values) if "@" in address]


def is_auto_reply(message: Message) -> bool:
    """RFC 3834 and the headers common mail programs add to vacation and other automatic replies."""
    auto_submitted = _header(message, "Auto-Submitted").strip().lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        return True
    if _header(message, "X-Autoreply") or _header(message, "X-Autorespond") or _header(message, "X-Autoreply-From"):
        return True
    if _header(message, "Precedence").strip().lower() in ("auto_reply", "bulk", "junk"):
        return True
    if _header(message, "X-Auto-Response-Suppress").strip().lower() in ("all", "oof"):
        return True
    return bool(_AUTO_SUBJECT.match(decoded(_header(message, "Subject"))))


def _delivery_status(message: Message) -> Bounce | None:
    content_type = message.get_content_type()
    if content_type != "multipart/report":
        return None
    original_id: str | None = None
    recipients: list[str] = []
    action, status, diagnostic = "", "", ""
    for part in message.walk():
        part_type = part.get_content_type()
        if part_type == "message/delivery-status":
            payload = part.get_payload()
            blocks = payload if isinstance(payload, list) else []
            for block in blocks[1:] if len(blocks) > 1 else blocks:
                if not isinstance(block, Message):
                    continue
                recipient = _header(block, "Final-Recipient") or _header(block, "Original-Recipient")
                if recipient:
                    recipients.append(recipient.split(";", 1)[-1].strip().lower())
                action = action or _header(block, "Action").strip().lower()
                status = status or _header(block, "Status").strip()
                diagnostic = diagnostic or " ".join(_header(block, "Diagnostic-Code").split(";", 1)[-1].split())
        elif part_type in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers") and original_id is None:
            original: Message | None = None
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                original = payload[0]
            elif isinstance(payload, str):
                decoded = part.get_payload(decode=True)
                raw = decoded if isinstance(decoded, bytes) and decoded else payload.encode()
                original = message_from_bytes(raw, policy=policy.compat32)
            if original is not None:
                found = message_ids(_header(original, "Message-ID"))
                original_id = found[0] if found else None
    if not action:
        return None
    return Bounce(original_id, tuple(recipients), action, status, diagnostic[:500])


def _decoded_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload() or "")
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except (ValueError, TypeError):
        name = None
    return decoded(str(name)) if name else None


def _body_and_files(message: Message) -> tuple[str | None, str | None, list[dict[str, Any]]]:
    plain: str | None = None
    html: str | None = None
    files: list[dict[str, Any]] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        content_type = part.get_content_type()
        disposition = (part.get_content_disposition() or "").lower()
        name = _filename(part)
        is_body = disposition != "attachment" and name is None
        if is_body and content_type == "text/plain" and plain is None:
            plain = _decoded_text(part)
        elif is_body and content_type == "text/html" and html is None:
            html = _decoded_text(part)
        elif name is not None or disposition == "attachment":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes) and data:
                files.append({"name": name or "attachment", "content_type": content_type, "data": data})
    return plain, html, files


def parse_email(raw: bytes) -> ParsedEmail:
    # compat32: the modern policy parses every header into objects, several times slower for what we read
    message = message_from_bytes(raw, policy=policy.compat32)
    ids = message_ids(_header(message, "Message-ID"))
    # A message without a Message-ID still needs a stable id: the same bytes delivered twice are one message.
    message_id = ids[0] if ids else f"sha256-{hashlib.sha256(raw).hexdigest()[:40]}@omnicanal.invalid"
    senders = _addresses(message, "From")
    sender_name, sender = (senders[0][0], senders[0][1]) if senders else ("", None)
    subject = " ".join(decoded(_header(message, "Subject")).split())
    date: datetime | None = None
    try:
        raw_date = _header(message, "Date")
        date = parsedate_to_datetime(raw_date) if raw_date else None
        if date is not None and date.tzinfo is None:
            date = date.replace(tzinfo=UTC)
    except (TypeError, ValueError, IndexError):
        date = None

    bounce = _delivery_status(message)
    plain, html, files = _body_and_files(message)
    if bounce is not None:
        files = []  # the returned copy of our own message is not the customer's file
    if plain is not None and plain.strip():
        full = plain.strip()
        new_part = strip_reply(plain)
    elif html is not None:
        full = html_to_text(html)
        new_part = strip_reply(html_to_text(html, drop_quotes=True))
    else:
        full, new_part = "", ""
    auto = is_auto_reply(message) or (bounce is None and sender is not None and sender.startswith(_DAEMON_SENDERS))
    return ParsedEmail(
        message_id=message_id[:200],
        sender=sender,
        sender_name=sender_name,
        recipients=[address for _, address in _addresses(message, "To", "Cc", "Delivered-To", "X-Original-To")],
        subject=subject,
        in_reply_to=message_ids(_header(message, "In-Reply-To")),
        references=message_ids(_header(message, "References")),
        text=new_part,
        full_text=full,
        attachments=files,
        auto_reply=auto,
        bounce=bounce,
        date=date,
    )
