"""Redemptions: points, stock and codes change together or not at all; races never overspend."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omnicanal.app import create_app
from omnicanal.commerce.models import Coupon, Promotion
from omnicanal.db import Database, create_database, utcnow
from omnicanal.loyalty import ledger, wallets
from omnicanal.loyalty.models import LoyaltyRedemption, LoyaltyReward
from omnicanal.settings import Settings
from tests.loyalty.helpers import ledger_sum, new_customer, wallet


def give(client: TestClient, customer: str, points: int, request_id: str | None = None) -> None:
    body = {"points": points, "reason": "welcome gift", "request_id": request_id or uuid.uuid4().hex}
    response = client.post(f"/api/v1/customers/{customer}/loyalty/adjustments", json=body)
    assert response.status_code == 201, response.text


def reward(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post(
        "/api/v1/rewards",
        json={
            "name": "5 EUR voucher",
            "kind": "voucher",
            "cost_points": 100,
            "value": {"amount": 500, "currency": "EUR"},
            **body,
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def redeem(client: TestClient, customer: str, reward_id: str, request_id: str) -> Any:
    return client.post(
        f"/api/v1/customers/{customer}/redemptions", json={"reward_id": reward_id, "request_id": request_id}
    )


def test_redemption_issues_a_voucher_code_once_per_request(client: TestClient, db: Database) -> None:
    customer = new_customer(client)
    give(client, customer, 250)
    voucher = reward(client)
    first = redeem(client, customer, voucher["id"], "till-7-0001")
    again = redeem(client, customer, voucher["id"], "till-7-0001")
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["code"] == again.json()["code"]
    assert wallet(client, customer)["balance"] == 150
    with db.read() as session:
        coupon = session.get(Coupon, first.json()["code"])  # a coupon of the promotions engine
        promotion = session.get(Promotion, coupon.promotion_id) if coupon is not None else None
        assert coupon is not None and coupon.usage_limit == 1
        assert promotion is not None and (promotion.rules["amount"], promotion.rules["currency"]) == (500, "EUR")
    other = client.post(
        f"/api/v1/customers/{customer}/redemptions", json={"reward_id": str(uuid.uuid4()), "request_id": "till-7-0001"}
    )
    assert other.status_code == 409


def test_bad_redemptions_are_refused_and_change_nothing(client: TestClient, db: Database) -> None:
    customer = new_customer(client)
    give(client, customer, 150)
    expensive = reward(client, name="Big", cost_points=1000)
    gone = reward(client, name="Sample", kind="product", value={}, cost_points=10, stock=0)
    gold_only = reward(client, name="Gold gift", kind="product", value={}, cost_points=10, tiers=["Gold"])
    before = client.get(f"/api/v1/customers/{customer}/loyalty/ledger").json()["items"]
    too_much = redeem(client, customer, expensive["id"], "a")
    assert too_much.status_code == 409 and too_much.json()["available"] == 150
    assert too_much.headers["content-type"] == "application/problem+json"
    assert redeem(client, customer, gone["id"], "b").status_code == 409
    assert redeem(client, customer, gold_only["id"], "c").status_code == 409
    assert redeem(client, customer, str(uuid.uuid4()), "d").status_code == 404
    assert client.get(f"/api/v1/customers/{customer}/loyalty/ledger").json()["items"] == before
    assert wallet(client, customer)["balance"] == 150
    assert ledger_sum(db, customer) == (150, 150)


def test_bad_rewards_and_rules_are_refused(client: TestClient) -> None:
    assert client.post("/api/v1/rewards", json={"name": "x", "kind": "voucher", "cost_points": 5}).status_code == 422
    assert client.post("/api/v1/rewards", json={"name": "x", "kind": "external", "cost_points": 5}).status_code == 422
    contradictions = [
        {"name": "r", "kind": "spend", "points": 1},
        {"name": "r", "kind": "event", "points": 1},
        {"name": "r", "kind": "event", "event_type": "visit", "points": 1, "caps": {"day": 10, "week": 5}},
        {
            "name": "r",
            "kind": "event",
            "event_type": "visit",
            "points": 1,
            "starts_at": "2026-02-01T00:00:00Z",
            "ends_at": "2026-01-01T00:00:00Z",
        },
        {"name": "r", "kind": "spend", "points": 1, "per_amount": 100, "event_type": "visit"},
    ]
    for body in contradictions:
        response = client.post("/api/v1/loyalty/rules", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["errors"]
    assert client.get("/api/v1/loyalty/rules").json() == []


def test_manual_adjustment_needs_a_reason_and_a_permitted_role(
    client: TestClient, client_as: Callable[[str], TestClient]
) -> None:
    customer = new_customer(client)
    agent = client_as("agent")
    body = {"points": 10, "reason": "goodwill", "request_id": "adj-1"}
    assert agent.post(f"/api/v1/customers/{customer}/loyalty/adjustments", json=body).status_code == 403
    supervisor = client_as("supervisor")
    no_reason = supervisor.post(f"/api/v1/customers/{customer}/loyalty/adjustments", json={**body, "reason": ""})
    assert no_reason.status_code == 422
    assert supervisor.post(f"/api/v1/customers/{customer}/loyalty/adjustments", json=body).status_code == 201
    assert supervisor.post(f"/api/v1/customers/{customer}/loyalty/adjustments", json=body).status_code == 201
    taking = supervisor.post(
        f"/api/v1/customers/{customer}/loyalty/adjustments",
        json={"points": -50, "reason": "typo", "request_id": "adj-2"},
    )
    assert taking.status_code == 409
    entries = client.get(f"/api/v1/customers/{customer}/loyalty/ledger").json()["items"]
    assert [(e["points"], e["note"], e["reason"]) for e in entries] == [(10, "goodwill", "adjust")]
    assert wallet(client, customer)["balance"] == 10


@pytest.fixture
def second_client(settings: Settings, make_key: Callable[[str], str]) -> Iterator[TestClient]:
    """Another app instance (own engine and pool), as a second server process would be."""
    database = create_database(settings)
    try:
        with TestClient(create_app(settings, database=database)) as other:
            other.headers["Authorization"] = f"Bearer {make_key('admin')}"
            yield other
    finally:
        database.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_200_concurrent_redemptions_never_overspend(
    client: TestClient, second_client: TestClient, db: Database
) -> None:
    customer = new_customer(client)
    for n in range(5):  # several lots, so redemptions span lots
        give(client, customer, 150, f"gift-{n}")
    cheap = reward(client, name="Coffee", kind="product", value={}, cost_points=7)
    limited = reward(client, name="Tote bag", kind="product", value={}, cost_points=1, stock=20)
    clients = [client, second_client]
    barrier = threading.Barrier(200)
    statuses: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()

    def job(n: int) -> None:
        k = n if n < 180 else n - 20  # the last 20 repeat earlier requests
        target = limited if k % 4 == 0 else cheap
        request_id = f"req-{k}"
        barrier.wait()
        response = redeem(clients[n % 2], customer, target["id"], request_id)
        assert response.status_code in (200, 201, 409), response.text
        with lock:
            statuses[(target["name"], response.status_code)] += 1

    with ThreadPoolExecutor(max_workers=200) as pool:
        list(pool.map(job, range(200)))
    with db.read() as session:
        redemptions = Counter(
            name
            for (name,) in session.execute(
                select(LoyaltyReward.name).join(LoyaltyRedemption, LoyaltyRedemption.reward_id == LoyaltyReward.id)
            )
        )
        stock = session.scalar(select(LoyaltyReward.stock).where(LoyaltyReward.name == "Tote bag"))
        spent = session.scalar(select(func.sum(LoyaltyRedemption.points)))
    assert redemptions["Tote bag"] + stock == 20
    state = wallet(client, customer)
    assert state["balance"] == 750 - spent >= 0
    assert ledger_sum(db, customer) == (state["balance"], state["balance"])
    assert state["balance"] < 7, statuses  # everything that could be spent was


def test_reward_dates_and_the_code_notice(client: TestClient, db: Database) -> None:
    from omnicanal.outbox.models import OutboxItem

    customer = new_customer(client)
    client.put(
        f"/api/v1/customers/{customer}/consents/email/transactional", json={"status": "granted", "source": "web"}
    )
    give(client, customer, 300)
    ended = reward(client, name="Summer", ends_at="2020-09-01T00:00:00Z", starts_at="2020-06-01T00:00:00Z")
    assert redeem(client, customer, ended["id"], "s1").status_code == 409
    voucher = reward(client)
    code = redeem(client, customer, voucher["id"], "s2").json()["code"]
    with db.read() as session:
        notices = [i for i in session.scalars(select(OutboxItem)) if i.payload.get("template") == "reward_code"]
    assert [(n.channel, n.payload["data"]["code"]) for n in notices] == [("email", code)]


def test_the_redemption_endpoint_checks_the_caller_the_request_and_the_customer(
    client: TestClient, client_as: Callable[[str], TestClient], db: Database
) -> None:
    from omnicanal.customers.models import Customer
    from omnicanal.db import utcnow

    customer = new_customer(client)
    give(client, customer, 100)
    coffee = reward(client, name="Coffee", kind="product", value={}, cost_points=10)
    url = f"/api/v1/customers/{customer}/redemptions"
    anonymous = client.post(url, json={"reward_id": coffee["id"], "request_id": "x"}, headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert client_as("analyst").post(url, json={"reward_id": coffee["id"], "request_id": "x"}).status_code == 403
    bad = client.post("/api/v1/customers/not-a-uuid/redemptions", json={"request_id": "", "extra": 1})
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"customer_id", "reward_id", "request_id", "extra"}
    assert client.post(url, content=b"{", headers={"content-type": "application/json"}).status_code == 422
    unknown = f"/api/v1/customers/{uuid.uuid4()}/redemptions"
    assert client.post(unknown, json={"reward_id": coffee["id"], "request_id": "u"}).status_code == 404

    answer = client.post(url, json={"reward_id": coffee["id"], "request_id": "r1", "channel": "pos"})
    assert answer.status_code == 201
    body = answer.json()
    assert body["customer_id"] == customer and body["points"] == 10 and body["channel"] == "pos"
    assert body["status"] == "issued" and body["created_at"].endswith("Z")
    assert client.post(url, json={"reward_id": coffee["id"], "request_id": "r1"}).json() == body

    other = new_customer(client)
    merged = client.post(f"/api/v1/customers/{customer}/merge", json={"other_customer_id": other})
    assert merged.status_code == 201, merged.text
    gone = other if merged.json()["customer_id"] == customer else customer
    moved = client.post(
        f"/api/v1/customers/{gone}/redemptions",
        json={"reward_id": coffee["id"], "request_id": "m1"},
        follow_redirects=False,
    )
    assert moved.status_code == 308
    survivor = merged.json()["customer_id"]
    with db.write() as session:
        erased = session.get(Customer, uuid.UUID(survivor))
        assert erased is not None
        erased.erased_at = utcnow()
    url = f"/api/v1/customers/{survivor}/redemptions"
    assert client.post(url, json={"reward_id": coffee["id"], "request_id": "e1"}).status_code == 404


def test_a_product_redemption_spans_lots_soonest_expiring_first_and_sends_its_code(
    client: TestClient, db: Database
) -> None:
    from omnicanal.outbox.models import OutboxItem
    from omnicanal.timeline.models import Event

    customer = new_customer(client)
    client.put(f"/api/v1/customers/{customer}/consents/sms/transactional", json={"status": "granted", "source": "web"})
    give(client, customer, 80, "never-expires")
    with db.write() as session:  # a second lot, expiring first
        wallets.ensure_wallets(session, [uuid.UUID(customer)])
        ledger.add_lots(
            session,
            [ledger.NewLot(uuid.UUID(customer), 20, "bonus", "test", utcnow(), utcnow() + timedelta(days=3))],
            now=utcnow(),
        )
    sample = reward(client, name="Sample", kind="product", value={}, cost_points=35, stock=1)
    answer = redeem(client, customer, sample["id"], "spans")
    assert answer.status_code == 201, answer.text
    code = answer.json()["code"]
    assert wallet(client, customer)["balance"] == 65 and wallet(client, customer)["expiring"] == []
    assert ledger_sum(db, customer) == (65, 65)
    assert client.get(f"/api/v1/rewards/{sample['id']}").json()["stock"] == 0
    sold_out = redeem(client, customer, sample["id"], "again")
    assert sold_out.status_code == 409 and sold_out.json()["type"].endswith("/out-of-stock")
    with db.read() as session:
        notices = [i for i in session.scalars(select(OutboxItem)) if i.payload.get("template") == "reward_code"]
        events = list(session.scalars(select(Event.type).where(Event.type == "loyalty.reward_redeemed")))
    assert [(n.channel, n.payload["data"]["code"]) for n in notices] == [("sms", code)]
    assert events == ["loyalty.reward_redeemed"]
    entries = client.get(f"/api/v1/customers/{customer}/loyalty/ledger").json()["items"]
    assert sorted(e["points"] for e in entries if e["reason"] == "redeem") == [-20, -15]


def test_product_redemptions_answer_alike_on_every_database(client: TestClient, db: Database) -> None:
    # PostgreSQL redeems products through one database function, SQLite through Python: the same answers
    customer = new_customer(client, attributes={"preferred_channel": "whatsapp"})
    for channel in ("email", "whatsapp"):
        url = f"/api/v1/customers/{customer}/consents/{channel}/transactional"
        granted = client.put(url, json={"status": "granted", "source": "web"})
        assert granted.status_code < 300, granted.text
    give(client, customer, 30)
    mug = reward(client, name="Mug", kind="product", value={}, cost_points=50)
    pen = reward(client, name="Pen", kind="product", value={}, cost_points=10, stock=1)

    refused = redeem(client, customer, mug["id"], "mug-1")
    assert refused.status_code == 409
    assert refused.json() == {
        "type": "https://omnicanal.dev/problems/insufficient-points",
        "title": "Not enough points",
        "status": 409,
        "detail": "50 points asked, 30 available",
        "available": 30,
        "asked": 50,
    }
    first_pen = redeem(client, customer, pen["id"], "pen-1")
    assert first_pen.status_code == 201
    sold_out = redeem(client, customer, pen["id"], "pen-2")
    assert sold_out.status_code == 409
    assert sold_out.json() == {
        "type": "https://omnicanal.dev/problems/out-of-stock",
        "title": "Out of stock",
        "status": 409,
        "detail": "the reward 'Pen' is out of stock",
    }
    give(client, customer, 40)
    again = redeem(client, customer, mug["id"], "mug-1")  # a refused request_id was not kept
    assert again.status_code == 201, again.text
    elsewhere = redeem(client, new_customer(client), mug["id"], "mug-1")
    assert elsewhere.status_code == 409 and elsewhere.json()["type"].endswith("/conflict")

    client.put(
        f"/api/v1/customers/{customer}/consents/whatsapp/transactional", json={"status": "withdrawn", "source": "web"}
    )
    give(client, customer, 50)
    last = redeem(client, customer, mug["id"], "mug-2")
    assert last.status_code == 201
    with db.read() as session:
        from omnicanal.outbox.models import OutboxItem

        notices = sorted(
            (item.created_at, item.channel, item.payload["data"]["code"], item.payload["data"]["reward"])
            for item in session.scalars(select(OutboxItem))
            if item.payload.get("template") == "reward_code"
        )
    assert [n[1:] for n in notices] == [
        ("whatsapp", first_pen.json()["code"], "Pen"),
        ("whatsapp", again.json()["code"], "Mug"),
        ("email", last.json()["code"], "Mug"),
    ]
    assert wallet(client, customer)["balance"] == 120 - 10 - 50 - 50 == ledger_sum(db, customer)[0]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_request_id_claimed_for_another_customer_meanwhile_changes_nothing(client: TestClient, db: Database) -> None:
    from sqlalchemy import text

    customer = new_customer(client)
    give(client, customer, 100)
    pen = reward(client, name="Pen", kind="product", value={}, cost_points=10, stock=5)
    answers: list[Any] = []
    with db.write_engine.connect() as other:  # another customer's request holds the claim, not yet committed
        other.execute(text("INSERT INTO loyalty_keys (key, created_at) VALUES ('redeem:shared', now())"))
        thread = threading.Thread(target=lambda: answers.append(redeem(client, customer, pen["id"], "shared")))
        thread.start()
        waiting = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        for _ in range(500):
            with db.write_engine.connect() as probe:
                if probe.execute(waiting).scalar():
                    break
            threading.Event().wait(0.02)
        other.commit()
    thread.join(timeout=30)
    assert answers and answers[0].status_code == 409, answers
    assert answers[0].json()["type"].endswith("/conflict")
    assert client.get(f"/api/v1/rewards/{pen['id']}").json()["stock"] == 5
    assert wallet(client, customer)["balance"] == 100 == ledger_sum(db, customer)[0]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_redemption_after_the_server_dropped_the_connection_succeeds(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import text

    from omnicanal.loyalty import quick_redeem

    customer = new_customer(client)
    give(client, customer, 100)
    pen = reward(client, name="Pen", kind="product", value={}, cost_points=10)
    assert redeem(client, customer, pen["id"], "before").status_code == 201
    with db.write_engine.connect() as admin:  # the server ends the connection that served the redemption
        ended = admin.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE '%FROM loyalty_redeem(%' "
                "AND pid <> pg_backend_pid()"
            )
        ).scalar()
    assert ended
    monkeypatch.setattr(quick_redeem, "PING_AFTER_IDLE_SECONDS", 0.0)  # as if it had been idle a while
    after = redeem(client, customer, pen["id"], "after")
    assert after.status_code == 201, after.text
    assert wallet(client, customer)["balance"] == 80 == ledger_sum(db, customer)[0]
