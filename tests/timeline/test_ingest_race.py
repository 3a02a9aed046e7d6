"""Many clients ingesting overlapping identities at once.

PostgreSQL: two app instances, each with its own engine and ingest writer thread, stand in
for two server processes. SQLite: many threads against one app, with reads and profile writes
mixed in, must never surface "database is locked".
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omnicanal.app import create_app
from omnicanal.customers.identities import normalize
from omnicanal.customers.merging import current_customer_id
from omnicanal.customers.models import Customer, Identity
from omnicanal.db import Database
from omnicanal.settings import Settings
from omnicanal.timeline.models import Event

API = "/api/v1"
THREADS = 16
EVENTS_PER_THREAD = 25
GROUPS = 10
T0 = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)

Key = tuple[str, str]


@dataclass
class Workload:
    events: dict[str, dict[str, Any]]  # event id -> body
    keys: dict[str, list[Key]]  # event id -> normalized identities
    plans: list[list[str]]  # per thread: the event ids it sends, in order
    duplicated: set[str]


@dataclass
class Outcome:
    event_id: str
    status: int
    customer_id: str | None
    duplicate: bool | None
    text: str


@dataclass
class Log:
    outcomes: list[Outcome] = field(default_factory=list)
    others: list[tuple[str, int, str]] = field(default_factory=list)
    crashes: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def group_pool(group: int) -> list[tuple[str, str]]:
    """Typed identities of one group; the phone comes in two spellings."""
    return [
        ("email", f"g{group}.a@example.com"),
        ("email", f"G{group}.B@Example.com"),
        ("email", f"g{group}.c@example.com"),
        ("phone", f"+34 612 345 {group:03d}"),
        ("phone", f"0034612346{group:03d}"),
        ("device_id", f"dev-{group}-x"),
        ("device_id", f"dev-{group}-y"),
    ]


def make_workload(seed: int, *, threads: int = THREADS, per_thread: int = EVENTS_PER_THREAD) -> Workload:
    rng = random.Random(seed)
    total = threads * per_thread
    unique = total - total // 10  # the rest are the same events sent again, concurrently
    events: dict[str, dict[str, Any]] = {}
    keys: dict[str, list[Key]] = {}
    for n in range(unique):
        group = rng.randrange(GROUPS)
        # now and then an event links two neighbouring groups
        pool = group_pool(group) + (group_pool((group + 1) % GROUPS) if rng.random() < 0.03 else [])
        typed = rng.sample(pool, rng.randint(1, 3))
        event_id = f"race-{seed}-{n}"
        events[event_id] = {
            "id": event_id,
            "type": rng.choice(["page.viewed", "cart.updated", "order.placed"]),
            "channel": rng.choice(["web", "app", "pos"]),
            "occurred_at": (T0 + timedelta(seconds=n)).isoformat(),
            "identities": [{"type": k, "value": v} for k, v in typed],
            "properties": {"n": n},
        }
        keys[event_id] = [(k, normalize(k, v, "ES")) for k, v in typed]
    ids = list(events)
    rng.shuffle(ids)
    plans: list[list[str]] = [ids[i::threads] for i in range(threads)]
    duplicated = set(rng.sample(ids, total - unique))
    owner_thread = {event_id: i for i, plan in enumerate(plans) for event_id in plan}
    for event_id in sorted(duplicated):
        # sent again by a thread of the other half (the other app, in the PostgreSQL test)
        first = owner_thread[event_id]
        other = (first + threads // 2 + rng.randrange(threads // 2)) % threads
        if other == first:
            other = (first + 1) % threads
        plans[other].insert(rng.randrange(len(plans[other]) + 1), event_id)
    for plan in plans:
        # each thread sends its copies at roughly the same point as the original
        plan.sort(key=lambda event_id: ids.index(event_id) / len(ids) + rng.random() * 0.05)
    return Workload(events, keys, plans, duplicated)


def components(keys: dict[str, list[Key]]) -> frozenset[frozenset[Key]]:
    parent: dict[Key, Key] = {}

    def find(key: Key) -> Key:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for event_keys in keys.values():
        for key in event_keys:
            find(key)
        for key in event_keys[1:]:
            parent[find(key)] = find(event_keys[0])
    groups: dict[Key, set[Key]] = defaultdict(set)
    for key in parent:
        groups[find(key)].add(key)
    return frozenset(frozenset(g) for g in groups.values())


def send_singles(client: TestClient, workload: Workload, plan: list[str], log: Log, **_: Any) -> None:
    for event_id in plan:
        response = client.post(f"{API}/events", json=workload.events[event_id])
        body = _json(response)
        with log.lock:
            log.outcomes.append(
                Outcome(event_id, response.status_code, body.get("customer_id"), body.get("duplicate"), response.text)
            )


def send_batches(client: TestClient, workload: Workload, plan: list[str], log: Log, **_: Any) -> None:
    for start in range(0, len(plan), 5):
        chunk = plan[start : start + 5]
        response = client.post(f"{API}/events", json={"events": [workload.events[e] for e in chunk]})
        body = _json(response)
        with log.lock:
            if response.status_code != 200:
                log.outcomes.extend(Outcome(e, response.status_code, None, None, response.text) for e in chunk)
                continue
            for event_id, item in zip(chunk, body["results"], strict=True):
                status = 201 if "error" not in item else int(item["error"]["status"])
                if item.get("duplicate"):
                    status = 200
                log.outcomes.append(
                    Outcome(event_id, status, item.get("customer_id"), item.get("duplicate"), str(item))
                )


def _json(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def run_threads(targets: list[Callable[[], None]], log: Log) -> None:
    barrier = threading.Barrier(len(targets))

    def run(target: Callable[[], None]) -> None:
        try:
            barrier.wait(timeout=60)
            target()
        except BaseException as exc:
            with log.lock:
                log.crashes.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a client thread hung"
    assert not log.crashes, log.crashes


def check_outcome(database: Database, workload: Workload, log: Log) -> None:
    # every response was a success: no 5xx, no 409, nothing lost
    bad = [(o.event_id, o.status, o.text[:300]) for o in log.outcomes if o.status not in (200, 201)]
    assert not bad, bad[:10]
    assert not [o for o in log.outcomes if "database is locked" in o.text]
    sent = Counter(o.event_id for o in log.outcomes)
    expected_sends = Counter(e for plan in workload.plans for e in plan)
    assert sent == expected_sends

    # each event id was created once; every other send reported a duplicate
    created = Counter(o.event_id for o in log.outcomes if o.duplicate is False)
    assert created == Counter(set(workload.events))
    for outcome in log.outcomes:
        assert (outcome.status == 200) == bool(outcome.duplicate), outcome

    with database.read() as session:
        stored = Counter(session.scalars(select(Event.event_id).where(Event.event_id.like("race-%"))))
        assert stored == Counter(set(workload.events)), "an event was lost or stored twice"
        event_owner = {
            e: c
            for e, c in session.execute(select(Event.event_id, Event.customer_id).where(Event.event_id.like("race-%")))
        }
        rows = session.execute(select(Identity.type, Identity.value, Identity.customer_id)).all()
        owners = {c for _, _, c in rows} | set(event_owner.values())
        merged_away = set(
            session.scalars(select(Customer.id).where(Customer.id.in_(owners), Customer.merged_into_id.is_not(None)))
        )
        live_of: dict[str, uuid.UUID | None] = {}
        for outcome in log.outcomes:
            if outcome.customer_id is not None and outcome.customer_id not in live_of:
                live_of[outcome.customer_id] = current_customer_id(session, uuid.UUID(outcome.customer_id))

    problems: list[str] = []
    if merged_away:
        problems.append(f"{len(merged_away)} merged-away customers still own identities or events")
    owner_of: dict[Key, uuid.UUID] = {}
    groups: dict[uuid.UUID, set[Key]] = defaultdict(set)
    for kind, value, customer_id in rows:
        assert (kind, value) not in owner_of, f"{kind}:{value} belongs to two customers"
        owner_of[(kind, value)] = customer_id
        groups[customer_id].add((kind, value))
    grouping = frozenset(frozenset(g) for g in groups.values())
    expected = components(workload.keys)
    if grouping != expected:
        problems.append(
            f"identity groups differ from the connected components: {len(grouping)} groups, {len(expected)} expected"
        )
    split = [e for e, event_keys in workload.keys.items() if {owner_of[k] for k in event_keys} != {event_owner[e]}]
    if split:
        problems.append(f"{len(split)} events are not owned by the customer holding their identities: {split[:5]}")
    # every answer (first or duplicate) named a customer that is, or was merged into, the stored one
    wrong = [o for o in log.outcomes if o.customer_id is None or live_of[o.customer_id] != event_owner[o.event_id]]
    if wrong:
        problems.append(f"{len(wrong)} answers name a customer other than the stored one: {wrong[:3]}")
    assert not problems, problems


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_two_servers_ingesting_overlapping_identities(
    settings: Settings, db: Database, make_key: Callable[[str], str]
) -> None:
    token = make_key("admin")
    workload = make_workload(seed=7)
    log = Log()
    apps = [create_app(settings), create_app(settings)]
    clients = [TestClient(app) for app in apps]
    with clients[0], clients[1]:
        for client in clients:
            client.headers["Authorization"] = f"Bearer {token}"
        targets: list[Callable[[], None]] = []
        for index, plan in enumerate(workload.plans):
            client = clients[index % 2]
            send = send_batches if index % 4 == 3 else send_singles
            targets.append(lambda c=client, p=plan, s=send: s(c, workload, p, log))
        run_threads(targets, log)
    check_outcome(db, workload, log)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_threads_never_see_database_is_locked(client: TestClient, db: Database) -> None:
    workload = make_workload(seed=11)
    log = Log()

    def reader_and_editor(plan: list[str]) -> None:
        send_singles(client, workload, plan, log)
        # reads and profile writes beside the ingest writer
        for event_id in plan[:5]:
            with log.lock:
                customer_id = next(o.customer_id for o in log.outcomes if o.event_id == event_id)
            for response in (
                client.get(f"{API}/customers/{customer_id}"),
                client.get(f"{API}/customers/{customer_id}/timeline"),
                client.patch(f"{API}/customers/{customer_id}", json={"language": "es"}),
                client.put(
                    f"{API}/customers/{customer_id}/consents/email/marketing",
                    json={"status": "granted", "source": "web"},
                ),
            ):
                with log.lock:
                    log.others.append((response.request.url.path, response.status_code, response.text))

    targets: list[Callable[[], None]] = []
    for index, plan in enumerate(workload.plans):
        if index % 4 == 3:
            targets.append(lambda p=plan: send_batches(client, workload, p, log))
        elif index % 4 == 1:
            targets.append(lambda p=plan: reader_and_editor(p))
        else:
            targets.append(lambda p=plan: send_singles(client, workload, p, log))
    run_threads(targets, log)

    assert not [o for o in log.others if "database is locked" in o[2]]
    assert not [o for o in log.others if o[1] != 200], [o for o in log.others if o[1] != 200][:5]
    check_outcome(db, workload, log)
