"""Teams, agents and rules: who gets a new conversation, and what happens to the queue."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient

from omnicanal.db import Database
from tests.conversations.helpers import (
    API,
    agents_by_id,
    conversation,
    inbound,
    make_rule,
    make_staff,
    make_team,
    messages,
    set_agent,
)


def customer(n: int) -> list[dict[str, str]]:
    return [{"type": "email", "value": f"customer{n}@example.com"}]


def new_conversation(client: TestClient, n: int, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("channel", "email")
    kwargs.setdefault("identities", customer(n))
    return conversation(client, inbound(client, **kwargs)["conversation_id"])


def staff(db: Database, count: int) -> list[uuid.UUID]:
    return [make_staff(db, f"agent{n}@shop.example", name=f"Agent {n}") for n in range(count)]


def test_teams_agents_and_rules_are_configured(client: TestClient, db: Database) -> None:
    ana, luis = staff(db, 2)
    team = make_team(
        client, "Ventas", [ana, luis], strategy="round_robin", out_of_hours_reply="Volvemos a las 9",
        business_hours={"timezone": "Europe/Madrid", "weekly": {"mon": [["09:00", "18:00"]]}},
        sla_first_response_minutes=15, sla_resolution_minutes=240,
    )  # fmt: skip
    assert sorted(team["members"]) == sorted([str(ana), str(luis)])
    assert team["business_hours"]["weekly"]["mon"] == [["09:00", "18:00"]]
    agent = set_agent(client, ana, skills=["Refunds"], languages=["ES", "en"], capacity=3, online=True)
    assert agent | {"teams": []} == agent | {
        "skills": ["refunds"], "languages": ["en", "es"], "capacity": 3, "online": True, "open_count": 0, "teams": [],
    }  # fmt: skip
    assert agent["teams"] == [team["id"]]
    assert make_rule(client, team["id"], channels=["whatsapp"], keywords=["pedido"])["conditions"]["channels"] == [
        "whatsapp"
    ]
    assert [t["name"] for t in client.get(f"{API}/teams").json()] == ["Ventas"]
    assert len(client.get(f"{API}/routing-rules").json()) == 1
    bad = [
        ("/teams", {"name": "Ventas"}, 409),
        ("/teams", {"name": "X", "strategy": "random"}, 422),
        ("/teams", {"name": "X", "members": [str(uuid.uuid4())]}, 422),
        ("/teams", {"name": "X", "business_hours": {"timezone": "Mars/Olympus"}}, 422),
        ("/teams", {"name": "X", "business_hours": {"weekly": {"mon": [["18:00", "09:00"]]}}}, 422),
        ("/routing-rules", {"name": "r", "team_id": str(uuid.uuid4())}, 422),
    ]
    for path, body, status in bad:
        response = client.post(API + path, json=body)
        assert response.status_code == status, (body, response.text)
    assert client.put(f"{API}/agents/{uuid.uuid4()}", json={"online": True}).status_code == 422
    assert client.put(f"{API}/agents/{ana}", json={"capacity": -1}).status_code == 422
    assert [t["name"] for t in client.get(f"{API}/teams").json()] == ["Ventas"]


def test_rules_pick_the_team_by_channel_keyword_tier_and_language(client: TestClient, db: Database) -> None:
    (agent,) = staff(db, 1)
    vip = make_team(client, "VIP", [agent])
    returns = make_team(client, "Devoluciones", [agent])
    english = make_team(client, "English", [agent])
    general = make_team(client, "General", [agent])
    make_rule(client, vip["id"], tiers=["gold"], position=1)
    make_rule(client, returns["id"], keywords=["devolución"], channels=["whatsapp", "email"], position=2)
    make_rule(client, english["id"], languages=["en"], position=3)
    make_rule(client, general["id"], position=9)
    gold = client.post(f"{API}/customers", json={"traits": {"attributes": {"tier": "gold"}},
                                                "identities": customer(1)})  # fmt: skip
    assert gold.status_code == 201, gold.text
    client.post(f"{API}/customers", json={"traits": {"language": "en"}, "identities": customer(2)})
    assert new_conversation(client, 1, text="devolucion")["team_id"] == vip["id"]
    assert new_conversation(client, 3, text="Quiero una DEVOLUCION")["team_id"] == returns["id"]
    by_sms = new_conversation(
        client, 4, text="devolución", channel="sms", identities=[{"type": "phone", "value": "612000004"}]
    )
    assert by_sms["team_id"] == general["id"]
    assert new_conversation(client, 2, text="hello")["team_id"] == english["id"]
    assert new_conversation(client, 5, text="hola")["team_id"] == general["id"]


def test_least_loaded_respects_capacity_and_online(client: TestClient, db: Database) -> None:
    a, b, c = staff(db, 3)
    team = make_team(client, "Soporte", [a, b, c])
    make_rule(client, team["id"])
    set_agent(client, a, capacity=2, online=True)
    set_agent(client, b, capacity=1, online=True)
    set_agent(client, c, capacity=5, online=False)
    assignees = [new_conversation(client, n)["assignee_id"] for n in range(4)]
    assert sorted(assignees[:3], key=str) == sorted([str(a), str(a), str(b)], key=str)
    assert assignees[3] is None  # everybody online is full: queued in the team
    load = agents_by_id(client)
    assert (load[str(a)]["open_count"], load[str(b)]["open_count"], load[str(c)]["open_count"]) == (2, 1, 0)
    queued = client.get(f"{API}/conversations", params={"team": team["id"], "assignee": "none"}).json()["items"]
    assert len(queued) == 1

    # an agent coming online takes the queue
    set_agent(client, c, online=True)
    assert conversation(client, queued[0]["id"])["assignee_id"] == str(c)
    assert agents_by_id(client)[str(c)]["open_count"] == 1


def test_round_robin_takes_turns(client: TestClient, db: Database) -> None:
    agents = staff(db, 3)
    team = make_team(client, "Turnos", agents, strategy="round_robin")
    make_rule(client, team["id"])
    for agent in agents:
        set_agent(client, agent, capacity=10, online=True)
    assignees = [new_conversation(client, n)["assignee_id"] for n in range(6)]
    order = sorted(str(a) for a in agents)
    assert assignees == order + order


def test_resolving_frees_a_slot_and_the_queue_moves(client: TestClient, db: Database) -> None:
    (agent,) = staff(db, 1)
    team = make_team(client, "Soporte", [agent])
    make_rule(client, team["id"])
    set_agent(client, agent, capacity=1, online=True)
    first = new_conversation(client, 1)
    second = new_conversation(client, 2)
    assert first["assignee_id"] == str(agent) and second["assignee_id"] is None
    resolved = client.post(f"{API}/conversations/{first['id']}/status", json={"status": "resolved"})
    assert resolved.status_code == 200, resolved.text
    assert conversation(client, second["id"])["assignee_id"] == str(agent)
    assert agents_by_id(client)[str(agent)]["open_count"] == 1
    # the customer writes again: the conversation reopens for its agent, even past capacity
    assert inbound(client, channel="email", identities=customer(1))["conversation_id"] == first["id"]
    assert conversation(client, first["id"])["assignee_id"] == str(agent)
    assert agents_by_id(client)[str(agent)]["open_count"] == 2


def test_supervisor_reassign_may_exceed_capacity(client: TestClient, db: Database) -> None:
    a, b = staff(db, 2)
    team = make_team(client, "Soporte", [a, b])
    make_rule(client, team["id"])
    set_agent(client, a, capacity=1, online=True)
    set_agent(client, b, capacity=1, online=True)
    first, second = new_conversation(client, 1), new_conversation(client, 2)
    assert {first["assignee_id"], second["assignee_id"]} == {str(a), str(b)}
    to_a = first if first["assignee_id"] == str(b) else second
    moved = client.post(f"{API}/conversations/{to_a['id']}/assign", json={"agent_id": str(a)})
    assert moved.status_code == 200, moved.text
    assert moved.json()["assignee_id"] == str(a)
    load = agents_by_id(client)
    assert (load[str(a)]["open_count"], load[str(b)]["open_count"]) == (2, 0)
    # handing it back to the team picks the free agent
    back = client.post(f"{API}/conversations/{to_a['id']}/assign", json={"team_id": team["id"]})
    assert back.status_code == 200, back.text
    assert back.json()["assignee_id"] == str(b)
    load = agents_by_id(client)
    assert (load[str(a)]["open_count"], load[str(b)]["open_count"]) == (1, 1)
    for body, status in (({}, 422), ({"agent_id": str(a), "team_id": team["id"]}, 422),
                         ({"agent_id": str(uuid.uuid4())}, 422), ({"team_id": str(uuid.uuid4())}, 422)):  # fmt: skip
        assert client.post(f"{API}/conversations/{to_a['id']}/assign", json=body).status_code == status
    assert agents_by_id(client)[str(b)]["open_count"] == 1


def test_out_of_hours_reply(client: TestClient, db: Database, app: Any) -> None:
    (agent,) = staff(db, 1)
    now = datetime.now(ZoneInfo("Europe/Madrid"))
    closed_day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(now + timedelta(days=1)).weekday()]
    team = make_team(
        client, "Tienda", [agent], out_of_hours_reply="Estamos cerrados; te respondemos mañana.",
        business_hours={"timezone": "Europe/Madrid", "weekly": {closed_day: [["09:00", "18:00"]]}},
    )  # fmt: skip
    make_rule(client, team["id"])
    conversation_id = inbound(client, channel="whatsapp")["conversation_id"]
    _, bot = messages(client, conversation_id)
    assert (bot["direction"], bot["sender_type"], bot["channel"]) == ("outbound", "bot", "whatsapp")
    assert bot["text"] == "Estamos cerrados; te respondemos mañana." and bot["status"] == "queued"
    assert conversation(client, conversation_id)["first_response_at"] is None
    app.state.outbox_worker.drain()
    assert messages(client, conversation_id)[1]["status"] == "sent"
    # only once per conversation, not for every message
    inbound(client, channel="whatsapp")
    assert [m["sender_type"] for m in messages(client, conversation_id)] == ["customer", "bot", "customer"]


def test_within_business_hours_no_automatic_reply(client: TestClient, db: Database) -> None:
    team = make_team(
        client, "Siempre", [], out_of_hours_reply="cerrado",
        business_hours={"timezone": "UTC", "weekly": {d: [["00:00", "23:59"]] for d in
                                                        ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}},
    )  # fmt: skip
    make_rule(client, team["id"])
    now = datetime.now(UTC)
    if now.strftime("%H:%M") >= "23:59":  # the one minute the spans leave out
        return
    conversation_id = inbound(client)["conversation_id"]
    assert [m["sender_type"] for m in messages(client, conversation_id)] == ["customer"]
