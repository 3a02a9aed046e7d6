"""Merges, expiry, purchase codes, referrals, tiers and notices, through the API (and the CLI for expiry)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from omnicanal.db import Database, utcnow
from omnicanal.loyalty import jobs
from omnicanal.loyalty.models import LoyaltyEntry, LoyaltyLot, LoyaltyWallet
from omnicanal.outbox.models import OutboxItem
from omnicanal.timeline.models import Event
from tests.loyalty.helpers import (
    event_rule,
    ledger_sum,
    make_available,
    new_customer,
    order,
    publish,
    referral,
    spend_rule,
    wallet,
)
from tests.loyalty.test_redemptions import give, redeem, reward


def test_merge_adds_wallets_and_undo_gives_each_back_exactly(client: TestClient, db: Database) -> None:
    ana, ana_shop = new_customer(client), new_customer(client)
    give(client, ana, 100)
    give(client, ana_shop, 70)
    merged = client.post(f"/api/v1/customers/{ana}/merge", json={"other_customer_id": ana_shop})
    assert merged.status_code == 201, merged.text
    survivor = merged.json()["customer_id"]
    gone = ana_shop if survivor == ana else ana
    assert wallet(client, survivor)["balance"] == 170
    coffee = reward(client, name="Coffee", kind="product", value={}, cost_points=150)
    assert redeem(client, survivor, coffee["id"], "m1").status_code == 201  # spends from both wallets' lots
    assert wallet(client, survivor)["balance"] == 20
    undone = client.post(f"/api/v1/merges/{merged.json()['merge_id']}/undo")
    assert undone.status_code == 200, undone.text
    balances = {c: wallet(client, c)["balance"] for c in (survivor, gone)}
    assert sum(balances.values()) == 20
    for customer in (survivor, gone):
        assert ledger_sum(db, customer) == (balances[customer], balances[customer])
    assert client.get(f"/api/v1/customers/{gone}/loyalty").status_code == 200


def test_expiry_job_is_exact_to_the_lot_and_runs_from_the_cli(tmp_path: Path) -> None:
    from omnicanal.access.service import create_api_key
    from omnicanal.app import create_app
    from omnicanal.db import create_database
    from omnicanal.migrate import ensure_schema
    from omnicanal.settings import Settings

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    # no in-process worker: its schedule would expire the lot before the command does
    settings = Settings(database_url=url, environment="test", outbox_in_process=False)
    db = create_database(settings)
    ensure_schema(db.write_engine)
    with db.write() as session:
        _, token = create_api_key(session, name="t", role="admin")
    with TestClient(create_app(settings, database=db)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        customer = new_customer(client)
        give(client, customer, 100, "old")
        give(client, customer, 30, "new")
        coffee = reward(client, name="Coffee", kind="product", value={}, cost_points=60)
        with db.write() as session:  # the first lot is a year old and expires tomorrow
            first = session.scalars(select(LoyaltyLot).order_by(LoyaltyLot.id)).first()
            assert first is not None
            when = utcnow() + timedelta(hours=1)
            session.execute(update(LoyaltyLot).where(LoyaltyLot.id == first.id).values(expires_at=when))
            session.execute(update(LoyaltyEntry).where(LoyaltyEntry.lot_id == first.id).values(expires_at=when))
        assert wallet(client, customer)["expiring"][0]["points"] == 100
        assert redeem(client, customer, coffee["id"], "x").status_code == 201  # takes the soonest-expiring first
        with db.write() as session:
            session.execute(
                update(LoyaltyLot).values(expires_at=utcnow() - timedelta(seconds=1)).where(LoyaltyLot.id == first.id)
            )
        result = subprocess.run(
            [sys.executable, "-m", "omnicanal", "loyalty", "expire"],
            capture_output=True,
            text=True,
            env={**os.environ, "OMNICANAL_DATABASE_URL": url},
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "expired 40 points"
        assert wallet(client, customer)["balance"] == 30
        assert ledger_sum(db, customer) == (30, 30)
        entries = client.get(f"/api/v1/customers/{customer}/loyalty/ledger").json()["items"]
        assert [e["reason"] for e in entries] == ["expire", "redeem", "adjust", "adjust"]
    db.dispose()


def test_purchase_codes_are_single_use_and_guessing_locks_out(client: TestClient) -> None:
    made = client.post("/api/v1/loyalty/codes", json={"batch": "spring", "count": 3, "points": 25})
    assert made.status_code == 201
    codes = made.json()["codes"]
    customer, other = new_customer(client), new_customer(client)
    use = client.post("/api/v1/loyalty/codes/redeem", json={"customer_id": customer, "code": codes[0].lower()})
    assert use.status_code == 201 and use.json()["points"] == 25
    again = client.post("/api/v1/loyalty/codes/redeem", json={"customer_id": other, "code": codes[0]})
    assert again.status_code == 422 and "already used" in again.json()["detail"]
    for n in range(4):
        guess = client.post("/api/v1/loyalty/codes/redeem", json={"customer_id": other, "code": f"GUESS{n}AAAAAA"})
        assert guess.status_code == 422
    locked = client.post("/api/v1/loyalty/codes/redeem", json={"customer_id": other, "code": codes[1]})
    assert locked.status_code == 429
    assert wallet(client, other)["balance"] == 0
    assert (
        client.post("/api/v1/loyalty/codes/redeem", json={"customer_id": customer, "code": codes[1]}).status_code == 201
    )


def test_referral_pays_both_sides_on_the_first_paid_order_only(client: TestClient, db: Database) -> None:
    friend, newcomer, code = referral(client)
    self_ref = {"id": "s2", "customer_id": friend, "type": "referral.signup", "properties": {"code": code}}
    assert client.post("/api/v1/loyalty/events", json=self_ref).status_code == 409
    publish(db, "order.paid", order(newcomer, "N-1", ("a", 1, 1000)))
    publish(db, "order.paid", order(newcomer, "N-2", ("a", 1, 1000)))
    assert wallet(client, friend)["balance"] == 200
    assert wallet(client, newcomer)["balance"] == 100 and wallet(client, newcomer)["pending"] == 20


def test_tiers_upgrade_at_once_multiply_and_fall_at_period_end(client: TestClient, db: Database) -> None:
    spend_rule(client)
    for body in (
        {"name": "Silver", "threshold": 100, "multiplier": 1.5, "window_days": 365, "retention_threshold": 80},
        {"name": "Gold", "threshold": 500, "multiplier": 2.0, "window_days": 365},
    ):
        assert client.post("/api/v1/loyalty/tiers", json=body).status_code == 201
    assert (
        client.post(
            "/api/v1/loyalty/tiers", json={"name": "Bad", "threshold": 10, "retention_threshold": 20}
        ).status_code
        == 422
    )
    customer = new_customer(client)
    publish(db, "order.paid", order(customer, "T-1", ("a", 1, 12000)))
    assert wallet(client, customer)["tier"] == "Silver"
    publish(db, "order.paid", order(customer, "T-2", ("a", 1, 10000)))
    assert wallet(client, customer)["pending"] == 120 + 150  # Silver earns x1.5
    gold_gift = reward(client, name="Gold gift", kind="product", value={}, cost_points=1, tiers=["Gold"])
    make_available(db, customer)
    assert redeem(client, customer, gold_gift["id"], "g").status_code == 409
    with db.write() as session:  # a year later the points earned in the window are gone
        session.execute(update(LoyaltyEntry).values(created_at=utcnow() - timedelta(days=400)))
        session.execute(update(LoyaltyWallet).values(tier_since=utcnow() - timedelta(days=366)))
        jobs.run(session, hourly=True)
    assert wallet(client, customer)["tier"] is None
    with db.read() as session:
        kinds = list(session.scalars(select(Event.type).where(Event.type == "loyalty.tier_changed")))
    assert len(kinds) == 2


def test_notices_go_to_the_preferred_consented_channel(client: TestClient, db: Database) -> None:
    event_rule(client, "survey.answered", 10)
    customer = new_customer(client, attributes={"preferred_channel": "sms"})
    silent = new_customer(client)
    for channel in ("email", "sms"):
        client.put(
            f"/api/v1/customers/{customer}/consents/{channel}/marketing", json={"status": "granted", "source": "web"}
        )
    for who in (customer, silent):
        client.post("/api/v1/loyalty/events", json={"id": f"q-{who}", "customer_id": who, "type": "survey.answered"})
    with db.read() as session:
        items = list(session.scalars(select(OutboxItem).where(OutboxItem.kind == "loyalty")))
    assert [(i.channel, i.payload["template"], str(i.customer_id)) for i in items] == [
        ("sms", "points_earned", customer)
    ]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_birthday_job_pays_once_a_year(client: TestClient, db: Database) -> None:
    event_rule(client, "birthday", 40)
    today = utcnow()
    born = new_customer(client, birthday=f"1992-{today:%m-%d}")  # a leap year: the test may run on 29 February
    with db.write() as session:
        jobs.birthdays(session, now=today)
    with db.write() as session:
        jobs.birthdays(session, now=today)
    assert wallet(client, born)["balance"] == 40
    assert uuid.UUID(born)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_workers_birthday_job_scans_outside_the_write_lock_and_pays_once(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    event_rule(client, "birthday", 40)
    born = new_customer(client, birthday=f"1992-{utcnow():%m-%d}")
    other = new_customer(client, birthday=f"1992-{utcnow() + timedelta(days=2):%m-%d}")
    monkeypatch.setattr(jobs, "_next_birthdays", 0.0)
    jobs.hourly_birthdays(db)  # (the app's own worker may run it too: it pays once all the same)
    assert wallet(client, born)["balance"] == 40
    assert jobs.hourly_birthdays(db) == 0  # within the hour: nothing scanned again
    monkeypatch.setattr(jobs, "_next_birthdays", 0.0)  # an hour later, or another process
    assert jobs.hourly_birthdays(db) == 0
    assert wallet(client, born)["balance"] == 40
    assert wallet(client, other)["balance"] == 0


def test_catalogue_posts_honour_idempotency_key_and_export_includes_the_wallet(client: TestClient) -> None:
    body = {"name": "Tote bag", "kind": "product", "cost_points": 10, "stock": 5}
    first = client.post("/api/v1/rewards", json=body, headers={"Idempotency-Key": "k1"})
    again = client.post("/api/v1/rewards", json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 201 and again.json() == first.json()
    assert len(client.get("/api/v1/rewards").json()) == 1
    customer = new_customer(client)
    give(client, customer, 5)
    exported = client.get(f"/api/v1/customers/{customer}/export").json()
    assert [e["points"] for e in exported["loyalty"]["ledger"]] == [5]


def test_expiry_notice_is_sent_once_per_lot(client: TestClient, db: Database) -> None:
    customer = new_customer(client)
    client.put(f"/api/v1/customers/{customer}/consents/email/marketing", json={"status": "granted", "source": "web"})
    give(client, customer, 80)
    with db.write() as session:
        session.execute(update(LoyaltyLot).values(expires_at=utcnow() + timedelta(days=5)))
    for _ in range(2):
        with db.write() as session:
            jobs.expiring_notices(session)
    with db.read() as session:
        notices = [
            i.payload["data"] for i in session.scalars(select(OutboxItem)) if i.payload["template"] == "points_expiring"
        ]
    assert len(notices) == 1 and notices[0]["points"] == 80


def test_the_worker_schedule_expires_points(app: Any, client: TestClient, db: Database) -> None:
    customer = new_customer(client)
    give(client, customer, 25)
    with db.write() as session:
        session.execute(update(LoyaltyLot).values(expires_at=utcnow() - timedelta(seconds=1)))
    worker = app.state.outbox_worker
    worker._next_periodic = 0.0
    worker.run_periodic()
    assert wallet(client, customer)["balance"] == 0
