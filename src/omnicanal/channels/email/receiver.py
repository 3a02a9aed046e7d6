"""The built-in SMTP / LMTP receiver: a mail server (or an MTA relaying over LMTP) hands messages to it.

A message is acknowledged (250) only once it is committed; a failure to store answers 451 so the
sending server tries again later: nothing acknowledged is ever lost. Many messages arriving at once
share the ingest writer's transactions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy.orm import Session

from omnicanal.channels.email.inbound import EmailOutcome, IncomingEmail, discard, prepare, receive_emails
from omnicanal.settings import Settings
from omnicanal.timeline.writer import IngestWriter

log = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 30 * 1024 * 1024


def accept_domains(domains: Sequence[str]) -> Callable[[str], bool]:
    """Accept mail for these domains (and their subdomains); every address when none are given."""
    wanted = tuple(d.strip().lower().lstrip("@") for d in domains if d.strip())

    def accepts(address: str) -> bool:
        if not wanted:
            return True
        domain = address.rsplit("@", 1)[-1].strip().lower().rstrip(">")
        return any(domain == d or domain.endswith("." + d) for d in wanted)

    return accepts


class ReceiverHandler:
    """aiosmtpd handler: checks recipients, stores each message, answers with the outcome."""

    def __init__(self, writer: IngestWriter, settings: Settings, *, accepts: Callable[[str], bool],
                 lmtp: bool = False) -> None:  # fmt: skip
        self.writer = writer
        self.settings = settings
        self.accepts = accepts
        self.lmtp = lmtp

        def handler(session: Session, items: Sequence[Any]) -> list[Any]:
            return receive_emails(session, items, settings=settings)

        self._store = handler

    async def handle_RCPT(  # noqa: N802 - the name aiosmtpd calls
        self, server: SMTP, session: SmtpSession, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if not self.accepts(address):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", errors="surrogateescape")
        assert raw is not None
        reply = await self.store(bytes(raw), list(envelope.rcpt_tos))
        if self.lmtp:  # LMTP answers once per recipient
            return "\r\n".join([reply] * max(1, len(envelope.rcpt_tos)))
        return reply

    async def store(self, raw: bytes, recipients: list[str]) -> str:
        try:
            incoming: IncomingEmail = await asyncio.to_thread(prepare, raw, recipients=recipients,
                                                              settings=self.settings)  # fmt: skip
        except Exception:
            log.exception("could not read an incoming email")
            return "451 4.3.0 could not read the message; try again later"
        try:
            (outcome,) = await self.writer.run(self._store, [incoming])
        except Exception:
            discard(incoming, settings=self.settings)
            log.exception("could not store an incoming email")
            return "451 4.3.0 temporary failure; try again later"
        assert isinstance(outcome, EmailOutcome)
        if outcome.outcome != "stored":
            discard(incoming, settings=self.settings)
        if outcome.outcome == "rejected":
            log.info("incoming email refused: %s", outcome.detail)
            return f"550 5.6.0 {outcome.detail or 'message refused'}"
        return f"250 2.0.0 {outcome.outcome}"


class ReceiverController(Controller):
    """Runs the receiver on its own event loop thread; ``lmtp=True`` speaks LMTP instead of SMTP."""

    def __init__(self, handler: ReceiverHandler, *, hostname: str, port: int) -> None:
        super().__init__(handler, hostname=hostname, port=port, data_size_limit=MAX_MESSAGE_BYTES,
                         ready_timeout=10.0)  # fmt: skip
        self._lmtp = handler.lmtp

    def factory(self) -> SMTP:
        server_class = LMTP if self._lmtp else SMTP
        return server_class(self.handler, **self.SMTP_kwargs)
