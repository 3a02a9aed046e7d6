"""Configuring channels over the API, secrets at rest, and replies through the instance a customer wrote to."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from omnicanal.channels import registry
from omnicanal.channels.registry import ChannelType, ConfigKey
from omnicanal.channels.service import ConfiguredChannel
from omnicanal.conversations.inbound import InboundInput
from omnicanal.db import Database, utcnow
from omnicanal.outbox.transports import Envelope, Sent
from omnicanal.outbox.worker import OutboxWorker
from tests.conversations.helpers import API, inbound, messages

SENT: list[tuple[str, Envelope]] = []


class RecordingTransport:
    def __init__(self, channel: ConfiguredChannel) -> None:
        self.channel = channel

    def send(self, envelope: Envelope) -> Sent:
        SENT.append((self.channel.name, envelope))
        return Sent(provider_id=f"rec-{len(SENT)}")


@pytest.fixture(autouse=True)
def echo_type() -> Iterator[ChannelType]:
    kind = registry.register(
        ChannelType(
            name="echo",
            label="Echo",
            delivers=("sms",),
            keys=(
                ConfigKey("token", required=True, secret=True),
                ConfigKey("number", required=True, kind="phone"),
                ConfigKey("api_base_url", kind="url", default="https://echo.example.com/v1"),
                ConfigKey("note"),
            ),
            transport=lambda channel, db: RecordingTransport(channel),
            webhook_paths=("/webhooks/echo/{id}",),
        )
    )
    SENT.clear()
    yield kind
    registry.TYPES.pop("echo", None)


def make_channel(client: TestClient, name: str = "Echo ES", **config: Any) -> dict[str, Any]:
    body = {"type": "echo", "name": name, "config": {"token": "s3cret-token", "number": "+34 600 000 001"} | config}
    response = client.post(f"{API}/channels", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def test_a_channel_is_created_with_defaults_and_its_secrets_are_never_returned(
    client: TestClient, db: Database
) -> None:
    created = make_channel(client)
    assert created["type"] == "echo"
    assert created["config"] == {"number": "+34600000001", "api_base_url": "https://echo.example.com/v1"}
    assert created["secrets_set"] == ["token"]
    assert created["webhook_paths"] == [f"/webhooks/echo/{created['id']}"]
    assert "s3cret-token" not in client.get(f"{API}/channels/{created['id']}").text
    assert "s3cret-token" not in client.get(f"{API}/channels").text
    with db.read() as session:
        stored = session.execute(text("SELECT secrets, config FROM channel_instances")).one()
    assert "s3cret" not in str(stored)  # encrypted at rest


def test_bad_config_gets_a_problem_naming_each_field(client: TestClient) -> None:
    response = client.post(
        f"{API}/channels", json={"type": "echo", "name": "x", "config": {"number": "not a phone", "colour": "red"}}
    )
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"config.number", "config.colour", "config.token"}
    response = client.post(f"{API}/channels", json={"type": "carrier-pigeon", "name": "x", "config": {}})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "type"
    assert client.get(f"{API}/channels").json() == []


def test_patch_changes_what_is_given_and_null_clears_an_optional_key(client: TestClient) -> None:
    created = make_channel(client, note="first")
    response = client.patch(f"{API}/channels/{created['id']}", json={"config": {"note": None}, "name": "Renamed"})
    assert response.status_code == 200, response.text
    assert "note" not in response.json()["config"]
    assert response.json()["secrets_set"] == ["token"]  # the secret is kept
    assert response.json()["name"] == "Renamed"
    response = client.patch(f"{API}/channels/{created['id']}", json={"config": {"token": None}})
    assert response.status_code == 422  # required
    assert client.delete(f"{API}/channels/{created['id']}").status_code == 204
    assert client.get(f"{API}/channels/{created['id']}").status_code == 404


def test_only_roles_allowed_to_manage_channels_see_them(client_as: Callable[[str], TestClient]) -> None:
    assert client_as("agent").get(f"{API}/channels").status_code == 403
    assert client_as("supervisor").post(f"{API}/channels", json={}).status_code == 403


def _worker(client: TestClient) -> OutboxWorker:
    worker: OutboxWorker = client.app.state.outbox_worker  # type: ignore[attr-defined]
    return worker


def _receive(client: TestClient, db: Database, channel_id: str | None, phone: str, text: str) -> None:
    item = InboundInput(
        channel="sms", identities=[("phone", phone)], customer_id=None, text=text, attachments=[],
        external_id=uuid.uuid4().hex, occurred_at=utcnow(),
        channel_instance_id=uuid.UUID(channel_id) if channel_id else None,
    )  # fmt: skip
    with db.write() as session:
        client.app.state.receive_messages(session, [item])  # type: ignore[attr-defined]


def test_a_reply_leaves_through_the_instance_the_customer_wrote_to(client: TestClient, db: Database) -> None:
    make_channel(client, "Echo ES")
    second = make_channel(client, "Echo MX", number="+52 55 1234 5678")
    _receive(client, db, second["id"], "+34611111111", "hola")
    conversation_id = client.get(f"{API}/conversations").json()["items"][0]["id"]
    reply = client.post(f"{API}/conversations/{conversation_id}/messages", json={"text": "¡Hola!"})
    assert reply.status_code == 201, reply.text
    assert reply.json()["channel_instance_id"] == second["id"]
    _worker(client).drain()
    assert [(name, env.payload["to"]) for name, env in SENT] == [("Echo MX", "+34611111111")]
    assert messages(client, conversation_id)[-1]["status"] == "sent"


def test_without_a_known_instance_the_oldest_one_is_used_and_without_any_the_old_transport(
    client: TestClient, db: Database
) -> None:
    inbound(client, channel="sms", identities=[{"type": "phone", "value": "+34622222222"}])
    conversation_id = client.get(f"{API}/conversations").json()["items"][0]["id"]
    client.post(f"{API}/conversations/{conversation_id}/messages", json={"text": "by the log transport"})
    _worker(client).drain()
    assert SENT == []
    assert messages(client, conversation_id)[-1]["status"] == "sent"
    make_channel(client, "Echo ES")
    make_channel(client, "Echo MX", number="+52 55 1234 5678")
    client.post(f"{API}/conversations/{conversation_id}/messages", json={"text": "by the oldest echo"})
    _worker(client).drain()
    assert [name for name, _ in SENT] == ["Echo ES"]


def test_a_lookup_that_raced_a_change_does_not_cache_the_old_answer(client: TestClient, db: Database) -> None:
    from omnicanal.channels.service import directory

    found = directory(db)
    channel_id = uuid.UUID(make_channel(client)["id"])
    real_read = db.read

    def read_then_change() -> Any:
        context = real_read()
        found.invalidate(channel_id)  # a change commits while the lookup reads
        return context

    db.read = read_then_change  # type: ignore[method-assign]
    try:
        assert found.get(channel_id) is not None
    finally:
        db.read = real_read  # type: ignore[method-assign]
    assert found.cached(channel_id) == (False, None)  # the next lookup reads again
    client.patch(f"{API}/channels/{channel_id}", json={"enabled": False})
    assert found.get(channel_id) is None  # a change made through the API is seen at once
