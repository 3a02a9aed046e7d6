"""Console test helpers: staff users logged in through the real form, data made by the real services."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response

from omnicanal.access.service import create_user
from omnicanal.consent.schemas import ConsentIn, ConsentStatus
from omnicanal.consent.service import set_consent
from omnicanal.customers.schemas import CustomerCreate, IdentityIn, Traits
from omnicanal.customers.service import create_customer
from omnicanal.db import Database, utcnow
from omnicanal.settings import Settings
from omnicanal.timeline.service import ingest, prepare_event

PASSWORD = "correct-horse-battery"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF_FIELD.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


@dataclass
class Staff:
    """A logged-in console user: a test client holding the session cookie, and its CSRF token."""

    client: TestClient
    csrf: str
    email: str

    def post(self, url: str, data: dict[str, str] | None = None, **kwargs: Any) -> Response:
        response: Response = self.client.post(url, data={"csrf_token": self.csrf, **(data or {})}, **kwargs)
        return response


def make_user(db: Database, *, role: str, language: str = "es", email: str | None = None) -> str:
    email = email or f"{role}-{uuid.uuid4().hex[:8]}@staff.example"
    with db.write() as session:
        create_user(session, email=email, role=role, password=PASSWORD, display_name=f"Test {role}", language=language)
    return email


def log_in(app: Any, db: Database, *, role: str = "admin", language: str = "es") -> Staff:
    email = make_user(db, role=role, language=language)
    client = TestClient(app)
    token = csrf_of(client.get("/console/login").text)
    response = client.post(
        "/console/login",
        data={"email": email, "password": PASSWORD, "csrf_token": token, "next": "/console/customers"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    page = client.get("/console/customers")
    assert page.status_code == 200
    return Staff(client=client, csrf=csrf_of(page.text), email=email)


def make_customer(
    db: Database,
    settings: Settings,
    *,
    first: str,
    last: str,
    identities: list[tuple[str, str]],
    source: str = "web",
) -> uuid.UUID:
    with db.write() as session:
        customer = create_customer(
            session,
            data=CustomerCreate(
                traits=Traits(first_name=first, last_name=last),
                identities=[IdentityIn(type=kind, value=value) for kind, value in identities],
            ),
            settings=settings,
            source=source,
        )
        return customer.id


def send_event(
    db: Database,
    settings: Settings,
    *,
    event_id: str,
    type: str,
    channel: str,
    identities: list[tuple[str, str]] | None = None,
    customer_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
    properties: dict[str, Any] | None = None,
) -> uuid.UUID:
    now = utcnow()
    raw: dict[str, Any] = {
        "id": event_id,
        "type": type,
        "channel": channel,
        "occurred_at": (occurred_at or now - timedelta(minutes=5)).isoformat(),
        "identities": [{"type": kind, "value": value} for kind, value in identities or []],
        "properties": properties or {},
    }
    if customer_id is not None:
        raw["customer_id"] = str(customer_id)
    with db.write() as session:
        [result] = ingest(session, [prepare_event(raw, settings=settings, now=now)], settings=settings)
    assert result.error is None, result.error
    assert result.customer_id is not None
    return result.customer_id


def grant(db: Database, *, customer_id: uuid.UUID, channel: str, source: str = "web") -> None:
    with db.write() as session:
        set_consent(
            session,
            customer_id=customer_id,
            channel=channel,
            purpose="marketing",
            change=ConsentIn(status=ConsentStatus.GRANTED, source=source, proof="web form"),
            actor="test",
        )


def user_id(db: Database, email: str) -> uuid.UUID:
    from sqlalchemy import select

    from omnicanal.access.models import StaffUser

    with db.read() as session:
        found = session.scalar(select(StaffUser.id).where(StaffUser.email == email))
    assert found is not None
    return found


def receive_message(
    db: Database,
    settings: Settings,
    *,
    channel: str,
    identities: list[tuple[str, str]],
    text: str,
    external_id: str | None = None,
) -> tuple[uuid.UUID, uuid.UUID]:
    """A customer's message through the inbound service; returns (conversation id, message id)."""
    from omnicanal.conversations.inbound import InboundInput, receive

    item = InboundInput(
        channel=channel, identities=identities, customer_id=None, text=text, attachments=[],
        external_id=external_id or uuid.uuid4().hex, occurred_at=utcnow(),
    )  # fmt: skip
    with db.write() as session:
        [result] = receive(session, [item], settings=settings)
    assert result.error is None, result.error
    assert result.conversation_id is not None and result.message_id is not None
    return result.conversation_id, result.message_id


def make_answer(db: Database, *, title: str, body: str, language: str = "es", shortcut: str | None = None) -> uuid.UUID:
    from omnicanal.answers.schemas import AnswerCreate
    from omnicanal.answers.service import create_answer

    with db.write() as session:
        answer = create_answer(
            session, data=AnswerCreate(title=title, body=body, language=language, shortcut=shortcut), actor="test"
        )
        return answer.id


def make_team(db: Database, *, name: str, members: list[uuid.UUID], sla_minutes: int | None = None) -> uuid.UUID:
    """A team that every new conversation is routed to."""
    from omnicanal.routing.admin import save_rule, save_team
    from omnicanal.routing.schemas import RuleIn, TeamIn

    with db.write() as session:
        team = save_team(session, TeamIn(name=name, members=members, sla_first_response_minutes=sla_minutes))
        save_rule(session, RuleIn(name=f"all to {name}", team_id=team.id))
        return team.id
