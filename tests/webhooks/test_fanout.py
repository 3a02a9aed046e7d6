"""The fan-out on the hot path: no subscriptions, no queries; a new subscription counts at once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from fastapi import FastAPI
from sqlalchemy import event, func, select

from omnicanal import dispatch
from omnicanal.db import Database
from omnicanal.outbox.models import OutboxItem
from omnicanal.webhooks import service
from omnicanal.webhooks.events import jsonable, matches


def _count_subscription_queries(db: Database) -> list[str]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM webhook_subscriptions" in statement:
            seen.append(statement)

    event.listen(db.write_engine, "before_cursor_execute", record)
    return seen


def _outbox_count(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(OutboxItem)) or 0)


def test_events_cost_no_query_without_subscriptions_and_see_new_ones_at_once(app: FastAPI, db: Database) -> None:
    queries = _count_subscription_queries(db)
    payload = {"id": uuid.uuid4(), "created_at": datetime.now(UTC)}

    with db.write() as session:
        for _ in range(200):
            dispatch.publish(session, "message.received", payload)
    assert len(queries) <= 1
    assert _outbox_count(db) == 0

    # a subscription committed in this process is seen by the next event, not after the cache expires
    with db.write() as session:
        sub = service.create_subscription(
            session, url="https://hooks.example.com/x", event_types=["message.*"], description="", actor="test"
        )
    with db.write() as session:
        for _ in range(50):
            dispatch.publish(session, "message.received", payload)
        dispatch.publish(session, "conversation.created", payload)
    assert _outbox_count(db) == 50
    assert len(queries) <= 2

    with db.read() as session:
        item = session.scalars(select(OutboxItem)).first()
    assert item is not None and item.kind == "webhook" and item.channel == "webhook"
    assert item.subscription_id == sub.id
    assert item.payload["data"] == {"id": str(payload["id"]), "created_at": payload["created_at"].isoformat()}
    assert item.payload["type"] == "message.received" and item.payload["url"] == "https://hooks.example.com/x"

    # and a disabled one stops receiving at once
    with db.write() as session:
        service.update_subscription(session, subscription_id=sub.id, changes={"active": False})
    with db.write() as session:
        dispatch.publish(session, "message.received", payload)
    assert _outbox_count(db) == 50


def test_patterns_and_json_conversion() -> None:
    assert matches("*", "customer.merged") and matches("message.*", "message.read")
    assert not matches("message.*", "messages.read") and not matches("message.read", "message.received")

    class Colour(StrEnum):
        RED = "red"

    value = {"ids": (uuid.UUID(int=1),), "when": datetime(2026, 1, 2, tzinfo=UTC), "c": Colour.RED, 1: {2}}
    assert jsonable(value) == {
        "ids": ["00000000-0000-0000-0000-000000000001"],
        "when": "2026-01-02T00:00:00+00:00",
        "c": "red",
        "1": [2],
    }


def test_private_addresses_are_refused_unless_allowed() -> None:
    from omnicanal.webhooks.transport import private_address_refusal

    assert private_address_refusal("http://127.0.0.1:8080/hook") is not None
    assert private_address_refusal("https://10.1.2.3/hook") is not None
    assert private_address_refusal("https://169.254.169.254/latest/meta-data") is not None
    assert private_address_refusal("https://8.8.8.8/hook") is None
