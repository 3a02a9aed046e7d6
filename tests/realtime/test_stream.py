"""Server-sent events from real servers: one process, and two processes sharing Redis."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnicanal.access.service import create_api_key
from omnicanal.db import create_database
from omnicanal.models import metadata
from omnicanal.settings import Settings
from tests.conversations.helpers import API, stamp_head
from tests.support.live_server import LiveServer, ServerProcess, free_port
from tests.support.postgres import PostgresCluster
from tests.support.redis_server import RedisServer


def inbound_body(external_id: str, text: str = "Hola") -> dict[str, Any]:
    return {
        "channel": "whatsapp", "identities": [{"type": "whatsapp", "value": "34612345678"}], "text": text,
        "external_id": external_id, "occurred_at": datetime.now(UTC).isoformat(),
    }  # fmt: skip


class EventReader:
    """Reads an SSE stream in a thread; events land in a list."""

    def __init__(self, url: str, token: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.connected = threading.Event()
        self._stop = False
        self._response: httpx.Response | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, read=30.0), trust_env=False)
        self._thread = threading.Thread(target=self._read, args=(url, token), daemon=True)
        self._thread.start()
        assert self.connected.wait(10), "the stream did not open"

    def _read(self, url: str, token: str) -> None:
        try:
            with self._client.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as response:
                self._response = response
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                kind = ""
                for line in response.iter_lines():
                    if line.startswith(": connected"):
                        self.connected.set()
                    elif line.startswith("event: "):
                        kind = line[len("event: ") :]
                    elif line.startswith("data: "):
                        self.events.append((kind, json.loads(line[len("data: ") :])))
        except (httpx.HTTPError, OSError, RuntimeError):
            if not self._stop:
                raise

    def wait_for(self, kind: str, timeout: float, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for seen, item in list(self.events):
                if seen == kind and all(item["data"].get(k) == v for k, v in match.items()):
                    return item
            time.sleep(0.01)
        raise AssertionError(f"no {kind} {match} within {timeout} s; got {[k for k, _ in self.events]}")

    def close(self) -> None:
        self._stop = True
        if self._response is not None:
            # wake the reading thread and let the server see the client go: shut the socket down
            sock = self._response.extensions["network_stream"].get_extra_info("socket")
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._client.close()
        self._thread.join(timeout=5)


def test_stream_delivers_a_received_message_within_a_second(app: Any, make_key: Any) -> None:
    token = make_key("agent")
    with LiveServer(app) as server:
        reader = EventReader(server.url(f"{API}/stream"), token)
        try:
            with httpx.Client(base_url=server.base_url, trust_env=False,
                              headers={"Authorization": f"Bearer {token}"}) as http:  # fmt: skip
                started = time.monotonic()
                response = http.post(f"{API}/messages/inbound", json=inbound_body("sse-1", "¿Hay stock?"))
                assert response.status_code == 201, response.text
                event = reader.wait_for("message.received", 1.0, id=response.json()["message_id"])
                assert time.monotonic() - started < 1.0
            assert event["data"]["text"] == "¿Hay stock?" and event["data"]["channel"] == "whatsapp"
            assert event["data"]["conversation"]["id"] == response.json()["conversation_id"]
            reader.wait_for("conversation.created", 1.0, id=response.json()["conversation_id"])
        finally:
            reader.close()


def test_stream_needs_a_key_and_filters_by_type(app: Any, make_key: Any) -> None:
    with LiveServer(app) as server, httpx.Client(base_url=server.base_url, trust_env=False) as http:
        assert http.get(f"{API}/stream").status_code == 401
        token = make_key("agent")
        reader = EventReader(server.url(f"{API}/stream?types=conversation"), token)
        try:
            response = http.post(f"{API}/messages/inbound", json=inbound_body("sse-2"),
                                 headers={"Authorization": f"Bearer {token}"})  # fmt: skip
            assert response.status_code == 201
            reader.wait_for("conversation.created", 2.0)
            assert all(kind.startswith("conversation.") for kind, _ in reader.events)
        finally:
            reader.close()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def shared_postgres(postgres_cluster: PostgresCluster) -> Iterator[str]:
    name = f"omnicanal_rt_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    postgres_cluster.drop_database(name)
    postgres_cluster.create_database(name)
    url = postgres_cluster.url(name)
    db = create_database(Settings(database_url=url, environment="test"))
    metadata.create_all(db.write_engine)
    db.dispose()
    stamp_head(url)
    try:
        yield url
    finally:
        postgres_cluster.drop_database(name)


@pytest.mark.postgres
def test_two_server_processes_share_events_through_redis(
    shared_postgres: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    db = create_database(Settings(database_url=shared_postgres, environment="test"))
    with db.write() as session:
        _, token = create_api_key(session, name="realtime test", role="admin")
    db.dispose()
    env = {
        "OMNICANAL_ENVIRONMENT": "test", "OMNICANAL_DATABASE_URL": shared_postgres,
        "OMNICANAL_REDIS_URL": redis_server.url, "OMNICANAL_OUTBOX_IN_PROCESS": "false",
        "OMNICANAL_ATTACHMENTS_DIR": str(tmp_path / "attachments"), "OMNICANAL_DB_POOL_SIZE": "4",
    }  # fmt: skip
    ports = [free_port()]
    while len(ports) < 2:  # a port just released can come back at once: two servers on one port test nothing
        port = free_port()
        if port != ports[0]:
            ports.append(port)
    servers = [
        ServerProcess(["omnicanal", "serve", "--port", str(port)], port=port, env=env, startup_timeout=60)
        for port in ports
    ]
    errors: list[BaseException] = []

    def start(server: ServerProcess) -> None:
        try:
            server.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert not errors, errors
        taker, watcher = servers
        reader = EventReader(watcher.url(f"{API}/stream"), token)
        try:
            external_id = f"redis-{uuid.uuid4().hex}"
            response = httpx.post(taker.url(f"{API}/messages/inbound"), json=inbound_body(external_id),
                                  headers={"Authorization": f"Bearer {token}"}, trust_env=False)  # fmt: skip
            assert response.status_code == 201, response.text
            event = reader.wait_for("message.received", 2.0, id=response.json()["message_id"])
            assert event["data"]["conversation_id"] == response.json()["conversation_id"]
        finally:
            reader.close()
    finally:
        for server in servers:
            server.stop()
