"""The email channel type: its settings, its SMTP transport, and the mailboxes the receiver and poller serve."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from omnicanal.channels.email.models import EmailHeader
from omnicanal.channels.email.outbound import SmtpTransport, domain_of
from omnicanal.channels.registry import ChannelType, ConfigKey, register
from omnicanal.channels.service import ConfiguredChannel, directory, list_instances
from omnicanal.db import Database
from omnicanal.errors import ValidationFailed
from omnicanal.privacy import service as privacy

_ADDRESS = re.compile(r"^[^@\s]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,63}$")


def _check(config: dict[str, Any]) -> None:
    if not _ADDRESS.match(str(config.get("from_address", ""))):
        raise ValidationFailed.on_field("config.from_address", "must be an email address, e.g. support@shop.example")
    if config.get("username") and not config.get("password"):
        raise ValidationFailed.on_field("config.password", "is required with a username")


def _transport(channel: ConfiguredChannel, database: Database) -> SmtpTransport:
    return SmtpTransport(channel, database, secret=database.settings.secret_key)


EMAIL = register(
    ChannelType(
        name="email",
        label="Email",
        delivers=("email",),
        keys=(
            ConfigKey("smtp_host", required=True, help="outgoing mail server"),
            ConfigKey("smtp_port", kind="int", default=587),
            ConfigKey("smtp_security", default="starttls", choices=("starttls", "tls", "none")),
            ConfigKey("username", help="SMTP (and IMAP) login"),
            ConfigKey("password", secret=True),
            ConfigKey("from_address", required=True, help="replies come from this address"),
            ConfigKey("from_name"),
            ConfigKey("reply_domain", help="domain of the reply+… addresses; default: that of from_address"),
            ConfigKey("imap_host", help="poll this mailbox for incoming mail (optional)"),
            ConfigKey("imap_port", kind="int"),
            ConfigKey("imap_security", default="tls", choices=("tls", "starttls", "none")),
            ConfigKey("imap_username", help="default: username"),
            ConfigKey("imap_password", secret=True),
            ConfigKey("imap_folder", default="INBOX"),
        ),
        transport=_transport,
        check=_check,
    )
)


def _erase_subjects(session: Session, tree: set[uuid.UUID]) -> None:
    """Erasure: what the customer wrote in a subject line goes with the rest of their words."""
    session.execute(update(EmailHeader).where(EmailHeader.customer_id.in_(tree)).values(subject=""))


def _export_subjects(session: Session, tree: set[uuid.UUID]) -> list[dict[str, Any]]:
    rows = session.execute(
        select(EmailHeader.subject, EmailHeader.created_at, EmailHeader.conversation_id)
        .where(EmailHeader.customer_id.in_(tree))
        .order_by(EmailHeader.created_at)
    )
    return [{"subject": subject, "received_at": when, "conversation_id": conversation}
            for subject, when, conversation in rows]  # fmt: skip


privacy.register("email", exporter=_export_subjects, eraser=_erase_subjects)


def email_channels(database: Database) -> list[ConfiguredChannel]:
    """Every enabled email channel, with its secrets."""
    with database.read() as session:
        ids = [row.id for row in list_instances(session, type="email") if row.enabled]
    found = directory(database)
    return [channel for channel in (found.get(i) for i in ids) if channel is not None]


def domains_of(channel: ConfiguredChannel) -> set[str]:
    """The domains mail for this channel arrives at: its address's and its reply addresses'."""
    domains = {domain_of(str(channel["from_address"]))}
    if channel.get("reply_domain"):
        domains.add(str(channel["reply_domain"]).lower())
    return domains
