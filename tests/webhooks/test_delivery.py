"""Deliveries end to end: real events, a real local receiver, signatures checked with ``standardwebhooks``."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.webhooks.helpers import SUBSCRIPTIONS, deliver, deliveries, inbound, problem, subscribe
from tests.webhooks.receiver import Receiver


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries are due at once instead of seconds later."""
    monkeypatch.setattr("omnicanal.outbox.service.backoff", lambda attempt, **_: timedelta(0))


def test_an_inbound_message_reaches_the_subscriber_signed(client: TestClient, app: FastAPI, receiver: Receiver) -> None:
    # given a subscription to new messages and every conversation change, and one to merges only
    sub = subscribe(client, receiver.url, ["message.received", "conversation.*"], description="CRM")
    assert sub["secret"].startswith("whsec_") and len(base64.b64decode(sub["secret"][6:])) >= 24
    subscribe(client, receiver.url.replace("/hooks", "/merges"), ["customer.merged"])

    # when a customer writes by SMS and the outbox delivers
    message = inbound(client, "SM1")
    deliver(app)

    # then the first subscriber got both events, each correctly signed; the second got nothing
    assert {r.path for r in receiver.requests} == {"/hooks"}
    (received,) = receiver.of_type("message.received")
    body = received.verify(sub["secret"])
    assert body["data"]["text"] == "hola" and body["data"]["id"] == message["message_id"]
    assert body["data"]["conversation_id"] == message["conversation_id"]
    assert body["data"]["customer_id"] == message["customer_id"]
    assert set(body) == {"type", "timestamp", "data"}
    (created,) = receiver.of_type("conversation.created")
    assert created.verify(sub["secret"])["data"]["id"] == message["conversation_id"]

    # the signature is the spec's HMAC over "{id}.{timestamp}.{body}" with the decoded secret
    key = base64.b64decode(sub["secret"].removeprefix("whsec_"))
    signed = f"{received.headers['webhook-id']}.{received.headers['webhook-timestamp']}.".encode() + received.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert received.headers["webhook-signature"] == f"v1,{expected}"
    assert received.headers["content-type"] == "application/json"

    # and the deliveries are listed with their attempt, the webhook-id being the delivery id
    listed = deliveries(client, sub["id"])
    assert sorted(d["type"] for d in listed) == ["conversation.created", "message.received"]
    assert all(d["state"] == "sent" and [a["outcome"] for a in d["attempt_log"]] == ["sent"] for d in listed)
    by_type = {d["type"]: d for d in listed}
    assert received.headers["webhook-id"] == by_type["message.received"]["id"]
    assert by_type["message.received"]["attempt_log"][0]["status_code"] == 200

    # a receiver telling a repeated message apart: the same external id is not announced again
    inbound_again = client.post(
        "/api/v1/messages/inbound",
        json={"channel": "sms", "identities": [{"type": "phone", "value": "612345678"}], "text": "hola",
              "external_id": "SM1"},
    )  # fmt: skip
    assert inbound_again.status_code == 200 and inbound_again.json()["duplicate"] is True
    deliver(app)
    assert len(receiver.requests) == 2


@pytest.mark.usefixtures("no_backoff")
def test_a_failing_endpoint_is_retried_with_the_same_webhook_id(
    client: TestClient, app: FastAPI, receiver: Receiver
) -> None:
    sub = subscribe(client, receiver.url, ["message.received"])
    receiver.answers.extend([500, 503])

    inbound(client, "SM-retry")
    deliver(app)

    assert [r.status for r in receiver.requests] == [500, 503, 200]
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    for request in receiver.requests:
        request.verify(sub["secret"])
    (delivery,) = deliveries(client, sub["id"])
    assert delivery["state"] == "sent" and delivery["attempts"] == 3
    assert [(a["number"], a["outcome"], a["status_code"]) for a in delivery["attempt_log"]] == [
        (1, "retry", 500),
        (2, "retry", 503),
        (3, "sent", 200),
    ]
    assert delivery["last_error"] is None


def test_a_rejected_delivery_is_dead_at_once_and_can_be_replayed(
    client: TestClient, app: FastAPI, receiver: Receiver
) -> None:
    sub = subscribe(client, receiver.url, ["message.*"])
    receiver.answers.append(400)

    inbound(client, "SM-400")
    deliver(app)

    (dead,) = deliveries(client, sub["id"], state="dead")
    assert dead["attempts"] == 1 and dead["last_error"].startswith("HTTP 400")
    assert [(a["outcome"], a["status_code"]) for a in dead["attempt_log"]] == [("dead", 400)]
    assert deliveries(client, sub["id"], state="sent") == []

    # when the receiver is fixed and the delivery replayed
    replay = client.post(f"/api/v1/webhook-deliveries/{dead['id']}/replay")
    assert replay.status_code == 201, replay.text
    assert replay.json()["replay_of"] == dead["id"] and replay.json()["state"] == "pending"
    deliver(app)

    # then a new delivery (a new webhook-id) carrying the same event was accepted
    first, second = receiver.requests
    assert second.status == 200 and second.headers["webhook-id"] == replay.json()["id"]
    assert second.headers["webhook-id"] != first.headers["webhook-id"]
    assert second.verify(sub["secret"]) == first.verify(sub["secret"])
    (sent,) = deliveries(client, sub["id"], state="sent")
    assert sent["id"] == replay.json()["id"] and sent["replay_of"] == dead["id"]
    fetched = client.get(f"/api/v1/webhook-deliveries/{sent['id']}").json()
    assert [a["outcome"] for a in fetched["attempt_log"]] == ["sent"]

    # a delivery still under way cannot be replayed; an unknown one is 404
    inbound(client, "SM-next")
    (pending,) = deliveries(client, sub["id"], state="pending")
    problem(client.post(f"/api/v1/webhook-deliveries/{pending['id']}/replay"), 409)
    problem(client.post(f"/api/v1/webhook-deliveries/{sub['id']}/replay"), 404)


def test_410_gone_disables_the_subscription(client: TestClient, app: FastAPI, receiver: Receiver) -> None:
    sub = subscribe(client, receiver.url, ["*"])
    receiver.default = 410

    inbound(client, "SM-gone")
    deliver(app)

    state = client.get(f"{SUBSCRIPTIONS}/{sub['id']}").json()
    assert state["active"] is False and "410" in state["disabled_reason"] and state["disabled_at"]
    gone = deliveries(client, sub["id"])
    assert {d["state"] for d in gone} == {"dead"} and len(receiver.requests) == len(gone) >= 2
    # no new deliveries for a disabled subscription, and no replays until it is re-enabled
    inbound(client, "SM-after", identities=[{"type": "phone", "value": "698765432"}])
    assert len(deliveries(client, sub["id"])) == len(gone)
    problem(client.post(f"/api/v1/webhook-deliveries/{gone[0]['id']}/replay"), 409)

    receiver.default = 200
    enabled = client.patch(f"{SUBSCRIPTIONS}/{sub['id']}", json={"active": True})
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["active"] is True and enabled.json()["disabled_reason"] is None
    assert client.post(f"/api/v1/webhook-deliveries/{gone[0]['id']}/replay").status_code == 201
    inbound(client, "SM-back", identities=[{"type": "phone", "value": "611111111"}])
    deliver(app)
    assert [r.status for r in receiver.requests[len(gone) :]] == [200] * (len(receiver.requests) - len(gone))
    assert len(receiver.requests) > len(gone) + 1
    assert client.get(f"{SUBSCRIPTIONS}/{sub['id']}").json()["active"] is True


def test_a_merge_subscriber_receives_merges(client: TestClient, app: FastAPI, receiver: Receiver) -> None:
    sub = subscribe(client, receiver.url, ["customer.merged", "customer.merge_undone"])
    ana = client.post("/api/v1/customers", json={"identities": [{"type": "email", "value": "ana@example.com"}]})
    other = client.post("/api/v1/customers", json={"identities": [{"type": "phone", "value": "612345678"}]})
    assert ana.status_code == other.status_code == 201

    merge = client.post(f"/api/v1/customers/{ana.json()['id']}/merge", json={"other_customer_id": other.json()["id"]})
    assert merge.status_code == 201, merge.text
    deliver(app)

    (received,) = receiver.requests
    body = received.verify(sub["secret"])
    assert body["type"] == "customer.merged"
    assert body["data"]["merge_id"] == merge.json()["merge_id"]
    assert {body["data"]["survivor_id"], body["data"]["merged_id"]} == {ana.json()["id"], other.json()["id"]}

    undo = client.post(f"/api/v1/merges/{merge.json()['merge_id']}/undo")
    assert undo.status_code == 200, undo.text
    deliver(app)
    assert [r.json["type"] for r in receiver.requests] == ["customer.merged", "customer.merge_undone"]


def test_test_event_rotation_and_deletion(client: TestClient, app: FastAPI, receiver: Receiver) -> None:
    sub = subscribe(client, receiver.url, ["conversation.resolved"])

    ping = client.post(f"{SUBSCRIPTIONS}/{sub['id']}/test")
    assert ping.status_code == 201 and ping.json()["type"] == "webhook.test"
    deliver(app)
    assert receiver.requests[-1].verify(sub["secret"])["type"] == "webhook.test"

    # after a rotation deliveries carry signatures with the new and (for a while) the old secret
    rotated = client.post(f"{SUBSCRIPTIONS}/{sub['id']}/rotate-secret")
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != sub["secret"]
    assert rotated.json()["previous_secret_expires_at"] is not None
    assert client.post(f"{SUBSCRIPTIONS}/{sub['id']}/test").status_code == 201
    deliver(app)
    last = receiver.requests[-1]
    assert len(last.headers["webhook-signature"].split(" ")) == 2
    assert last.verify(new_secret) == last.verify(sub["secret"])
    assert "secret" not in client.get(f"{SUBSCRIPTIONS}/{sub['id']}").json()

    # a deleted subscription is gone, and its queued deliveries fail instead of being sent
    assert client.post(f"{SUBSCRIPTIONS}/{sub['id']}/test").status_code == 201
    assert client.delete(f"{SUBSCRIPTIONS}/{sub['id']}").status_code == 204
    problem(client.get(f"{SUBSCRIPTIONS}/{sub['id']}"), 404)
    problem(client.get(f"{SUBSCRIPTIONS}/{sub['id']}/deliveries"), 404)
    count = len(receiver.requests)
    deliver(app)
    assert len(receiver.requests) == count
    problem(client.delete(f"{SUBSCRIPTIONS}/{sub['id']}"), 404)


def test_the_in_process_worker_delivers_on_its_own(client: TestClient, app: FastAPI, receiver: Receiver) -> None:
    app.state.outbox_worker.start()  # what `omnicanal serve` does (the app's shutdown stops it)
    sub = subscribe(client, receiver.url, ["message.received"])
    inbound(client, "SM-live")
    (received,) = receiver.wait_for(1)
    assert received.verify(sub["secret"])["type"] == "message.received"
