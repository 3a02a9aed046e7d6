"""Console pages over both databases: search, the customer 360, undoing merges, the review queue."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

from omnicanal.customers.models import Customer, IdentityConflict
from omnicanal.db import Database, utcnow
from omnicanal.settings import Settings
from tests.console.helpers import grant, log_in, make_customer, send_event


def _merge_two(db: Database, settings: Settings) -> tuple[uuid.UUID, uuid.UUID]:
    """Ana (email) and an anonymous WhatsApp contact (phone) meet in one event: they merge."""
    ana = make_customer(db, settings, first="Ana", last="García", identities=[("email", "ana@example.com")])
    other = send_event(
        db, settings, event_id="wa-1", type="message.received", channel="whatsapp",
        identities=[("phone", "+34 612 345 678")], properties={"text": "hola"},
    )  # fmt: skip
    survivor = send_event(
        db, settings, event_id="web-1", type="newsletter.signed_up", channel="web",
        identities=[("email", "ana@example.com"), ("phone", "612345678")],
    )  # fmt: skip
    assert survivor == ana
    return ana, other


def _open_conflict(db: Database, settings: Settings) -> tuple[uuid.UUID, uuid.UUID]:
    """Two loyalty cards meet in one purchase: the limit of one card refuses the merge."""
    luis = make_customer(db, settings, first="Luis", last="Pérez", identities=[("loyalty_card", "OC-1")])
    eva = make_customer(db, settings, first="Eva", last="Ruiz", identities=[("loyalty_card", "OC-2")])
    send_event(
        db, settings, event_id="pos-1", type="purchase.completed", channel="pos",
        identities=[("loyalty_card", "OC-1"), ("loyalty_card", "OC-2")],
    )  # fmt: skip
    return luis, eva


def test_home_redirects_to_the_inbox_or_to_customers(app: Any, db: Database) -> None:
    staff = log_in(app, db)
    response = staff.client.get("/console", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/inbox"
    marketer = log_in(app, db, role="marketer")
    assert marketer.client.get("/console", follow_redirects=False).headers["location"] == "/console/customers"


def test_spanish_by_default_english_for_english_users_and_the_switch_overrides(app: Any, db: Database) -> None:
    spanish = log_in(app, db, role="agent", language="es")
    page = spanish.client.get("/console/customers").text
    assert '<html lang="es">' in page and "Clientes" in page and "Salir" in page

    english = log_in(app, db, role="agent", language="en")
    page = english.client.get("/console/customers").text
    assert '<html lang="en">' in page and "Customers" in page and "Log out" in page

    switched = english.post("/console/language", {"lang": "es", "next": "/console/customers"}, follow_redirects=False)
    assert switched.status_code == 303 and switched.headers["location"] == "/console/customers"
    page = english.client.get("/console/customers").text
    assert '<html lang="es">' in page and "Clientes" in page


def test_anonymous_pages_are_spanish_unless_the_cookie_says_otherwise(app: Any) -> None:
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        page = client.get("/console/login")
        assert "Contraseña" in page.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        client.post("/console/language", data={"lang": "en", "csrf_token": token.group(1), "next": "/console/login"})
        assert "Password" in client.get("/console/login").text


def test_search_finds_a_phone_written_differently(app: Any, db: Database, settings: Settings) -> None:
    ana = make_customer(db, settings, first="Ana", last="García", identities=[("phone", "+34612345678")])
    make_customer(db, settings, first="Pablo", last="Díaz", identities=[("phone", "+34698765432")])
    staff = log_in(app, db, role="agent")
    for spelling in ("612 345 678", "+34 612-345-678", "0034612345678"):
        page = staff.client.get("/console/customers", params={"q": spelling}).text
        assert f"/console/customers/{ana}" in page, spelling
        assert "Pablo" not in page
    by_name = staff.client.get("/console/customers", params={"q": "garc"}).text
    assert f"/console/customers/{ana}" in by_name
    by_identity = staff.client.get("/console/customers", params={"q": "phone:612345678"}).text
    assert f"/console/customers/{ana}" in by_identity


def test_search_as_you_type_answers_htmx_with_the_results_only(app: Any, db: Database, settings: Settings) -> None:
    make_customer(db, settings, first="Ana", last="García", identities=[("email", "ana@example.com")])
    staff = log_in(app, db, role="agent")
    partial = staff.client.get("/console/customers", params={"q": "ana@"}, headers={"HX-Request": "true"})
    assert partial.status_code == 200
    assert "<html" not in partial.text and "Ana García" in partial.text
    nothing = staff.client.get("/console/customers", params={"q": "zz"}, headers={"HX-Request": "true"}).text
    assert "Ningún cliente coincide" in nothing
    too_short = staff.client.get("/console/customers", params={"q": "a"}, headers={"HX-Request": "true"}).text
    assert "al menos 2 caracteres" in too_short
    full = staff.client.get("/console/customers", params={"q": "ana@"}).text
    assert 'hx-trigger="keyup changed delay:300ms' in full and "<html" in full


def test_customer_360_shows_identities_consents_and_the_timeline(app: Any, db: Database, settings: Settings) -> None:
    ana = make_customer(
        db, settings, first="Ana", last="García", identities=[("email", "ana@example.com")], source="store"
    )
    now = utcnow()
    send_event(
        db, settings, event_id="e-old", type="page.viewed", channel="web", customer_id=ana,
        occurred_at=now - timedelta(days=2), properties={"url": "/zapatillas"},
    )  # fmt: skip
    send_event(
        db, settings, event_id="e-new", type="purchase.completed", channel="pos", customer_id=ana,
        occurred_at=now - timedelta(hours=1), properties={"total_minor": 8990, "currency": "EUR"},
    )  # fmt: skip
    grant(db, customer_id=ana, channel="whatsapp", source="web")
    staff = log_in(app, db, role="agent", language="en")
    page = staff.client.get(f"/console/customers/{ana}")
    assert page.status_code == 200
    html = page.text
    assert "Ana García" in html
    identities = html.split('data-testid="identities"', 1)[1].split("</table>", 1)[0]
    assert "ana@example.com" in identities and 'data-channel="store"' in identities
    consents = html.split('data-testid="consents"', 1)[1].split("</table>", 1)[0]
    assert 'data-channel="whatsapp"' in consents and "Marketing" in consents and "Granted" in consents
    timeline = html.split('data-testid="timeline"', 1)[1]
    order = [timeline.index(kind) for kind in ("consent.granted", "purchase.completed", "page.viewed")]
    assert order == sorted(order), "newest first"
    assert 'data-channel="pos"' in timeline and "€89.90" in timeline
    assert "Undo merge" not in html


def test_timeline_loads_more_with_the_cursor(app: Any, db: Database, settings: Settings) -> None:
    ana = make_customer(db, settings, first="Ana", last="García", identities=[("email", "ana@example.com")])
    now = utcnow()
    for index in range(30):
        send_event(
            db, settings, event_id=f"v-{index:02d}", type="page.viewed", channel="web", customer_id=ana,
            occurred_at=now - timedelta(minutes=60 - index),
        )  # fmt: skip
    staff = log_in(app, db, role="agent")
    html = staff.client.get(f"/console/customers/{ana}").text
    first_page = re.findall(r'data-event-id="([^"]+)"', html)
    assert len(first_page) == 25 and first_page[0] == "v-29"
    more = re.search(r'hx-get="(/console/customers/[^"]+/timeline\?cursor=[^"]+)"', html)
    assert more
    rest = staff.client.get(more.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"}).text
    assert re.findall(r'data-event-id="([^"]+)"', rest) == [f"v-{i:02d}" for i in range(4, -1, -1)]
    assert "load-more" not in rest


def test_a_merged_away_id_redirects_to_the_survivor(app: Any, db: Database, settings: Settings) -> None:
    ana, other = _merge_two(db, settings)
    staff = log_in(app, db, role="agent")
    response = staff.client.get(f"/console/customers/{other}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/console/customers/{ana}"
    page = staff.client.get(response.headers["location"]).text
    assert "se muestra el cliente con el que se fusionó" in page
    assert staff.client.get(f"/console/customers/{uuid.uuid4()}").status_code == 404
    assert staff.client.get("/console/customers/not-an-id").status_code == 404


def test_undo_a_merge_through_the_console(app: Any, db: Database, settings: Settings) -> None:
    ana, other = _merge_two(db, settings)
    staff = log_in(app, db, role="supervisor", language="en")
    page = staff.client.get(f"/console/customers/{ana}").text
    assert "+34612345678" in page and "message.received" in page
    merge_id = re.search(r'action="/console/merges/([0-9a-f-]+)/undo"', page)
    assert merge_id

    response = staff.post(
        f"/console/merges/{merge_id.group(1)}/undo", {"next": f"/console/customers/{ana}"}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/console/customers/{ana}"

    page = staff.client.get(f"/console/customers/{ana}").text
    assert "Merge undone: both customers are separate again." in page
    assert "+34612345678" not in page.split('data-testid="identities"', 1)[1].split("</table>", 1)[0]
    assert "message.received" not in page
    restored = staff.client.get(f"/console/customers/{other}")
    assert restored.status_code == 200
    assert "+34612345678" in restored.text and "message.received" in restored.text
    with db.read() as session:
        customer = session.get(Customer, other)
        assert customer is not None and customer.merged_into_id is None

    # a second undo is a friendly message, not an error page
    again = staff.post(f"/console/merges/{merge_id.group(1)}/undo", {"next": f"/console/customers/{ana}"})
    assert again.status_code == 200
    assert "this merge was already undone" in again.text


def test_a_role_without_merges_manage_cannot_undo(app: Any, db: Database, settings: Settings) -> None:
    ana, other = _merge_two(db, settings)
    supervisor = log_in(app, db, role="supervisor")
    merge_id = re.search(r"/console/merges/([0-9a-f-]+)/undo", supervisor.client.get(f"/console/customers/{ana}").text)
    assert merge_id
    agent = log_in(app, db, role="agent")
    page = agent.client.get(f"/console/customers/{ana}").text
    assert "/undo" not in page and "Cola de revisión" not in page
    response = agent.post(f"/console/merges/{merge_id.group(1)}/undo", {"next": f"/console/customers/{ana}"})
    assert response.status_code == 403
    assert "Tu rol no permite esta acción." in response.text
    assert agent.client.get("/console/review").status_code == 403
    with db.read() as session:
        customer = session.get(Customer, other)
        assert customer is not None and customer.merged_into_id == ana


def test_review_queue_merge(app: Any, db: Database, settings: Settings) -> None:
    luis, eva = _open_conflict(db, settings)
    staff = log_in(app, db, role="supervisor", language="en")
    page = staff.client.get("/console/review").text
    assert 'data-testid="open-count">1<' in page
    assert "Luis Pérez" in page and "Eva Ruiz" in page and "OC1" in page and "OC2" in page
    conflict_id = re.search(r'action="/console/review/([0-9a-f-]+)"', page)
    assert conflict_id
    response = staff.post(f"/console/review/{conflict_id.group(1)}", {"action": "merge"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/console/review"
    page = staff.client.get("/console/review").text
    assert "The two customers were merged." in page and 'data-testid="open-count">0<' in page
    with db.read() as session:
        merged = {session.get(Customer, luis).merged_into_id, session.get(Customer, eva).merged_into_id}  # type: ignore[union-attr]
        assert merged & {luis, eva}
        conflict = session.get(IdentityConflict, uuid.UUID(conflict_id.group(1)))
        assert conflict is not None and conflict.status == "merged"


def test_review_queue_dismiss(app: Any, db: Database, settings: Settings) -> None:
    luis, eva = _open_conflict(db, settings)
    staff = log_in(app, db, role="admin")
    page = staff.client.get("/console/review").text
    conflict_id = re.search(r'action="/console/review/([0-9a-f-]+)"', page)
    assert conflict_id
    page = staff.post(f"/console/review/{conflict_id.group(1)}", {"action": "dismiss"}).text
    assert "Descartado: los clientes siguen separados." in page
    assert "Nada que revisar" in page
    with db.read() as session:
        assert session.get(Customer, luis).merged_into_id is None  # type: ignore[union-attr]
        assert session.get(Customer, eva).merged_into_id is None  # type: ignore[union-attr]
    # deciding twice is a friendly message
    again = staff.post(f"/console/review/{conflict_id.group(1)}", {"action": "dismiss"}).text
    assert "this conflict was already dismissed" in again


def test_erase_needs_privacy_erase_and_a_confirmation(app: Any, db: Database, settings: Settings) -> None:
    ana = make_customer(db, settings, first="Ana", last="García", identities=[("email", "ana@example.com")])
    supervisor = log_in(app, db, role="supervisor")
    assert "/erase" not in supervisor.client.get(f"/console/customers/{ana}").text
    assert supervisor.post(f"/console/customers/{ana}/erase", {"confirm": "yes"}).status_code == 403
    admin = log_in(app, db, role="admin")
    unconfirmed = admin.post(f"/console/customers/{ana}/erase", {}).text
    assert "Marca la casilla" in unconfirmed
    done = admin.post(f"/console/customers/{ana}/erase", {"confirm": "yes"})
    assert done.status_code == 200 and "Se han borrado los datos personales" in done.text
    assert admin.client.get(f"/console/customers/{ana}").status_code == 404
