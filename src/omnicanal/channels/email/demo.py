"""The demo's email channel: mail to soporte@tienda.example is taken in by ``omnicanal email receive``."""

from __future__ import annotations

from sqlalchemy.orm import Session

from omnicanal.channels.catalog import load_adapters
from omnicanal.channels.service import create_instance
from omnicanal.settings import Settings


def load_demo_email(session: Session, settings: Settings) -> str:
    load_adapters()
    # Replies need a real SMTP server: disabled until one is entered in /console/channels (they are logged till then).
    create_instance(
        session, type="email", name="Soporte", settings=settings, enabled=False,
        config={"smtp_host": "smtp.tienda.example", "smtp_port": 587, "username": "soporte@tienda.example",
                "password": "change-me", "from_address": "soporte@tienda.example", "from_name": "Tienda Sol"},
    )  # fmt: skip
    return (
        "Email: `omnicanal email receive --port 2525 --domain tienda.example` takes in mail to "
        "soporte@tienda.example (try: python -m smtplib, or swaks --server 127.0.0.1:2525); enable the "
        "Soporte channel with a real SMTP server to send replies, and set imap_host to poll a mailbox."
    )
