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
