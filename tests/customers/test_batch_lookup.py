"""A batch's identity lookup finds every owner in one query, WhatsApp ids' phones included."""

from __future__ import annotations

from typing import Any

import pytest

from omnicanal.customers import resolution
from omnicanal.customers.resolution import Resolver
from omnicanal.db import Database, utcnow
from omnicanal.timeline.service import ingest, prepare_event

PHONES = ["+34612000001", "+34612000002", "+34612000003"]


def test_one_lookup_finds_the_phone_owner_of_every_whatsapp_id(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    now = utcnow()
    raw = [{"id": f"known-{n}", "type": "visit", "channel": "web", "occurred_at": now.isoformat(),
            "identities": [{"type": "phone", "value": phone}]}
           for n, phone in enumerate(PHONES)]  # fmt: skip
    with db.write() as session:
        known = ingest(session, [prepare_event(r, settings=db.settings, now=now) for r in raw], settings=db.settings)
    owners = [result.customer_id for result in known]
    assert len(set(owners)) == 3

    lookups: list[Any] = []
    counted = resolution.driver_rows

    def counting(*args: Any, **kwargs: Any) -> Any:
        lookups.append(args[1])
        return counted(*args, **kwargs)

    monkeypatch.setattr(resolution, "driver_rows", counting)
    with db.write() as session:
        resolver = Resolver(session, db.settings, now=now)
        resolver.prefetch(("whatsapp", phone) for phone in PHONES)
        found = [resolver.resolve([("whatsapp", phone)], source="whatsapp").customer_id for phone in PHONES]
    assert found == owners  # each WhatsApp id joins the customer who owns its phone
    assert len(lookups) == 1  # and the batch's one lookup found them all
