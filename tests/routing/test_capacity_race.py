"""Two app instances route, resolve and drain at once: agents' ``open_count`` stays exact."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omnicanal.app import create_app
from omnicanal.conversations.models import Conversation
from omnicanal.db import Database, create_database
from omnicanal.routing.models import AgentProfile
from omnicanal.settings import Settings
from tests.conversations.helpers import API, inbound, make_rule, make_staff, make_team, set_agent
from tests.support.concurrency import all_at_once

CAPACITIES = (3, 4, 5)
CONVERSATIONS = 30


@pytest.fixture
def second_client(settings: Settings, make_key: Callable[[str], str]) -> Iterator[TestClient]:
    """Another app instance (own engine, ingest writer and pool), as a second server process would be."""
    database = create_database(settings)
    try:
        with TestClient(create_app(settings, database=database)) as other:
            other.headers["Authorization"] = f"Bearer {make_key('admin')}"
            yield other
    finally:
        database.dispose()


def check_counters(db: Database) -> dict[uuid.UUID, int]:
    with db.read() as session:
        profiles = {p.user_id: p for p in session.scalars(select(AgentProfile))}
        held = Counter(
            session.scalars(
                select(Conversation.assignee_id).where(
                    Conversation.assignee_id.is_not(None), Conversation.status != "resolved"
                )
            )
        )
    for user_id, profile in profiles.items():
        assert profile.open_count == held[user_id], (user_id, profile.open_count, held[user_id])
        assert profile.open_count <= profile.capacity
    return {user_id: p.open_count for user_id, p in profiles.items()}


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_open_count_under_concurrent_routing(client: TestClient, second_client: TestClient, db: Database) -> None:
    agents = [make_staff(db, f"agent{n}@shop.example") for n in range(len(CAPACITIES) + 1)]
    late = agents.pop()
    team = make_team(client, "Soporte", [*agents, late])
    make_rule(client, team["id"])
    for agent, capacity in zip(agents, CAPACITIES, strict=True):
        set_agent(client, agent, capacity=capacity, online=True)
    set_agent(client, late, capacity=4, online=False)
    clients = [client, second_client]

    # 1. thirty new conversations at once, through both instances
    all_at_once([
        lambda n=n: inbound(clients[n % 2], channel="email", identities=[{"type": "email", "value": f"c{n}@x.com"}])
        for n in range(CONVERSATIONS)
    ])  # fmt: skip
    loads = check_counters(db)
    assert sum(loads.values()) == sum(CAPACITIES)  # everybody full, the rest queued

    # 2. agents resolve (each resolve drains the queue), twice over from both instances, while the
    #    late agent comes online (which drains it too)
    with db.read() as session:
        assigned = list(session.scalars(select(Conversation.id).where(Conversation.assignee_id.is_not(None))))
    to_resolve = assigned[:8]

    def resolve(conversation_id: uuid.UUID, http: TestClient) -> None:
        response = http.post(f"{API}/conversations/{conversation_id}/status", json={"status": "resolved"})
        assert response.status_code in (200, 409), response.text

    jobs: list[Callable[[], Any]] = [lambda c=c, h=h: resolve(c, h) for c in to_resolve for h in clients]
    jobs.append(lambda: set_agent(second_client, late, online=True))
    all_at_once(jobs)
    loads = check_counters(db)
    with db.read() as session:
        queued = session.scalars(
            select(Conversation.id).where(Conversation.assignee_id.is_(None), Conversation.status == "open")
        ).all()
    assert sum(loads.values()) == min(sum(CAPACITIES) + 4, CONVERSATIONS - len(to_resolve))
    assert len(queued) == CONVERSATIONS - len(to_resolve) - sum(loads.values())
