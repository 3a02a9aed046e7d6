"""Web chat across processes: the visitor's socket is held by one server, the reply leaves from a worker."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from omnicanal.access.service import create_api_key
from omnicanal.db import create_database
from omnicanal.models import metadata
from omnicanal.settings import Settings
from tests.conversations.helpers import API, stamp_head
from tests.support.live_server import ServerProcess, free_port
from tests.support.postgres import PostgresCluster
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def shared_postgres(postgres_cluster: PostgresCluster) -> Iterator[str]:
    name = f"omnicanal_webchat_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
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


class HealthyWorker(ServerProcess):
    """``omnicanal worker`` serves no HTTP: it is ready when it says so."""

    def start(self) -> HealthyWorker:
        self._log_dir = Path(tempfile.mkdtemp(prefix="omnicanal-worker-"))
        with open(self._log_dir / "output.log", "wb") as log:
            self.process = subprocess.Popen(self.args, env={**os.environ, **self.env}, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + self.startup_timeout
        while "delivering the outbox" not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = self.output()
                self.stop()
                raise RuntimeError(f"the worker did not start:\n{output}")
            time.sleep(0.1)
        return self


def receive_until(socket: Any, wanted: str, direction: str | None = None, *, timeout: float = 5.0) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = json.loads(socket.recv(timeout=timeout))
        if frame["type"] == wanted and (direction is None or frame["message"]["direction"] == direction):
            return frame


@pytest.mark.postgres
def test_a_reply_sent_by_a_worker_process_reaches_a_socket_held_by_a_server_process(
    shared_postgres: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    db = create_database(Settings(database_url=shared_postgres, environment="test"))
    with db.write() as session:
        _, token = create_api_key(session, name="webchat test", role="admin")
    db.dispose()
    env = {
        "OMNICANAL_ENVIRONMENT": "test", "OMNICANAL_DATABASE_URL": shared_postgres,
        "OMNICANAL_REDIS_URL": redis_server.url, "OMNICANAL_OUTBOX_IN_PROCESS": "false",
        "OMNICANAL_ATTACHMENTS_DIR": str(tmp_path / "attachments"), "OMNICANAL_DB_POOL_SIZE": "4",
    }  # fmt: skip
    port = free_port()
    server = ServerProcess(["omnicanal", "serve", "--port", str(port)], port=port, env=env, startup_timeout=60)
    worker = HealthyWorker(["omnicanal", "worker"], port=0, env=env, startup_timeout=60)
    headers = {"Authorization": f"Bearer {token}"}
    with server, worker, httpx.Client(base_url=server.base_url, headers=headers, trust_env=False) as api:
        created = api.post(f"{API}/channels", json={"type": "webchat", "name": "Web", "config": {}})
        assert created.status_code == 201, created.text
        url = f"ws://127.0.0.1:{port}/ws/widget?channel={created.json()['id']}"
        with connect(url, open_timeout=10) as socket:
            socket.send(json.dumps({"type": "hello", "device_id": "device-" + uuid.uuid4().hex}))
            assert receive_until(socket, "ready")["messages"] == []
            socket.send(json.dumps({"type": "message", "client_id": "c-1", "text": "Is anyone there?"}))
            ack = receive_until(socket, "message", "inbound")
            assert ack["client_id"] == "c-1"
            conversation = ack["message"]["conversation_id"]
            reply = api.post(f"{API}/conversations/{conversation}/messages", json={"text": "Yes, Marta here."})
            assert reply.status_code == 201, reply.text
            frame = receive_until(socket, "message", "outbound", timeout=10.0)
            assert frame["message"]["text"] == "Yes, Marta here."
        deadline = time.monotonic() + 5  # the worker records the outcome right after pushing it
        while (status := api.get(f"{API}/conversations/{conversation}/messages").json()["items"][-1]["status"]) != (
            "sent"
        ) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status == "sent"
