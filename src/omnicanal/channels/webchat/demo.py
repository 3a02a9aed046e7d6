"""The demo's web chat: a channel and a page that embeds it (``/widget/preview/{id}``)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from omnicanal.channels.catalog import load_adapters
from omnicanal.channels.service import create_instance
from omnicanal.settings import Settings

DEMO_IDENTITY_SECRET = "demo-web-chat-identity-secret"  # noqa: S105 - printed for the demo on purpose


def load_demo_webchat(session: Session, settings: Settings) -> str:
    load_adapters()
    channel = create_instance(
        session, type="webchat", name="Tienda web", settings=settings,
        config={"title": "Tienda Sol", "greeting": "¡Hola! ¿En qué podemos ayudarte?",
                "identity_secret": DEMO_IDENTITY_SECRET},
    )  # fmt: skip
    return (
        f"Web chat: open /widget/preview/{channel.id} and write; answer from /console/inbox. "
        f'Your site embeds it with <script src="http://HOST/widget.js" data-channel="{channel.id}" async></script>'
    )
