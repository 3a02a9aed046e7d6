"""Demo data for the inbox: teams, agents, routing rules, answers and cross-channel conversations."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnicanal.access.models import StaffUser
from omnicanal.answers.demo_data import load_demo_answers
from omnicanal.conversations.inbound import InboundInput, receive
from omnicanal.conversations.service import reply, set_status
from omnicanal.db import utcnow
from omnicanal.routing.admin import save_rule, save_team, update_agent
from omnicanal.routing.schemas import AgentIn, BusinessHours, RuleIn, TeamIn
from omnicanal.settings import Settings

WEEKDAY_HOURS = {day: [("09:00", "21:00")] for day in ("mon", "tue", "wed", "thu", "fri", "sat")}


def _user(session: Session, email: str) -> uuid.UUID:
    user_id = session.scalar(select(StaffUser.id).where(StaffUser.email == email))
    assert user_id is not None
    return user_id


def load_demo_inbox(session: Session, settings: Settings, people: list[tuple[str, str]]) -> str:
    """``people``: (email, E.164 phone) of demo customers, who write in on several channels."""
    agent = _user(session, "agente@omnicanal.demo")
    supervisor = _user(session, "supervisora@omnicanal.demo")
    clerk = _user(session, "tienda@omnicanal.demo")
    support = save_team(
        session,
        TeamIn(
            name="Atención al cliente", strategy="least_loaded", members=[agent, supervisor],
            business_hours=BusinessHours(timezone="Europe/Madrid", weekly=WEEKDAY_HOURS),
            out_of_hours_reply="Gracias por escribirnos. Te responderemos en nuestro horario (L-S, 9:00-21:00).",
            sla_first_response_minutes=30, sla_resolution_minutes=24 * 60,
        ),
    )  # fmt: skip
    store = save_team(
        session,
        TeamIn(name="Tienda Madrid Gran Vía", strategy="round_robin", members=[clerk], sla_first_response_minutes=60),
    )
    update_agent(session, agent, AgentIn(languages=["es", "en"], capacity=6, online=True, skills=["pedidos"]))
    update_agent(session, supervisor, AgentIn(languages=["es"], capacity=2, online=True))
    update_agent(session, clerk, AgentIn(languages=["es"], capacity=4, online=True, skills=["tienda"]))
    save_rule(session, RuleIn(name="Recogida en tienda", position=10, team_id=store.id,
                              keywords=["recoger", "tienda", "probador", "pickup"]))  # fmt: skip
    save_rule(session, RuleIn(name="Todo lo demás", position=100, team_id=support.id))
    load_demo_answers(session, actor="demo")

    now = utcnow()
    script = [
        (0, "whatsapp", "Hola, ¿dónde está mi pedido 4471? Lo pedí el lunes.", 50),
        (1, "email", "Quiero devolver unas zapatillas que compré online, ¿puedo hacerlo en tienda?", 45),
        (2, "sms", "¿Puedo recoger hoy mi pedido en la tienda de Gran Vía?", 40),
        (3, "web", "Do you ship to Portugal?", 35),
        (4, "whatsapp", "¿Tenéis la talla 42 de las Runner Pro?", 30),
        (0, "email", "Os escribo también por email: el número de pedido es 4471.", 20),
        (5, "telegram", "Hola! Me ha llegado el cupón, ¿vale en tienda?", 15),
    ]
    conversations: dict[int, uuid.UUID] = {}
    for index, (person, channel, text, minutes_ago) in enumerate(script):
        email, phone = people[person]
        identities: list[tuple[str, str]] = [("email", email)] if channel == "email" else [("phone", phone)]
        if channel == "whatsapp":
            identities = [("whatsapp", phone)]
        elif channel in ("web", "telegram"):
            identities = [("email", email), ("device_id" if channel == "web" else "telegram",
                                              f"demo-{channel}-{person}")]  # fmt: skip
        (result,) = receive(
            session,
            [
                InboundInput(
                    channel, identities, None, text, [], f"demo-msg-{index}", now - timedelta(minutes=minutes_ago)
                )
            ],
            settings=settings,
        )
        assert result.conversation_id is not None
        conversations[person] = result.conversation_id
    # One person known twice: an SMS from a number and an email from an address nobody knew, then a web chat
    # message giving both. The two customers merge, and their two conversations become one thread.
    newcomer = [
        ("sms", [("phone", "+34699100200")], "Hola, soy Nerea. ¿Hacéis arreglos de bajos?", 12),
        ("email", [("email", "nerea.demo@example.com")], "Os mando por aquí la foto del pantalón.", 10),
        ("web", [("phone", "+34699100200"), ("email", "nerea.demo@example.com")],
         "Os he escrito por SMS y por email, soy la misma persona.", 5),
    ]  # fmt: skip
    for index, (channel, identities, text, minutes_ago) in enumerate(newcomer):
        sent_at = now - timedelta(minutes=minutes_ago)
        item = InboundInput(channel, identities, None, text, [], f"demo-join-{index}", sent_at)
        (result,) = receive(session, [item], settings=settings)
    assert result.conversation_id is not None
    conversations[len(people)] = result.conversation_id
    shipped = "¡Hola! Tu pedido 4471 sale hoy del almacén; mañana lo tienes."
    reply(session, conversation_id=conversations[0], text=shipped, channel="email", private=False,
          author_type="agent", author_id=str(agent))  # fmt: skip
    reply(session, conversation_id=conversations[0], text="@supervisora ojo, es el segundo retraso de este cliente.",
          channel=None, private=True, author_type="agent", author_id=str(agent))  # fmt: skip
    reply(session, conversation_id=conversations[3], text="Yes! Shipping to Portugal takes 2-3 working days.",
          channel=None, private=False, author_type="agent", author_id=str(agent))  # fmt: skip
    set_status(session, conversation_id=conversations[3], status="resolved", snooze_until=None, actor="demo")
    set_status(session, conversation_id=conversations[4], status="snoozed", snooze_until=now + timedelta(hours=3),
               actor="demo")  # fmt: skip
    return (
        f"Inbox: {len(conversations)} conversations across WhatsApp, email, SMS, web chat and Telegram; "
        "teams 'Atención al cliente' and 'Tienda Madrid Gran Vía'; answers library in Spanish and English; "
        "Nerea wrote by SMS and by email as two customers until a web chat message merged them into one thread."
    )
