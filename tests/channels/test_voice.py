"""Voice (Twilio-compatible call webhooks): screen-pop, call log, missed calls become callbacks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from omnicanal import dispatch
from omnicanal.channels.twilio import signature
from tests.conversations.helpers import API, make_rule, make_staff, make_team, messages, set_agent

ACCOUNT = "AC" + "1" * 32
TOKEN = "voice-auth-token"
PUBLIC = "https://omnicanal.example.com"


@pytest.fixture
def ringing() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def record(session: Any, payload: dict[str, Any]) -> None:
        seen.append(payload)

    dispatch.subscribe("call.ringing", record)
    yield seen
    dispatch._handlers["call.ringing"].remove(record)


def voice_channel(client: TestClient, **extra: Any) -> dict[str, Any]:
    config = {"account_sid": ACCOUNT, "auth_token": TOKEN, "public_url": PUBLIC, "forward_to": "+34910000000"}
    response = client.post(f"{API}/channels", json={"type": "voice", "name": "Centralita", "config": config | extra})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def post(client: TestClient, path: str, params: dict[str, str], token: str = TOKEN) -> Any:
    headers = {"X-Twilio-Signature": signature(token, PUBLIC + path, params.items()),
               "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
    return client.post(path, content=urlencode(params), headers=headers)


def call(client: TestClient, channel_id: str, sid: str, caller: str = "+34611555666") -> Any:
    params = {"CallSid": sid, "AccountSid": ACCOUNT, "From": caller, "To": "+34910000001", "CallStatus": "ringing",
              "Direction": "inbound"}  # fmt: skip
    return post(client, f"/webhooks/voice/{channel_id}", params)


def test_a_call_pops_on_the_team_logs_and_is_wrapped_up(
    client: TestClient, db: Any, ringing: list[dict[str, Any]]
) -> None:
    agent = make_staff(db, "ana@staff.example")
    set_agent(client, agent, online=True)
    team = make_team(client, "Teléfono", [agent])
    make_rule(client, team["id"], channels=["phone"])
    created = client.post(f"{API}/customers", json={"identities": [{"type": "phone", "value": "611 555 666"}],
                                                    "traits": {"first_name": "Lola"}})  # fmt: skip
    channel = voice_channel(client)
    answer = call(client, channel["id"], "CA" + "a" * 32)
    assert answer.status_code == 200
    assert "<Say" in answer.text and "+34910000000</Dial>" in answer.text
    assert f'action="{PUBLIC}/webhooks/voice/{channel["id"]}/status"' in answer.text
    (pop,) = ringing
    assert pop["customer_id"] == created.json()["id"] and pop["agents"] == [str(agent)]
    assert pop["customer_360"]["customer"]["traits"]["first_name"] == "Lola"
    status = {"CallSid": "CA" + "a" * 32, "AccountSid": ACCOUNT, "CallStatus": "completed", "CallDuration": "184",
              "RecordingUrl": "https://api.twilio.com/rec/RE1"}  # fmt: skip
    assert post(client, f"/webhooks/voice/{channel['id']}/status", status).status_code == 204
    post(client, f"/webhooks/voice/{channel['id']}/status", status)  # reported twice: logged once
    (message,) = messages(client, pop["conversation_id"])
    assert message["text"] == "📞 Llamada atendida · 3:04"
    assert message["attachments"][0]["recording_url"] == "https://api.twilio.com/rec/RE1"
    wrap = client.post(f"{API}/calls/{'CA' + 'a' * 32}/log", json={"disposition": "resolved", "notes": "Talla 42",
                                                                   "agent_id": str(agent)})  # fmt: skip
    assert wrap.status_code == 200, wrap.text
    timeline = client.get(f"{API}/customers/{pop['customer_id']}/timeline").json()["items"]
    types = [e["type"] for e in timeline]
    assert types.count("call.completed") == 1 and "call.logged" in types
    assert client.get(f"{API}/callbacks").json() == []


def test_a_missed_call_and_a_web_request_reach_one_callback_queue(client: TestClient) -> None:
    channel = voice_channel(client)
    call(client, channel["id"], "CA" + "b" * 32)
    dial = {"CallSid": "CA" + "b" * 32, "AccountSid": ACCOUNT, "DialCallStatus": "no-answer", "DialCallDuration": "0"}
    answer = post(client, f"/webhooks/voice/{channel['id']}/status", dial)
    assert "<Hangup/>" in answer.text
    final = {"CallSid": "CA" + "b" * 32, "AccountSid": ACCOUNT, "CallStatus": "completed", "CallDuration": "31"}
    post(client, f"/webhooks/voice/{channel['id']}/status", final)  # the end of the same call: not a second task
    (task,) = client.get(f"{API}/callbacks").json()
    assert task["reason"] == "missed_call" and task["phone"] == "+34611555666"
    requested = client.post(f"{API}/callbacks", json={"customer_id": task["customer_id"], "reason": "web_request",
                                                      "notes": "Prefiere por la tarde"})  # fmt: skip
    assert requested.status_code == 201
    assert [t["reason"] for t in client.get(f"{API}/callbacks").json()] == ["missed_call", "web_request"]
    assert client.post(f"{API}/callbacks/{task['id']}/done").status_code == 200
    assert client.post(f"{API}/callbacks/{task['id']}/done").status_code == 409
    assert [t["reason"] for t in client.get(f"{API}/callbacks").json()] == ["web_request"]
    (message,) = messages(client, task["conversation_id"])
    assert message["text"] == "📞 Llamada perdida"


def test_forged_calls_are_refused(client: TestClient) -> None:
    channel = voice_channel(client)
    params = {"CallSid": "CAforged", "AccountSid": ACCOUNT, "From": "+34611555666", "CallStatus": "ringing"}
    assert post(client, f"/webhooks/voice/{channel['id']}", params, token="guess").status_code == 403
    assert client.post(f"/webhooks/voice/{channel['id']}", data=params).status_code == 401
    assert post(client, f"/webhooks/voice/{uuid.uuid4()}", params).status_code == 404
    assert client.get(f"{API}/conversations").json()["items"] == []
