"""IMAP polling: unseen messages of a mailbox are taken in, then flagged as seen.

A message is flagged only after it is committed; if the poller dies in between, the next poll
reads it again and it is recognized as a duplicate by its Message-ID.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import re
import ssl
import uuid
from dataclasses import dataclass, field

from omnicanal.channels.email.inbound import EmailOutcome, discard, prepare, receive_emails
from omnicanal.channels.email.outbound import ChannelConfig
from omnicanal.db import Database
from omnicanal.settings import Settings

log = logging.getLogger(__name__)
BATCH = 50


@dataclass
class PollReport:
    seen: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: EmailOutcome) -> None:
        self.seen += 1
        self.outcomes[outcome.outcome] = self.outcomes.get(outcome.outcome, 0) + 1


def connect(config: ChannelConfig, *, timeout: float = 30.0) -> imaplib.IMAP4:
    host = str(config["imap_host"])
    security = str(config.get("imap_security") or "tls")
    port = int(config.get("imap_port") or (993 if security == "tls" else 143))
    context = ssl.create_default_context()
    client: imaplib.IMAP4
    if security == "tls":
        client = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=timeout)
    else:
        client = imaplib.IMAP4(host, port, timeout=timeout)
        if security == "starttls":
            client.starttls(ssl_context=context)
    username = config.get("imap_username") or config.get("username")
    password = config.get("imap_password") or config.get("password")
    client.login(str(username), str(password or ""))
    return client


_UID = re.compile(rb"UID (\d+)")


def poll_once(
    config: ChannelConfig, database: Database, settings: Settings, *, channel_instance_id: uuid.UUID | None = None
) -> PollReport:
    """Take in every unseen message of the configured folder (``imap_folder``, default INBOX)."""
    report = PollReport()
    client = connect(config)
    try:
        status, _ = client.select(str(config.get("imap_folder") or "INBOX"))
        if status != "OK":
            raise RuntimeError(f"cannot open IMAP folder {config.get('imap_folder') or 'INBOX'}")
        status, data = client.uid("SEARCH", "UNSEEN")
        uids = (data[0] or b"").split() if status == "OK" and data else []
        for start in range(0, len(uids), BATCH):
            chunk = uids[start : start + BATCH]
            status, fetched = client.uid("FETCH", b",".join(chunk).decode(), "(UID BODY.PEEK[])")
            if status != "OK":
                raise RuntimeError("IMAP FETCH failed")
            items, taken = [], []
            for part in fetched:
                if not isinstance(part, tuple):
                    continue
                uid = _UID.search(part[0])
                if uid is None:
                    continue
                items.append(prepare(bytes(part[1]), settings=settings, channel_instance_id=channel_instance_id))
                taken.append(uid.group(1))
            try:
                with database.write() as session:
                    outcomes = receive_emails(session, items, settings=settings)
            except BaseException:
                for item in items:
                    discard(item, settings=settings)
                raise
            for item, outcome in zip(items, outcomes, strict=True):
                report.add(outcome)
                if outcome.outcome != "stored":
                    discard(item, settings=settings)
            if taken:
                client.uid("STORE", b",".join(taken).decode(), "+FLAGS", "(\\Seen)")
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()
    log.info("IMAP poll: %d messages %s", report.seen, report.outcomes)
    return report
