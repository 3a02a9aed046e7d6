"""Signed reply addresses: ``reply+<conversation>.<signature>@domain`` routes an answer to its conversation.

The signature (HMAC-SHA256 with the secret key, truncated to 60 bits) makes the address unguessable,
so nobody can write into another customer's conversation by making up an address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid

_PREFIX = "reply"
_TOKEN = re.compile(r"^reply\+([a-z2-7]{26})\.([a-z2-7]{12})$")


def _signature(secret: str, conversation_id: uuid.UUID) -> str:
    digest = hmac.new(secret.encode(), b"email-reply:" + conversation_id.bytes, hashlib.sha256).digest()
    return base64.b32encode(digest[:8]).decode().lower().rstrip("=")[:12]


def reply_address(secret: str, conversation_id: uuid.UUID, domain: str) -> str:
    encoded = base64.b32encode(conversation_id.bytes).decode().lower().rstrip("=")
    return f"{_PREFIX}+{encoded}.{_signature(secret, conversation_id)}@{domain}"


def conversation_of(secret: str, address: str) -> uuid.UUID | None:
    """The conversation a reply address points to, or None if it is not one of ours (or forged)."""
    local = address.strip().lower().rsplit("@", 1)[0]
    match = _TOKEN.match(local)
    if match is None:
        return None
    try:
        conversation_id = uuid.UUID(bytes=base64.b32decode(match.group(1).upper() + "======"))
    except (ValueError, TypeError):
        return None
    if not hmac.compare_digest(match.group(2), _signature(secret, conversation_id)):
        return None
    return conversation_id
