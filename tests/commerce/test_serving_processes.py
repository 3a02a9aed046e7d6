"""``omnicanal serve --workers 2`` on one SQLite file: two processes take orders at once, and none oversells."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import httpx
from fastapi.testclient import TestClient

from omnicanal.access.service import create_api_key
from omnicanal.db import create_database
from omnicanal.models import metadata
from omnicanal.settings import Settings
from tests.commerce.helpers import API, cart, make_customer, make_product, make_store, ok, set_stock, stock
from tests.conversations.helpers import stamp_head
from tests.support.live_server import ServerProcess, free_port, http_status


def _serving_processes(pid: int) -> list[int]:
    """The children of ``pid`` that multiprocessing spawned (uvicorn's serving processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                spawned = b"spawn_main" in (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if parent == pid and spawned:
                found.append(int(entry.name))
    return found


def _environment(tmp_path: Path) -> dict[str, str]:
    return {
        "OMNICANAL_ENVIRONMENT": "test",
        "OMNICANAL_DATABASE_URL": f"sqlite:///{tmp_path / 'shop.db'}",
        "OMNICANAL_OUTBOX_IN_PROCESS": "false",
        "OMNICANAL_ATTACHMENTS_DIR": str(tmp_path / "attachments"),
    }


def test_two_serving_processes_take_orders_at_once_without_overselling(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    db = create_database(Settings(database_url=url, environment="test"))
    metadata.create_all(db.write_engine)
    stamp_head(url)
    with db.write() as session:
        _, token = create_api_key(session, name="two processes", role="admin")
    db.dispose()
    port = free_port()
    env = _environment(tmp_path)
    server = ServerProcess(["omnicanal", "serve", "--port", str(port), "--workers", "2"], port=port, env=env,
                           startup_timeout=90)  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    with server, httpx.Client(base_url=server.base_url, headers=headers, trust_env=False, timeout=30) as api:
        assert server.pid is not None
        assert len(_serving_processes(server.pid)) == 2, server.output()
        client = cast(TestClient, api)  # the helpers only use httpx.Client's methods
        make_product(client, "Limited sneaker", [("LTD-1", 15000)])
        make_product(client, "Socks", [("SOCK-1", 500)])
        warehouse = make_store(client, "WH", kind="warehouse")
        set_stock(client, warehouse["id"], "LTD-1", 10)
        set_stock(client, warehouse["id"], "SOCK-1", 1000)
        customers = [make_customer(client, f"fan{n}@example.com")["id"] for n in range(8)]

        def order_and_pay(index: int) -> tuple[int, Any]:
            body = cart(customers[index % 8], [("SOCK-1", 1), ("LTD-1", 1)])
            placed = api.post(f"{API}/orders", json=body, headers={"Idempotency-Key": f"race-{index}"})
            if placed.status_code != 201:
                return placed.status_code, placed.json()
            order = placed.json()
            paid = api.post(f"{API}/orders/{order['id']}/payments", json={"method": "card", "amount": order["total"]})
            assert paid.status_code == 201, paid.text
            return 201, paid.json()

        with ThreadPoolExecutor(max_workers=16) as pool:
            outcomes = list(pool.map(order_and_pay, range(40)))

        statuses = Counter(status for status, _ in outcomes)
        assert statuses == {201: 10, 409: 30} or statuses == {201: 10, 422: 30}, outcomes
        assert all(body["payment_status"] == "paid" for status, body in outcomes if status == 201)
        for status, body in outcomes:
            if status != 201:
                assert "LTD-1" in str(body)  # the line that could not be served is named
        assert stock(client, warehouse["id"], "LTD-1")["reserved"] == 10
        assert stock(client, warehouse["id"], "SOCK-1")["reserved"] == 10
        listed = ok(api.get(f"{API}/orders", params={"limit": 100}))
        assert sum(1 for order in listed["items"] if order["payment_status"] == "paid") == 10
    assert "database is locked" not in server.output()


def _wait_for(condition: Any, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_a_serving_process_that_dies_is_replaced_and_sigint_stops_them_all(tmp_path: Path) -> None:
    port = free_port()
    env = _environment(tmp_path)
    server = ServerProcess(["omnicanal", "serve", "--port", str(port), "--workers", "2"], port=port, env=env,
                           startup_timeout=90)  # fmt: skip
    with server:
        assert server.pid is not None and server.process is not None
        first, second = _serving_processes(server.pid)
        os.kill(first, signal.SIGKILL)
        assert _wait_for(lambda: len(set(_serving_processes(server.pid or 0)) - {first}) == 2), server.output()
        assert second in _serving_processes(server.pid)
        assert _wait_for(lambda: http_status(server.url("/healthz")) == 200)
        assert "starting another" in server.output()

        taken = subprocess.run(["omnicanal", "serve", "--port", str(port), "--workers", "2"], env={**os.environ, **env},
                               capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert taken.returncode == 2
        assert "already serves" in taken.stderr

        children = _serving_processes(server.pid)
        os.kill(server.pid, signal.SIGINT)
        assert server.process.wait(timeout=30) == 0
        assert not any(Path(f"/proc/{child}").exists() for child in children)
