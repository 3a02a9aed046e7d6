"""A real ``omnicanal worker`` killed with SIGKILL mid-send: nothing is lost, nothing is delivered twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omnicanal.db import Database
from omnicanal.outbox.models import OutboxItem
from omnicanal.settings import Settings
from tests.conversations.helpers import API, inbound, stamp_head
from tests.outbox.provider import ProviderDouble

REPLIES = 16


class WorkerProcess:
    def __init__(self, settings: Settings, provider: ProviderDouble, log: Path) -> None:
        env = {
            **os.environ,
            "OMNICANAL_ENVIRONMENT": "test",
            "OMNICANAL_DATABASE_URL": settings.database_url,
            "OMNICANAL_CHANNEL_ENDPOINTS": json.dumps({"*": provider.url}),
            "OMNICANAL_OUTBOX_LEASE_SECONDS": "2",
            "OMNICANAL_OUTBOX_SENDERS": "4",
        }
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "omnicanal", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    def signal(self, sig: signal.Signals) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)

    def stop(self) -> None:
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(timeout=5)


@pytest.fixture
def workers(settings: Settings, provider: ProviderDouble, tmp_path: Path) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        worker = WorkerProcess(settings, provider, tmp_path / "worker.log")
        started.append(worker)
        return worker

    stamp_head(settings.database_url)
    yield start
    for worker in started:
        worker.stop()


def states(db: Database) -> dict[str, str]:
    with db.read() as session:
        return {str(i.id): i.state for i in session.scalars(select(OutboxItem))}


def wait_for(condition: Any, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s; worker log:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.02)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_killed_worker_items_are_delivered_once_by_the_next(
    client: TestClient, db: Database, provider: ProviderDouble, workers: Any, tmp_path: Path
) -> None:
    identities = [{"type": "email", "value": "ana@example.com"}]
    conversation_id = inbound(client, channel="email", identities=identities)["conversation_id"]
    for n in range(REPLIES):
        response = client.post(f"{API}/conversations/{conversation_id}/messages", json={"text": f"reply {n}"})
        assert response.status_code == 201, response.text
    items = set(states(db))
    assert len(items) == REPLIES
    provider.delay = 0.4
    log = tmp_path / "worker.log"

    first = workers()

    def mid_send() -> bool:
        answered = sum(1 for r in provider.requests if r.answered_at is not None)
        return answered >= 4 and any(r.answered_at is None for r in provider.requests)

    wait_for(mid_send, 30, "the first worker did not get going", log)
    first.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    first.process.wait(timeout=5)
    known = provider.answered_before(killed_at - 0.3)  # outcomes the worker had time to record
    left = states(db)
    assert "sending" in left.values(), "the kill did not land mid-send"
    assert all(left[key] == "sent" for key in known)

    second = workers()
    wait_for(lambda: set(states(db).values()) == {"sent"}, 30, "the second worker did not finish", log)
    second.stop()

    asked = provider.keys()
    assert set(provider.delivered) == items  # every message delivered once, by idempotency key
    assert set(asked) == items
    assert all(asked[key] == 1 for key in known)  # a known outcome is never asked again
    assert any(count > 1 for count in asked.values())  # the in-flight ones went again, same key
    statuses = {m["status"] for m in client.get(f"{API}/conversations/{conversation_id}/messages").json()["items"]
                if m["direction"] == "outbound"}  # fmt: skip
    assert statuses == {"sent"}
