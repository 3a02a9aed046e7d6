"""Orders and payments that reach the ingest writer together share its transaction (SQLite), and each is still its
own: a refused request takes back only its own savepoint, and its neighbours are placed or paid as if it had not
been there. On PostgreSQL each is a transaction of its own, as before."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.orm import Session

from omnicanal.db import Database
from omnicanal.timeline.writer import IngestWriter
from tests.commerce.helpers import API, cart, make_customer, make_product, make_store, ok, set_stock, stock
from tests.loyalty.helpers import spend_rule, wallet


@contextmanager
def one_batch(client: TestClient, app: Any, db: Database, expected: int) -> Iterator[Callable[..., Future[Any]]]:
    """Requests sent in the block reach the ingest writer while it is busy, and are then stored together.

    Yields ``send(path, body)``; on leaving, the writer goes on once all ``expected`` requests wait for it.
    Counts the write transactions committed after that in ``one_batch.commits``.
    """
    writer: IngestWriter = app.state.ingest_writer
    gate, busy = threading.Event(), threading.Event()

    def hold(_: Session, items: Sequence[Any]) -> list[None]:
        busy.set()
        gate.wait(10)
        return [None for _ in items]

    held = client.portal.start_task_soon(writer.run, hold, [None])  # type: ignore[union-attr]
    assert busy.wait(10)
    with ThreadPoolExecutor(max_workers=expected) as pool:
        yield lambda path, body: pool.submit(client.post, path, json=body)
        deadline = time.monotonic() + 10
        while writer.waiting < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer.waiting == expected
        commits = [0]

        def count(_: Any) -> None:
            commits[0] += 1

        event.listen(db.write_engine, "commit", count)
        try:
            gate.set()
            held.result(10)
            pool.shutdown(wait=True)
        finally:
            event.remove(db.write_engine, "commit", count)
        one_batch.commits = commits[0]  # type: ignore[attr-defined]  # the held job ran no statement: no commit


def _shop(client: TestClient, units: int) -> tuple[str, list[str]]:
    make_product(client, "Linen shirt", [("LIN-1", 4000)])
    warehouse = make_store(client, "WH", kind="warehouse")
    set_stock(client, warehouse["id"], "LIN-1", units)
    customers = [make_customer(client, f"buyer{n}@example.com")["id"] for n in range(4)]
    return warehouse["id"], customers


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_orders_and_payments_sent_together_are_stored_in_one_transaction(
    client: TestClient, app: Any, db: Database
) -> None:
    warehouse, customers = _shop(client, 100)
    spend_rule(client)
    with one_batch(client, app, db, 4) as send:
        placing = [send(f"{API}/orders", cart(c, [("LIN-1", 2)])) for c in customers]
    assert one_batch.commits == 1  # type: ignore[attr-defined]
    orders = [ok(f.result(), 201) for f in placing]
    assert len({o["number"] for o in orders}) == 4
    assert stock(client, warehouse, "LIN-1")["reserved"] == 8

    with one_batch(client, app, db, 4) as send:
        paying = [send(f"{API}/orders/{o['id']}/payments", {"method": "card", "amount": o["total"]}) for o in orders]
    assert one_batch.commits == 1  # type: ignore[attr-defined]
    for order, answer in zip(orders, paying, strict=True):
        assert ok(answer.result(), 201)["order_status"] == "paid"
        assert ok(client.get(f"{API}/orders/{order['id']}"))["payment_status"] == "paid"
    # loyalty heard every order.paid of the batch (at once): 1 point per euro of goods, 2 x 40 EUR
    for customer in customers:
        assert wallet(client, customer)["pending"] == 80


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_refused_payment_leaves_the_others_of_its_batch_paid(client: TestClient, app: Any, db: Database) -> None:
    _, customers = _shop(client, 100)
    spend_rule(client)
    orders = [ok(client.post(f"{API}/orders", json=cart(c, [("LIN-1", 1)])), 201) for c in customers]
    amounts = [o["total"] for o in orders]
    amounts[1] += 1  # more than is due
    with one_batch(client, app, db, 4) as send:
        paying = [
            send(f"{API}/orders/{o['id']}/payments", {"method": "card", "amount": amount})
            for o, amount in zip(orders, amounts, strict=True)
        ]
    assert one_batch.commits == 1  # type: ignore[attr-defined]  # the batch was not run again request by request
    refused = paying[1].result()
    assert refused.status_code == 422
    assert "more than the balance due" in refused.json()["detail"]
    assert ok(client.get(f"{API}/orders/{orders[1]['id']}"))["payment_status"] == "unpaid"
    assert wallet(client, customers[1])["pending"] == 0
    for n in (0, 2, 3):
        assert ok(paying[n].result(), 201)["payment_status"] == "paid"
        assert wallet(client, customers[n])["pending"] == 40


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_two_orders_in_one_batch_for_the_last_unit_place_one(client: TestClient, app: Any, db: Database) -> None:
    warehouse, customers = _shop(client, 1)
    with one_batch(client, app, db, 2) as send:
        placing = [send(f"{API}/orders", cart(c, [("LIN-1", 1)])) for c in customers[:2]]
    assert one_batch.commits == 1  # type: ignore[attr-defined]
    answers = [f.result() for f in placing]
    assert sorted(a.status_code for a in answers) == [201, 422]
    refused = next(a for a in answers if a.status_code == 422).json()
    assert refused["errors"][0]["field"] == "lines[0]"
    level = stock(client, warehouse, "LIN-1")
    assert (level["reserved"], level["available"]) == (1, 0)
