"""Sample data a newcomer can explore: a Spanish retailer's customers across every channel."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from omnicanal.access.models import StaffUser
from omnicanal.access.service import create_api_key, create_user
from omnicanal.channels.demo import load_demo_channels
from omnicanal.channels.email.demo import load_demo_email
from omnicanal.channels.webchat.demo import load_demo_webchat
from omnicanal.consent.schemas import ConsentIn, ConsentStatus
from omnicanal.consent.service import set_consent
from omnicanal.customers.identities import normalize
from omnicanal.customers.schemas import CustomerCreate, IdentityIn, Traits
from omnicanal.customers.service import create_customer
from omnicanal.db import Database, utcnow
from omnicanal.demo_inbox import load_demo_inbox
from omnicanal.settings import Settings
from omnicanal.timeline.service import EventInput, ingest

DEMO_PASSWORD = "omnicanal-demo"  # noqa: S105 - printed for the demo on purpose
DEMO_USERS = [
    ("admin@omnicanal.demo", "admin", "Admin"),
    ("supervisora@omnicanal.demo", "supervisor", "Lucía Supervisora"),
    ("agente@omnicanal.demo", "agent", "Carlos Agente"),
    ("tienda@omnicanal.demo", "store_clerk", "Marta Tienda"),
]
FIRST = ["Ana", "Lucía", "Carmen", "Javier", "Pablo", "Sofía", "Diego", "Elena", "Marcos", "Laura", "Hugo",
         "Paula", "Álvaro", "Irene", "Sergio", "Nuria", "Raúl", "Claudia", "Jorge", "Marta"]  # fmt: skip
LAST = ["García", "Martínez", "López", "Sánchez", "Pérez", "Gómez", "Fernández", "Ruiz", "Díaz", "Moreno",
        "Álvarez", "Romero", "Navarro", "Torres", "Domínguez"]  # fmt: skip
CITIES = [("Madrid", "28013"), ("Barcelona", "08002"), ("Valencia", "46002"), ("Sevilla", "41001"), ("Bilbao", "48001")]
JOURNEY: list[tuple[str, str, dict[str, Any]]] = [
    ("page.viewed", "web", {"url": "/zapatillas/runner-pro"}),
    ("product.viewed", "app", {"sku": "RUN-PRO-42", "name": "Runner Pro"}),
    ("cart.updated", "web", {"items": 2, "total_minor": 12990, "currency": "EUR"}),
    ("message.received", "whatsapp", {"text": "¿Tenéis la talla 42 en la tienda de Gran Vía?"}),
    ("store.visited", "store", {"store": "Madrid Gran Vía"}),
    ("purchase.completed", "pos", {"ticket": "T-0001", "total_minor": 8990, "currency": "EUR"}),
    ("call.completed", "call_center", {"topic": "estado del pedido", "duration_s": 184}),
    ("email.opened", "email", {"campaign": "rebajas-invierno"}),
    ("survey.answered", "sms", {"score": 9}),
]


def load_demo(db: Database, settings: Settings) -> list[str]:
    """Load the sample data once; later runs leave it as it is."""
    with db.write() as session:
        if session.scalar(select(StaffUser.id).where(StaffUser.email == DEMO_USERS[0][0])) is not None:
            return [f"Demo data already present. Log in as {DEMO_USERS[0][0]} / {DEMO_PASSWORD}"]
        for email, role, name in DEMO_USERS:
            create_user(session, email=email, role=role, password=DEMO_PASSWORD, display_name=name)
        _, token = create_api_key(session, name="demo web shop", role="admin")

    rng = random.Random(7)
    now = utcnow()
    emails: list[str] = []
    people: list[tuple[str, str]] = []
    with db.write() as session:
        for index in range(40):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            city, postal = rng.choice(CITIES)
            identities = [
                IdentityIn(type="email", value=f"{first}.{last}{index}@correo.example".lower()),
                IdentityIn(type="phone", value=f"6{rng.randrange(10**7, 10**8)}"),
            ]
            emails.append(identities[0].value)
            people.append(
                (identities[0].value.lower(), normalize("phone", identities[1].value, settings.default_region))
            )
            if index % 3 == 0:
                identities.append(IdentityIn(type="loyalty_card", value=f"OC-{100000 + index}"))
            customer = create_customer(
                session,
                data=CustomerCreate(
                    traits=Traits.model_validate({
                        "first_name": first, "last_name": last, "language": "es" if index % 5 else "en",
                        "timezone": "Europe/Madrid", "address": {"city": city, "postal_code": postal, "country": "ES"},
                        "attributes": {"tier": rng.choice(["bronze", "silver", "gold"])},
                    }),
                    identities=identities,
                ),
                settings=settings,
                source=rng.choice(["web", "store", "app"]),
            )  # fmt: skip
            events = [
                EventInput(
                    event_id=f"demo-{index}-{step}",
                    type=kind,
                    channel=channel,
                    occurred_at=now - timedelta(days=30 - step * 3, minutes=rng.randrange(600)),
                    identities=[],
                    customer_id=customer.id,
                    properties=properties,
                )
                for step, (kind, channel, properties) in enumerate(JOURNEY)
                if rng.random() < 0.7
            ]
            ingest(session, events, settings=settings)
            for channel in ("email", "sms", "whatsapp"):
                if rng.random() < 0.6:
                    set_consent(
                        session,
                        customer_id=customer.id,
                        channel=channel,
                        purpose="marketing",
                        change=ConsentIn(
                            status=ConsentStatus.GRANTED, source="web", proof="Casilla del formulario de alta web"
                        ),
                        actor="demo",
                    )

        # An anonymous web visitor who later identifies: their browsing joins the customer's record.
        visitor = [("device_id", "web-7f3a9c"), ("email", emails[0])]
        ingest(
            session,
            [
                EventInput("demo-anon-1", "page.viewed", "web", now - timedelta(hours=5), [visitor[0]], None,
                           {"url": "/ofertas"}),
                EventInput("demo-anon-2", "newsletter.signed_up", "web", now - timedelta(hours=4), visitor, None,
                           {"form": "footer"}),
            ],
            settings=settings,
        )  # fmt: skip
        # Two loyalty cards meeting in one purchase: the rules refuse the merge; it waits for review.
        ingest(
            session,
            [
                EventInput("demo-pos-card", "purchase.completed", "pos", now - timedelta(hours=2),
                           [("loyalty_card", "OC100000"), ("loyalty_card", "OC100003")], None,
                           {"ticket": "T-0420", "total_minor": 4590, "currency": "EUR"}),
            ],
            settings=settings,
        )  # fmt: skip
    from omnicanal.handlers import register
    from omnicanal.loyalty.demo import load_demo_loyalty

    # Domains wired as in the running app from here on: a customer merge in the inbox joins the conversations,
    # and the shop's paid orders earn points in the programme loaded before them.
    register()
    with db.write() as session:
        inbox = load_demo_inbox(session, settings, people)
    with db.write() as session:
        loyalty = load_demo_loyalty(session)
    with db.write() as session:
        from omnicanal.commerce.demo import load_demo_shop

        shop = load_demo_shop(session, settings, people)
    with db.write() as session:
        from omnicanal.commerce.demo_credit import load_demo_store_credit

        credit = load_demo_store_credit(session, settings, people[1][0])
    from omnicanal.commerce.demo_imports import load_demo_catalog_import

    catalog_import = load_demo_catalog_import(db)
    with db.write() as session:
        channels = load_demo_channels(session, settings)
    with db.write() as session:
        webchat, email = load_demo_webchat(session, settings), load_demo_email(session, settings)
    return [
        inbox,
        shop,
        credit,
        catalog_import,
        channels,
        webchat,
        email,
        loyalty,
        "Demo data loaded: 40 customers across web, app, store, WhatsApp, call center, email and SMS.",
        f"Console logins (password {DEMO_PASSWORD}): " + ", ".join(email for email, _, _ in DEMO_USERS),
        f"API key (admin): {token}",
    ]
