"""Agents answer on any channel the customer can be reached on; notes, states, SLA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omnicanal.conversations import inbox, service
from omnicanal.conversations.models import Conversation, Message
from omnicanal.db import Database
from omnicanal.outbox.models import OutboxItem
from tests.conversations.helpers import API, conversation, inbound, make_staff, make_team, messages

ANA = [{"type": "whatsapp", "value": "34612345678"}, {"type": "email", "value": "ana@example.com"}]


def reply(client: TestClient, conversation_id: str, expect: int = 201, **body: Any) -> dict[str, Any]:
    response = client.post(f"{API}/conversations/{conversation_id}/messages", json=body)
    assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


def outbox_count(db: Database) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(OutboxItem)) or 0


def test_reply_defaults_to_last_channel_and_is_sent_by_the_worker(client: TestClient, app: Any, db: Database) -> None:
    inbound(client, channel="email", identities=ANA, text="first by email")
    conversation_id = inbound(client, channel="whatsapp", identities=ANA[:1], text="then WhatsApp")["conversation_id"]
    message = reply(client, conversation_id, text="Hola Ana")
    assert (message["channel"], message["direction"], message["status"]) == ("whatsapp", "outbound", "queued")
    app.state.outbox_worker.drain()
    (after,) = [m for m in messages(client, conversation_id) if m["id"] == message["id"]]
    assert after["status"] == "sent"
    assert after["provider_message_id"]
    assert conversation(client, conversation_id)["first_response_at"] is not None


def test_reply_on_another_channel_where_the_customer_has_an_identity(client: TestClient, db: Database) -> None:
    conversation_id = inbound(client, channel="whatsapp", identities=ANA)["conversation_id"]
    message = reply(client, conversation_id, text="Te lo mando por email", channel="email")
    assert message["channel"] == "email"
    with db.read() as session:
        item = session.scalar(select(OutboxItem).where(OutboxItem.message_id == _uuid(message["id"])))
        assert item is not None
        assert item.payload["to"] == "ana@example.com" and item.payload["format"] == "html"


def test_reply_options_and_the_whatsapp_window(client: TestClient, db: Database) -> None:
    # Ana has a WhatsApp identity but wrote only by email: WhatsApp takes templates only
    conversation_id = inbound(client, channel="email", identities=ANA)["conversation_id"]
    options = {o["channel"]: o for o in client.get(f"{API}/conversations/{conversation_id}/reply-options").json()}
    assert options["email"]["available"] is True and options["email"]["address"] == "ana@example.com"
    assert options["whatsapp"]["available"] is False and options["whatsapp"]["template_only"] is True
    assert "template" in options["whatsapp"]["reason"]
    assert options["sms"]["available"] is True  # the WhatsApp id is a phone number too
    assert options["telegram"]["available"] is False and "telegram" in options["telegram"]["reason"]
    assert options["phone"]["available"] is False

    before = outbox_count(db)
    refused = client.post(f"{API}/conversations/{conversation_id}/messages", json={"text": "hi", "channel": "whatsapp"})
    assert refused.status_code == 409, refused.text
    assert "template" in refused.json()["detail"]
    unreachable = client.post(f"{API}/conversations/{conversation_id}/messages", json={"text": "hi", "channel": "x"})
    assert unreachable.status_code == 409 and "no x identity" in unreachable.json()["detail"]
    unknown = client.post(f"{API}/conversations/{conversation_id}/messages", json={"text": "hi", "channel": "fax"})
    assert unknown.status_code == 422 and "fax" in unknown.json()["detail"]
    empty = client.post(f"{API}/conversations/{conversation_id}/messages", json={"text": "  "})
    assert empty.status_code == 422
    neither = client.post(f"{API}/conversations/{conversation_id}/messages", json={})
    assert neither.status_code == 422
    assert outbox_count(db) == before
    assert [m["direction"] for m in messages(client, conversation_id)] == ["inbound"]

    # once she writes on WhatsApp the window is open, for 24 hours
    inbound(client, channel="whatsapp", identities=ANA[:1])
    assert reply(client, conversation_id, text="ok", channel="whatsapp")["channel"] == "whatsapp"
    with db.read() as session:
        stored = session.get(Conversation, service.get_conversation(session, _uuid(conversation_id)).id)
        assert stored is not None
        later = {
            o.channel: o for o in service.channel_options(session, stored, now=datetime.now(UTC) + timedelta(hours=25))
        }
        assert later["whatsapp"].available is False and later["email"].available is True


def test_whatsapp_window_counts_from_when_the_customer_wrote(client: TestClient) -> None:
    long_ago = (datetime.now(UTC) - timedelta(hours=30)).isoformat()
    conversation_id = inbound(client, channel="whatsapp", identities=ANA[:1], occurred_at=long_ago)["conversation_id"]
    refused = client.post(f"{API}/conversations/{conversation_id}/messages", json={"text": "hola"})
    assert refused.status_code == 409, refused.text


def _uuid(value: str) -> Any:
    import uuid

    return uuid.UUID(value)


def test_private_note_with_mentions_is_not_sent(client: TestClient, db: Database) -> None:
    maria = make_staff(db, "maria.lopez@shop.example", name="María")
    make_staff(db, "pedro@shop.example")
    conversation_id = inbound(client)["conversation_id"]
    before = outbox_count(db)
    note = reply(client, conversation_id, text="@maria.lopez can you check the refund? cc @nobody", private=True)
    assert note["private"] is True and note["channel"] == "note" and note["direction"] == "internal"
    assert note["mentions"] == [str(maria)]
    assert outbox_count(db) == before
    assert conversation(client, conversation_id)["first_response_at"] is None


def test_status_transitions(client: TestClient) -> None:
    conversation_id = inbound(client)["conversation_id"]

    def status(expect: int, **body: Any) -> dict[str, Any]:
        response = client.post(f"{API}/conversations/{conversation_id}/status", json=body)
        assert response.status_code == expect, response.text
        result: dict[str, Any] = response.json()
        return result

    assert status(200, status="pending")["status"] == "pending"
    assert "future" in status(422, status="snoozed", snooze_until="2020-01-01T00:00:00Z")["detail"]
    assert "snooze_until" in status(422, status="snoozed")["detail"]
    assert status(422, status="open", snooze_until="2099-01-01T00:00:00Z")["status"] == 422
    assert status(422, status="closed")["status"] == 422
    wake = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    snoozed = status(200, status="snoozed", snooze_until=wake)
    assert snoozed["status"] == "snoozed" and snoozed["snooze_until"] is not None
    resolved = status(200, status="resolved")
    assert resolved["resolved_at"] is not None and resolved["snooze_until"] is None
    problem = status(409, status="pending")
    assert "resolved" in problem["detail"]
    assert status(409, status="resolved")["status"] == 409
    assert conversation(client, conversation_id)["status"] == "resolved"
    assert status(200, status="open")["resolved_at"] is None
    missing = client.post(f"{API}/conversations/0190a0a0-0000-7000-8000-000000000000/status", json={"status": "open"})
    assert missing.status_code == 404


def test_snoozed_conversation_wakes_up(client: TestClient, db: Database) -> None:
    conversation_id = inbound(client)["conversation_id"]
    wake = datetime.now(UTC) + timedelta(minutes=5)
    client.post(
        f"{API}/conversations/{conversation_id}/status", json={"status": "snoozed", "snooze_until": wake.isoformat()}
    )
    with db.write() as session:
        assert service.wake_snoozed(session) == 0
    with db.write() as session:
        assert service.wake_snoozed(session, now=wake + timedelta(seconds=1)) == 1
    woken = conversation(client, conversation_id)
    assert woken["status"] == "open" and woken["snooze_until"] is None


def test_customer_writing_wakes_a_snoozed_conversation(client: TestClient) -> None:
    conversation_id = inbound(client)["conversation_id"]
    wake = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    client.post(f"{API}/conversations/{conversation_id}/status", json={"status": "snoozed", "snooze_until": wake})
    assert inbound(client)["conversation_id"] == conversation_id
    assert conversation(client, conversation_id)["status"] == "open"


def test_sla_due_times_and_breach_flags(client: TestClient, db: Database) -> None:
    agent = make_staff(db, "agent@shop.example")
    team = make_team(client, "Soporte", [agent], sla_first_response_minutes=10, sla_resolution_minutes=60)
    client.post(f"{API}/routing-rules", json={"name": "all", "team_id": team["id"]})
    conversation_id = inbound(client)["conversation_id"]
    fresh = conversation(client, conversation_id)
    assert fresh["team_id"] == team["id"]
    sla = fresh["sla"]
    assert sla["first_response_due_at"] and sla["resolution_due_at"]
    assert not sla["first_response_breached"] and not sla["resolution_breached"]
    with db.read() as session:
        stored = session.get(Conversation, _uuid(conversation_id))
        assert stored is not None
        late = inbox.conversation_out(stored, now=datetime.now(UTC) + timedelta(minutes=11)).sla
        assert late.first_response_breached and not late.resolution_breached
        later = inbox.conversation_out(stored, now=datetime.now(UTC) + timedelta(minutes=61)).sla
        assert later.resolution_breached
    reply(client, conversation_id, text="on it", channel="whatsapp")
    with db.read() as session:
        stored = session.get(Conversation, _uuid(conversation_id))
        assert stored is not None
        answered = inbox.conversation_out(stored, now=datetime.now(UTC) + timedelta(minutes=11)).sla
        assert not answered.first_response_breached


def test_list_filters_and_pagination(client: TestClient, db: Database) -> None:
    agent = make_staff(db, "agent@shop.example")
    ids = [
        inbound(client, channel="sms", identities=[{"type": "phone", "value": f"61234560{n}"}])["conversation_id"]
        for n in range(3)
    ]
    email_id = inbound(client, channel="email", identities=[{"type": "email", "value": "b@example.com"}])[
        "conversation_id"
    ]
    assigned = client.post(f"{API}/conversations/{ids[0]}/assign", json={"agent_id": str(agent)})
    assert assigned.status_code == 200, assigned.text
    client.post(f"{API}/conversations/{ids[1]}/status", json={"status": "resolved"})

    def listed(**params: Any) -> list[str]:
        response = client.get(f"{API}/conversations", params=params)
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["items"]]

    assert listed() == [email_id, *reversed(ids)]
    assert listed(channel="email") == [email_id]
    assert listed(status="resolved") == [ids[1]]
    assert listed(assignee=str(agent)) == [ids[0]]
    assert ids[0] not in listed(assignee="none")
    customer_id = conversation(client, email_id)["customer_id"]
    assert listed(customer_id=customer_id) == [email_id]
    page = client.get(f"{API}/conversations", params={"limit": 2}).json()
    rest = client.get(f"{API}/conversations", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [c["id"] for c in page["items"] + rest["items"]] == [email_id, *reversed(ids)]
    assert client.get(f"{API}/conversations", params={"status": "closed"}).status_code == 422
    assert client.get(f"{API}/conversations", params={"assignee": "bob"}).status_code == 422
    assert client.get(f"{API}/conversations/0190a0a0-0000-7000-8000-000000000000").status_code == 404


def test_agent_role_cannot_assign(client_as: Any, client: TestClient) -> None:
    conversation_id = inbound(client)["conversation_id"]
    agent_client = client_as("agent")
    response = agent_client.post(f"{API}/conversations/{conversation_id}/assign", json={"team_id": None})
    assert response.status_code == 403


def test_message_counts_unchanged_by_refusals(client: TestClient, db: Database) -> None:
    conversation_id = inbound(client)["conversation_id"]
    with db.read() as session:
        before = session.scalar(select(func.count()).select_from(Message))
    client.post(f"{API}/conversations/{conversation_id}/status", json={"status": "resolved"})
    for body in ({"status": "pending"}, {"status": "snoozed", "snooze_until": "2099-01-01T00:00:00Z"}):
        assert client.post(f"{API}/conversations/{conversation_id}/status", json=body).status_code == 409
    assert conversation(client, conversation_id)["status"] == "resolved"
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == before


def test_reply_with_an_answer_is_formatted_for_the_channel_it_leaves_on(client: TestClient, db: Database) -> None:
    answer = client.post(
        f"{API}/answers",
        json={"title": "Pedido", "body": "Hola {{customer.first_name}}, tu pedido **{{order.number}}** sale hoy.",
              "language": "es", "tags": [], "shortcut": "pedido"},
    )  # fmt: skip
    assert answer.status_code == 201, answer.text
    conversation_id = inbound(client, channel="whatsapp", identities=ANA)["conversation_id"]
    context = {"customer": {"first_name": "Ana"}, "order": {"number": "A-1"}}
    default = reply(client, conversation_id, answer_id=answer.json()["id"], context=context)
    assert default["channel"] == "whatsapp"
    assert default["text"] == "Hola Ana, tu pedido *A-1* sale hoy."
    by_email = reply(client, conversation_id, answer_id=answer.json()["id"], context=context, channel="email")
    assert by_email["text"] == "Hola Ana, tu pedido A-1 sale hoy."
    both = client.post(
        f"{API}/conversations/{conversation_id}/messages", json={"text": "x", "answer_id": answer.json()["id"]}
    )
    assert both.status_code == 422


def test_a_retried_reply_with_the_same_idempotency_key_is_sent_once(client: TestClient, db: Database) -> None:
    conversation_id = inbound(client)["conversation_id"]
    path = f"{API}/conversations/{conversation_id}/messages"
    first = client.post(path, json={"text": "Hola"}, headers={"Idempotency-Key": "reply-1"})
    again = client.post(path, json={"text": "Hola"}, headers={"Idempotency-Key": "reply-1"})
    assert first.status_code == again.status_code == 201, again.text
    assert first.json()["id"] == again.json()["id"]
    assert outbox_count(db) == 1
    other = client.post(path, json={"text": "Adiós"}, headers={"Idempotency-Key": "reply-1"})
    assert other.status_code == 409
    assert [m["direction"] for m in messages(client, conversation_id)] == ["inbound", "outbound"]


def _age_resolution_clock(db: Database, conversation_id: str, *, hours: int) -> None:
    """As if the conversation had been opened ``hours`` ago: its resolution target has long passed."""
    with db.write() as session:
        stored = session.get(Conversation, _uuid(conversation_id))
        assert stored is not None
        stored.resolution_due_at = datetime.now(UTC) - timedelta(hours=hours)


def test_a_reopened_conversation_gets_a_new_resolution_target(client: TestClient, db: Database) -> None:
    agent = make_staff(db, "agent@shop.example")
    team = make_team(client, "Soporte", [agent], sla_resolution_minutes=60)
    client.post(f"{API}/routing-rules", json={"name": "all", "team_id": team["id"]})
    conversation_id = inbound(client, text="¿Dónde está mi pedido?")["conversation_id"]
    _age_resolution_clock(db, conversation_id, hours=5)
    resolved = client.post(f"{API}/conversations/{conversation_id}/status", json={"status": "resolved"})
    assert resolved.status_code == 200, resolved.text

    assert inbound(client, text="Sigue sin llegar")["conversation_id"] == conversation_id  # the customer reopens it
    reopened = conversation(client, conversation_id)
    assert reopened["status"] == "open"
    assert not reopened["sla"]["resolution_breached"]
    due = datetime.fromisoformat(reopened["sla"]["resolution_due_at"])
    assert timedelta(minutes=55) < due - datetime.now(UTC) <= timedelta(minutes=60)

    _age_resolution_clock(db, conversation_id, hours=5)
    client.post(f"{API}/conversations/{conversation_id}/status", json={"status": "resolved"})
    again = client.post(f"{API}/conversations/{conversation_id}/status", json={"status": "open"})  # an agent reopens
    assert again.status_code == 200, again.text
    assert not again.json()["sla"]["resolution_breached"]
