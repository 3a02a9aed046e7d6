"""How the console shows a channel: a translatable name and an inline SVG icon."""

from __future__ import annotations

from dataclasses import dataclass


def N_(message: str) -> str:  # noqa: N802 - the gettext marker Babel looks for
    """Mark a string for translation without translating it now."""
    return message


@dataclass(frozen=True)
class ChannelStyle:
    label: str
    icon: str


CHANNELS: dict[str, ChannelStyle] = {
    "web": ChannelStyle(N_("Web"), "globe"),
    "app": ChannelStyle(N_("Mobile app"), "mobile"),
    "store": ChannelStyle(N_("Store"), "store"),
    "pos": ChannelStyle(N_("Point of sale"), "card"),
    "call_center": ChannelStyle(N_("Call center"), "headset"),
    "phone": ChannelStyle(N_("Phone"), "phone"),
    "email": ChannelStyle(N_("Email"), "mail"),
    "sms": ChannelStyle(N_("SMS"), "sms"),
    "whatsapp": ChannelStyle(N_("WhatsApp"), "whatsapp"),
    "telegram": ChannelStyle(N_("Telegram"), "telegram"),
    "facebook": ChannelStyle(N_("Facebook"), "facebook"),
    "instagram": ChannelStyle(N_("Instagram"), "instagram"),
    "x": ChannelStyle(N_("X"), "x"),
    "social": ChannelStyle(N_("Social media"), "share"),
    "push": ChannelStyle(N_("Push notification"), "bell"),
    "postal": ChannelStyle(N_("Postal mail"), "postal"),
    "api": ChannelStyle(N_("API"), "code"),
    "console": ChannelStyle(N_("Console"), "monitor"),
    "system": ChannelStyle(N_("System"), "gear"),
    "note": ChannelStyle(N_("Private note"), "lock"),
}

UNKNOWN = ChannelStyle(N_("Other"), "dot")

# Identity types the console names (the value is shown as stored).
IDENTITY_LABELS: dict[str, str] = {
    "email": N_("Email"),
    "phone": N_("Phone"),
    "loyalty_card": N_("Loyalty card"),
    "device_id": N_("Device"),
    "external": N_("External id"),
    "whatsapp": N_("WhatsApp"),
    "telegram": N_("Telegram"),
    "facebook": N_("Facebook"),
    "instagram": N_("Instagram"),
    "x": N_("X"),
}

CONSENT_PURPOSES: dict[str, str] = {
    "marketing": N_("Marketing"),
    "transactional": N_("Transactional"),
    "surveys": N_("Surveys"),
}

CONSENT_STATUSES: dict[str, str] = {
    "granted": N_("Granted"),
    "denied": N_("Denied"),
    "withdrawn": N_("Withdrawn"),
}

ROLE_LABELS: dict[str, str] = {
    "admin": N_("Administrator"),
    "supervisor": N_("Supervisor"),
    "agent": N_("Agent"),
    "store_clerk": N_("Store clerk"),
    "marketer": N_("Marketer"),
    "analyst": N_("Analyst"),
}


CONVERSATION_STATUSES: dict[str, str] = {
    "open": N_("Open"),
    "pending": N_("Pending"),
    "snoozed": N_("Snoozed"),
    "resolved": N_("Resolved"),
}

DELIVERY_STATUSES: dict[str, str] = {
    "received": N_("Received"),
    "queued": N_("Queued"),
    "sent": N_("Sent"),
    "delivered": N_("Delivered"),
    "read": N_("Read"),
    "failed": N_("Failed"),
    "stored": N_("Saved"),
}

PRIORITIES: dict[str, str] = {
    "low": N_("Low"),
    "normal": N_("Normal"),
    "high": N_("High"),
    "urgent": N_("Urgent"),
}

OUTBOX_STATES: dict[str, str] = {
    "pending": N_("Pending"),
    "sending": N_("Sending"),
    "sent": N_("Sent"),
    "dead": N_("Dead letter"),
}


def channel_style(channel: str) -> ChannelStyle:
    return CHANNELS.get(channel, UNKNOWN)
