"""The inbox, the conversation view, supervision and the outbox, over both databases."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy import select

from omnicanal.conversations.models import Conversation, Message
from omnicanal.db import Database, utcnow
from omnicanal.outbox.models import OutboxItem
from omnicanal.outbox.service import claim_due, enqueue, record_failure
from omnicanal.realtime import Broadcaster
from omnicanal.settings import Settings
from tests.console.helpers import (
    log_in,
    make_answer,
    make_customer,
    make_team,
    make_user,
    receive_message,
    user_id,
)

ANA = [("email", "ana@example.com"), ("phone", "+34612345678")]


def _ana_writes(db: Database, settings: Settings, text: str = "Hola, ¿a qué hora abrís?") -> uuid.UUID:
    make_customer(db, settings, first="Ana", last="García", identities=ANA)
    conversation_id, _ = receive_message(db, settings, channel="whatsapp", identities=[("phone", "+34612345678")],
                                         text=text)  # fmt: skip
    return conversation_id


def _messages(db: Database, conversation_id: uuid.UUID) -> list[Message]:
    with db.read() as session:
        return list(
            session.scalars(
                select(Message).where(Message.conversation_id == conversation_id).order_by(Message.created_at)
            )
        )


def _conversation(db: Database, conversation_id: uuid.UUID) -> Conversation:
    with db.read() as session:
        found = session.get(Conversation, conversation_id)
        assert found is not None
        session.expunge(found)
        return found


def _flash(html: str) -> list[str]:
    return [re.sub(r"\s+", " ", text).strip() for text in re.findall(r'class="flash flash-\w+"[^>]*>([^<]*)<', html)]


def test_agents_land_in_the_inbox_and_analysts_in_customer_search(app: Any, db: Database) -> None:
    agent = log_in(app, db, role="agent")
    assert agent.client.get("/console", follow_redirects=False).headers["location"] == "/console/inbox"
    page = agent.client.get("/console/inbox").text
    assert 'href="/console/inbox"' in page and "Bandeja de entrada" in page
    assert "/console/supervision" not in page and "/console/outbox" not in page
    assert 'data-testid="presence"' in page and "Desconectado" in page

    supervisor = log_in(app, db, role="supervisor")
    page = supervisor.client.get("/console/inbox").text
    assert 'href="/console/supervision"' in page and 'href="/console/outbox"' in page

    analyst = log_in(app, db, role="analyst")
    assert analyst.client.get("/console", follow_redirects=False).headers["location"] == "/console/customers"
    assert 'data-testid="presence"' not in analyst.client.get("/console/customers").text


def test_inbox_views_filters_and_going_online(app: Any, db: Database, settings: Settings) -> None:
    agent = log_in(app, db, role="agent", language="en")
    team = make_team(db, name="Front desk", members=[user_id(db, agent.email)], sla_minutes=1)
    conversation_id = _ana_writes(db, settings)

    mine = agent.client.get("/console/inbox").text  # offline: the conversation waits in the team's queue
    assert "No conversations here." in mine
    unassigned = agent.client.get("/console/inbox?view=unassigned").text
    assert f"/console/conversations/{conversation_id}" in unassigned
    assert "Ana García" in unassigned and 'data-channel="whatsapp"' in unassigned and "Unassigned" in unassigned
    team_view = agent.client.get("/console/inbox?view=team").text
    assert f"/console/conversations/{conversation_id}" in team_view and "Front desk" in team_view
    assert "Ana García" not in agent.client.get("/console/inbox?view=all&status=resolved").text
    assert "Ana García" not in agent.client.get("/console/inbox?view=all&channel=email").text
    assert "Ana García" in agent.client.get("/console/inbox?view=all&status=&channel=whatsapp").text

    # the live refresh asks for the same URL as htmx: only the list comes back
    partial = agent.client.get("/console/inbox?view=unassigned", headers={"HX-Request": "true"}).text
    assert "<html" not in partial and "Ana García" in partial

    online = agent.post("/console/me/online", {"online": "1", "next": "/console/inbox"}, follow_redirects=False)
    assert online.status_code == 303 and online.headers["location"] == "/console/inbox"
    page = agent.client.get("/console/inbox").text
    assert "Conversations assigned from the queue: 1." in " ".join(_flash(page))
    assert "Ana García" in page and "Online" in page
    assert _conversation(db, conversation_id).assignee_id == user_id(db, agent.email)
    assert team is not None


def test_the_conversation_view_every_channel_and_the_customer_360(app: Any, db: Database, settings: Settings) -> None:
    conversation_id = _ana_writes(db, settings)
    receive_message(db, settings, channel="email", identities=[("email", "ana@example.com")], text="Os escribo aquí")
    agent = log_in(app, db, role="agent")
    page = agent.client.get(f"/console/conversations/{conversation_id}")
    assert page.status_code == 200
    html = page.text
    assert html.index("¿a qué hora abrís?") < html.index("Os escribo aquí")  # one conversation, in time
    assert 'class="msg msg-inbound"' in html and 'data-channel="email"' in html and 'data-channel="whatsapp"' in html
    # the channel picker: available channels selectable, the others disabled with the reason
    picker = html[html.index('id="reply-channel"') : html.index("</select>", html.index('id="reply-channel"'))]
    assert re.search(r'<option value="email"\s+selected', picker)  # where the customer wrote last
    assert re.search(r'<option value="whatsapp"\s+title', picker)
    assert re.search(r'<option value="telegram" disabled', picker)
    assert "El cliente no tiene identidad de Telegram." in html
    assert "Este canal no admite respuestas de texto." in html
    # the customer 360 sidebar
    assert 'data-testid="customer-360"' in html and "ana@example.com" in html and "message.received" in html
    assert "/console/customers/" in html
    # partials the live updates use
    messages = agent.client.get(f"/console/conversations/{conversation_id}/messages").text
    assert "<html" not in messages and "Os escribo aquí" in messages
    head = agent.client.get(f"/console/conversations/{conversation_id}/head").text
    assert "Abierta" in head
    channels = agent.client.get(f"/console/conversations/{conversation_id}/channels?channel=email").text
    assert re.search(r'<option value="email"\s+selected', channels)

    assert agent.client.get(f"/console/conversations/{uuid.uuid4()}").status_code == 404
    assert agent.client.get("/console/conversations/not-an-id").status_code == 404


def test_reply_on_another_channel_and_a_private_note(app: Any, db: Database, settings: Settings) -> None:
    conversation_id = _ana_writes(db, settings)
    agent = log_in(app, db, role="agent")
    sent = agent.post(f"/console/conversations/{conversation_id}/reply", {"text": "Abrimos a las 10:00.",
                      "channel": "email"}, follow_redirects=False)  # fmt: skip
    assert sent.status_code == 303 and sent.headers["location"] == f"/console/conversations/{conversation_id}"
    note = agent.post(f"/console/conversations/{conversation_id}/reply",
                      {"text": "Clienta habitual", "private": "1", "channel": "email"})  # fmt: skip
    assert "Nota privada añadida." in _flash(note.text)
    reply, private = _messages(db, conversation_id)[1:]
    assert (reply.channel, reply.direction, reply.status, reply.sender_id) == (
        "email", "outbound", "queued", str(user_id(db, agent.email))
    )  # fmt: skip
    assert (private.channel, private.private) == ("note", True)
    html = note.text
    assert 'class="msg msg-outbound"' in html and "En cola" in html and "Test agent" in html
    assert 'class="msg msg-note"' in html and "Clienta habitual" in html


def test_reply_problems_are_flashes_and_keep_the_draft(app: Any, db: Database, settings: Settings) -> None:
    conversation_id = _ana_writes(db, settings)
    agent = log_in(app, db, role="agent")
    url = f"/console/conversations/{conversation_id}/reply"

    empty = agent.post(url, {"text": "   ", "channel": "email"})
    assert empty.status_code == 422 and "Escribe un mensaje antes de enviar." in _flash(empty.text)

    telegram = agent.post(url, {"text": "¿Me lees por Telegram?", "channel": "telegram"})
    assert telegram.status_code == 422
    assert "No puedes responder por Telegram: El cliente no tiene identidad de Telegram." in _flash(telegram.text)
    assert "¿Me lees por Telegram?</textarea>" in telegram.text

    unknown = agent.post(url, {"text": "hola", "channel": "pigeon"})
    assert "Elige un canal para la respuesta." in _flash(unknown.text)

    too_long = agent.post(url, {"text": "x" * 20_001, "channel": "email"})
    assert too_long.status_code == 422
    assert len(_messages(db, conversation_id)) == 1  # nothing was sent

    forged = agent.client.post(url, data={"text": "hola", "channel": "email", "csrf_token": "x" * 43})
    assert forged.status_code == 403
    assert len(_messages(db, conversation_id)) == 1


def test_status_assignment_priority_and_labels(app: Any, db: Database, settings: Settings) -> None:
    conversation_id = _ana_writes(db, settings)
    agent = log_in(app, db, role="agent")
    other = make_user(db, role="agent")
    base = f"/console/conversations/{conversation_id}"

    assert agent.post(f"{base}/assign", {"to": f"agent:{user_id(db, other)}"}).status_code == 403
    taken = agent.post(f"{base}/assign", {"to": "me"})
    assert "Asignación guardada." in _flash(taken.text)
    assert _conversation(db, conversation_id).assignee_id == user_id(db, agent.email)

    resolved = agent.post(f"{base}/status", {"status": "resolved"})
    assert "La conversación está resuelta." in _flash(resolved.text)
    again = agent.post(f"{base}/status", {"status": "resolved"})
    assert any(text.startswith("No se ha podido hacer") for text in _flash(again.text))
    agent.post(f"{base}/status", {"status": "open"})
    no_time = agent.post(f"{base}/status", {"status": "snoozed", "snooze_hours": "", "snooze_until": ""})
    assert "Elige cuándo debe despertar la conversación (una hora futura)." in _flash(no_time.text)
    agent.post(f"{base}/status", {"status": "snoozed", "snooze_hours": "4"})
    snoozed = _conversation(db, conversation_id)
    assert snoozed.status == "snoozed" and snoozed.snooze_until is not None
    assert snoozed.snooze_until - utcnow() > timedelta(hours=3)
    # noon: never in the hour Madrid skips when its clocks go forward
    later = (utcnow() + timedelta(days=2)).replace(hour=12).strftime("%Y-%m-%dT%H:%M")
    agent.post(f"{base}/status", {"status": "snoozed", "snooze_until": later})
    until = _conversation(db, conversation_id).snooze_until
    # typed as wall-clock time in the console's time zone
    assert until is not None and until.astimezone(ZoneInfo("Europe/Madrid")).strftime("%Y-%m-%dT%H:%M") == later

    details = agent.post(f"{base}/details", {"priority": "urgent", "labels": "Devolución, talla , devolución"})
    assert "Prioridad y etiquetas guardadas." in _flash(details.text)
    updated = _conversation(db, conversation_id)
    assert (updated.priority, updated.labels) == ("urgent", ["devolución", "talla"])
    assert "Elige una prioridad." in _flash(agent.post(f"{base}/details", {"priority": "max"}).text)

    supervisor = log_in(app, db, role="supervisor")
    page = supervisor.client.get(base).text
    assert 'data-testid="assign-to"' in page
    moved = supervisor.post(f"{base}/assign", {"to": f"agent:{user_id(db, other)}"})
    assert "Asignación guardada." in _flash(moved.text)
    assert _conversation(db, conversation_id).assignee_id == user_id(db, other)


def test_answer_suggestions_the_slash_search_and_rendering(app: Any, db: Database, settings: Settings) -> None:
    conversation_id = _ana_writes(db, settings, text="¿Cuál es el horario de la tienda?")
    hours = make_answer(db, title="Horario de apertura", shortcut="horario",
                        body="¡Hola {{customer.first_name}}! Abrimos de **10:00 a 21:00**.")  # fmt: skip
    make_answer(db, title="Devoluciones", body="Tienes 30 días para devolver tu pedido.", shortcut="devolucion")
    make_answer(db, title="Opening hours", body="We open at 10:00.", language="en", shortcut="hours")
    agent = log_in(app, db, role="agent")
    base = f"/console/conversations/{conversation_id}"

    suggestions = agent.client.get(f"{base}/suggestions").text
    assert "Horario de apertura" in suggestions and f'data-answer-id="{hours}"' in suggestions
    assert "Opening hours" not in suggestions  # the customer writes Spanish

    found = agent.client.get(f"{base}/answers?q=hor").text
    assert "Horario de apertura" in found and "Devoluciones" not in found
    everything = agent.client.get(f"{base}/answers?q=").text
    assert "Horario de apertura" in everything and "Devoluciones" in everything
    assert "Ninguna respuesta coincide" in agent.client.get(f"{base}/answers?q=zzzz").text

    whatsapp = agent.client.get(f"{base}/answers/{hours}?channel=whatsapp")
    assert whatsapp.status_code == 200 and whatsapp.text == "¡Hola Ana! Abrimos de *10:00 a 21:00*."
    email = agent.client.get(f"{base}/answers/{hours}?channel=email").text
    assert email == "¡Hola Ana! Abrimos de 10:00 a 21:00."
    assert agent.client.get(f"{base}/answers/{uuid.uuid4()}").status_code == 404

    agent.post(f"{base}/reply", {"text": whatsapp.text, "channel": "whatsapp", "answer_id": str(hours)})
    assert _messages(db, conversation_id)[-1].answer_id == hours


def test_supervision_shows_queues_load_and_breaches(app: Any, db: Database, settings: Settings) -> None:
    agent_email = make_user(db, role="agent")
    make_team(db, name="Front desk", members=[user_id(db, agent_email)], sla_minutes=1)
    conversation_id = _ana_writes(db, settings)
    with db.write() as session:  # the first reply was due a while ago
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        conversation.first_response_due_at = utcnow() - timedelta(minutes=5)

    agent = log_in(app, db, role="agent")
    assert agent.client.get("/console/supervision").status_code == 403
    supervisor = log_in(app, db, role="supervisor", language="en")
    page = supervisor.client.get("/console/supervision").text
    queues = page[page.index('data-testid="queues"') :]
    assert "Front desk" in queues and '<strong data-testid="queue-unassigned">1</strong>' in queues
    assert 'data-testid="agent-load">0 / 5<' in page and "Offline" in page
    assert f"/console/conversations/{conversation_id}" in page and "First reply overdue" in page

    # a supervisor sets an agent online: it takes the queued conversation
    supervisor.post(f"/console/agents/{user_id(db, agent_email)}/online", {"online": "1"})
    page = supervisor.client.get("/console/supervision").text
    assert 'data-testid="agent-load">1 / 5<' in page
    assert _conversation(db, conversation_id).assignee_id == user_id(db, agent_email)
    assert agent.post(f"/console/agents/{user_id(db, agent_email)}/online", {"online": "0"}).status_code == 403


def test_dead_letters_are_shown_and_retried(app: Any, db: Database, settings: Settings) -> None:
    conversation_id = _ana_writes(db, settings)
    agent = log_in(app, db, role="agent")
    agent.post(f"/console/conversations/{conversation_id}/reply", {"text": "Hola", "channel": "email"})
    with db.write() as session:
        [claimed] = claim_due(session, now=utcnow() + timedelta(seconds=1), limit=10, lease=timedelta(minutes=1))
        record_failure(session, item_id=claimed.id, detail="HTTP 400: mailbox does not exist", permanent=True,
                       started_at=utcnow(), duration_ms=5, status_code=400)  # fmt: skip
        webhook = enqueue(session, kind="webhook", channel="webhook", payload={})
        webhook_id = webhook.id
    reply = _messages(db, conversation_id)[-1]
    assert reply.status == "failed"

    assert agent.client.get("/console/outbox").status_code == 403
    assert agent.post(f"/console/outbox/{claimed.id}/retry").status_code == 403
    view = agent.client.get(f"/console/conversations/{conversation_id}").text
    assert "Fallido" in view and "mailbox does not exist" in view and 'data-testid="retry-message"' not in view

    supervisor = log_in(app, db, role="supervisor")
    dead = supervisor.client.get("/console/outbox?state=dead").text
    assert "mailbox does not exist" in dead and 'data-testid="retry"' in dead and "1 / 8" in dead
    assert str(webhook_id) not in dead
    assert str(webhook_id) in supervisor.client.get("/console/outbox?state=pending").text
    assert 'data-testid="retry-message"' in supervisor.client.get(f"/console/conversations/{conversation_id}").text

    retried = supervisor.post(f"/console/outbox/{claimed.id}/retry", {"next": "/console/outbox?state=dead"})
    assert "Devuelto a la cola: se volverá a entregar en breve." in _flash(retried.text)
    assert "Nada en este estado." in retried.text
    with db.read() as session:
        item = session.get(OutboxItem, claimed.id)
        assert item is not None and item.state == "pending"
    assert _messages(db, conversation_id)[-1].status == "queued"
    again = supervisor.post(f"/console/outbox/{claimed.id}/retry")
    assert any(text.startswith("No se ha podido hacer") for text in _flash(again.text))


def test_the_stream_needs_a_session(app: Any) -> None:
    with TestClient(app) as client:
        response = client.get("/console/stream", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/console/login")


def test_the_stream_sends_only_types_and_conversation_ids() -> None:
    from omnicanal.console.inbox import console_events

    class Connected:
        async def is_disconnected(self) -> bool:
            return False

    async def collect() -> list[bytes]:
        broadcaster = Broadcaster()
        # a heartbeat well apart from the events: a stalled test process must not see a ping in their place
        stream = console_events(Connected(), broadcaster, heartbeat_seconds=0.5)
        chunks = [await anext(stream)]
        pending = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)  # one pass of the loop: subscribed now
        broadcaster.publish({"type": "customer.updated", "data": {"id": "c1"}})
        broadcaster.publish({"type": "message.received", "data": {"conversation_id": "k1", "text": "secret"}})
        broadcaster.publish({"type": "conversation.assigned", "data": {"id": "k2", "assignee_id": "a"}})
        chunks.append(await pending)
        chunks.append(await anext(stream))
        chunks.append(await anext(stream))  # idle: a heartbeat comment
        await stream.aclose()
        return chunks

    first, received, assigned, ping = asyncio.run(collect())
    assert first.startswith(b"retry: 2000")
    assert received == b'data: {"type":"message.received","conversation_id":"k1"}\n\n'
    assert assigned == b'data: {"type":"conversation.assigned","conversation_id":"k2"}\n\n'
    assert ping == b": ping\n\n"
