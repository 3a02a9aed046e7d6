"""Realistic emails for the email channel's tests, built as mail programs build them."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate


def customer_email(
    *,
    sender: str = "Ana García <ana@example.com>",
    to: str = "support@shop.example.com",
    subject: str = "My order has not arrived",
    text: str | None = "Hello, my order 1234 has not arrived yet.",
    html: str | None = None,
    message_id: str = "<m1@mail.example.com>",
    in_reply_to: str | None = None,
    references: str | None = None,
    headers: dict[str, str] | None = None,
    attachments: list[tuple[str, str, bytes]] = (),  # type: ignore[assignment]
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    if message_id:
        message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = references
    for name, value in (headers or {}).items():
        message[name] = value
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")
    for name, content_type, data in attachments:
        maintype, subtype = content_type.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes()


def delivery_failure(*, original_message_id: str, recipient: str = "nobody@example.com",
                     status: str = "5.1.1", action: str = "failed") -> bytes:  # fmt: skip
    """A DSN (RFC 3464) as Postfix writes it."""
    boundary = "DSN-boundary-1"
    return (
        "From: MAILER-DAEMON@mx.shop.example.com (Mail Delivery System)\r\n"
        "To: support@shop.example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {formatdate(usegmt=True)}\r\n"
        "Message-ID: <dsn-1@mx.shop.example.com>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.shop.example.com\r\n"
        "Arrival-Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Original-Recipient: rfc822;{recipient}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        "Remote-MTA: dns; mx.example.com\r\n"
        f"Diagnostic-Code: smtp; 550 {status} <{recipient}>: Recipient address rejected: User unknown\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
        "From: support@shop.example.com\r\n"
        f"To: {recipient}\r\n"
        "Subject: Re: My order\r\n"
        f"Message-ID: <{original_message_id}>\r\n\r\n"
        f"--{boundary}--\r\n"
    ).encode()
