"""A delivery status that arrives before the provider's message id is recorded is kept and applied later."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omnicanal.channels.delivery import HeldStatus, forget_stale
from omnicanal.db import Database, utcnow
from tests.channels.doubles import Call
from tests.channels.meta_helpers import post_signed, wa_message, wa_payload
from tests.channels.test_whatsapp import NUMBER_ID, SECRET, only_conversation, send_in, wa_channel, worker
from tests.channels.whatsapp_double import CloudApi
from tests.conversations.helpers import API, messages


@pytest.fixture
def cloud() -> Iterator[CloudApi]:
    double = CloudApi()
    yield double.start()  # type: ignore[misc]
    double.stop()


def status_payload(provider_id: str, state: str) -> dict[str, Any]:
    update = {"id": provider_id, "status": state, "timestamp": str(int(time.time())), "recipient_id": "34612345678"}
    return wa_payload(NUMBER_ID, statuses=[update])


def calling_back(
    cloud: CloudApi, client: TestClient, channel_id: str, *, before_answer: bool
) -> list[threading.Thread]:
    """Make the double report "delivered" for every message it accepts: before answering, or at the same time."""
    answer = cloud.answer
    threads: list[threading.Thread] = []

    def callback(provider_id: str) -> None:
        response = post_signed(client, f"/webhooks/whatsapp/{channel_id}", status_payload(provider_id, "delivered"),
                               SECRET)  # fmt: skip
        assert response.status_code == 200

    def answering(call: Call) -> Any:
        status, body = answer(call)
        if call.path.endswith("/messages") and status == 200:
            provider_id = body["messages"][0]["id"]
            if before_answer:
                callback(provider_id)
            else:
                thread = threading.Thread(target=callback, args=(provider_id,))
                threads.append(thread)
                thread.start()
        return status, body

    cloud.answer = answering  # type: ignore[method-assign]
    return threads


def held_count(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(HeldStatus)) or 0)


def test_a_status_that_comes_before_the_send_is_recorded_is_applied_when_it_is(
    client: TestClient, cloud: CloudApi, db: Database
) -> None:
    channel = wa_channel(client, cloud.url)
    send_in(client, channel["id"], wa_message("34612345678", body="Hola"))
    conversation = only_conversation(client)
    calling_back(cloud, client, channel["id"], before_answer=True)
    reply = client.post(f"{API}/conversations/{conversation['id']}/messages", json={"text": "¿En qué te ayudo?"})
    assert reply.status_code == 201
    worker(client).drain()
    last = messages(client, conversation["id"])[-1]
    assert last["provider_message_id"] == "wamid.OUT000001"
    assert last["status"] == "delivered"  # not left at "sent": the early callback was kept, then applied
    assert held_count(db) == 0
    # a later "read" still moves it forward as usual
    post_signed(client, f"/webhooks/whatsapp/{channel['id']}", status_payload("wamid.OUT000001", "read"), SECRET)
    assert messages(client, conversation["id"])[-1]["status"] == "read"


def test_a_status_for_an_id_that_never_becomes_known_is_forgotten_after_a_while(
    client: TestClient, cloud: CloudApi, db: Database
) -> None:
    channel = wa_channel(client, cloud.url)
    response = post_signed(client, f"/webhooks/whatsapp/{channel['id']}", status_payload("wamid.ELSEWHERE", "read"),
                           SECRET)  # fmt: skip
    assert response.status_code == 200
    assert held_count(db) == 1
    with db.write() as session:
        assert forget_stale(session) == 0  # still within the hold
    with db.write() as session:
        assert forget_stale(session, now=utcnow() + timedelta(days=3)) == 1
    assert held_count(db) == 0


def test_statuses_racing_the_send_outcomes_are_never_lost(client: TestClient, cloud: CloudApi, db: Database) -> None:
    """Each callback is posted while the worker records the send: whichever commits first, it ends delivered."""
    channel = wa_channel(client, cloud.url)
    send_in(client, channel["id"], wa_message("34612345678", body="Hola"))
    conversation = only_conversation(client)
    threads = calling_back(cloud, client, channel["id"], before_answer=False)
    replies = 30
    for n in range(replies):
        response = client.post(f"{API}/conversations/{conversation['id']}/messages", json={"text": f"Respuesta {n}"})
        assert response.status_code == 201
    worker(client).drain()
    deadline = time.monotonic() + 20
    while len(threads) < replies and time.monotonic() < deadline:
        time.sleep(0.05)
    for thread in threads:
        thread.join(timeout=20)
    sent = [m for m in messages(client, conversation["id"]) if m["direction"] == "outbound"]
    assert len(sent) == replies
    assert {m["status"] for m in sent} == {"delivered"}
    assert held_count(db) == 0
