"""The built-in SMTP / LMTP receiver: a mail server (or an MTA relaying over LMTP) hands messages to it.

A message is acknowledged (250) only once it is committed; a failure to store answers 451 so the
sending server tries again later: nothing acknowledged is ever lost. Many messages arriving at once
share the ingest writer's transactions.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy.orm import Session

from omnicanal.channels.email.inbound import EmailOutcome, IncomingEmail, discard, prepare, receive_emails
from omnicanal.db import Database
from omnicanal.settings import Settings
from omnicanal.timeline.writer import IngestWriter

log = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 30 * 1024 * 1024
INLINE_PARSE_BYTES = 32 * 1024


def accept_domains(domains: Sequence[str]) -> Callable[[str], bool]:
    """Accept mail for these domains (and their subdomains); every address when none are given."""
    wanted = tuple(d.strip().lower().lstrip("@") for d in domains if d.strip())

    def accepts(address: str) -> bool:
        if not wanted:
            return True
        domain = address.rsplit("@", 1)[-1].strip().lower().rstrip(">")
        return any(domain == d or domain.endswith("." + d) for d in wanted)

    return accepts


class Mailboxes:
    """The configured email channels' domains (re-read every ``ttl`` seconds), plus any given ones."""

    def __init__(self, database: Database, *, extra_domains: Sequence[str] = (), ttl: float = 30.0) -> None:
        self.database = database
        self.extra = [d.strip().lower().lstrip("@") for d in extra_domains if d.strip()]
        self.ttl = ttl
        self._by_domain: dict[str, uuid.UUID | None] = {}
        self._until = 0.0
        self._lock = threading.Lock()

    @property
    def fresh(self) -> bool:
        return time.monotonic() < self._until

    def _current(self) -> dict[str, uuid.UUID | None]:
        if self.fresh:
            return self._by_domain
        with self._lock:
            if time.monotonic() >= self._until:
                from omnicanal.channels.email.adapter import domains_of, email_channels

                found: dict[str, uuid.UUID | None] = dict.fromkeys(self.extra)
                for channel in reversed(email_channels(self.database)):  # the oldest channel wins a shared domain
                    for domain in domains_of(channel):
                        found[domain] = channel.id
                self._by_domain, self._until = found, time.monotonic() + self.ttl
            return self._by_domain

    def accepts(self, address: str) -> bool:
        return _domain(address) in self._current()

    async def accepts_async(self, address: str) -> bool:
        """From memory, or (every ``ttl`` seconds) after reading the channels in a thread."""
        if self.fresh:
            return self.accepts(address)
        return await asyncio.to_thread(self.accepts, address)

    def instance_for(self, recipients: Sequence[str]) -> uuid.UUID | None:
        current = self._current()
        return next((current[d] for d in map(_domain, recipients) if current.get(d) is not None), None)


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[-1].strip().lower().rstrip(">")


class ReceiverHandler:
    """aiosmtpd handler: checks recipients, stores each message, answers with the outcome."""

    def __init__(
        self, writer: IngestWriter, settings: Settings, *, accepts: Callable[[str], bool | Awaitable[bool]],
        instance_for: Callable[[Sequence[str]], uuid.UUID | None] | None = None, lmtp: bool = False,
    ) -> None:  # fmt: skip
        self.writer = writer
        self.settings = settings
        self.accepts = accepts
        self.instance_for = instance_for
        self.lmtp = lmtp

        def handler(session: Session, items: Sequence[Any]) -> list[Any]:
            return receive_emails(session, items, settings=settings)

        self._store = handler

    async def handle_RCPT(  # noqa: N802 - the name aiosmtpd calls
        self, server: SMTP, session: SmtpSession, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        accepted = self.accepts(address)
        if inspect.isawaitable(accepted):
            accepted = await accepted
        if not accepted:
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
            instance = self.instance_for(recipients) if self.instance_for is not None else None
            if len(raw) <= INLINE_PARSE_BYTES:  # a plain email parses in well under a millisecond
                incoming: IncomingEmail = prepare(
                    raw, recipients=recipients, settings=self.settings, channel_instance_id=instance
                )
            else:  # big ones (files to store) in a thread, so other sessions go on meanwhile
                incoming = await asyncio.to_thread(
                    prepare, raw, recipients=recipients, settings=self.settings, channel_instance_id=instance
                )
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


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # installed with uvicorn[standard]; cuts the cost of each SMTP command
    except ImportError:  # pragma: no cover - depends on the installation
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class ReceiverController(Controller):
    """Runs the receiver on its own event loop thread; ``lmtp=True`` speaks LMTP instead of SMTP."""

    def __init__(self, handler: ReceiverHandler, *, hostname: str, port: int) -> None:
        super().__init__(handler, loop=_new_loop(), hostname=hostname, port=port, data_size_limit=MAX_MESSAGE_BYTES,
                         ready_timeout=10.0)  # fmt: skip
        self._lmtp = handler.lmtp

    def factory(self) -> SMTP:
        server_class = LMTP if self._lmtp else SMTP
        return server_class(self.handler, **self.SMTP_kwargs)
