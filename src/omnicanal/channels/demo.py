"""Demo channels: an app/POS API channel ready to use, and the messaging channels to fill in and enable."""

from __future__ import annotations

from sqlalchemy.orm import Session

from omnicanal.channels.catalog import load_adapters
from omnicanal.channels.service import create_instance
from omnicanal.settings import Settings

DEMO_API_KEY = "oc-demo-pos-key"  # printed for the demo on purpose


def load_demo_channels(session: Session, settings: Settings) -> str:
    load_adapters()
    api = create_instance(
        session, type="api", name="Demo POS and app", settings=settings,
        config={"api_key": DEMO_API_KEY, "message_channels": ["app", "store"]},
    )  # fmt: skip
    # Real providers, placeholder credentials: disabled until real ones are entered in /console/channels.
    placeholders = {
        "sms": {"account_sid": "AC" + "0" * 32, "auth_token": "change-me", "from_number": "+34600000000"},
        "whatsapp": {"phone_number_id": "000000000000000", "app_secret": "change-me", "verify_token": "change-me",
                     "access_token": "change-me"},
        "telegram": {"bot_token": "000000:change-me", "secret_token": "change-me", "bot_username": "DemoBot"},
        "meta": {"page_id": "000000000000", "app_secret": "change-me", "verify_token": "change-me",
                 "page_access_token": "change-me"},
    }  # fmt: skip
    for kind, config in placeholders.items():
        create_instance(session, type=kind, name=f"Demo {kind}", config=config, settings=settings, enabled=False)
    return (
        f"Channels: POST /webhooks/api/{api.id} with 'Authorization: Bearer {DEMO_API_KEY}' posts app/POS messages; "
        "SMS, WhatsApp, Telegram and Messenger/Instagram wait for real credentials in /console/channels."
    )
