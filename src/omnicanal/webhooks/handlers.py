"""Wiring: every published event type fans out to subscriptions; a 410 Gone disables one."""

from __future__ import annotations

from omnicanal import dispatch
from omnicanal.outbox.service import on_outcome
from omnicanal.webhooks.fanout import HANDLERS, KIND
from omnicanal.webhooks.service import delivery_dead


def register() -> None:
    for event_type, handler in HANDLERS.items():
        dispatch.subscribe(event_type, handler)
    on_outcome(KIND, dead=delivery_dead)
