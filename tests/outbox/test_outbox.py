"""Delivery through the outbox: retries with backoff, rate limits, dead letters, idempotency."""

from __future__ import annotations

import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from omnicanal.db import Database
from omnicanal.outbox import service as outbox
from omnicanal.outbox.models import OutboxItem
from omnicanal.outbox.worker import OutboxWorker, TokenBucket
from tests.conversations.helpers import API, inbound, messages
from tests.outbox.provider import ProviderDouble


def send_reply(client: TestClient, text: str = "Hola", channel: str = "email", n: int = 1) -> dict[str, Any]:
    identities = [{"type": "phone", "value": f"61234500{n}"}, {"type": "email", "value": f"c{n}@example.com"}]
    conversation_id = inbound(client, channel="sms", identities=identities)["conversation_id"]
    response = client.post(f"{API}/conversations/{conversation_id}/messages", json={"text": text, "channel": channel})
    assert response.status_code == 201, response.text
    message: dict[str, Any] = response.json()
    assert message["status"] == "queued"
    return message


def outbox_items(client: TestClient, state: str | None = None) -> list[dict[str, Any]]:
    response = client.get(f"{API}/outbox", params={"state": state} if state else {})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def message_now(client: TestClient, message: dict[str, Any]) -> dict[str, Any]:
    (found,) = [m for m in messages(client, message["conversation_id"]) if m["id"] == message["id"]]
    return found


@pytest.fixture
def worker(app: Any) -> OutboxWorker:
    found: OutboxWorker = app.state.outbox_worker
    return found


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox, "backoff", lambda attempt: timedelta(0))


def test_reply_is_delivered_once_with_the_item_id_as_idempotency_key(
    client: TestClient, worker: OutboxWorker, provider: ProviderDouble
) -> None:
    message = send_reply(client, "Tu pedido sale hoy")
    (item,) = outbox_items(client, "pending")
    assert item["message_id"] == message["id"]
    worker.drain()
    worker.drain()
    assert provider.keys() == {item["id"]: 1}
    (request,) = provider.requests
    assert request.body["payload"]["text"] == "Tu pedido sale hoy"
    assert request.body["payload"]["to"] == "c1@example.com"
    assert request.body["channel"] == "email"
    sent = message_now(client, message)
    assert sent["status"] == "sent" and sent["provider_message_id"] == provider.delivered[item["id"]]
    assert [i["id"] for i in outbox_items(client, "sent")] == [item["id"]]
    assert outbox_items(client, "pending") == []
    detail = client.get(f"{API}/outbox/{item['id']}").json()
    assert [(a["number"], a["outcome"], a["status_code"]) for a in detail["attempt_log"]] == [(1, "sent", 200)]


def test_failures_are_retried_with_exponential_backoff(
    client: TestClient, worker: OutboxWorker, provider: ProviderDouble, db: Database
) -> None:
    message = send_reply(client)
    provider.fail_next(503)
    started = datetime.now(UTC)
    worker.drain()
    finished = datetime.now(UTC)
    (item,) = outbox_items(client, "pending")
    assert item["attempts"] == 1 and "503" in item["last_error"]
    due = datetime.fromisoformat(item["next_attempt_at"])
    # the first delay is 1-2 s after the failure, which happened while drain() ran
    assert started + timedelta(seconds=1) <= due <= finished + timedelta(seconds=2)
    # (on a machine slow enough to reach the due time by now, the retry would rightly go out)
    if datetime.now(UTC) < due - timedelta(seconds=0.3):
        worker.drain()  # not due yet: the provider is left alone
        assert len(provider.requests) == 1
        assert message_now(client, message)["status"] == "queued"
    # the delays double, with jitter, up to a cap
    for attempt, low, high in ((1, 1, 2), (2, 2, 4), (3, 4, 8), (10, 512, 1024), (30, 1800, 3600)):
        for _ in range(20):
            assert low <= outbox.backoff(attempt).total_seconds() <= high


def test_retries_until_delivered(
    client: TestClient, worker: OutboxWorker, provider: ProviderDouble, no_backoff: None
) -> None:
    message = send_reply(client)
    provider.fail_next(500, 429, 408)
    worker.drain()
    (item,) = outbox_items(client, "sent")
    assert provider.keys() == {item["id"]: 4}
    log = client.get(f"{API}/outbox/{item['id']}").json()["attempt_log"]
    assert [(a["outcome"], a["status_code"]) for a in log] == [
        ("retry", 500), ("retry", 429), ("retry", 408), ("sent", 200),
    ]  # fmt: skip
    assert message_now(client, message)["status"] == "sent"


def test_dead_letters_and_the_retry_button(
    client: TestClient, worker: OutboxWorker, provider: ProviderDouble, no_backoff: None
) -> None:
    permanent = send_reply(client, "uno", n=1)
    provider.fail_next(400)
    worker.drain()
    (dead,) = outbox_items(client, "dead")
    assert dead["attempts"] == 1 and "400" in dead["last_error"]
    failed = message_now(client, permanent)
    assert failed["status"] == "failed" and "400" in failed["failure_reason"]

    exhausted = send_reply(client, "dos", n=2)
    provider.fail_next(*([500] * 8))
    worker.drain()
    assert {i["message_id"]: i["attempts"] for i in outbox_items(client, "dead")} == {
        permanent["id"]: 1, exhausted["id"]: 8,
    }  # fmt: skip

    assert client.post(f"{API}/outbox/{uuid.uuid4()}/retry").status_code == 404
    retried = client.post(f"{API}/outbox/{dead['id']}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["state"] == "pending"
    again = client.post(f"{API}/outbox/{dead['id']}/retry")
    assert again.status_code == 409 and "dead" in again.json()["detail"]
    worker.drain()
    assert [i["id"] for i in outbox_items(client, "sent")] == [dead["id"]]
    delivered = message_now(client, permanent)
    assert delivered["status"] == "sent" and delivered["failure_reason"] is None
    assert client.get(f"{API}/outbox", params={"state": "lost"}).status_code == 422


def test_per_channel_rate_limit(client: TestClient, worker: OutboxWorker, provider: ProviderDouble) -> None:
    for n in range(5):
        send_reply(client, channel="sms", n=n)
    for n in range(5, 7):
        send_reply(client, channel="email", n=n)
    started = time.monotonic()
    assert worker.run_once() == 4  # sms allows 2 a second (a burst of 2); email is not limited
    assert sorted(r.body["channel"] for r in provider.requests) == ["email", "email", "sms", "sms"]
    while len(provider.requests) < 7:
        assert time.monotonic() - started < 5, "the rate-limited channel stalled"
        worker.run_once()
        time.sleep(0.02)
    # three more sms at 2 a second take at least 1.5 s
    assert time.monotonic() - started >= 1.4
    assert outbox_items(client, "pending") == []


def test_an_idle_worker_polls_without_the_write_lock(
    client: TestClient, worker: OutboxWorker, provider: ProviderDouble, db: Database
) -> None:
    """On SQLite one writer holds the file: an idle poll must not queue behind it (nor make it wait)."""
    if not db.is_sqlite:
        return  # PostgreSQL claims with SKIP LOCKED; there is no file-wide lock to spare
    message = send_reply(client)
    assert worker.run_once() == 1
    path = db.write_engine.url.database
    assert path is not None
    other_writer = sqlite3.connect(path, isolation_level=None)
    try:
        other_writer.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        assert worker.run_once() == 0
        assert time.monotonic() - started < 1  # the busy timeout is 30 s: it never waited on the lock
    finally:
        other_writer.execute("ROLLBACK")
        other_writer.close()
    assert message_now(client, message)["status"] == "sent"
    assert len(provider.requests) == 1


def test_token_bucket_below_one_per_second_still_sends() -> None:
    bucket = TokenBucket(0.5)
    assert bucket.available() == 1
    bucket.take(1)
    assert bucket.available() == 0
    bucket.stamp -= 2.0  # two seconds later
    assert bucket.available() == 1


def test_a_late_failure_does_not_undo_a_delivery(client: TestClient, db: Database) -> None:
    """Worker A's lease ran out, worker B re-sent and recorded it; A's failure arrives afterwards."""
    send_reply(client)
    now = datetime.now(UTC)
    with db.write() as session:
        (first,) = outbox.claim_due(session, now=now, limit=10, lease=timedelta(seconds=1))
    with db.write() as session:
        (second,) = outbox.claim_due(session, now=now + timedelta(seconds=2), limit=10, lease=timedelta(seconds=60))
    assert (first.id, first.attempt, second.attempt) == (second.id, 1, 2)
    with db.write() as session:
        outbox.record_sent(session, item_id=second.id, provider_id="p-1", started_at=now, duration_ms=5)
    with db.write() as session:
        state = outbox.record_failure(
            session, item_id=first.id, detail="timeout", permanent=False, started_at=now, duration_ms=5,
            attempt=first.attempt,
        )  # fmt: skip
        assert state == "sent"
    with db.read() as session:
        item = session.get(OutboxItem, first.id)
        assert item is not None and item.state == "sent"


def test_an_item_whose_sender_dies_at_every_attempt_ends_in_the_dead_letters(client: TestClient, db: Database) -> None:
    """A message that kills the worker mid-send is not taken again forever: after its last attempt it is dead."""
    message = send_reply(client)
    now = datetime.now(UTC)
    with db.write() as session:
        (item,) = session.query(OutboxItem).all()
        item.max_attempts = 2
    for attempt in (1, 2):  # each time the worker dies holding it: nothing is recorded, the lease runs out
        with db.write() as session:
            (claimed,) = outbox.claim_due(session, now=now, limit=10, lease=timedelta(seconds=1))
            assert claimed.attempt == attempt
        now += timedelta(seconds=2)
    with db.write() as session:
        assert outbox.claim_due(session, now=now, limit=10, lease=timedelta(seconds=1)) == []
    (dead,) = outbox_items(client, "dead")
    assert "lease ran out" in dead["last_error"]
    assert message_now(client, message)["status"] == "failed"


def test_in_process_worker_delivers_right_after_commit(
    app: Any, make_key: Any, provider: ProviderDouble, settings: Any
) -> None:
    settings.outbox_in_process = True
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {make_key('admin')}"
        message = send_reply(client)
        deadline = time.monotonic() + 3
        while message_now(client, message)["status"] != "sent":
            assert time.monotonic() < deadline, "the in-process worker did not deliver"
            time.sleep(0.05)
    assert len(provider.requests) == 1


def test_an_unreachable_provider_is_a_failure_to_retry(provider: ProviderDouble) -> None:
    import socket

    from omnicanal.outbox.transports import DeliveryError, Envelope, HttpTransport

    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        closed_port = spare.getsockname()[1]
    envelope = Envelope("k-1", "message", "sms", {"text": "hola"}, 1)
    with pytest.raises(DeliveryError) as failure:
        HttpTransport(f"http://127.0.0.1:{closed_port}/send", timeout=2).send(envelope)
    assert not failure.value.permanent
    # the same transport keeps its connection to a live provider between sends
    transport = HttpTransport(provider.url, timeout=2)
    assert transport.send(envelope).status_code == transport.send(envelope).status_code == 200
