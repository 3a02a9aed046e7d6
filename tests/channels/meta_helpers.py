"""Meta webhook payloads and signatures, as Meta sends them."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any

from fastapi.testclient import TestClient

_ids = itertools.count(1)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_signed(client: TestClient, path: str, payload: dict[str, Any], secret: str) -> Any:
    body = json.dumps(payload).encode()
    return client.post(path, content=body, headers={"Content-Type": "application/json",
                                                    "X-Hub-Signature-256": sign(secret, body)})  # fmt: skip


def wa_message(wa_id: str, kind: str = "text", *, message_id: str | None = None, ts: float | None = None,
               **content: Any) -> dict[str, Any]:  # fmt: skip
    message: dict[str, Any] = {
        "from": wa_id, "id": message_id or f"wamid.TEST{next(_ids):08d}", "timestamp": str(int(ts or time.time())),
        "type": kind,
    }  # fmt: skip
    message[kind] = content or {"body": "Hola"}
    return message


def wa_payload(phone_number_id: str, *, messages: list[dict[str, Any]] | None = None,
               statuses: list[dict[str, Any]] | None = None, name: str = "Ana") -> dict[str, Any]:  # fmt: skip
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "34600000000", "phone_number_id": phone_number_id},
    }
    if messages:
        value["contacts"] = [{"profile": {"name": name}, "wa_id": messages[0]["from"]}]
        value["messages"] = messages
    if statuses:
        value["statuses"] = statuses
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}]}  # fmt: skip
