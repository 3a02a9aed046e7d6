"""Channel secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) with a key derived from the secret key.

``OMNICANAL_SECRET_KEY`` is refused in production when left at its default (settings.py); in
development the default yields a stable development key. Changing the secret key makes stored
channel secrets unreadable: set them again.
"""

from __future__ import annotations

import base64
import hashlib
import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken


@lru_cache(maxsize=8)
def _fernet(secret_key: str) -> Fernet:
    derived = hashlib.pbkdf2_hmac("sha256", secret_key.encode(), b"omnicanal/channel-secrets/v1", 100_000)
    return Fernet(base64.urlsafe_b64encode(derived))


class SecretsUnreadable(Exception):
    """Stored secrets written under another secret key."""


def seal(secret_key: str, values: dict[str, str]) -> str:
    if not values:
        return ""
    return _fernet(secret_key).encrypt(json.dumps(values, sort_keys=True).encode()).decode()


def unseal(secret_key: str, token: str) -> dict[str, str]:
    if not token:
        return {}
    try:
        data: dict[str, str] = json.loads(_fernet(secret_key).decrypt(token.encode()))
    except InvalidToken:
        raise SecretsUnreadable("channel secrets were sealed with another OMNICANAL_SECRET_KEY") from None
    return data
