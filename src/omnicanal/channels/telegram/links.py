"""``/start`` deep links that link a Telegram user to a customer we already know.

The link's payload (at most 64 characters of ``A-Za-z0-9_-``, Telegram's limit) is the customer id,
an expiry and a MAC: base64url(uuid 16 bytes + expiry 4 bytes + HMAC-SHA256[:12]) = 43 characters.
The MAC key is derived from ``OMNICANAL_SECRET_KEY`` and the channel id, so a link works only for
the bot it was made for and cannot be forged without the server's secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time
import uuid

DEFAULT_TTL_SECONDS = 7 * 24 * 3600


def _mac(secret_key: str, channel_id: uuid.UUID, data: bytes) -> bytes:
    key = hashlib.sha256(b"omnicanal/telegram-link/v1:" + secret_key.encode() + channel_id.bytes).digest()
    return hmac.new(key, data, hashlib.sha256).digest()[:12]


def make_token(secret_key: str, channel_id: uuid.UUID, customer_id: uuid.UUID, *,
               ttl: int = DEFAULT_TTL_SECONDS, now: float | None = None) -> str:  # fmt: skip
    data = customer_id.bytes + struct.pack(">I", int((now or time.time()) + ttl))
    return base64.urlsafe_b64encode(data + _mac(secret_key, channel_id, data)).decode().rstrip("=")


def read_token(secret_key: str, channel_id: uuid.UUID, token: str, *, now: float | None = None) -> uuid.UUID | None:
    """The customer a valid, unexpired token names; None for anything else."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        return None
    if len(raw) != 32:
        return None
    data, mac = raw[:20], raw[20:]
    if not hmac.compare_digest(mac, _mac(secret_key, channel_id, data)):
        return None
    (expires,) = struct.unpack(">I", data[16:])
    if expires < (now or time.time()):
        return None
    return uuid.UUID(bytes=data[:16])
