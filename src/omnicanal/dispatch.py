"""In-process dispatcher of domain events, run inside the caller's transaction.

Domains publish facts (``customer.merged``) and subscribe to other domains' facts without
importing each other. Handlers run synchronously, in the same session, so their writes
commit or roll back with the command that caused them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

Handler = Callable[[Session, dict[str, Any]], None]

_handlers: dict[str, list[Handler]] = defaultdict(list)


def subscribe(event_name: str, handler: Handler) -> None:
    if handler not in _handlers[event_name]:
        _handlers[event_name].append(handler)


def publish(session: Session, event_name: str, payload: dict[str, Any]) -> None:
    for handler in list(_handlers.get(event_name, ())):
        handler(session, payload)
