"""Shared by the conversation, routing, outbox and real-time tests."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from omnicanal.access.service import create_user
from omnicanal.db import Database
from omnicanal.settings import Settings

API = "/api/v1"
_ids = itertools.count(1)


def conversation_settings(settings: Settings, tmp_path: Path, **changes: Any) -> Settings:
    """The test settings with a private attachments directory and the outbox worker left to the test."""
    values: dict[str, Any] = {"attachments_dir": str(tmp_path / "attachments"), "outbox_in_process": False}
    values.update(changes)
    return settings.model_copy(update=values)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def inbound(
    client: TestClient,
    *,
    channel: str = "whatsapp",
    identities: list[dict[str, str]] | None = None,
    text: str = "Hola",
    external_id: str | None = None,
    occurred_at: str | None = None,
    attachments: list[dict[str, Any]] | None = None,
    expect: int | None = 201,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "channel": channel,
        "identities": identities if identities is not None else [{"type": "whatsapp", "value": "34612345678"}],
        "text": text,
        "external_id": external_id or f"ext-{next(_ids)}-{uuid.uuid4().hex[:8]}",
        "occurred_at": occurred_at or now_iso(),
    }
    if attachments is not None:
        body["attachments"] = attachments
    response = client.post(f"{API}/messages/inbound", json=body)
    if expect is not None:
        assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


def make_staff(db: Database, email: str, *, role: str = "agent", name: str = "") -> uuid.UUID:
    with db.write() as session:
        user = create_user(session, email=email, role=role, password="a long password 123", display_name=name)
        return user.id


def set_agent(client: TestClient, user_id: uuid.UUID, **profile: Any) -> dict[str, Any]:
    response = client.put(f"{API}/agents/{user_id}", json=profile)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def make_team(client: TestClient, name: str, members: list[uuid.UUID], **fields: Any) -> dict[str, Any]:
    response = client.post(f"{API}/teams", json={"name": name, "members": [str(m) for m in members], **fields})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def make_rule(client: TestClient, team_id: str, **conditions: Any) -> dict[str, Any]:
    response = client.post(
        f"{API}/routing-rules", json={"name": conditions.pop("name", "rule"), "team_id": team_id, **conditions}
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def conversation(client: TestClient, conversation_id: str) -> dict[str, Any]:
    response = client.get(f"{API}/conversations/{conversation_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def messages(client: TestClient, conversation_id: str) -> list[dict[str, Any]]:
    response = client.get(f"{API}/conversations/{conversation_id}/messages")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def agents_by_id(client: TestClient) -> dict[str, dict[str, Any]]:
    response = client.get(f"{API}/agents")
    assert response.status_code == 200, response.text
    return {a["user_id"]: a for a in response.json()}


def stamp_head(url: str) -> None:
    """Mark a schema built with ``metadata.create_all`` as migrated, so ``omnicanal`` commands accept it."""
    from alembic import command
    from sqlalchemy import create_engine

    from omnicanal.migrate import alembic_config

    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.stamp(config, "head")
    finally:
        engine.dispose()
