"""The adapter modules: importing one registers its channel type."""

from __future__ import annotations

import importlib

from omnicanal.channels.registry import TYPES, ChannelType

ADAPTER_MODULES: tuple[str, ...] = (
    "omnicanal.channels.sms.adapter",
    "omnicanal.channels.whatsapp.adapter",
    "omnicanal.channels.telegram.adapter",
    "omnicanal.channels.meta.adapter",
    "omnicanal.channels.apps.adapter",
    "omnicanal.channels.push.adapter",
    "omnicanal.channels.voice.adapter",
    "omnicanal.channels.email.adapter",
    "omnicanal.channels.webchat.adapter",
)


def load_adapters() -> dict[str, ChannelType]:
    """Import every adapter (once; later calls find them registered)."""
    for module in ADAPTER_MODULES:
        importlib.import_module(module)
    return TYPES
